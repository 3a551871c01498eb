//! RetinaNet head (Lin et al. 2017) on the FPN levels: per task a subnet of four 3×3
//! convolutions (256 → width channels, ReLU, no BatchNorm) and a 3×3 output convolution, the
//! same weights at every level. Classification gives one sigmoid logit per anchor; box (4) and
//! landmark (10) regressions use the RetinaFace encoding, so the exported model decodes like any
//! other. Without SSH: the subnets are the context module.

use serde::{Deserialize, Serialize};
use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// Which head sits on the pyramid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum HeadKind {
    /// SSH context module and 1×1 class/box/landmark convolutions per level (RetinaFace).
    #[default]
    #[serde(rename = "ssh")]
    #[value(name = "ssh")]
    Ssh,
    /// Four-convolution subnets shared across levels, single sigmoid score (RetinaNet).
    #[serde(rename = "retinanet")]
    #[value(name = "retinanet")]
    RetinaNet,
    /// The SSH head as the second stage of selective refinement (SRN / AInnoFace): a first
    /// class/box stage on the raw backbone maps filters its anchors and refines its boxes
    /// (`training/src/model/srn.rs`).
    #[serde(rename = "srn")]
    #[value(name = "srn")]
    Srn,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Ssh => "ssh",
            HeadKind::RetinaNet => "retinanet",
            HeadKind::Srn => "srn",
        }
    }
}

/// Convolutions per subnet before the output convolution.
const DEPTH: usize = 4;
/// Standard deviation of the output convolutions' initial weights (RetinaNet's).
const OUTPUT_INIT_STD: f64 = 0.01;

/// One task's subnet.
struct Subnet {
    convs: Vec<ConvUnit>,
    out: ConvUnit,
    per_anchor: i64,
}

impl Subnet {
    fn new(root: &nn::Path, name: &str, width: i64, anchors: i64, per_anchor: i64) -> Self {
        let spec = |act| ConvSpec {
            kernel: 3,
            stride: 1,
            groups: 1,
            batch_norm: false,
            act,
        };
        let mut subnet = Self {
            convs: (0..DEPTH)
                .map(|i| ConvUnit::new(root, &format!("{name}.{i}"), width, width, spec(Act::Relu)))
                .collect(),
            out: ConvUnit::new(
                root,
                &format!("{name}.out"),
                width,
                anchors * per_anchor,
                spec(Act::None),
            ),
            per_anchor,
        };
        // RetinaNet draws every subnet weight from N(0, 0.01), for 256-channel subnets. At the
        // narrower widths used here that shrinks the signal about 30× per convolution (0.01 ×
        // √(9·64) × ReLU's √½), so after four of them the outputs and their gradients all but
        // vanish (measured: no learning in 40 steps). The hidden convolutions get He's
        // N(0, 2/fan_in), which keeps the scale through ReLUs; the output ones keep 0.01, so the
        // first scores are the prior bias.
        tch::no_grad(|| {
            for unit in subnet.convs.iter_mut() {
                let fan_in = (unit.in_channels * unit.kernel * unit.kernel) as f64;
                let _ = unit.weight.normal_(0.0, (2.0 / fan_in).sqrt());
            }
            let _ = subnet.out.weight.normal_(0.0, OUTPUT_INIT_STD);
            for unit in subnet.units_mut() {
                if let Some(b) = unit.bias.as_mut() {
                    let _ = b.zero_();
                }
            }
        });
        subnet
    }

    fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> O::T {
        let mut y: Option<O::T> = None;
        for unit in &self.convs {
            y = Some(ops.conv(y.as_ref().unwrap_or(x), unit));
        }
        ops.head(y.as_ref().unwrap_or(x), &self.out, self.per_anchor)
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.convs.iter().chain(std::iter::once(&self.out))
    }

    fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.convs.iter_mut().chain(std::iter::once(&mut self.out))
    }
}

/// The three subnets.
pub struct RetinaNetHead {
    class: Subnet,
    bbox: Subnet,
    landmark: Subnet,
}

/// One level's outputs: box `[N, HWA, 4]`, class logit `[N, HWA, 1]`, landmarks `[N, HWA, 10]`.
pub struct LevelOutputs<T> {
    pub loc: T,
    pub logit: T,
    pub landmarks: T,
}

impl RetinaNetHead {
    /// `anchors` per cell, the same at every level (the weights are shared).
    pub fn new(root: &nn::Path, width: i64, anchors: i64) -> Self {
        Self {
            class: Subnet::new(root, "cls_subnet", width, anchors, 1),
            bbox: Subnet::new(root, "box_subnet", width, anchors, 4),
            landmark: Subnet::new(root, "landmark_subnet", width, anchors, 10),
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, level: &O::T) -> LevelOutputs<O::T> {
        LevelOutputs {
            loc: self.bbox.forward(ops, level),
            logit: self.class.forward(ops, level),
            landmarks: self.landmark.forward(ops, level),
        }
    }

    /// Sets the class output bias so that every anchor starts at face probability `p`.
    pub fn set_face_prior(&mut self, p: f64) {
        let logit = (p / (1.0 - p)).ln();
        tch::no_grad(|| {
            if let Some(b) = self.class.out.bias.as_mut() {
                let _ = b.fill_(logit);
            }
        });
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.class
            .units()
            .chain(self.bbox.units())
            .chain(self.landmark.units())
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.class
            .units_mut()
            .chain(self.bbox.units_mut())
            .chain(self.landmark.units_mut())
    }
}
