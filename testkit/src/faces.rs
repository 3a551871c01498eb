//! Comparing the faces of two runs.

use gstretinaface::facemeta::FaceRecord;

/// Plain IoU of two faces' boxes.
pub fn iou(a: &FaceRecord, b: &FaceRecord) -> f64 {
    retinaface::geometry::iou(&a.corners(), &b.corners())
}

/// Pairs every face of `expected` with its best match in `actual`; returns the worst IoU.
pub fn worst_match(expected: &[FaceRecord], actual: &[FaceRecord]) -> f64 {
    expected
        .iter()
        .map(|e| actual.iter().map(|a| iou(e, a)).fold(0.0, f64::max))
        .fold(1.0, f64::min)
}
