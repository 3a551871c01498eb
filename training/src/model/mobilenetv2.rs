//! MobileNetV2 trunk (Sandler et al. 2018), width 1.0, in torchvision's block layout
//! (`features.0` … `features.18`).
//!
//! The stem is a 3×3/2 convolution to 32 channels; then inverted residual blocks (1×1 expansion
//! by `t`, 3×3 depthwise, linear 1×1 projection; a shortcut where stride is 1 and the width
//! does not change) and a final 1×1 convolution to 1280 channels. BatchNorm and ReLU6 after every
//! convolution but the projections, whose linear output is what makes the block "inverted".
//!
//! The pyramid levels are taken where the feature stride changes: the end of the 24-channel
//! stage (stride 4, `features.3`), the 32-channel stage (8, `features.6`), the 96-channel stage
//! (16, `features.13`) and the final 1280-channel convolution (32, `features.18`) — the last three
//! are the ones MobileNetV2 RetinaFace models use.

use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// `(t, c, n, s)` of the inverted residual stages: expansion, output channels, blocks, stride of
/// the first block.
const STAGES: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Channels of the stem and of the final convolution.
const STEM: i64 = 32;
const LAST: i64 = 1280;

/// `features` indices after which a pyramid level is taken, with its stride.
const TAPS: [(usize, u32); 4] = [(3, 4), (6, 8), (13, 16), (18, 32)];

/// One inverted residual block.
struct InvertedResidual {
    /// Absent when the expansion factor is 1.
    expand: Option<ConvUnit>,
    depthwise: ConvUnit,
    project: ConvUnit,
    residual: bool,
}

impl InvertedResidual {
    fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> O::T {
        let expanded = self.expand.as_ref().map(|e| ops.conv(x, e));
        let y = ops.conv(expanded.as_ref().unwrap_or(x), &self.depthwise);
        let y = ops.conv(&y, &self.project);
        if self.residual { ops.add(&y, x) } else { y }
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.expand.iter().chain([&self.depthwise, &self.project])
    }

    fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.expand
            .iter_mut()
            .chain([&mut self.depthwise, &mut self.project])
    }
}

pub struct MobileNetV2 {
    stem: ConvUnit,
    /// `features.1` … `features.17`.
    blocks: Vec<InvertedResidual>,
    last: ConvUnit,
}

impl MobileNetV2 {
    pub fn new(root: &nn::Path) -> Self {
        let act = Act::Relu6;
        let stem = ConvUnit::new(root, "features.0", 3, STEM, ConvSpec::bn(3, 2, act));
        let mut blocks = Vec::new();
        let mut cin = STEM;
        for (t, c, n, s) in STAGES {
            for i in 0..n {
                let name = format!("features.{}", blocks.len() + 1);
                let stride = if i == 0 { s } else { 1 };
                let hidden = cin * t;
                let unit = |part: &str, a, b, spec| {
                    ConvUnit::new(root, &format!("{name}.{part}"), a, b, spec)
                };
                blocks.push(InvertedResidual {
                    expand: (t != 1).then(|| unit("expand", cin, hidden, ConvSpec::bn(1, 1, act))),
                    depthwise: unit(
                        "depthwise",
                        hidden,
                        hidden,
                        ConvSpec::depthwise(hidden, stride, act),
                    ),
                    project: unit("project", hidden, c, ConvSpec::bn(1, 1, Act::None)),
                    residual: stride == 1 && cin == c,
                });
                cin = c;
            }
        }
        let last = ConvUnit::new(
            root,
            &format!("features.{}", blocks.len() + 1),
            cin,
            LAST,
            ConvSpec::bn(1, 1, act),
        );
        Self { stem, blocks, last }
    }

    /// Channels of the level at `stride` (4, 8, 16 or 32).
    pub fn channels_at(stride: u32) -> Option<i64> {
        match stride {
            4 => Some(24),
            8 => Some(32),
            16 => Some(96),
            32 => Some(LAST),
            _ => None,
        }
    }

    /// The feature maps at `strides` (a subset of 4, 8, 16, 32, ascending). The trunk stops after
    /// the last one asked for.
    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T, strides: &[u32]) -> Vec<O::T> {
        let mut outs: Vec<O::T> = Vec::with_capacity(strides.len());
        // The running feature map, unless it was just moved into `outs` as a level.
        let mut current = Some(ops.conv(x, &self.stem));
        for (index, block) in self.blocks.iter().enumerate() {
            if outs.len() == strides.len() {
                return outs;
            }
            let input = current.as_ref().or(outs.last()).expect("a feature map");
            let y = block.forward(ops, input);
            if tapped(index + 1, strides) {
                outs.push(y);
                current = None;
            } else {
                current = Some(y);
            }
        }
        if strides.contains(&32) {
            let input = current.as_ref().or(outs.last()).expect("a feature map");
            let y = ops.conv(input, &self.last);
            outs.push(y);
        }
        outs
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        std::iter::once(&self.stem)
            .chain(self.blocks.iter().flat_map(InvertedResidual::units))
            .chain(std::iter::once(&self.last))
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        std::iter::once(&mut self.stem)
            .chain(self.blocks.iter_mut().flat_map(InvertedResidual::units_mut))
            .chain(std::iter::once(&mut self.last))
    }
}

/// Whether the output of `features.{index}` is one of the requested levels.
fn tapped(index: usize, strides: &[u32]) -> bool {
    TAPS.iter()
        .any(|&(i, s)| i == index && strides.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::TensorOps;
    use tch::{Device, Tensor};

    #[test]
    fn torchvision_layout_and_level_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = MobileNetV2::new(&vs.root());
        // 17 inverted residual blocks between the stem and the final convolution.
        assert_eq!(net.blocks.len(), 17);
        assert_eq!(net.last.name, "features.18");
        // Shortcuts: every repeated block of a stage (n − 1 per stage: 0+1+2+3+2+2+0 = 10).
        assert_eq!(net.blocks.iter().filter(|b| b.residual).count(), 10);
        // torchvision's mobilenet_v2 has 3,504,872 parameters with its 1000-class classifier
        // (1280·1000 + 1000 = 1,281,000 of them): 2,223,872 in the features, BatchNorm included.
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(params, 2_223_872);
        let x = Tensor::rand([1, 3, 64, 96], tch::kind::FLOAT_CPU);
        let outs = net.forward(&mut TensorOps::default(), &x, &[4, 8, 16, 32]);
        let shapes: Vec<Vec<i64>> = outs.iter().map(Tensor::size).collect();
        assert_eq!(
            shapes,
            [
                vec![1, 24, 16, 24],
                vec![1, 32, 8, 12],
                vec![1, 96, 4, 6],
                vec![1, 1280, 2, 3]
            ]
        );
        for stride in [4, 8, 16, 32] {
            let c = MobileNetV2::channels_at(stride).unwrap();
            assert_eq!(
                outs[[4, 8, 16, 32].iter().position(|s| *s == stride).unwrap()].size()[1],
                c
            );
        }
    }
}
