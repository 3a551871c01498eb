//! What a network costs to run: multiply-accumulates of its convolutions at a given input size,
//! counted by running the forward pass once over [`Ops`](super::Ops) that tally each convolution's output
//! elements × its kernel volume (the element-wise operations are left out: they are a few per
//! output element, noise next to the convolutions).

use tch::{Kind, Tensor};

use super::RetinaFace;
use super::layers::Observed;

/// Multiply-accumulates of one forward pass of `net` on a `height`×`width` image.
pub fn macs(net: &RetinaFace, height: i64, width: i64) -> u64 {
    let mut macs = 0u64;
    let mut ops = Observed::new(|_: &Tensor, unit: &super::ConvUnit, y: &Tensor| {
        let per_output = unit.in_channels / unit.groups * unit.kernel * unit.kernel;
        macs += y.numel() as u64 * per_output as u64;
    });
    let x = Tensor::zeros([1, 3, height, width], (Kind::Float, net.vs.device()));
    tch::no_grad(|| net.forward(&mut ops, &x, true));
    macs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn an_ssh_module_costs_its_hand_counted_convolutions() {
        let net = RetinaFace::new(ModelConfig::default(), tch::Device::Cpu).unwrap();
        // The same network without the SSH module of the stride-8 level (80×80 cells at 640²).
        let config = ModelConfig {
            ssh_min_stride: 16,
            ..Default::default()
        };
        let without = RetinaFace::new(config, tch::Device::Cpu).unwrap();
        // SSH at 64 channels, all 3×3: 64→32, 64→16, then three 16→16.
        let per_cell: u64 = 9 * (64 * 32 + 64 * 16 + 3 * 16 * 16);
        assert_eq!(per_cell, 34_560);
        let total = macs(&net, 640, 640);
        assert_eq!(total - macs(&without, 640, 640), per_cell * 80 * 80);
        // Every map scales with the input: twice the side, four times the cost.
        assert_eq!(macs(&net, 1280, 1280), 4 * total);
    }
}
