//! Backbones: MobileNetV1 at width 0.25 / 0.5 / 1.0, in the layout of the published
//! RetinaFace-mv0.25, MobileNetV2 ([`super::mobilenetv2`]) and ResNet-18/34/50
//! ([`super::resnet`]) (three stages whose outputs, at strides 8, 16 and 32, feed the FPN).

use serde::{Deserialize, Serialize};
use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// Which feature extractor the network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
pub enum BackboneKind {
    /// MobileNetV1 ×0.25 (the published RetinaFace-mv0.25; 0.4 M parameters).
    #[default]
    #[serde(rename = "mobilenet0.25")]
    #[value(name = "mobilenet0.25")]
    MobileNet025,
    /// MobileNetV1 ×0.5.
    #[serde(rename = "mobilenet0.5")]
    #[value(name = "mobilenet0.5")]
    MobileNet05,
    /// MobileNetV1 ×1.0.
    #[serde(rename = "mobilenet1.0")]
    #[value(name = "mobilenet1.0")]
    MobileNet10,
    /// MobileNetV2 ×1.0 (torchvision layout), 64-channel neck.
    #[serde(rename = "mobilenetv2")]
    #[value(name = "mobilenetv2")]
    MobileNetV2,
    /// ResNet-18 (torchvision layout), 256-channel neck.
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    /// ResNet-34.
    #[serde(rename = "resnet34")]
    #[value(name = "resnet34")]
    ResNet34,
    /// ResNet-50 (the reference RetinaFace-R50 configuration).
    #[serde(rename = "resnet50")]
    #[value(name = "resnet50")]
    ResNet50,
}

impl BackboneKind {
    /// MobileNet: channels of the first convolution; the stages output 8×, 16× and 32× this.
    fn base_channels(self) -> i64 {
        match self {
            BackboneKind::MobileNet025 => 8,
            BackboneKind::MobileNet05 => 16,
            _ => 32,
        }
    }

    pub fn is_resnet(self) -> bool {
        matches!(
            self,
            BackboneKind::ResNet18 | BackboneKind::ResNet34 | BackboneKind::ResNet50
        )
    }

    /// Channels of the three feature maps handed to the FPN.
    pub fn feature_channels(self) -> [i64; 3] {
        match self {
            BackboneKind::ResNet18 | BackboneKind::ResNet34 => [128, 256, 512],
            BackboneKind::ResNet50 => [512, 1024, 2048],
            BackboneKind::MobileNetV2 => [8, 16, 32].map(|s| {
                super::mobilenetv2::MobileNetV2::channels_at(s).expect("MobileNetV2 level")
            }),
            _ => {
                let c = self.base_channels();
                [8 * c, 16 * c, 32 * c]
            }
        }
    }

    /// FPN/SSH width: 64 for MobileNets, 256 for ResNets, as in the reference configurations.
    pub fn neck_channels(self) -> i64 {
        if self.is_resnet() { 256 } else { 64 }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::MobileNet025 => "mobilenet0.25",
            BackboneKind::MobileNet05 => "mobilenet0.5",
            BackboneKind::MobileNet10 => "mobilenet1.0",
            BackboneKind::MobileNetV2 => "mobilenetv2",
            BackboneKind::ResNet18 => "resnet18",
            BackboneKind::ResNet34 => "resnet34",
            BackboneKind::ResNet50 => "resnet50",
        }
    }
}

/// The feature extractor of a network.
pub enum Backbone {
    MobileNet(MobileNetV1),
    MobileNetV2(Box<super::mobilenetv2::MobileNetV2>),
    ResNet(Box<super::resnet::ResNet>),
}

