//! Greedy non-maximum suppression, as biubug6's `py_cpu_nms`.

use crate::decode::Face;
pub use crate::geometry::pixel_iou;

/// Keeps the best-scoring faces, dropping any whose overlap with a kept face exceeds
/// `iou_threshold`. The result is sorted by score, highest first.
pub fn nms(mut faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::with_capacity(faces.len().min(64));
    for face in faces {
        if kept
            .iter()
            .all(|k| pixel_iou(&k.bbox, &face.bbox) <= iou_threshold)
        {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4], score: f32) -> Face {
        Face::from_box(bbox, score)
    }

    #[test]
    fn hand_computed_pixel_iou() {
        // Boxes 0..9 and 5..14 (10 px wide inclusive): overlap 5×10, union 10×10 + 10×10 − 50.
        let iou: f32 = pixel_iou(&[0.0, 0.0, 9.0, 9.0], &[5.0, 0.0, 14.0, 9.0]);
        assert!((iou - 50.0 / 150.0).abs() < 1e-6, "{iou}");
        assert_eq!(
            pixel_iou(&[0.0, 0.0, 9.0, 9.0], &[20.0, 20.0, 29.0, 29.0]),
            0.0
        );
    }

    #[test]
    fn suppresses_overlaps_keeps_order() {
        let faces = vec![
            face([5.0, 0.0, 14.0, 9.0], 0.8),
            face([0.0, 0.0, 9.0, 9.0], 0.9),
            face([1.0, 0.0, 10.0, 9.0], 0.85),
            face([50.0, 50.0, 60.0, 60.0], 0.7),
        ];
        let kept = nms(faces, 0.4);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        // 0.85 overlaps 0.9 by 90/110; 0.8 overlaps 0.9 by 1/3 (≤ 0.4 kept).
        assert_eq!(scores, vec![0.9, 0.8, 0.7]);
    }

    #[test]
    fn threshold_is_exclusive_like_the_reference() {
        // The reference keeps boxes whose IoU is <= threshold.
        let faces = vec![
            face([0.0, 0.0, 9.0, 9.0], 0.9),
            face([5.0, 0.0, 14.0, 9.0], 0.8),
        ];
        assert_eq!(nms(faces.clone(), 1.0 / 3.0 + 1e-6).len(), 2);
        assert_eq!(nms(faces, 0.3).len(), 1);
    }
}
