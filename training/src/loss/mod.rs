//! The RetinaFace multi-task loss: box and landmark regression on matched priors plus face
//! classification. The reference recipe (the reference's MultiBoxLoss) is smooth-L1 boxes and
//! cross-entropy with hard negative mining; [`ClsLoss::Focal`] ([`focal`]) and the overlap box
//! losses [`BoxLoss::Iou`] / [`BoxLoss::Giou`] ([`iou`]) are the RetinaNet / AInnoFace choices.
//!
//! Targets come from [`crate::data::targets::match_priors`]: per prior a label (0 background, 1 face
//! with landmarks, −1 face without landmarks), encoded box and landmark offsets.

pub mod distill;
pub mod focal;
pub mod iou;
pub mod srn;

use retinaface::contract::PriorConfig;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

/// The classification term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum ClsLoss {
    /// Cross-entropy over every positive and the `negatives_per_positive` hardest negatives
    /// (the reference RetinaFace).
    #[default]
    #[serde(rename = "ce-ohem")]
    #[value(name = "ce-ohem")]
    CeOhem,
    /// Sigmoid focal loss over every prior, normalised by the positives (RetinaNet).
    #[serde(rename = "focal")]
    #[value(name = "focal")]
    Focal,
}

/// The box regression term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum BoxLoss {
    /// Smooth-L1 on the encoded offsets (the reference RetinaFace).
    #[default]
    #[serde(rename = "smooth-l1")]
    #[value(name = "smooth-l1")]
    SmoothL1,
    /// `1 − IoU` of the decoded box with its matched face.
    #[serde(rename = "iou")]
    #[value(name = "iou")]
    Iou,
    /// `1 − GIoU` of the decoded box with its matched face.
    #[serde(rename = "giou")]
    #[value(name = "giou")]
    Giou,
}

/// Loss settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// Hard negatives kept per positive (OHEM ratio; [`ClsLoss::CeOhem`] only).
    pub negatives_per_positive: i64,
    /// Weight of the box term in the total (the reference uses 2.0).
    pub box_weight: f64,
    pub landmark_weight: f64,
    pub cls: ClsLoss,
    pub boxes: BoxLoss,
    /// Focal loss weight of the faces (background gets `1 − α`); RetinaNet's 0.25.
    pub focal_alpha: f64,
    /// Focal loss focusing exponent; RetinaNet's 2.
    pub focal_gamma: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            negatives_per_positive: 7,
            box_weight: 2.0,
            landmark_weight: 1.0,
            cls: ClsLoss::CeOhem,
            boxes: BoxLoss::SmoothL1,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
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

/// The priors of a square `size`×`size` training input as a `[P, 4]` (cx, cy, w, h) tensor on
/// `device`: what the overlap box losses decode against.
pub fn priors_tensor(priors: &PriorConfig, size: usize, device: Device) -> Tensor {
    let flat: Vec<f32> = retinaface::priors::generate(priors, size, size)
        .iter()
        .flat_map(|p| [p.cx, p.cy, p.w, p.h])
        .collect();
    Tensor::from_slice(&flat).view([-1, 4]).to_device(device)
}

/// A loss ready for one training input size: the settings with the priors they decode against.
pub struct Criterion {
    pub config: LossConfig,
    pub priors: Tensor,
    pub variances: [f32; 2],
    /// The network a fine-tune started from and the weight of its [`distill`] term.
    pub teacher: Option<(crate::model::RetinaFace, f64)>,
}

impl Criterion {
    pub fn new(config: LossConfig, priors: &PriorConfig, size: usize, device: Device) -> Self {
        Self {
            config,
            priors: priors_tensor(priors, size, device),
            variances: priors.variances,
            teacher: None,
        }
    }

    /// Adds `weight` × the distillation term against `teacher` (run fixed, BatchNorm on its
    /// running statistics) on every batch.
    pub fn with_teacher(mut self, teacher: crate::model::RetinaFace, weight: f64) -> Self {
        self.teacher = Some((teacher, weight));
        self
    }

    /// The loss of network outputs against a batch's targets.
    pub fn loss(
        &self,
        out: &crate::model::Outputs<Tensor>,
        batch: &crate::device_batch::DeviceBatch,
    ) -> LossTerms {
        let targets = Targets {
            loc: &batch.loc,
            landmarks: &batch.landmarks,
            labels: &batch.labels,
            priors: &self.priors,
            variances: self.variances,
            ignore: None,
        };
        let mut terms = match &out.first_stage {
            Some(first) => srn::srn_loss(out, first, &targets, &self.config),
            None => multibox_loss(&out.loc, &out.conf, &out.landmarks, &targets, &self.config),
        };
        if let Some((teacher, weight)) = &self.teacher {
            let guide = tch::no_grad(|| teacher.forward_train(&batch.images, false));
            let extra = distill::distillation(out, &guide) * *weight;
            // Out of place: the detection terms stay part of the graph as they are.
            terms.total = terms.total.g_add(&extra);
        }
        terms
    }
}

