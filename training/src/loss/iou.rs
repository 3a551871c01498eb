//! IoU and generalised-IoU box losses (Yu et al. 2016; Rezatofighi et al. 2019) on decoded boxes.
//!
//! The smooth-L1 loss compares encoded offsets, so its four terms are weighed against each other
//! by the variances rather than by what matters for detection: overlap. These losses decode the
//! predicted offsets with the same formulas the plugin uses ([`retinaface::decode::decode_box`])
//! and compare the boxes with the matched ground truth (the decoded target offsets) directly.

use tch::{Kind, Tensor};

use crate::model::MAX_LOG_SCALE;

/// `[K, 4]` corner boxes decoded from offsets `loc [K, 4]` and priors `[K, 4]` (cx, cy, w, h).
pub fn decode(loc: &Tensor, priors: &Tensor, variances: [f32; 2]) -> Tensor {
    let (v0, v1) = (variances[0] as f64, variances[1] as f64);
    let centre = priors.narrow(1, 0, 2) + loc.narrow(1, 0, 2) * v0 * priors.narrow(1, 2, 2);
    let size = priors.narrow(1, 2, 2) * (loc.narrow(1, 2, 2) * v1).clamp_max(MAX_LOG_SCALE).exp();
    Tensor::cat(&[&centre - &size / 2.0, &centre + &size / 2.0], 1)
}

/// Which overlap loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// `1 − IoU`.
    Iou,
    /// `1 − GIoU`, `GIoU = IoU − (C − U)/C` with `C` the smallest box enclosing both: unlike
    /// IoU it still has a gradient when the boxes do not overlap.
    Giou,
}

/// Per-box loss `[K]` between corner boxes `pred` and `target` (`[K, 4]`).
pub fn overlap_loss(pred: &Tensor, target: &Tensor, kind: Overlap) -> Tensor {
    let area = |b: &Tensor| {
        (b.select(1, 2) - b.select(1, 0)).clamp_min(0.0)
            * (b.select(1, 3) - b.select(1, 1)).clamp_min(0.0)
    };
    let lo = pred.narrow(1, 0, 2).maximum(&target.narrow(1, 0, 2));
    let hi = pred.narrow(1, 2, 2).minimum(&target.narrow(1, 2, 2));
    let wh = (hi - lo).clamp_min(0.0);
    let inter = wh.select(1, 0) * wh.select(1, 1);
    let union = area(pred) + area(target) - &inter;
    // The epsilon only guards degenerate boxes; faces are never zero-sized after matching.
    let iou = &inter / (&union + 1e-9);
    match kind {
        Overlap::Iou => 1.0 - iou,
        Overlap::Giou => {
            let lo = pred.narrow(1, 0, 2).minimum(&target.narrow(1, 0, 2));
            let hi = pred.narrow(1, 2, 2).maximum(&target.narrow(1, 2, 2));
            let wh = (hi - lo).clamp_min(0.0);
            let enclosing = wh.select(1, 0) * wh.select(1, 1);
            let giou = iou - (&enclosing - &union) / (&enclosing + 1e-9);
            1.0 - giou
        }
    }
}

