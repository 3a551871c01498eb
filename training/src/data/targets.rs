//! Matching priors to ground-truth faces: the per-prior training targets.
//!
//! The rule is the one RetinaFace (biubug6 `MultiBoxLoss`) trains with, so a model trained here
//! behaves like the published ones:
//! - every prior takes the face it overlaps most (plain IoU of corner boxes);
//! - every face claims its best prior, whatever the overlap, so that small faces that no prior
//!   overlaps well still get one positive — unless that best overlap is below
//!   [`MIN_FORCED_OVERLAP`], where the face is too small or odd-shaped to learn from;
//! - priors whose (possibly forced) overlap is below the IoU threshold are background.
//!
//! The regression targets come from the core crate's encoder, the exact inverse of the decoder the
//! plugin runs, so training and deployment cannot drift apart.

use retinaface::decode::{encode_box, encode_landmarks};
use retinaface::geometry::iou;
use retinaface::priors::Prior;

use super::labels::FaceAnnotation;

/// A face whose best prior overlaps it less than this is not given a forced positive.
pub const MIN_FORCED_OVERLAP: f32 = 0.2;

/// Overlap recorded for a forced match: above any threshold, so it always counts as positive.
const FORCED: f32 = 2.0;

/// Label of a background prior.
pub const BACKGROUND: i8 = 0;
/// Label of a prior matched to a face with landmarks.
pub const FACE: i8 = 1;
/// Label of a prior matched to a face without landmarks: a face for the classifier and the box
/// loss, excluded from the landmark loss.
pub const FACE_WITHOUT_LANDMARKS: i8 = -1;

/// Training targets of one image, one row per prior (in prior order).
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// `P × 4` encoded boxes; zero for background priors.
    pub loc: Vec<f32>,
    /// `P × 10` encoded landmarks; zero unless the label is [`FACE`].
    pub landmarks: Vec<f32>,
    /// `P` labels: [`BACKGROUND`], [`FACE`] or [`FACE_WITHOUT_LANDMARKS`].
    pub labels: Vec<i8>,
}

impl Targets {
    /// All-background targets for `priors` priors.
    pub fn background(priors: usize) -> Self {
        Self {
            loc: vec![0.0; priors * 4],
            landmarks: vec![0.0; priors * 10],
            labels: vec![BACKGROUND; priors],
        }
    }
}

/// Matches `faces` (normalised 0..1 like the priors) to `priors`; see the module docs.
pub fn match_priors(
    faces: &[FaceAnnotation],
    priors: &[Prior],
    variances: [f32; 2],
    iou_threshold: f32,
) -> Targets {
    let mut targets = Targets::background(priors.len());
    if faces.is_empty() || priors.is_empty() {
        return targets;
    }

    // Best face per prior (first on ties) and best prior per face, in one pass over all pairs.
    let mut prior_best: Vec<(usize, f32)> = vec![(0, f32::NEG_INFINITY); priors.len()];
    let mut face_best: Vec<(usize, f32)> = vec![(0, f32::NEG_INFINITY); faces.len()];
    for (p, prior) in priors.iter().enumerate() {
        let corners = corner_form(prior);
        for (f, face) in faces.iter().enumerate() {
            let overlap = iou(&face.bbox, &corners);
            if overlap > prior_best[p].1 {
                prior_best[p] = (f, overlap);
            }
            if overlap > face_best[f].1 {
                face_best[f] = (p, overlap);
            }
        }
    }

    // Forced matches; a later face wins a prior two faces both claim.
    let mut any_forced = false;
    for (f, &(p, overlap)) in face_best.iter().enumerate() {
        if overlap >= MIN_FORCED_OVERLAP {
            prior_best[p] = (f, FORCED);
            any_forced = true;
        }
    }
    if !any_forced {
        // No face is learnable in this image; it only teaches background.
        return targets;
    }

    for (p, &(f, overlap)) in prior_best.iter().enumerate() {
        if overlap < iou_threshold {
            continue;
        }
        let face = &faces[f];
        let prior = &priors[p];
        targets.loc[p * 4..p * 4 + 4].copy_from_slice(&encode_box(face.bbox, prior, variances));
        targets.labels[p] = match &face.landmarks {
            Some(points) => {
                targets.landmarks[p * 10..p * 10 + 10]
                    .copy_from_slice(&encode_landmarks(points, prior, variances));
                FACE
            }
            None => FACE_WITHOUT_LANDMARKS,
        };
    }
    targets
}

