//! FPN (top-down merge of the three backbone levels) and the SSH context module applied to each
//! level, as in the published RetinaFace.

use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// Feature pyramid: 1×1 lateral convolutions `output1..3`, nearest upsampling of the coarser
/// level, addition, and 3×3 `merge2`/`merge1` smoothing.
pub struct Fpn {
    outputs: [ConvUnit; 3],
    merge1: ConvUnit,
    merge2: ConvUnit,
}

impl Fpn {
    pub fn new(root: &nn::Path, in_channels: [i64; 3], out: i64) -> Self {
        let act = Act::for_width(out);
        Self {
            outputs: std::array::from_fn(|i| {
                ConvUnit::new(
                    root,
                    &format!("fpn.output{}", i + 1),
                    in_channels[i],
                    out,
                    ConvSpec::bn(1, 1, act),
                )
            }),
            merge1: ConvUnit::new(root, "fpn.merge1", out, out, ConvSpec::bn(3, 1, act)),
            merge2: ConvUnit::new(root, "fpn.merge2", out, out, ConvSpec::bn(3, 1, act)),
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, features: &[O::T; 3]) -> [O::T; 3] {
        let o1 = ops.conv(&features[0], &self.outputs[0]);
        let o2 = ops.conv(&features[1], &self.outputs[1]);
        let o3 = ops.conv(&features[2], &self.outputs[2]);
        let up3 = ops.upsample_to(&o3, &o2);
        let o2 = ops.add(&o2, &up3);
        let o2 = ops.conv(&o2, &self.merge2);
        let up2 = ops.upsample_to(&o2, &o1);
        let o1 = ops.add(&o1, &up2);
        let o1 = ops.conv(&o1, &self.merge1);
        [o1, o2, o3]
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.outputs
            .iter_mut()
            .chain([&mut self.merge2, &mut self.merge1])
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.outputs.iter().chain([&self.merge2, &self.merge1])
    }
}

/// SSH context module: a 3×3 branch (half the channels) and 5×5- and 7×7-equivalent branches
/// (stacked 3×3s, a quarter each), concatenated, then ReLU.
pub struct Ssh {
    conv3x3: ConvUnit,
    conv5x5_1: ConvUnit,
    conv5x5_2: ConvUnit,
    conv7x7_2: ConvUnit,
    conv7x7_3: ConvUnit,
}

impl Ssh {
    pub fn new(root: &nn::Path, name: &str, channels: i64) -> Self {
        let act = Act::for_width(channels);
        let (half, quarter) = (channels / 2, channels / 4);
        let unit = |n: &str, cin, cout, act| {
            ConvUnit::new(
                root,
                &format!("{name}.{n}"),
                cin,
                cout,
                ConvSpec::bn(3, 1, act),
            )
        };
        Self {
            conv3x3: unit("conv3X3", channels, half, Act::None),
            conv5x5_1: unit("conv5X5_1", channels, quarter, act),
            conv5x5_2: unit("conv5X5_2", quarter, quarter, Act::None),
            conv7x7_2: unit("conv7X7_2", quarter, quarter, act),
            conv7x7_3: unit("conv7x7_3", quarter, quarter, Act::None),
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T) -> O::T {
        let c3 = ops.conv(x, &self.conv3x3);
        let c5_1 = ops.conv(x, &self.conv5x5_1);
        let c5 = ops.conv(&c5_1, &self.conv5x5_2);
        let c7_2 = ops.conv(&c5_1, &self.conv7x7_2);
        let c7 = ops.conv(&c7_2, &self.conv7x7_3);
        let cat = ops.concat_channels(&[c3, c5, c7]);
        ops.relu(&cat)
    }

    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        [
            &mut self.conv3x3,
            &mut self.conv5x5_1,
            &mut self.conv5x5_2,
            &mut self.conv7x7_2,
            &mut self.conv7x7_3,
        ]
        .into_iter()
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        [
            &self.conv3x3,
            &self.conv5x5_1,
            &self.conv5x5_2,
            &self.conv7x7_2,
            &self.conv7x7_3,
        ]
        .into_iter()
    }
}
