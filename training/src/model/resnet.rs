//! ResNet-18/34/50 trunks in torchvision's layout (`body.conv1`, `body.layer1.0.conv1`, …):
//! stem (7×7/2 convolution, 3×3/2 max pool), then four stages; `layer2..4` (strides 8, 16, 32)
//! feed the FPN, as in the reference RetinaFace-R50, and `layer1` (stride 4) when a P2 level is
//! configured.

use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// One residual block: basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4), with a 1×1 projection
/// of the shortcut where the shape changes.
struct Block {
    convs: Vec<ConvUnit>,
    downsample: Option<ConvUnit>,
}

impl Block {
    fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> O::T {
        let mut y: Option<O::T> = None;
        for unit in &self.convs {
            y = Some(ops.conv(y.as_ref().unwrap_or(x), unit));
        }
        let y = y.expect("blocks have convolutions");
        let sum = match &self.downsample {
            Some(d) => {
                let shortcut = ops.conv(x, d);
                ops.add(&y, &shortcut)
            }
            None => ops.add(&y, x),
        };
        ops.relu(&sum)
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.convs.iter().chain(self.downsample.as_ref())
    }

    fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.convs.iter_mut().chain(self.downsample.as_mut())
    }
}

pub struct ResNet {
    stem: ConvUnit,
    layers: [Vec<Block>; 4],
}

impl ResNet {
    /// `blocks` per stage and whether blocks are bottlenecks (ResNet-50) or basic (18/34).
    pub fn new(root: &nn::Path, blocks: [usize; 4], bottleneck: bool) -> Self {
        let stem = ConvUnit::new(root, "body.conv1", 3, 64, ConvSpec::bn(7, 2, Act::Relu));
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_ch = 64;
        let layers = std::array::from_fn(|s| {
            let width = 64 << s;
            let out_ch = width * expansion;
            (0..blocks[s])
                .map(|b| {
                    let name = format!("body.layer{}.{b}", s + 1);
                    let stride = if b == 0 && s > 0 { 2 } else { 1 };
                    let unit = |n: &str, cin, cout, spec| {
                        ConvUnit::new(root, &format!("{name}.{n}"), cin, cout, spec)
                    };
                    let convs = if bottleneck {
                        vec![
                            unit("conv1", in_ch, width, ConvSpec::bn(1, 1, Act::Relu)),
                            unit("conv2", width, width, ConvSpec::bn(3, stride, Act::Relu)),
                            unit("conv3", width, out_ch, ConvSpec::bn(1, 1, Act::None)),
                        ]
                    } else {
                        vec![
                            unit("conv1", in_ch, width, ConvSpec::bn(3, stride, Act::Relu)),
                            unit("conv2", width, out_ch, ConvSpec::bn(3, 1, Act::None)),
                        ]
                    };
                    let downsample = (stride != 1 || in_ch != out_ch).then(|| {
                        unit(
                            "downsample",
                            in_ch,
                            out_ch,
                            ConvSpec::bn(1, stride, Act::None),
                        )
                    });
                    in_ch = out_ch;
                    Block { convs, downsample }
                })
                .collect()
        });
        Self { stem, layers }
    }

    /// The outputs of `layer1..4` (strides 4, 8, 16, 32) that `strides` asks for; the trunk
    /// stops after the last one.
    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T, strides: &[u32]) -> Vec<O::T> {
        let stem = ops.conv(x, &self.stem);
        let mut outs: Vec<O::T> = Vec::with_capacity(strides.len());
        // The running feature map, unless it was just moved into `outs` as a level.
        let mut current = Some(ops.max_pool(&stem, 3, 2));
        for (s, layer) in self.layers.iter().enumerate() {
            if outs.len() == strides.len() {
                break;
            }
            for block in layer {
                let input = current.as_ref().or(outs.last()).expect("a feature map");
                current = Some(block.forward(ops, input));
            }
            if strides.contains(&(4 << s)) {
                outs.push(current.take().expect("stages have blocks"));
            }
        }
        outs
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        std::iter::once(&self.stem).chain(self.layers.iter().flatten().flat_map(Block::units))
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        std::iter::once(&mut self.stem)
            .chain(self.layers.iter_mut().flatten().flat_map(Block::units_mut))
    }
}
