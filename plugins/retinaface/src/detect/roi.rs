//! Regions of interest from upstream: `GstVideoRegionOfInterestMeta`s of a chosen roi_type (from
//! DL Streamer's `gvaattachroi`, a motion detector or the application) that `retinafacedetect`
//! looks inside, in addition to its `regions` property.

use gst_video::VideoRegionOfInterestMeta;
use retinaface::tiling::Rect;

/// The rectangles of the `roi_type` metas on `buffer`, in frame pixels (as attached; clipping
/// to the frame happens with the other regions). Face metas are never read as regions.
pub fn upstream_regions(buffer: &gst::BufferRef, roi_type: &str) -> Vec<Rect> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == roi_type && m.roi_type() != crate::facemeta::ROI_TYPE)
        .map(|m| {
            let (x, y, w, h) = m.rect();
            Rect::new(x as usize, y as usize, w as usize, h as usize)
        })
        .collect()
}
