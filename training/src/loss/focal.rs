//! Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", the RetinaNet loss).
//!
//! Every prior contributes `−α_t (1 − p_t)^γ log p_t`, where `p` is the face probability of the
//! prior, `p_t = p` for faces and `1 − p` for background, `α_t = α` for faces and `1 − α` for
//! background. There is no hard-negative mining: the `(1 − p_t)^γ` factor is what keeps the
//! many easy background priors from swamping the few faces. The sum is divided by the number of
//! positives, as in RetinaNet.

use tch::{Kind, Reduction, Tensor};

/// The single face logit of each prior: `conf [N, P, 1]` is already one sigmoid logit; for the
/// two-class heads (`[N, P, 2]`, read through a softmax) it is `l_face − l_background`, because
/// `softmax(l)[1] = σ(l₁ − l₀)`. The focal loss on that logit is therefore the focal loss on the
/// very probability the exported model reports.
pub fn face_logit(conf: &Tensor) -> Tensor {
    match conf.size().last() {
        Some(1) => conf.squeeze_dim(-1),
        Some(2) => conf.select(-1, 1) - conf.select(-1, 0),
        other => panic!("class scores must have 1 or 2 columns, not {other:?}"),
    }
}

/// Summed (not yet normalised) focal loss of face logits `logit [N, P]` against `positive
/// [N, P]` (bool).
pub fn focal_loss_sum(logit: &Tensor, positive: &Tensor, alpha: f64, gamma: f64) -> Tensor {
    let target = positive.to_kind(Kind::Float);
    // −log p_t, computed from the logit so that it stays finite for confident priors.
    let ce = logit.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::None);
    let p_t = (-&ce).exp();
    // α for faces (target 1), 1 − α for background (target 0).
    let alpha_t: Tensor = &target * (2.0 * alpha - 1.0) + (1.0 - alpha);
    let modulating = (-p_t + 1.0).pow_tensor_scalar(gamma);
    (alpha_t * modulating * ce).sum(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn hand_computed_focal_terms() {
        // Prior 0: a face with logit 0 → p = 0.5, p_t = 0.5, −log p_t = ln 2:
        //   0.25 · 0.5² · ln 2 = 0.0625 · 0.693147 = 0.0433217.
        // Prior 1: background with logit 2 → p = σ(2) = 0.8807971, p_t = 0.1192029,
        //   −log p_t = ln(1 + e²) = 2.1269280: 0.75 · 0.8807971² · 2.1269280 = 1.2375586.
        let logit = Tensor::from_slice(&[0.0f32, 2.0]).view([1, 2]);
        let positive = Tensor::from_slice(&[true, false]).view([1, 2]);
        let got = value(&focal_loss_sum(&logit, &positive, 0.25, 2.0));
        let want = 0.0433217 + 1.2375586;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn gamma_zero_is_weighted_cross_entropy() {
        // γ = 0, α = 0.5: half the binary cross-entropy. Face with logit −1: ln(1 + e) =
        // 1.3132617; background with logit −3: ln(1 + e⁻³) = 0.0485874. Half of the sum: 0.6809245.
        let logit = Tensor::from_slice(&[-1.0f32, -3.0]).view([1, 2]);
        let positive = Tensor::from_slice(&[true, false]).view([1, 2]);
        let got = value(&focal_loss_sum(&logit, &positive, 0.5, 0.0));
        assert!((got - 0.6809245).abs() < 1e-5, "{got}");
    }

    #[test]
    fn confident_correct_priors_cost_almost_nothing() {
        // Background with logit −10: p_t = 1 − σ(−10) ≈ 0.9999546, (1 − p_t)² ≈ 2.06e-9, so the
        // term is below 1e-12 — the point of the focal factor.
        let logit = Tensor::from_slice(&[-10.0f32]).view([1, 1]);
        let positive = Tensor::from_slice(&[false]).view([1, 1]);
        assert!(value(&focal_loss_sum(&logit, &positive, 0.25, 2.0)) < 1e-12);
    }

    #[test]
    fn two_column_scores_use_the_logit_difference() {
        // softmax([1, 3])[1] = σ(2): the face logit of a two-class row is l₁ − l₀ = 2.
        let conf = Tensor::from_slice(&[1.0f32, 3.0, 0.5, 0.5]).view([1, 2, 2]);
        let z: Vec<f32> = Vec::try_from(face_logit(&conf).view([-1])).unwrap();
        assert_eq!(z, [2.0, 0.0]);
        let single = Tensor::from_slice(&[1.5f32, -0.5]).view([1, 2, 1]);
        let z: Vec<f32> = Vec::try_from(face_logit(&single).view([-1])).unwrap();
        assert_eq!(z, [1.5, -0.5]);
    }
}
