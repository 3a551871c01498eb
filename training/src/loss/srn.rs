//! The loss of the SRN head ([`crate::model::srn`]): both stages against the same matched
//! faces.
//!
//! - First stage: class (one sigmoid logit) and box terms against the static priors, as the
//!   configured losses compute them (no landmarks).
//! - Second stage: the full multi-task loss, with
//!   - two-step regression: box and landmark targets re-encoded against the first stage's
//!     decoded boxes (the refined anchors; gradients do not flow into the first stage through
//!     them), and the overlap losses decode against those anchors;
//!   - two-step classification: priors whose first-stage face probability is below
//!     [`FILTER_FACE_PROBABILITY`] are left out of the classification term.
//!
//! A prior's label (face or background) is the one matching gave it against its static prior,
//! for both stages: the batches carry targets per prior, not the faces, so the second stage is
//! not re-matched against the refined boxes (SRN re-matches them at a higher IoU).

use tch::Tensor;

use super::{LossConfig, LossTerms, Targets, multibox_loss};
use crate::model::Outputs;
use crate::model::srn::{FILTER_FACE_PROBABILITY, FirstStage, anchor_growth};

/// The refined anchors `[N, P, 4]` (cx, cy, w, h): `priors [P, 4]` moved by the first stage's
/// offsets `first_loc [N, P, 4]` (the decoder's formulas, growth clamped like the export's).
pub fn refined_anchors(priors: &Tensor, first_loc: &Tensor, variances: [f32; 2]) -> Tensor {
    let v0 = f64::from(variances[0]);
    let p = priors.unsqueeze(0);
    let centre = p.narrow(-1, 0, 2) + first_loc.narrow(-1, 0, 2) * v0 * p.narrow(-1, 2, 2);
    let size = p.narrow(-1, 2, 2) * anchor_growth(first_loc, variances[1]);
    Tensor::cat(&[centre, size], -1)
}

/// Box `[N, P, 4]` and landmark `[N, P, 10]` targets against the refined anchors, from the
/// targets against the static priors (`loc`, `landmarks`) and the first stage's offsets. With
/// `g = exp(v₁·first[2..4])` (the anchor's growth): centre `(t[0..2] − first[0..2]) / g`, size
/// `t[2..4] − first[2..4]`, each landmark `(t[2k..2k+2] − first[0..2]) / g` (the centre variance
/// cancels: both encodings divide by it).
pub fn second_stage_targets(
    loc: &Tensor,
    landmarks: &Tensor,
    first_loc: &Tensor,
    variances: [f32; 2],
) -> (Tensor, Tensor) {
    let (n, p) = (loc.size()[0], loc.size()[1]);
    let centre = first_loc.narrow(-1, 0, 2);
    let grow = anchor_growth(first_loc, variances[1]);
    let box_t = Tensor::cat(
        &[
            (loc.narrow(-1, 0, 2) - &centre) / &grow,
            loc.narrow(-1, 2, 2) - first_loc.narrow(-1, 2, 2),
        ],
        -1,
    );
    let landmark_t = ((landmarks.reshape([n, p, 5, 2]) - centre.unsqueeze(2)) / grow.unsqueeze(2))
        .reshape([n, p, 10]);
    (box_t, landmark_t)
}

/// Priors the first stage filters out of the second stage's classification (`[N, P]` bool).
pub fn filtered(first_logit: &Tensor) -> Tensor {
    first_logit
        .squeeze_dim(-1)
        .sigmoid()
        .lt(f64::from(FILTER_FACE_PROBABILITY))
}