/// Summed overlap loss of the positive priors: predicted offsets `loc [N, P, 4]` and target
/// offsets `loc_t` decoded against `priors [P, 4]` (or per image `[N, P, 4]`: SRN's refined
/// anchors), only where `positive [N, P]`.
pub fn overlap_loss_sum(
    loc: &Tensor,
    loc_t: &Tensor,
    positive: &Tensor,
    priors: &Tensor,
    variances: [f32; 2],
    kind: Overlap,
) -> Tensor {
    let index = positive.nonzero();
    if index.size()[0] == 0 {
        return loc.sum(Kind::Float) * 0.0;
    }
    let (image, prior) = (index.select(1, 0), index.select(1, 1));
    let pick = |t: &Tensor| t.index(&[Some(&image), Some(&prior)]);
    let priors = if priors.dim() == 3 {
        pick(&priors.to_kind(Kind::Float))
    } else {
        priors.to_kind(Kind::Float).index_select(0, &prior)
    };
    let pred = decode(&pick(loc), &priors, variances);
    let target = decode(&pick(loc_t), &priors, variances);
    overlap_loss(&pred, &target, kind).sum(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [f32; 2] = [0.1, 0.2];

    /// One prior at (0.5, 0.5), 0.2 × 0.2: the ground truth (target offsets 0) is the prior
    /// itself, the corner box [0.4, 0.4, 0.6, 0.6].
    fn loss(loc: [f32; 4], kind: Overlap) -> f64 {
        let priors = Tensor::from_slice(&[0.5f32, 0.5, 0.2, 0.2]).view([1, 4]);
        let loc = Tensor::from_slice(&loc).view([1, 1, 4]);
        let loc_t = Tensor::zeros([1, 1, 4], tch::kind::FLOAT_CPU);
        let positive = Tensor::from_slice(&[true]).view([1, 1]);
        overlap_loss_sum(&loc, &loc_t, &positive, &priors, V, kind).double_value(&[])
    }

    #[test]
    fn shifted_box() {
        // Δx = 1 · 0.1 · 0.2 = 0.02: [0.42, 0.4, 0.62, 0.6]. Intersection 0.18 · 0.2 = 0.036,
        // union 0.04 + 0.04 − 0.036 = 0.044, IoU 9/11 → loss 2/11. The enclosing box
        // [0.4, 0.62] × [0.4, 0.6] has area 0.044 = union, so GIoU = IoU.
        for kind in [Overlap::Iou, Overlap::Giou] {
            let got = loss([1.0, 0.0, 0.0, 0.0], kind);
            assert!((got - 2.0 / 11.0).abs() < 1e-5, "{kind:?}: {got}");
        }
    }

    #[test]
    fn disjoint_boxes_only_giou_sees_the_distance() {
        // Δx = 15 · 0.02 = 0.3: [0.7, 0.4, 0.9, 0.6], no overlap: IoU loss 1. Enclosing box
        // [0.4, 0.9] × [0.4, 0.6] = 0.1, union 0.08: GIoU = 0 − 0.02/0.1 = −0.2 → loss 1.2.
        assert!((loss([15.0, 0.0, 0.0, 0.0], Overlap::Iou) - 1.0).abs() < 1e-5);
        let got = loss([15.0, 0.0, 0.0, 0.0], Overlap::Giou);
        assert!((got - 1.2).abs() < 1e-5, "{got}");
    }

    #[test]
    fn wider_box() {
        // w = 0.2 · exp(0.2 · ln 2 / 0.2) = 0.4: [0.3, 0.4, 0.7, 0.6] contains the ground truth.
        // IoU = 0.04 / 0.08 = 0.5; the enclosing box is the prediction (0.08 = union): both 0.5.
        for kind in [Overlap::Iou, Overlap::Giou] {
            let got = loss([0.0, 0.0, 2f32.ln() / 0.2, 0.0], kind);
            assert!((got - 0.5).abs() < 1e-5, "{kind:?}: {got}");
        }
    }

    #[test]
    fn background_priors_are_ignored_and_overflow_is_clamped() {
        let priors = Tensor::from_slice(&[0.5f32, 0.5, 0.2, 0.2, 0.5, 0.5, 0.2, 0.2]).view([2, 4]);
        // Prior 1 is background with absurd offsets; prior 0 matches exactly.
        let loc = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 0.0, 1e4, 1e4, 1e4, 1e4]).view([1, 2, 4]);
        let loc_t = Tensor::zeros([1, 2, 4], tch::kind::FLOAT_CPU);
        let positive = Tensor::from_slice(&[true, false]).view([1, 2]);
        let got = overlap_loss_sum(&loc, &loc_t, &positive, &priors, V, Overlap::Giou);
        assert!(got.double_value(&[]).abs() < 1e-6);
        // A positive with an overflowing size offset still gives a finite loss and gradient.
        let loc = Tensor::from_slice(&[0.0f32, 0.0, 1e4, 1e4])
            .view([1, 1, 4])
            .set_requires_grad(true);
        let l = overlap_loss_sum(
            &loc,
            &loc_t.narrow(1, 0, 1),
            &positive.narrow(1, 0, 1),
            &priors.narrow(0, 0, 1),
            V,
            Overlap::Giou,
        );
        l.backward();
        assert!(l.double_value(&[]).is_finite());
        let grad: Vec<f32> = Vec::try_from(loc.grad().view([-1])).unwrap();
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    }

    #[test]
    fn no_positives_gives_zero() {
        let priors = Tensor::from_slice(&[0.5f32, 0.5, 0.2, 0.2]).view([1, 4]);
        let loc = Tensor::ones([1, 1, 4], tch::kind::FLOAT_CPU);
        let positive = Tensor::from_slice(&[false]).view([1, 1]);
        let l = overlap_loss_sum(&loc, &loc, &positive, &priors, V, Overlap::Iou);
        assert_eq!(l.double_value(&[]), 0.0);
    }
}
