//! Selective refinement (SRN, Chi et al. 2019; all levels, as AInnoFace uses it): a first stage
//! of 1×1 class/box heads on the raw backbone maps, before the FPN, whose outputs
//! - filter the second stage (two-step classification): anchors the first stage gives a face
//!   probability below [`FILTER_FACE_PROBABILITY`] (negative confidence above θ = 0.99) are not
//!   classified again — left out of the second stage's classification loss in training, scored
//!   0 at inference;
//! - refine its anchors (two-step regression): the second stage's box and landmark offsets are
//!   relative to the first stage's decoded boxes, not to the static priors.
//!
//! The second stage is the usual RetinaFace head on the FPN/SSH levels. The exported model folds
//! both steps into the three contract outputs ([`Ops::srn_refine`]): offsets re-expressed
//! against the static priors and the gated face probability, so `retinafacedetect` decodes it
//! like any other model.

use tch::nn;

use super::layers::{ConvSpec, ConvUnit, Ops};

/// A first-stage face probability below this filters the anchor out of the second stage.
pub const FILTER_FACE_PROBABILITY: f32 = 0.01;

/// How much the first stage grows each anchor's width and height: `exp(v₁·first_loc[2..4])`,
/// `[N, P, 2]`, with the exponent clamped to ±[`crate::loss::iou::MAX_LOG_SCALE`] so that an
/// untrained first stage cannot overflow it. Training and inference refine with this one value
/// (the exported graph clips the same way).
pub fn anchor_growth(first_loc: &tch::Tensor, size_variance: f32) -> tch::Tensor {
    let limit = crate::loss::iou::MAX_LOG_SCALE;
    (first_loc.narrow(-1, 2, 2) * f64::from(size_variance))
        .clamp(-limit, limit)
        .exp()
}

/// First-stage outputs over all priors: box offsets `[N, P, 4]` against the static priors and
/// one face logit `[N, P, 1]`.
pub struct FirstStage<T> {
    pub loc: T,
    pub logit: T,
}

/// The first-stage heads, one class and one box convolution per pyramid level.
pub struct SrnFirstStage {
    class: Vec<ConvUnit>,
    bbox: Vec<ConvUnit>,
}

impl SrnFirstStage {
    /// `in_channels[l]`: channels of level `l`'s raw map; `anchors[l]`: anchors per cell.
    pub fn new(root: &nn::Path, in_channels: &[i64], anchors: &[i64]) -> Self {
        let heads = |name: &str, per_anchor: i64| {
            in_channels
                .iter()
                .zip(anchors)
                .enumerate()
                .map(|(l, (&c, &a))| {
                    ConvUnit::new(
                        root,
                        &format!("{name}.{l}"),
                        c,
                        a * per_anchor,
                        ConvSpec::head(),
                    )
                })
                .collect()
        };
        Self {
            class: heads("srn1_class", 1),
            bbox: heads("srn1_bbox", 4),
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, features: &[O::T]) -> FirstStage<O::T> {
        let loc = ops.heads(features, &self.bbox, 4);
        let logit = ops.heads(features, &self.class, 1);
        FirstStage { loc, logit }
    }

    /// Sets the class biases so that an untrained first stage scores every anchor at `p`.
    pub fn set_face_prior(&mut self, p: f64) {
        let logit = (p / (1.0 - p)).ln();
        tch::no_grad(|| {
            for unit in &mut self.class {
                if let Some(b) = unit.bias.as_mut() {
                    let _ = b.fill_(logit);
                }
            }
        });
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.class.iter().chain(&self.bbox)
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.class.iter_mut().chain(&mut self.bbox)
    }
}