impl Backbone {
    pub fn new(root: &nn::Path, kind: BackboneKind) -> Self {
        match kind {
            BackboneKind::ResNet18 => Backbone::ResNet(Box::new(super::resnet::ResNet::new(
                root,
                [2, 2, 2, 2],
                false,
            ))),
            BackboneKind::ResNet34 => Backbone::ResNet(Box::new(super::resnet::ResNet::new(
                root,
                [3, 4, 6, 3],
                false,
            ))),
            BackboneKind::ResNet50 => Backbone::ResNet(Box::new(super::resnet::ResNet::new(
                root,
                [3, 4, 6, 3],
                true,
            ))),
            BackboneKind::MobileNetV2 => {
                Backbone::MobileNetV2(Box::new(super::mobilenetv2::MobileNetV2::new(root)))
            }
            BackboneKind::MobileNet025 | BackboneKind::MobileNet05 | BackboneKind::MobileNet10 => {
                Backbone::MobileNet(MobileNetV1::new(root, kind))
            }
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> [O::T; 3] {
        match self {
            Backbone::MobileNet(m) => m.forward(ops, x),
            Backbone::MobileNetV2(m) => {
                let levels = m.forward(ops, x, &[8, 16, 32]);
                let [a, b, c]: [O::T; 3] = levels.try_into().ok().expect("three levels");
                [a, b, c]
            }
            Backbone::ResNet(r) => r.forward(ops, x),
        }
    }

    pub fn units(&self) -> Box<dyn Iterator<Item = &ConvUnit> + '_> {
        match self {
            Backbone::MobileNet(m) => Box::new(m.units()),
            Backbone::MobileNetV2(m) => Box::new(m.units()),
            Backbone::ResNet(r) => Box::new(r.units()),
        }
    }

    pub fn units_mut(&mut self) -> Box<dyn Iterator<Item = &mut ConvUnit> + '_> {
        match self {
            Backbone::MobileNet(m) => Box::new(m.units_mut()),
            Backbone::MobileNetV2(m) => Box::new(m.units_mut()),
            Backbone::ResNet(r) => Box::new(r.units_mut()),
        }
    }
}

/// MobileNetV1 trunk: `fx.stage1` (stride 8), `fx.stage2` (16), `fx.stage3` (32).
///
/// `stage1.0` is a full 3×3 convolution; every other block is depthwise 3×3 (`.0`) followed by
/// pointwise 1×1 (`.1`), all with BatchNorm and LeakyReLU(0.1).
pub struct MobileNetV1 {
    stages: [Vec<ConvUnit>; 3],
}

impl MobileNetV1 {
    pub fn new(root: &nn::Path, kind: BackboneKind) -> Self {
        let c = kind.base_channels();
        let act = Act::Leaky(0.1);
        // (in, out, stride) of the depthwise-separable blocks, per stage.
        let blocks: [Vec<(i64, i64, i64)>; 3] = [
            vec![
                (c, 2 * c, 1),
                (2 * c, 4 * c, 2),
                (4 * c, 4 * c, 1),
                (4 * c, 8 * c, 2),
                (8 * c, 8 * c, 1),
            ],
            std::iter::once((8 * c, 16 * c, 2))
                .chain(std::iter::repeat_n((16 * c, 16 * c, 1), 5))
                .collect(),
            vec![(16 * c, 32 * c, 2), (32 * c, 32 * c, 1)],
        ];
        let stages = std::array::from_fn(|s| {
            let stage = format!("fx.stage{}", s + 1);
            let mut units = Vec::new();
            let first = if s == 0 {
                units.push(ConvUnit::new(
                    root,
                    &format!("{stage}.0"),
                    3,
                    c,
                    ConvSpec::bn(3, 2, act),
                ));
                1
            } else {
                0
            };
            for (i, &(cin, cout, stride)) in blocks[s].iter().enumerate() {
                let block = format!("{stage}.{}", i + first);
                units.push(ConvUnit::new(
                    root,
                    &format!("{block}.0"),
                    cin,
                    cin,
                    ConvSpec::depthwise(cin, stride, act),
                ));
                units.push(ConvUnit::new(
                    root,
                    &format!("{block}.1"),
                    cin,
                    cout,
                    ConvSpec::bn(1, 1, act),
                ));
            }
            units
        });
        Self { stages }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> [O::T; 3] {
        let mut outs: Vec<O::T> = Vec::with_capacity(3);
        for stage in &self.stages {
            let mut current: Option<O::T> = None;
            for unit in stage {
                let input = current.as_ref().or(outs.last()).unwrap_or(x);
                current = Some(ops.conv(input, unit));
            }
            outs.push(current.expect("stages are not empty"));
        }
        let [a, b, c]: [O::T; 3] = outs.try_into().ok().expect("three stages");
        [a, b, c]
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.stages.iter().flatten()
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.stages.iter_mut().flatten()
    }
}
