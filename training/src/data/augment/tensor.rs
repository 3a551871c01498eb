//! An image as the network takes it: planar u8 in the contract's channel order (the loader's
//! batch layout), normalised per the [`ModelContract`] on the training device or on the CPU (as
//! evaluation and the plugin do), and the colour that normalises to zero.

use image::{Rgb, RgbImage};
use retinaface::ModelContract;
use retinaface::contract::ColorOrder;
use retinaface::preprocess::{Normalisation, color_of_channel};

/// Writes `image` as planar u8 in the contract's channel order (the loader's batch layout; mean
/// and std are applied on the training device, see [`normalise_on_device`]).
pub fn append_planar(image: &RgbImage, order: ColorOrder, out: &mut Vec<u8>) {
    for c in 0..3 {
        let source = rgb_index_of_channel(order, c);
        out.extend(image.pixels().map(|px| px[source]));
    }
}

/// `(v − mean) · (1/std)` per channel of an `[N, 3, H, W]` u8 batch, as [`to_network_input`]
/// computes it on the CPU.
pub fn normalise_on_device(images: &tch::Tensor, contract: &ModelContract) -> tch::Tensor {
    let device = images.device();
    let n = Normalisation::for_contract(contract);
    let mean = tch::Tensor::from_slice(&n.mean)
        .view([1, 3, 1, 1])
        .to_device(device);
    let inv_std = tch::Tensor::from_slice(&n.inv_std)
        .view([1, 3, 1, 1])
        .to_device(device);
    (images.to_kind(tch::Kind::Float) - mean) * inv_std
}

/// The image as the network sees it: CHW f32 in the contract's channel order, `(v − mean) / std`
/// per channel, same size as the image. Computed like the plugin's preprocessing (multiplying by
/// `1/std`) so that evaluation sees the same numbers as deployment.
pub fn to_network_input(image: &RgbImage, contract: &ModelContract) -> Vec<f32> {
    let mut chw = vec![0.0f32; 3 * image.width() as usize * image.height() as usize];
    Normalisation::for_contract(contract).planar_from_rgb(image.as_raw(), &mut chw);
    chw
}

/// Which RGB component feeds network channel `c` (the core's table).
pub(super) fn rgb_index_of_channel(order: ColorOrder, c: usize) -> usize {
    color_of_channel(order)[c]
}

/// The RGB colour that normalises to zero: padding then looks like "no signal" to the network.
pub(super) fn mean_colour(contract: &ModelContract) -> Rgb<u8> {
    Rgb(Normalisation::for_contract(contract).mean_rgb())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::geometry::tests::gradient;

    #[test]
    fn device_normalisation_matches_the_cpu_path() {
        // The loader ships u8 planes and normalises on the device; eval/detect normalise on the
        // CPU. Both must give the network the same numbers, for BGR and RGB contracts.
        let img = gradient(7, 5);
        for order in [ColorOrder::Bgr, ColorOrder::Rgb] {
            let contract = ModelContract {
                color_order: order,
                mean: [10.0, 120.5, 200.0],
                std: [1.0, 2.0, 57.5],
                ..ModelContract::default()
            };
            let mut planes = Vec::new();
            append_planar(&img, order, &mut planes);
            let device = normalise_on_device(
                &tch::Tensor::from_slice(&planes).view([1, 3, 5, 7]),
                &contract,
            );
            let got: Vec<f32> = Vec::try_from(device.flatten(0, -1)).unwrap();
            assert_eq!(got, to_network_input(&img, &contract), "{order:?}");
        }
    }

    #[test]
    fn known_pixel_normalises_per_contract() {
        let img = RgbImage::from_pixel(2, 1, Rgb([200, 100, 50]));
        // Default: BGR minus 104,117,123.
        let chw = to_network_input(&img, &ModelContract::default());
        assert_eq!(chw, vec![-54.0, -54.0, -17.0, -17.0, 77.0, 77.0]);
        let rgb = ModelContract {
            color_order: ColorOrder::Rgb,
            mean: [127.5, 127.5, 127.5],
            std: [128.0, 128.0, 128.0],
            ..Default::default()
        };
        let chw = to_network_input(&img, &rgb);
        let expected = [72.5 / 128.0, -27.5 / 128.0, -77.5 / 128.0];
        for (c, e) in expected.iter().enumerate() {
            assert!((chw[2 * c] - e).abs() < 1e-6, "{chw:?}");
        }
    }

    #[test]
    fn padding_colour_normalises_to_zero() {
        let c = ModelContract::default();
        let pad = RgbImage::from_pixel(1, 1, mean_colour(&c));
        assert_eq!(pad.get_pixel(0, 0).0, [123, 117, 104]);
        assert_eq!(to_network_input(&pad, &c), vec![0.0; 3]);
    }
}
