//! Backbones: MobileNetV1 at width 0.25 / 0.5 / 1.0, in the layout of the published
//! RetinaFace-mv0.25, MobileNetV2 ([`super::mobilenetv2`]) and ResNet-18/34/50
//! ([`super::resnet`]). Each offers feature maps at strides 4, 8, 16 and 32; the network takes
//! those its pyramid levels ask for (8, 16 and 32 in the reference configurations).

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

    /// Strides at which this backbone offers feature maps.
    pub const STRIDES: [u32; 4] = [4, 8, 16, 32];

    /// Channels of the feature map at `stride`, or `None` where the backbone has none.
    pub fn level_channels(self, stride: u32) -> Option<i64> {
        if !Self::STRIDES.contains(&stride) {
            return None;
        }
        // Stride 4 → ×1, 8 → ×2, 16 → ×4, 32 → ×8 of the stride-4 width, except MobileNetV2.
        let factor = i64::from(stride / 4);
        Some(match self {
            BackboneKind::ResNet18 | BackboneKind::ResNet34 => 64 * factor,
            BackboneKind::ResNet50 => 256 * factor,
            BackboneKind::MobileNetV2 => super::mobilenetv2::MobileNetV2::channels_at(stride)?,
            BackboneKind::MobileNet025 | BackboneKind::MobileNet05 | BackboneKind::MobileNet10 => {
                4 * self.base_channels() * factor
            }
        })
    }

    /// Channels of the reference three feature maps (strides 8, 16, 32).
    pub fn feature_channels(self) -> [i64; 3] {
        [8, 16, 32].map(|s| {
            self.level_channels(s)
                .expect("every backbone has 8, 16, 32")
        })
    }

    /// FPN/SSH width: 64 for MobileNets, 256 for ResNets, as in the reference configurations.
    pub fn neck_channels(self) -> i64 {
        if self.is_resnet() { 256 } else { 64 }
    }

    /// Prefix of the backbone's variable names (what `freeze_backbone` keeps fixed).
    pub fn var_prefix(self) -> &'static str {
        match self {
            BackboneKind::MobileNet025 | BackboneKind::MobileNet05 | BackboneKind::MobileNet10 => {
                "fx."
            }
            BackboneKind::MobileNetV2 => "features.",
            BackboneKind::ResNet18 | BackboneKind::ResNet34 | BackboneKind::ResNet50 => "body.",
        }
    }

    /// Every backbone's variable prefix: a network has exactly one of them.
    pub fn all_var_prefixes() -> [&'static str; 3] {
        [
            BackboneKind::MobileNet025.var_prefix(),
            BackboneKind::MobileNetV2.var_prefix(),
            BackboneKind::ResNet18.var_prefix(),
        ]
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

    /// The feature maps at `strides` (ascending, each in [`BackboneKind::STRIDES`]).
    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T, strides: &[u32]) -> Vec<O::T> {
        let levels = match self {
            Backbone::MobileNet(m) => m.forward(ops, x, strides),
            Backbone::MobileNetV2(m) => m.forward(ops, x, strides),
            Backbone::ResNet(r) => r.forward(ops, x, strides),
        };
        debug_assert_eq!(levels.len(), strides.len(), "levels {strides:?}");
        levels
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

/// Index in `fx.stage1` of the unit whose output is the last stride-4 map: the stem, then
/// blocks 1 (stride 1), 2 (stride 2 → 4) and 3 (stride 1), two units each.
const STRIDE4_UNIT: usize = 6;

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

    /// The feature maps at `strides` (ascending subset of 4, 8, 16, 32): the ends of the three
    /// stages, and for stride 4 the last stride-4 map inside `fx.stage1` (after `fx.stage1.3`,
    /// 4× the stem's channels).
    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T, strides: &[u32]) -> Vec<O::T> {
        let mut outs: Vec<O::T> = Vec::with_capacity(strides.len());
        let mut current: Option<O::T> = None;
        for (s, stage) in self.stages.iter().enumerate() {
            if outs.len() == strides.len() {
                break;
            }
            for (u, unit) in stage.iter().enumerate() {
                let input = current.as_ref().or(outs.last()).unwrap_or(x);
                let y = ops.conv(input, unit);
                let stride = match (s, u) {
                    (0, STRIDE4_UNIT) => 4,
                    (_, u) if u + 1 == stage.len() => 8 << s,
                    _ => 0,
                };
                if strides.contains(&stride) {
                    outs.push(y);
                    current = None;
                } else {
                    current = Some(y);
                }
            }
        }
        outs
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.stages.iter().flatten()
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.stages.iter_mut().flatten()
    }
}