/// Both stages' loss; the terms are the sums of the stages' terms.
pub fn srn_loss(
    second: &Outputs<Tensor>,
    first: &FirstStage<Tensor>,
    targets: &Targets,
    config: &LossConfig,
) -> LossTerms {
    // The first stage has no landmark output: its landmark term compares the targets with
    // themselves (zero).
    let one = multibox_loss(&first.loc, &first.logit, targets.landmarks, targets, config);
    let (first_loc, first_logit) = (first.loc.detach(), first.logit.detach());
    let anchors = refined_anchors(targets.priors, &first_loc, targets.variances);
    let (loc_t, landmarks_t) = second_stage_targets(
        targets.loc,
        targets.landmarks,
        &first_loc,
        targets.variances,
    );
    let ignore = filtered(&first_logit);
    let two = multibox_loss(
        &second.loc,
        &second.conf,
        &second.landmarks,
        &Targets {
            loc: &loc_t,
            landmarks: &landmarks_t,
            labels: targets.labels,
            priors: &anchors,
            variances: targets.variances,
            ignore: Some(&ignore),
        },
        config,
    );
    LossTerms {
        total: one.total + two.total,
        boxes: one.boxes + two.boxes,
        classes: one.classes + two.classes,
        landmarks: two.landmarks + one.landmarks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retinaface::decode::{decode_box, encode_box, encode_landmarks};
    use retinaface::priors::Prior;

    const V: [f32; 2] = [0.1, 0.2];

    fn t(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    fn values(x: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(x.flatten(0, -1)).unwrap()
    }

    #[test]
    fn second_stage_targets_encode_the_face_against_the_refined_anchor() {
        // A hand case: prior at (0.5, 0.4), 0.2 × 0.3; the first stage moves it by
        // (1, −2) and grows it by e^(0.2·0.5), e^(0.2·(−1)); the face is (0.45, 0.3)–(0.65, 0.62).
        let prior = Prior {
            cx: 0.5,
            cy: 0.4,
            w: 0.2,
            h: 0.3,
        };
        let first = [1.0f32, -2.0, 0.5, -1.0];
        let face = [0.45f32, 0.3, 0.65, 0.62];
        let marks = [
            [0.5f32, 0.4],
            [0.6, 0.4],
            [0.55, 0.45],
            [0.5, 0.55],
            [0.6, 0.55],
        ];
        // The refined anchor, by the core crate's decoder (corner form → centre form).
        let r = decode_box(&first, &prior, V);
        let refined = Prior {
            cx: (r[0] + r[2]) / 2.0,
            cy: (r[1] + r[3]) / 2.0,
            w: r[2] - r[0],
            h: r[3] - r[1],
        };
        assert!((refined.cx - (0.5 + 1.0 * 0.1 * 0.2)).abs() < 1e-6);
        assert!((refined.w - 0.2 * (0.1f32).exp()).abs() < 1e-6);
        let expected_box = encode_box(face, &refined, V);
        let expected_marks = encode_landmarks(&marks, &refined, V);

        let loc_t = t(&encode_box(face, &prior, V), &[1, 1, 4]);
        let marks_t = t(&encode_landmarks(&marks, &prior, V), &[1, 1, 10]);
        let (box2, marks2) = second_stage_targets(&loc_t, &marks_t, &t(&first, &[1, 1, 4]), V);
        for (got, want) in values(&box2).iter().zip(expected_box) {
            assert!(
                (got - want).abs() < 1e-5,
                "{:?} vs {expected_box:?}",
                values(&box2)
            );
        }
        for (got, want) in values(&marks2).iter().zip(expected_marks) {
            assert!((got - want).abs() < 1e-5, "{:?}", values(&marks2));
        }
        // And the refined anchor as the loss builds it.
        let anchors = refined_anchors(
            &t(&[prior.cx, prior.cy, prior.w, prior.h], &[1, 4]),
            &t(&first, &[1, 1, 4]),
            V,
        );
        let want = [refined.cx, refined.cy, refined.w, refined.h];
        for (got, want) in values(&anchors).iter().zip(want) {
            assert!((got - want).abs() < 1e-6);
        }
    }

    #[test]
    fn filtered_priors_leave_the_second_classification_term() {
        // Three priors: a face, a background the first stage is sure of (p = 0.001) and one it
        // is not (p = 0.5). Focal loss off the table: ce-ohem with 7 negatives per positive.
        let logit = |p: f32| (p / (1.0 - p)).ln();
        let first = FirstStage {
            loc: Tensor::zeros([1, 3, 4], tch::kind::FLOAT_CPU),
            logit: t(&[logit(0.9), logit(0.001), logit(0.5)], &[1, 3, 1]),
        };
        assert_eq!(
            Vec::<bool>::try_from(filtered(&first.logit).view([-1])).unwrap(),
            [false, true, false]
        );
        // Second stage: two-column logits; prior 1 (filtered) is badly wrong, prior 2 right.
        let second = Outputs {
            loc: Tensor::zeros([1, 3, 4], tch::kind::FLOAT_CPU),
            conf: t(&[0.0, 0.0, -5.0, 5.0, 3.0, 0.0], &[1, 3, 2]),
            landmarks: Tensor::zeros([1, 3, 10], tch::kind::FLOAT_CPU),
            first_stage: None,
        };
        let zeros4 = Tensor::zeros([1, 3, 4], tch::kind::FLOAT_CPU);
        let zeros10 = Tensor::zeros([1, 3, 10], tch::kind::FLOAT_CPU);
        let labels = Tensor::from_slice(&[1i64, 0, 0]).view([1, 3]);
        let priors = t(
            &[0.5, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.8, 0.8, 0.2, 0.2],
            &[3, 4],
        );
        let targets = Targets {
            loc: &zeros4,
            landmarks: &zeros10,
            labels: &labels,
            priors: &priors,
            variances: V,
            ignore: None,
        };
        let l = srn_loss(&second, &first, &targets, &LossConfig::default());
        // Second stage classes: prior 0 (face, equal logits) ln 2, prior 2 (background, logits
        // 3 vs 0) ln(1 + e⁻³); prior 1 (ln(1 + e¹⁰) if counted) is not.
        let second_ce = 2f64.ln() + (1.0 + (-3f64).exp()).ln();
        // First stage classes (binary CE): face at p = 0.9 → −ln 0.9; backgrounds −ln 0.999 and
        // −ln 0.5.
        let first_ce = -(0.9f64.ln()) - 0.999f64.ln() - 0.5f64.ln();
        let got = l.classes.double_value(&[]);
        assert!(
            (got - (first_ce + second_ce)).abs() < 1e-4,
            "{got} vs {}",
            first_ce + second_ce
        );
    }
}
