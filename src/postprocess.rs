//! From network outputs to the faces of a frame, in two steps shared by the plugin and the
//! trainer:
//!
//! - [`candidates`]: the faces of one region (one batch slot), decoded into frame pixels, with the
//!   region's [`Keep`] rule applied (tiles drop faces cut by an inner border) and boxes clamped
//!   to the region;
//! - [`reduce`] (when a frame has several regions): each region's candidates NMS-reduced;
//! - [`finish`]: all regions of a frame merged: minimum size, top-K, NMS, face limit.

use crate::contract::ModelContract;
use crate::decode::{Face, decode_faces};
use crate::nms::nms;
use crate::priors::Prior;

/// Candidates kept before NMS, best first: bounds NMS cost at low thresholds (the reference
/// keeps 5000; at threshold 0 every one of the 16,800 priors of a 640×640 input is a candidate).
pub const PRE_NMS_TOP_K: usize = 2000;
/// Faces reported per frame at most, whatever `max_faces` says: bounds metadata and drawing cost
/// when the threshold is set near 0 (the reference's `keep_top_k` is 750). Real crowds at the
/// model's input size stay well under it.
pub const MAX_FACES: usize = 500;

/// Caps of the [`finish`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Candidates kept before NMS, best first.
    pub pre_nms_top_k: usize,
    /// Faces kept after NMS at most (a caller's smaller `max_faces` wins).
    pub max_faces: usize,
}

impl Limits {
    /// What the plugin and the trainer's `detect` use.
    pub const DEPLOYMENT: Self = Self {
        pre_nms_top_k: PRE_NMS_TOP_K,
        max_faces: MAX_FACES,
    };
    /// The WIDER FACE evaluation protocol of the reference (`top_k` 5000, `keep_top_k` 750 at
    /// score ≥ 0.02): AP integrates the whole precision/recall curve down to scores of 0.02, and
    /// WIDER's crowd images hold several hundred faces, so the deployment caps would cut recall on
    /// the hard set and make the figures incomparable with published ones.
    pub const WIDER_EVALUATION: Self = Self {
        pre_nms_top_k: 5000,
        max_faces: 750,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEPLOYMENT
    }
}

/// Settings of the [`finish`] step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinishParams {
    /// IoU above which the weaker of two overlapping faces is dropped.
    pub nms_threshold: f32,
    /// Keep at most this many faces; 0 = `limits.max_faces`, which also caps any larger value.
    pub max_faces: usize,
    /// Drop faces narrower or shorter than this (frame pixels).
    pub min_face_size: f32,
    pub limits: Limits,
}

/// Which decoded faces a region keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keep {
    /// Faces whose longer side is below this are dropped (frame pixels).
    pub min_side: f32,
    /// Faces whose longer side is above this are dropped (frame pixels).
    pub max_side: f32,
    /// Inner tile borders (`x_min`, `y_min`, `x_max`, `y_max` in frame pixels): a face that
    /// crosses one, or comes within `margin` of it, is cut there and dropped; the neighbouring
    /// tile, which overlaps by more than the largest kept face, sees it whole.
    pub cut_edges: [Option<f32>; 4],
    pub margin: f32,
}

impl Keep {
    /// Every face.
    pub const ALL: Self = Self {
        min_side: 0.0,
        max_side: f32::INFINITY,
        cut_edges: [None; 4],
        margin: 0.0,
    };

    pub fn keeps(&self, f: &Face) -> bool {
        let side = f.width().max(f.height());
        if side < self.min_side || side > self.max_side {
            return false;
        }
        let [x0, y0, x1, y1] = self.cut_edges;
        let m = self.margin;
        let b = f.bbox;
        !(x0.is_some_and(|e| b[0] < e + m)
            || y0.is_some_and(|e| b[1] < e + m)
            || x1.is_some_and(|e| b[2] > e - m)
            || y1.is_some_and(|e| b[3] > e - m))
    }
}

/// How one batch slot maps back onto the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Frame pixel of the slot's top-left corner.
    pub origin: [f32; 2],
    /// Normalised tensor coordinates → frame pixels (`InputGeometry::to_frame_scale` of the crop).
    pub scale: [f32; 2],
    /// Boxes are clamped to this rectangle (`x_min`, `y_min`, `x_max`, `y_max`): the region the
    /// user asked for, or the frame.
    pub clip: [f32; 4],
    pub keep: Keep,
}