/// What the outputs are compared with: target offsets `loc [N,P,4]`, `landmarks [N,P,10]`,
/// `labels [N,P]` (int64), and the priors `[P,4]` with their variances (for the overlap losses).
pub struct Targets<'a> {
    pub loc: &'a Tensor,
    pub landmarks: &'a Tensor,
    pub labels: &'a Tensor,
    pub priors: &'a Tensor,
    pub variances: [f32; 2],
    /// Priors left out of the classification term (`[N, P]` bool): SRN's first-stage filter.
    pub ignore: Option<&'a Tensor>,
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

/// Computes the loss of network outputs (`loc [N,P,4]`, class logits `conf [N,P,2]` — or
/// `[N,P,1]` for a single sigmoid logit —, `landmarks [N,P,10]`) against `targets`.
pub fn multibox_loss(
    loc: &Tensor,
    conf: &Tensor,
    landmarks: &Tensor,
    targets: &Targets,
    config: &LossConfig,
) -> LossTerms {
    let labels = targets.labels;
    // Landmarks: only faces annotated with landmarks (label 1).
    let with_landmarks = labels.gt(0);
    let n_landmarks = with_landmarks.sum(Kind::Float).clamp_min(1.0);
    let mask10 = with_landmarks.unsqueeze(-1).expand_as(landmarks);
    let landmark_loss = landmarks.masked_select(&mask10).smooth_l1_loss(
        &targets.landmarks.masked_select(&mask10),
        Reduction::Sum,
        1.0,
    ) / &n_landmarks;

    // Boxes: every matched prior (label ±1).
    let positive = labels.ne(0);
    let n_pos = positive.sum(Kind::Float).clamp_min(1.0);
    let box_sum = match config.boxes {
        BoxLoss::SmoothL1 => {
            let mask4 = positive.unsqueeze(-1).expand_as(loc);
            loc.masked_select(&mask4).smooth_l1_loss(
                &targets.loc.masked_select(&mask4),
                Reduction::Sum,
                1.0,
            )
        }
        BoxLoss::Iou | BoxLoss::Giou => iou::overlap_loss_sum(
            loc,
            targets.loc,
            &positive,
            targets.priors,
            targets.variances,
            if config.boxes == BoxLoss::Iou {
                iou::Overlap::Iou
            } else {
                iou::Overlap::Giou
            },
        ),
    };
    let box_loss = box_sum / &n_pos;

    // Classes: face for matched priors, background otherwise; ignored priors count for neither
    // (not among the positives of the classifier, never mined as negatives).
    let considered = targets
        .ignore
        .map(|ignore| ignore.logical_not())
        .unwrap_or_else(|| positive.ones_like());
    let class_positive = positive.logical_and(&considered);
    let class_sum = match config.cls {
        ClsLoss::CeOhem => {
            let per_prior = class_cross_entropy(conf, &class_positive);
            let mining = per_prior
                .detach()
                .masked_fill(&considered.logical_not(), 0.0);
            let used = hard_negative_mask(&mining, &class_positive, config.negatives_per_positive)
                .logical_and(&considered);
            per_prior.masked_select(&used).sum(Kind::Float)
        }
        ClsLoss::Focal => {
            let logit = focal::face_logit(conf);
            focal::focal_loss_sum(
                &logit.masked_select(&considered),
                &class_positive.masked_select(&considered),
                config.focal_alpha,
                config.focal_gamma,
            )
        }
    };
    let class_loss = class_sum / &n_pos;

    let total =
        &box_loss * config.box_weight + &class_loss + &landmark_loss * config.landmark_weight;
    LossTerms {
        total,
        boxes: box_loss,
        classes: class_loss,
        landmarks: landmark_loss,
    }
}

