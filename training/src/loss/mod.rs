//! The RetinaFace multi-task loss (the reference's MultiBoxLoss): smooth-L1 box and landmark
//! regression on matched priors, and cross-entropy classification with hard negative mining.
//!
//! Targets come from [`crate::targets::match_priors`]: per prior a label (0 background, 1 face
//! with landmarks, −1 face without landmarks), encoded box and landmark offsets.

use tch::{Kind, Reduction, Tensor};

/// Loss settings.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    /// Hard negatives kept per positive (OHEM ratio).
    pub negatives_per_positive: i64,
    /// Weight of the box term in the total (the reference uses 2.0).
    pub box_weight: f64,
    pub landmark_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            negatives_per_positive: 7,
            box_weight: 2.0,
            landmark_weight: 1.0,
        }
    }
}

/// The loss terms of one batch (each already divided by its number of positives).
pub struct LossTerms {
    pub total: Tensor,
    pub boxes: Tensor,
    pub classes: Tensor,
    pub landmarks: Tensor,
}

/// Which priors the classification term uses: every positive plus, per image, the
/// `ratio × positives` background priors with the highest classification loss (at most
/// `priors − 1`). Returns a bool mask `[N, P]`.
pub fn hard_negative_mask(class_loss: &Tensor, positive: &Tensor, ratio: i64) -> Tensor {
    tch::no_grad(|| {
        let priors = class_loss.size()[1];
        // Positives never count as negatives.
        let loss = class_loss.masked_fill(positive, 0.0);
        let (_, order) = loss.sort(1, true);
        let (_, rank) = order.sort(1, false);
        let num_pos = positive
            .to_kind(Kind::Int64)
            .sum_dim_intlist(1, true, Kind::Int64);
        let num_neg = (num_pos * ratio).clamp_max(priors - 1);
        let negative = rank.lt_tensor(&num_neg);
        negative.logical_or(positive)
    })
}