/// `[x_min, y_min, x_max, y_max]` of a prior.
fn corner_form(p: &Prior) -> [f32; 4] {
    [
        p.cx - p.w / 2.0,
        p.cy - p.h / 2.0,
        p.cx + p.w / 2.0,
        p.cy + p.h / 2.0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [f32; 2] = [0.1, 0.2];
    const THRESHOLD: f32 = 0.35;

    fn prior(cx: f32, cy: f32, w: f32, h: f32) -> Prior {
        Prior { cx, cy, w, h }
    }

    fn face(bbox: [f32; 4]) -> FaceAnnotation {
        FaceAnnotation {
            bbox,
            landmarks: None,
        }
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn face_equal_to_a_prior_gets_label_1_and_zero_box_target() {
        let priors = [prior(0.5, 0.5, 0.2, 0.2), prior(0.1, 0.1, 0.1, 0.1)];
        let points = [
            [0.45, 0.45],
            [0.55, 0.45],
            [0.5, 0.5],
            [0.46, 0.55],
            [0.54, 0.55],
        ];
        let faces = [FaceAnnotation {
            bbox: [0.4, 0.4, 0.6, 0.6],
            landmarks: Some(points),
        }];
        let t = match_priors(&faces, &priors, V, THRESHOLD);
        assert_eq!(t.labels, vec![FACE, BACKGROUND]);
        assert!(close(&t.loc[..4], &[0.0; 4]), "{:?}", t.loc);
        // Left eye: (0.45 − 0.5) / (0.1 × 0.2) = −2.5.
        let expected = [-2.5, -2.5, 2.5, -2.5, 0.0, 0.0, -2.0, 2.5, 2.0, 2.5];
        assert!(close(&t.landmarks[..10], &expected), "{:?}", t.landmarks);
        assert!(
            t.loc[4..]
                .iter()
                .chain(&t.landmarks[10..])
                .all(|v| *v == 0.0)
        );
    }

    #[test]
    fn priors_above_threshold_are_positive_without_forcing() {
        let priors = [
            prior(0.1, 0.1, 0.2, 0.2),  // IoU 1 (best)
            prior(0.2, 0.1, 0.2, 0.2),  // IoU 1/3: below 0.35
            prior(0.15, 0.1, 0.2, 0.2), // IoU 0.03 / 0.05 = 0.6
        ];
        let t = match_priors(&[face([0.0, 0.0, 0.2, 0.2])], &priors, V, THRESHOLD);
        assert_eq!(t.labels, vec![-1, 0, -1]);
        // Centre offset (0.1 − 0.15) / (0.1 × 0.2) = −2.5, same size → ln 1 = 0.
        assert!(close(&t.loc[8..12], &[-2.5, 0.0, 0.0, 0.0]), "{:?}", t.loc);
        assert!(
            t.landmarks.iter().all(|v| *v == 0.0),
            "no landmarks, no targets"
        );
    }

    #[test]
    fn small_face_forces_its_best_prior() {
        // Face 0.1 × 0.1 centred in a 0.2 × 0.2 prior: IoU 0.01 / 0.04 = 0.25, under the
        // threshold but over 0.2, so the prior is forced positive.
        let priors = [prior(0.9, 0.9, 0.2, 0.2), prior(0.5, 0.5, 0.2, 0.2)];
        let t = match_priors(&[face([0.45, 0.45, 0.55, 0.55])], &priors, V, THRESHOLD);
        assert_eq!(t.labels, vec![0, -1]);
        // Same centre; size ln(0.1 / 0.2) / 0.2.
        let s = 0.5f32.ln() / 0.2;
        assert!(close(&t.loc[4..8], &[0.0, 0.0, s, s]), "{:?}", t.loc);
    }

    #[test]
    fn faces_below_the_forcing_overlap_teach_background_only() {
        // Face 0.1 × 0.1 in a 0.25 × 0.25 prior: IoU 0.01 / 0.0625 = 0.16 < 0.2.
        let priors = [prior(0.5, 0.5, 0.25, 0.25)];
        let lost = face([0.45, 0.45, 0.55, 0.55]);
        let t = match_priors(&[lost], &priors, V, THRESHOLD);
        assert_eq!(t, Targets::background(1));

        // With a learnable face elsewhere, only that one gets a positive.
        let priors = [prior(0.5, 0.5, 0.25, 0.25), prior(0.1, 0.1, 0.1, 0.1)];
        let t = match_priors(&[lost, face([0.05, 0.05, 0.15, 0.15])], &priors, V, 0.35);
        assert_eq!(t.labels, vec![0, -1]);
    }

    #[test]
    fn each_prior_takes_the_face_it_overlaps_most() {
        // The wide prior overlaps face A by 0.5 and face B by 0.25 → A's box is its target.
        let priors = [
            prior(0.5, 0.5, 0.4, 0.2),
            prior(0.4, 0.5, 0.2, 0.2),
            prior(0.65, 0.5, 0.1, 0.2),
        ];
        let a = face([0.3, 0.4, 0.5, 0.6]);
        let b = face([0.6, 0.4, 0.7, 0.6]);
        let t = match_priors(&[a, b], &priors, V, THRESHOLD);
        assert_eq!(t.labels, vec![-1, -1, -1]);
        let to_a = encode_box(a.bbox, &priors[0], V);
        assert!(close(&t.loc[..4], &to_a), "{:?} vs {to_a:?}", &t.loc[..4]);
    }

    #[test]
    fn no_faces_means_all_background() {
        let priors = retinaface::priors::generate(&Default::default(), 64, 64);
        let t = match_priors(&[], &priors, V, THRESHOLD);
        assert_eq!(t.labels.len(), priors.len());
        assert!(t.labels.iter().all(|l| *l == 0));
        assert!(t.loc.iter().chain(&t.landmarks).all(|v| *v == 0.0));
        assert_eq!(
            (t.loc.len(), t.landmarks.len()),
            (priors.len() * 4, priors.len() * 10)
        );
    }
}