impl Placement {
    /// A whole `width`×`height` image seen as one slot with `scale`.
    pub fn whole(width: f32, height: f32, scale: [f32; 2]) -> Self {
        Self {
            origin: [0.0, 0.0],
            scale,
            clip: [0.0, 0.0, width, height],
            keep: Keep::ALL,
        }
    }
}

/// The faces one slot's outputs hold (`loc`, `conf`, `landmarks` of that slot), scoring at
/// least `threshold`, in frame pixels; faces the placement's [`Keep`] rejects are left out
/// (judged on the unclamped box, so a cut face still reaches past the border), then boxes are
/// clamped to the placement's clip rectangle.
pub fn candidates(
    contract: &ModelContract,
    priors: &[Prior],
    outputs: [&[f32]; 3],
    threshold: f32,
    placement: &Placement,
) -> Vec<Face> {
    let [loc, conf, landmarks] = outputs;
    let mut faces = decode_faces(
        contract,
        priors,
        loc,
        conf,
        landmarks,
        threshold,
        placement.scale,
    );
    let [ox, oy] = placement.origin;
    let [cx0, cy0, cx1, cy1] = placement.clip;
    faces.retain_mut(|f| {
        f.bbox = [
            f.bbox[0] + ox,
            f.bbox[1] + oy,
            f.bbox[2] + ox,
            f.bbox[3] + oy,
        ];
        for p in &mut f.landmarks {
            *p = [p[0] + ox, p[1] + oy];
        }
        if !placement.keep.keeps(f) {
            return false;
        }
        f.bbox = [
            f.bbox[0].clamp(cx0, cx1),
            f.bbox[1].clamp(cy0, cy1),
            f.bbox[2].clamp(cx0, cx1),
            f.bbox[3].clamp(cy0, cy1),
        ];
        true
    });
    faces
}

/// The best `pre_nms_top_k` of one region's candidates, NMS-reduced. A frame of many regions
/// (tiles) reduces each before [`finish`]: the frame-wide top-K then ranks faces rather than the
/// dozen near-identical anchors each face gives, so a wall of hundreds of faces is not cut
/// short by the cap.
pub fn reduce(mut faces: Vec<Face>, params: &FinishParams) -> Vec<Face> {
    top_k(&mut faces, params.limits.pre_nms_top_k);
    nms(faces, params.nms_threshold)
}

fn top_k(faces: &mut Vec<Face>, k: usize) {
    if faces.len() > k {
        faces.select_nth_unstable_by(k, |a, b| b.score.total_cmp(&a.score));
        faces.truncate(k);
    }
}