/// Computes the loss of network outputs (`loc [N,P,4]`, class logits `conf [N,P,2]`,
/// `landmarks [N,P,10]`) against targets (`loc_t`, `landmarks_t`, `labels [N,P]` int64).
pub fn multibox_loss(
    loc: &Tensor,
    conf: &Tensor,
    landmarks: &Tensor,
    loc_t: &Tensor,
    landmarks_t: &Tensor,
    labels: &Tensor,
    config: &LossConfig,
) -> LossTerms {
    // Landmarks: only faces annotated with landmarks (label 1).
    let with_landmarks = labels.gt(0);
    let n_landmarks = with_landmarks.sum(Kind::Float).clamp_min(1.0);
    let mask10 = with_landmarks.unsqueeze(-1).expand_as(landmarks);
    let landmark_loss = landmarks.masked_select(&mask10).smooth_l1_loss(
        &landmarks_t.masked_select(&mask10),
        Reduction::Sum,
        1.0,
    ) / &n_landmarks;

    // Boxes: every matched prior (label ±1).
    let positive = labels.ne(0);
    let n_pos = positive.sum(Kind::Float).clamp_min(1.0);
    let mask4 = positive.unsqueeze(-1).expand_as(loc);
    let box_loss =
        loc.masked_select(&mask4)
            .smooth_l1_loss(&loc_t.masked_select(&mask4), Reduction::Sum, 1.0)
            / &n_pos;

    // Classes: face (1) for matched priors, background (0) otherwise; hard negatives only.
    let target = positive.to_kind(Kind::Int64);
    let log_probs = conf.log_softmax(-1, Kind::Float);
    let per_prior = -log_probs
        .gather(-1, &target.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let used = hard_negative_mask(
        &per_prior.detach(),
        &positive,
        config.negatives_per_positive,
    );
    let class_loss = per_prior.masked_select(&used).sum(Kind::Float) / &n_pos;

    let total =
        &box_loss * config.box_weight + &class_loss + &landmark_loss * config.landmark_weight;
    LossTerms {
        total,
        boxes: box_loss,
        classes: class_loss,
        landmarks: landmark_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    #[test]
    fn hard_negatives_are_the_worst_background_priors() {
        // One image, 6 priors, prior 1 positive: 2 negatives per positive → priors 4 and 0.
        let loss = t(&[0.5, 9.0, 0.1, 0.2, 3.0, 0.3], &[1, 6]);
        let positive = Tensor::from_slice(&[false, true, false, false, false, false]).view([1, 6]);
        let mask = hard_negative_mask(&loss, &positive, 2);
        let got: Vec<bool> = Vec::try_from(mask.view([-1])).unwrap();
        assert_eq!(got, [true, true, false, false, true, false]);
    }

    #[test]
    fn negatives_are_capped_at_priors_minus_one() {
        let loss = t(&[0.5, 0.4, 0.3], &[1, 3]);
        let positive = Tensor::from_slice(&[true, false, false]).view([1, 3]);
        // 7 × 1 positive > 2 = priors − 1: both remaining priors are used.
        let got: Vec<bool> =
            Vec::try_from(hard_negative_mask(&loss, &positive, 7).view([-1])).unwrap();
        assert_eq!(got, [true, true, true]);
    }

    #[test]
    fn hand_computed_loss() {
        // Two priors: prior 0 is a face with landmarks, prior 1 background (ratio 7 → used).
        let loc = t(&[0.5, 0.0, 0.0, 2.0, 9.0, 9.0, 9.0, 9.0], &[1, 2, 4]);
        let loc_t = Tensor::zeros([1, 2, 4], tch::kind::FLOAT_CPU);
        let conf = t(&[0.0, 0.0, 0.0, 2.0], &[1, 2, 2]);
        let landm = Tensor::ones([1, 2, 10], tch::kind::FLOAT_CPU) * 0.25;
        let landm_t = Tensor::zeros([1, 2, 10], tch::kind::FLOAT_CPU);
        let labels = Tensor::from_slice(&[1i64, 0]).view([1, 2]);
        let l = multibox_loss(
            &loc,
            &conf,
            &landm,
            &loc_t,
            &landm_t,
            &labels,
            &LossConfig::default(),
        );
        let v = |x: &Tensor| x.double_value(&[]);
        // smooth-L1: 0.5·0.5² = 0.125 and |2| − 0.5 = 1.5 → 1.625 over 1 positive.
        assert!((v(&l.boxes) - 1.625).abs() < 1e-6, "{}", v(&l.boxes));
        // 10 × 0.5·0.25² = 0.3125.
        assert!(
            (v(&l.landmarks) - 0.3125).abs() < 1e-6,
            "{}",
            v(&l.landmarks)
        );
        // CE: prior 0 target 1 with equal logits → ln 2; prior 1 target 0 → ln(1 + e²).
        let ce = 2f64.ln() + (1.0 + 2f64.exp()).ln();
        assert!((v(&l.classes) - ce).abs() < 1e-5, "{}", v(&l.classes));
        assert!((v(&l.total) - (2.0 * 1.625 + ce + 0.3125)).abs() < 1e-5);
    }

    #[test]
    fn faces_without_landmarks_skip_the_landmark_term() {
        let zeros = |s: &[i64]| Tensor::zeros(s, tch::kind::FLOAT_CPU);
        let labels = Tensor::from_slice(&[-1i64, 0]).view([1, 2]);
        let landm = Tensor::ones([1, 2, 10], tch::kind::FLOAT_CPU);
        let l = multibox_loss(
            &zeros(&[1, 2, 4]),
            &zeros(&[1, 2, 2]),
            &landm,
            &zeros(&[1, 2, 4]),
            &zeros(&[1, 2, 10]),
            &labels,
            &LossConfig::default(),
        );
        assert_eq!(l.landmarks.double_value(&[]), 0.0);
        // The face still counts for boxes and classes.
        assert!(l.classes.double_value(&[]) > 0.0);
    }
}