/// Per-prior cross-entropy `[N, P]` of the class scores against `positive`: softmax
/// cross-entropy for two logits, binary cross-entropy for a single sigmoid logit.
fn class_cross_entropy(conf: &Tensor, positive: &Tensor) -> Tensor {
    if conf.size().last() == Some(&1) {
        return conf
            .squeeze_dim(-1)
            .binary_cross_entropy_with_logits::<Tensor>(
                &positive.to_kind(Kind::Float),
                None,
                None,
                Reduction::None,
            );
    }
    let target = positive.to_kind(Kind::Int64);
    -conf
        .log_softmax(-1, Kind::Float)
        .gather(-1, &target.unsqueeze(-1), false)
        .squeeze_dim(-1)
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

    /// The two-prior case of the tests: prior 0 (a face with landmarks, at (0.5, 0.5), 0.2 ×
    /// 0.2, ground-truth offsets 0) and prior 1 (background).
    fn two_priors(conf: &Tensor, labels: &[i64], config: &LossConfig) -> LossTerms {
        let loc = t(&[0.5, 0.0, 0.0, 2.0, 9.0, 9.0, 9.0, 9.0], &[1, 2, 4]);
        let loc_t = Tensor::zeros([1, 2, 4], tch::kind::FLOAT_CPU);
        let landm = Tensor::ones([1, 2, 10], tch::kind::FLOAT_CPU) * 0.25;
        let landm_t = Tensor::zeros([1, 2, 10], tch::kind::FLOAT_CPU);
        let labels = Tensor::from_slice(labels).view([1, 2]);
        let priors = t(&[0.5, 0.5, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2], &[2, 4]);
        let targets = Targets {
            loc: &loc_t,
            landmarks: &landm_t,
            labels: &labels,
            priors: &priors,
            variances: [0.1, 0.2],
            ignore: None,
        };
        multibox_loss(&loc, conf, &landm, &targets, config)
    }

    fn v(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn hand_computed_loss() {
        // Prior 1 is background (ratio 7 → used by the classifier).
        let conf = t(&[0.0, 0.0, 0.0, 2.0], &[1, 2, 2]);
        let l = two_priors(&conf, &[1, 0], &LossConfig::default());
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
    fn hand_computed_focal_and_giou_loss() {
        let conf = t(&[0.0, 0.0, 0.0, 2.0], &[1, 2, 2]);
        let config = LossConfig {
            cls: ClsLoss::Focal,
            boxes: BoxLoss::Giou,
            ..Default::default()
        };
        let l = two_priors(&conf, &[1, 0], &config);
        // Prior 0 decodes [0.5, 0, 0, 2] to centre (0.5 + 0.5·0.1·0.2, 0.5) = (0.51, 0.5),
        // size 0.2 × 0.2·e^(2·0.2): x 0.41..0.61, y 0.5 ∓ 0.1·e^0.4. Ground truth 0.4..0.6².
        let h = 0.2 * 0.4f64.exp();
        let inter = 0.19 * 0.2;
        let union = 0.2 * h + 0.04 - inter;
        let enclosing = 0.21 * h;
        let giou = inter / union - (enclosing - union) / enclosing;
        assert!((v(&l.boxes) - (1.0 - giou)).abs() < 1e-5, "{}", v(&l.boxes));
        // Focal, face logit l₁ − l₀: face 0 → 0.25·0.5²·ln 2; background 2 → 0.75·σ(2)²·ln(1+e²).
        let s2 = 1.0 / (1.0 + (-2f64).exp());
        let focal = 0.25 * 0.25 * 2f64.ln() + 0.75 * s2 * s2 * (1.0 + 2f64.exp()).ln();
        assert!((v(&l.classes) - focal).abs() < 1e-5, "{}", v(&l.classes));
        assert!((v(&l.total) - (2.0 * (1.0 - giou) + focal + 0.3125)).abs() < 1e-5);
        // IoU instead: 1 − inter/union.
        let l = two_priors(
            &conf,
            &[1, 0],
            &LossConfig {
                boxes: BoxLoss::Iou,
                ..Default::default()
            },
        );
        assert!((v(&l.boxes) - (1.0 - inter / union)).abs() < 1e-5);
    }

    #[test]
    fn focal_loss_is_normalised_by_the_positives() {
        // Both priors faces with logits (0, 0): 2 × 0.25·0.5²·ln 2 over 2 positives.
        let conf = Tensor::zeros([1, 2, 2], tch::kind::FLOAT_CPU);
        let config = LossConfig {
            cls: ClsLoss::Focal,
            ..Default::default()
        };
        let l = two_priors(&conf, &[1, -1], &config);
        assert!((v(&l.classes) - 0.0625 * 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn single_sigmoid_logit_uses_binary_cross_entropy() {
        // Face logit 1: ln(1 + e⁻¹) = 0.3132617; background logit 2: ln(1 + e²) = 2.1269280.
        let conf = t(&[1.0, 2.0], &[1, 2, 1]);
        let l = two_priors(&conf, &[1, 0], &LossConfig::default());
        assert!((v(&l.classes) - (0.3132617 + 2.1269280)).abs() < 1e-5);
    }

    #[test]
    fn faces_without_landmarks_skip_the_landmark_term() {
        let conf = Tensor::zeros([1, 2, 2], tch::kind::FLOAT_CPU);
        let l = two_priors(&conf, &[-1, 0], &LossConfig::default());
        assert_eq!(l.landmarks.double_value(&[]), 0.0);
        // The face still counts for boxes and classes.
        assert!(l.classes.double_value(&[]) > 0.0);
        assert!(l.boxes.double_value(&[]) > 0.0);
    }
}