/// The faces of a frame from the candidates of all its regions: minimum size, the best
/// `pre_nms_top_k`, NMS (which also merges a face that two overlapping regions both found), and
/// the face limit. Best first.
pub fn finish(mut faces: Vec<Face>, params: &FinishParams) -> Vec<Face> {
    let min = params.min_face_size.max(f32::MIN_POSITIVE);
    faces.retain(|f| f.width() >= min && f.height() >= min);
    top_k(&mut faces, params.limits.pre_nms_top_k);
    let mut faces = nms(faces, params.nms_threshold);
    let limit = match params.max_faces {
        0 => params.limits.max_faces,
        n => n.min(params.limits.max_faces),
    };
    faces.truncate(limit);
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4], score: f32) -> Face {
        Face::from_box(bbox, score)
    }

    fn params() -> FinishParams {
        FinishParams {
            nms_threshold: 0.4,
            max_faces: 0,
            min_face_size: 0.0,
            limits: Limits::DEPLOYMENT,
        }
    }

    #[test]
    fn candidates_map_slot_to_frame_and_clamp_to_the_region() {
        // One prior at the slot centre, zero regression: a box of 0.2×0.2 of the slot. The slot
        // shows a 100×50 crop at (300, 200): box (340..360, 215..235) in frame pixels.
        let priors = [Prior {
            cx: 0.5,
            cy: 0.5,
            w: 0.2,
            h: 0.4,
        }];
        let mut p = Placement::whole(1000.0, 1000.0, [100.0, 50.0]);
        p.origin = [300.0, 200.0];
        let c = ModelContract::default();
        let outputs: [&[f32]; 3] = [&[0.0; 4], &[0.1, 0.9], &[0.0; 10]];
        let f = candidates(&c, &priors, outputs, 0.5, &p);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].bbox, [340.0, 215.0, 360.0, 235.0]);
        assert_eq!(f[0].landmarks[2], [350.0, 225.0]);
        // A region clip of x ≤ 345 clamps the box; below threshold: nothing.
        p.clip = [0.0, 0.0, 345.0, 1000.0];
        assert_eq!(candidates(&c, &priors, outputs, 0.5, &p)[0].bbox[2], 345.0);
        assert!(candidates(&c, &priors, outputs, 0.95, &p).is_empty());
    }

    #[test]
    fn keep_drops_faces_cut_by_inner_edges_and_out_of_size() {
        let keep = Keep {
            min_side: 10.0,
            max_side: 50.0,
            cut_edges: [None, None, Some(100.0), None],
            margin: 4.0,
        };
        assert!(keep.keeps(&face([50.0, 0.0, 90.0, 20.0], 1.0)));
        // Right edge at 97 is within 4 px of the inner border at 100; 105 crosses it.
        assert!(!keep.keeps(&face([60.0, 0.0, 97.0, 20.0], 1.0)));
        assert!(!keep.keeps(&face([60.0, 0.0, 105.0, 20.0], 1.0)));
        // Too small (8 px) and too large (60 px).
        assert!(!keep.keeps(&face([0.0, 0.0, 8.0, 8.0], 1.0)));
        assert!(!keep.keeps(&face([0.0, 0.0, 60.0, 20.0], 1.0)));
        assert!(Keep::ALL.keeps(&face([0.0, 0.0, 1e6, 1e6], 1.0)));
    }

    #[test]
    fn finish_merges_regions_and_applies_limits() {
        // The same face from two overlapping tiles (IoU ≈ 0.9) becomes one; min size drops a
        // 3-px face; max_faces keeps the best.
        let faces = vec![
            face([10.0, 10.0, 30.0, 30.0], 0.8),
            face([11.0, 10.0, 31.0, 30.0], 0.9),
            face([100.0, 100.0, 103.0, 103.0], 0.99),
            face([200.0, 200.0, 240.0, 240.0], 0.7),
        ];
        let mut p = params();
        p.min_face_size = 5.0;
        let kept = finish(faces.clone(), &p);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
        p.max_faces = 1;
        assert_eq!(finish(faces.clone(), &p).len(), 1);
        // max_faces above the ceiling is capped by the limits.
        p.max_faces = 10;
        p.limits.max_faces = 2;
        p.min_face_size = 0.0;
        assert_eq!(finish(faces, &p).len(), 2);
    }

    #[test]
    fn reduce_per_region_keeps_faces_the_frame_cap_would_cut() {
        // Two regions, each with one face seen by 3 anchors; a frame-wide top-3 alone would keep
        // only the first face's anchors.
        let region = |x: f32, s: f32| -> Vec<Face> {
            (0..3)
                .map(|i| {
                    face(
                        [x + i as f32, 0.0, x + 20.0 + i as f32, 20.0],
                        s - i as f32 * 0.01,
                    )
                })
                .collect()
        };
        let mut p = params();
        p.limits.pre_nms_top_k = 3;
        let direct = finish([region(0.0, 0.9), region(100.0, 0.8)].concat(), &p);
        assert_eq!(direct.len(), 1);
        let reduced = [reduce(region(0.0, 0.9), &p), reduce(region(100.0, 0.8), &p)].concat();
        let scores: Vec<f32> = finish(reduced, &p).iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn top_k_keeps_the_best_candidates() {
        let faces: Vec<Face> = (0..10)
            .map(|i| {
                face(
                    [i as f32 * 50.0, 0.0, i as f32 * 50.0 + 20.0, 20.0],
                    i as f32 / 10.0,
                )
            })
            .collect();
        let mut p = params();
        p.limits.pre_nms_top_k = 3;
        let scores: Vec<f32> = finish(faces, &p).iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.7]);
    }
}
