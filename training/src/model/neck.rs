//! FPN (top-down merge of the three backbone levels) and the SSH context module applied to each
//! level, as in the published RetinaFace.

use tch::nn;

use super::layers::{Act, ConvSpec, ConvUnit, Ops};

/// Feature pyramid: 1×1 lateral convolutions `output1..N` (finest first), nearest upsampling of
/// the coarser level, addition, and 3×3 `merge1..N−1` smoothing. With the reference three levels
/// the names and the computation are those of the published RetinaFace.
///
/// Levels may differ in width (`level_channels`): where a level is narrower than the one above
/// it, a 1×1 `reduce<i>` brings the coarser level to its width before the upsampling (at the
/// coarse resolution, where it is 4× cheaper).
pub struct Fpn {
    outputs: Vec<ConvUnit>,
    /// `merges[i]` smooths level `i` after the coarser level was added; the coarsest has none.
    merges: Vec<ConvUnit>,
    /// `reduces[i]`: the coarser level's width → level `i`'s, where they differ.
    reduces: Vec<Option<ConvUnit>>,
}

impl Fpn {
    /// `widths`: each level's output width, finest first; `act`: the neck's activation.
    pub fn new(root: &nn::Path, in_channels: &[i64], widths: &[i64], act: Act) -> Self {
        let levels = in_channels.len();
        let unit = |name: String, cin, cout, kernel| {
            ConvUnit::new(root, &name, cin, cout, ConvSpec::bn(kernel, 1, act))
        };
        Self {
            outputs: in_channels
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (&c, &w))| unit(format!("fpn.output{}", i + 1), c, w, 1))
                .collect(),
            merges: (0..levels.saturating_sub(1))
                .map(|i| unit(format!("fpn.merge{}", i + 1), widths[i], widths[i], 3))
                .collect(),
            reduces: (0..levels.saturating_sub(1))
                .map(|i| {
                    (widths[i] != widths[i + 1])
                        .then(|| unit(format!("fpn.reduce{}", i + 1), widths[i + 1], widths[i], 1))
                })
                .collect(),
        }
    }

    pub fn forward<O: Ops>(&self, ops: &mut O, features: &[O::T]) -> Vec<O::T> {
        let mut laterals: Vec<O::T> = features
            .iter()
            .zip(&self.outputs)
            .map(|(f, unit)| ops.conv(f, unit))
            .collect();
        // Top-down: each level gets the (already merged) coarser one added, then smoothed.
        for i in (0..self.merges.len()).rev() {
            let up = match &self.reduces[i] {
                Some(reduce) => {
                    let narrow = ops.conv(&laterals[i + 1], reduce);
                    ops.upsample_to(&narrow, &laterals[i])
                }
                None => ops.upsample_to(&laterals[i + 1], &laterals[i]),
            };
            let sum = ops.add(&laterals[i], &up);
            laterals[i] = ops.conv(&sum, &self.merges[i]);
        }
        laterals
    }

    /// Units in the order of the reference checkpoints: laterals, then merges coarse to fine
    /// (then the reductions, which the reference layout does not have).
    pub fn units_mut(&mut self) -> impl Iterator<Item = &mut ConvUnit> {
        self.outputs
            .iter_mut()
            .chain(self.merges.iter_mut().rev())
            .chain(self.reduces.iter_mut().flatten())
    }

    pub fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.outputs
            .iter()
            .chain(self.merges.iter().rev())
            .chain(self.reduces.iter().flatten())
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
    /// `act`: the neck's activation (of the 5×5 and 7×7 branches' first convolutions).
    pub fn new(root: &nn::Path, name: &str, channels: i64, act: Act) -> Self {
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
