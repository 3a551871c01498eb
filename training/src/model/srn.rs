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
//! both steps into the three contract outputs ([`SrnOps::srn_refine`]): offsets re-expressed
//! against the static priors and the gated face probability, so `retinafacedetect` decodes it
//! like any other model.

use tch::{Kind, Tensor, nn};

use super::layers::{ConvSpec, ConvUnit, Observed, Ops, TensorOps};
pub use super::outputs::FirstStage;
use super::outputs::{MAX_LOG_SCALE, Outputs};

/// A first-stage face probability below this filters the anchor out of the second stage.
pub const FILTER_FACE_PROBABILITY: f32 = 0.01;

/// How much the first stage grows each anchor's width and height: `exp(v₁·first_loc[2..4])`,
/// `[N, P, 2]`, with the exponent clamped to ±[`MAX_LOG_SCALE`] so that an untrained first stage
/// cannot overflow it. Training and inference refine with this one value (the exported graph
/// clips the same way).
pub fn anchor_growth(first_loc: &Tensor, size_variance: f32) -> Tensor {
    (first_loc.narrow(-1, 2, 2) * f64::from(size_variance))
        .clamp(-MAX_LOG_SCALE, MAX_LOG_SCALE)
        .exp()
}

/// The operation SRN adds to [`Ops`]: both steps folded into the contract's outputs (inference
/// and export). Implemented for [`TensorOps`], [`Observed`] and the ONNX graph builder.
pub trait SrnOps: Ops {
    /// `second`'s offsets, relative to the boxes `first.loc` decodes to, re-expressed against the
    /// static priors, and `second`'s face probability (softmaxed `conf`) zeroed where the first
    /// stage's is below `min_face`. With `v₁` the size variance and `g = exp(v₁·first.loc[2..4])`
    /// the first step's growth of the prior's width and height: centre
    /// `first.loc[0..2] + second.loc[0..2]·g`, size `first.loc[2..4] + second.loc[2..4]`,
    /// landmark `first.loc[0..2] + second.landmarks[2k..2k+2]·g` (the centre variance cancels).
    /// `v₁·first.loc[2..4]` is clamped to ±[`MAX_LOG_SCALE`] (what training refines with,
    /// [`anchor_growth`]), so an untrained first stage cannot overflow `g`.
    fn srn_refine(
        &mut self,
        first: &FirstStage<Self::T>,
        second: &Outputs<Self::T>,
        size_variance: f32,
        min_face: f32,
    ) -> Outputs<Self::T>;
}

impl SrnOps for TensorOps {
    fn srn_refine(
        &mut self,
        first: &FirstStage<Tensor>,
        second: &Outputs<Tensor>,
        size_variance: f32,
        min_face: f32,
    ) -> Outputs<Tensor> {
        let l1 = &first.loc;
        let (n, p) = (l1.size()[0], l1.size()[1]);
        let grow = anchor_growth(l1, size_variance);
        let centre = l1.narrow(-1, 0, 2) + second.loc.narrow(-1, 0, 2) * &grow;
        let size = l1.narrow(-1, 2, 2) + second.loc.narrow(-1, 2, 2);
        let landmarks = (second.landmarks.reshape([n, p, 5, 2]) * grow.unsqueeze(2)
            + l1.narrow(-1, 0, 2).unsqueeze(2))
        .reshape([n, p, 10]);
        let keep = first
            .logit
            .sigmoid()
            .ge(f64::from(min_face))
            .to_kind(Kind::Float);
        let face = second.conf.narrow(-1, 1, 1) * keep;
        Outputs {
            loc: Tensor::cat(&[centre, size], -1),
            conf: Tensor::cat(&[1.0 - &face, face], -1),
            landmarks,
            first_stage: None,
        }
    }
}

impl<F: FnMut(&Tensor, &ConvUnit, &Tensor)> SrnOps for Observed<F> {
    fn srn_refine(
        &mut self,
        first: &FirstStage<Tensor>,
        second: &Outputs<Tensor>,
        size_variance: f32,
        min_face: f32,
    ) -> Outputs<Tensor> {
        self.inner
            .srn_refine(first, second, size_variance, min_face)
    }
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
