//! Photometric distortion (brightness, contrast, saturation, hue) as the reference draws it: on
//! the loader's workers (lookup tables and a fast HSV step per pixel) or, with the same draws, on
//! the training device ([`photometric_on_device`]).

use image::RgbImage;
use rand::Rng;
use retinaface::contract::ColorOrder;

use super::tensor::rgb_index_of_channel;

/// Largest brightness shift, in 0..255 pixel units.
const BRIGHTNESS_DELTA: f32 = 32.0;
/// Contrast and saturation factors are drawn from this range.
const FACTOR_RANGE: std::ops::RangeInclusive<f32> = 0.5..=1.5;
/// Largest hue shift in degrees. The reference shifts OpenCV's 8-bit hue (0..180, i.e. 2° per
/// unit) by up to ±18 units, which is ±36°.
const HUE_DELTA_DEGREES: i32 = 36;

/// Random brightness, contrast, saturation and hue changes, each applied with probability ½.
/// Half of the time contrast comes first, otherwise last, as in the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Photometric {
    contrast_first: bool,
    brightness: Option<f32>,
    contrast: Option<f32>,
    saturation: Option<f32>,
    hue: Option<f32>,
}

impl Photometric {
    /// Draws the changes (in the reference's order of decisions).
    pub(super) fn draw(rng: &mut impl Rng) -> Self {
        let contrast_first = rng.random_bool(0.5);
        let brightness = rng
            .random_bool(0.5)
            .then(|| rng.random_range(-BRIGHTNESS_DELTA..=BRIGHTNESS_DELTA));
        let mut contrast =
            (contrast_first && rng.random_bool(0.5)).then(|| rng.random_range(FACTOR_RANGE));
        let saturation = rng.random_bool(0.5).then(|| rng.random_range(FACTOR_RANGE));
        let hue = rng
            .random_bool(0.5)
            .then(|| rng.random_range(-HUE_DELTA_DEGREES..=HUE_DELTA_DEGREES) as f32);
        if !contrast_first && rng.random_bool(0.5) {
            contrast = Some(rng.random_range(FACTOR_RANGE));
        }
        Self {
            contrast_first,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }

    /// Brightness and contrast are per-value maps of 0..255, so they run as one lookup table
    /// each side of the HSV step (composing tables is exact); this runs on every pixel of every
    /// training image and was the loader's largest cost.
    pub(super) fn apply(&self, img: &mut RgbImage) {
        let mut before = IDENTITY;
        if let Some(beta) = self.brightness {
            before = scale_and_shift_table(1.0, beta);
        }
        if let (true, Some(alpha)) = (self.contrast_first, self.contrast) {
            before = compose(&before, &scale_and_shift_table(alpha, 0.0));
        }
        let mut after = IDENTITY;
        if let (false, Some(alpha)) = (self.contrast_first, self.contrast) {
            after = scale_and_shift_table(alpha, 0.0);
        }
        if self.saturation.is_none() && self.hue.is_none() {
            apply_table(img, &compose(&before, &after));
            return;
        }
        apply_table(img, &before);
        adjust_saturation_and_hue(img, self.saturation.unwrap_or(1.0), self.hue.unwrap_or(0.0));
        apply_table(img, &after);
    }
}

impl Photometric {
    /// The row [`photometric_on_device`] reads: contrast first (0/1), brightness shift,
    /// contrast factor, saturation factor, hue rotation in degrees; absent changes are their
    /// identity (0, 1, 1, 0).
    pub fn row(&self) -> [f32; PHOTOMETRIC_ROW] {
        [
            f32::from(u8::from(self.contrast_first)),
            self.brightness.unwrap_or(0.0),
            self.contrast.unwrap_or(1.0),
            self.saturation.unwrap_or(1.0),
            self.hue.unwrap_or(0.0),
        ]
    }
}

/// Values per image in [`Photometric::row`].
pub const PHOTOMETRIC_ROW: usize = 5;

/// Applies per-image photometric distortions (`rows [N, 5]`, [`Photometric::row`]) to a u8
/// batch `[N, 3, H, W]` in the contract's channel order, on its device: brightness (and contrast
/// when it comes first), the HSV saturation/hue step, then contrast when it comes last, each
/// rounded to 0..255 as the worker's lookup tables and HSV step do. Agrees with the worker path
/// within one level per value (ties round to even here, away from zero there). Returns u8.
pub fn photometric_on_device(
    images: &tch::Tensor,
    rows: &tch::Tensor,
    order: ColorOrder,
) -> tch::Tensor {
    use tch::{Kind, Tensor};
    let n = images.size()[0];
    let col = |i: i64| rows.select(1, i).view([n, 1, 1, 1]);
    let (contrast_first, beta, alpha, saturation, hue) = (col(0), col(1), col(2), col(3), col(4));
    // (tch: `a.where_self(&condition, &b)` is `condition ? a : b`.)
    let first = contrast_first.gt(0.5);
    let identity = alpha.ones_like();
    let before_alpha = alpha.where_self(&first, &identity);
    let after_alpha = identity.where_self(&first, &alpha);
    let level = |x: Tensor| x.round().clamp(0.0, 255.0);
    let x = images.to_kind(Kind::Float);
    let x = level(level(x + &beta) * &before_alpha);
    // RGB planes from the contract's order.
    let plane = |k: usize| {
        let c = (0..3)
            .find(|&c| rgb_index_of_channel(order, c) == k)
            .expect("every colour has a channel") as i64;
        x.narrow(1, c, 1)
    };
    let (r, g, b) = (plane(0), plane(1), plane(2));
    let max = r.maximum(&g).maximum(&b);
    let min = r.minimum(&g).minimum(&b);
    let chroma = &max - &min;
    let safe = chroma.clamp_min(1e-6);
    let from_g =
        ((&b - &r) / &safe + 2.0).where_self(&max.eq_tensor(&g), &((&r - &g) / &safe + 4.0));
    let sector = ((&g - &b) / &safe).where_self(&max.eq_tensor(&r), &from_g);
    let grey = chroma.le(0.0);
    let h = sector.zeros_like().where_self(&grey, &(&sector * 60.0));
    let s = chroma
        .zeros_like()
        .where_self(&grey, &(&chroma / max.clamp_min(1e-6)));
    // New hue and saturation; back to RGB by the closed form of the piecewise inverse:
    // channel(n) = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + h/60) mod 6, n = 5, 3, 1.
    let h = (h + &hue).remainder(360.0);
    let s = (s * &saturation).clamp(0.0, 1.0);
    let v = &max;
    let channel = |m: f64| {
        let k = (&h / 60.0 + m).remainder(6.0);
        let ramp = k.minimum(&(-&k + 4.0)).clamp(0.0, 1.0);
        v - v * &s * ramp
    };
    let rgb = [channel(5.0), channel(3.0), channel(1.0)];
    // Back to the contract's order; the worker rounds half up after clamping.
    let planes: Vec<Tensor> = (0..3)
        .map(|c| {
            let k = rgb_index_of_channel(order, c);
            (rgb[k].clamp(0.0, 255.0) + 0.5).floor()
        })
        .collect();
    let x = Tensor::cat(&planes, 1);
    level(x * &after_alpha).to_kind(Kind::Uint8)
}

/// The table that leaves every value as it is.
const IDENTITY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        t[v] = v as u8;
        v += 1;
    }
    t
};

/// `v·alpha + beta` for every value `v`, rounded and clamped to 0..255.
fn scale_and_shift_table(alpha: f32, beta: f32) -> [u8; 256] {
    std::array::from_fn(|v| (v as f32 * alpha + beta).round().clamp(0.0, 255.0) as u8)
}

/// `then` applied after `first`.
fn compose(first: &[u8; 256], then: &[u8; 256]) -> [u8; 256] {
    first.map(|v| then[v as usize])
}

fn apply_table(img: &mut RgbImage, table: &[u8; 256]) {
    if table != &IDENTITY {
        img.iter_mut().for_each(|v| *v = table[*v as usize]);
    }
}

/// `v·alpha + beta` on every channel, rounded and clamped to 0..255.
#[cfg(test)]
fn scale_and_shift(img: &mut RgbImage, alpha: f32, beta: f32) {
    apply_table(img, &scale_and_shift_table(alpha, beta));
}

/// Multiplies HSV saturation by `factor` (clamped to 1) and rotates hue by `degrees` (|degrees|
/// ≤ 360). Written without libm calls (`rem_euclid`, `round`), which cost more than the
/// arithmetic.
fn adjust_saturation_and_hue(img: &mut RgbImage, factor: f32, degrees: f32) {
    for px in img.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(px.0.map(f32::from));
        let rgb = hsv_to_rgb([wrap_degrees(h + degrees), (s * factor).clamp(0.0, 1.0), v]);
        px.0 = rgb.map(round_to_u8);
    }
}

/// `c` rounded half away from zero and clamped to 0..255, like `f32::round` but inlined; it
/// differs only for values within 2⁻²⁴ of a half, where `c + 0.5` itself rounds.
fn round_to_u8(c: f32) -> u8 {
    (c.clamp(0.0, 255.0) + 0.5) as u8
}

/// An angle in −360..720 degrees brought into 0..360.
fn wrap_degrees(h: f32) -> f32 {
    if h < 0.0 {
        h + 360.0
    } else if h >= 360.0 {
        h - 360.0
    } else {
        h
    }
}

/// RGB (0..255) → hue in degrees (0..360), saturation (0..1), value (0..255).
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if chroma == 0.0 {
        return [0.0, 0.0, max];
    }
    let sector = if max == r {
        (g - b) / chroma
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    [wrap_degrees(sector * 60.0), chroma / max, max]
}

/// Inverse of [`rgb_to_hsv`].
fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let chroma = v * s;
    let sector = h / 60.0; // 0..6
    let within_pair = sector - 2.0 * ((sector * 0.5) as u32) as f32; // sector mod 2
    let x = chroma * (1.0 - (within_pair - 1.0).abs());
    let (r, g, b) = match sector as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = v - chroma;
    [r + m, g + m, b + m]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::tensor::append_planar;
    use image::Rgb;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn photometric_distortion_on_the_device_matches_the_workers() {
        // Colourful pixels: every hue sector, greys, black and white.
        let img = RgbImage::from_fn(96, 64, |x, y| {
            let v = (x * 37 + y * 91) as u8;
            match (x + y) % 5 {
                0 => Rgb([v, v, v]),
                1 => Rgb([255, v, 0]),
                2 => Rgb([v, 255 - v, (y * 4) as u8]),
                3 => Rgb([0, 0, 0]),
                _ => Rgb([(x * 2) as u8, (y * 3) as u8, v]),
            }
        });
        let mut changed = 0;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for order in [ColorOrder::Bgr, ColorOrder::Rgb] {
            for _ in 0..30 {
                let p = Photometric::draw(&mut rng);
                let mut cpu = img.clone();
                p.apply(&mut cpu);
                let mut want = Vec::new();
                append_planar(&cpu, order, &mut want);
                let mut planar = Vec::new();
                append_planar(&img, order, &mut planar);
                let input = tch::Tensor::from_slice(&planar).view([1, 3, 64, 96]);
                let rows = tch::Tensor::from_slice(&p.row()).view([1, 5]);
                let got: Vec<u8> =
                    Vec::try_from(photometric_on_device(&input, &rows, order).flatten(0, -1))
                        .unwrap();
                let off: Vec<i32> = got
                    .iter()
                    .zip(&want)
                    .map(|(&a, &b)| i32::from(a) - i32::from(b))
                    .collect();
                let worst = off.iter().map(|d| d.abs()).max().unwrap();
                let differing = off.iter().filter(|d| **d != 0).count();
                assert!(worst <= 1, "{p:?} {order:?}: off by {worst}");
                // Ties: the hue step often lands on exact halves (integer inputs), where the two
                // formulas differ in the last bit.
                assert!(
                    differing * 25 < off.len(),
                    "{p:?}: {differing} values differ"
                );
                if want != planar {
                    changed += 1;
                }
            }
        }
        assert!(changed > 30, "only {changed} of 60 draws changed the image");
    }

    #[test]
    fn hsv_round_trip_and_hue_rotation() {
        for rgb in [
            [255.0, 0.0, 0.0],
            [10.0, 200.0, 90.0],
            [30.0, 30.0, 30.0],
            [0.0, 64.0, 255.0],
        ] {
            let back = hsv_to_rgb(rgb_to_hsv(rgb));
            for (a, b) in rgb.iter().zip(back) {
                assert!((a - b).abs() < 1e-3, "{rgb:?} -> {back:?}");
            }
        }
        // Pure red rotated by 120° is pure green; saturation 0 gives grey at the max value.
        let mut img = RgbImage::from_pixel(1, 1, Rgb([255, 0, 0]));
        adjust_saturation_and_hue(&mut img, 1.0, 120.0);
        assert_eq!(img.get_pixel(0, 0).0, [0, 255, 0]);
        adjust_saturation_and_hue(&mut img, 0.0, 0.0);
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    }

    /// The per-pixel HSV step as first written, with libm's `rem_euclid` and `round`.
    fn reference_saturation_and_hue(px: [u8; 3], factor: f32, degrees: f32) -> [u8; 3] {
        let [h, s, v] = rgb_to_hsv(px.map(f32::from));
        let rgb = hsv_to_rgb([
            (h + degrees).rem_euclid(360.0),
            (s * factor).clamp(0.0, 1.0),
            v,
        ]);
        rgb.map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn fast_hsv_step_matches_the_plain_formula() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut same, mut total) = (0, 0);
        for (factor, degrees) in [(1.0, 0.0), (0.5, -36.0), (1.5, 36.0), (1.2, -7.0)] {
            let pixels: Vec<[u8; 3]> = (0..20_000).map(|_| rng.random()).collect();
            let mut img = RgbImage::from_fn(200, 100, |x, y| Rgb(pixels[(y * 200 + x) as usize]));
            adjust_saturation_and_hue(&mut img, factor, degrees);
            for (px, out) in pixels.iter().zip(img.pixels()) {
                let expected = reference_saturation_and_hue(*px, factor, degrees);
                for (a, b) in expected.iter().zip(out.0) {
                    assert!(
                        a.abs_diff(b) <= 1,
                        "{px:?} → {:?}, expected {expected:?}",
                        out.0
                    );
                }
                same += usize::from(expected == out.0);
                total += 1;
            }
        }
        assert!(same * 1000 >= total * 999, "{same} of {total} identical");
    }

    #[test]
    fn photometric_tables_equal_the_steps_one_by_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let img = RgbImage::from_fn(64, 64, |_, _| Rgb(rng.random()));
        for seed in 0..64 {
            let p = Photometric::draw(&mut ChaCha8Rng::seed_from_u64(seed));
            let mut fast = img.clone();
            p.apply(&mut fast);
            let mut slow = img.clone();
            if let Some(beta) = p.brightness {
                scale_and_shift(&mut slow, 1.0, beta);
            }
            if let (true, Some(alpha)) = (p.contrast_first, p.contrast) {
                scale_and_shift(&mut slow, alpha, 0.0);
            }
            if p.saturation.is_some() || p.hue.is_some() {
                let (f, d) = (p.saturation.unwrap_or(1.0), p.hue.unwrap_or(0.0));
                adjust_saturation_and_hue(&mut slow, f, d);
            }
            if let (false, Some(alpha)) = (p.contrast_first, p.contrast) {
                scale_and_shift(&mut slow, alpha, 0.0);
            }
            assert!(fast == slow, "draw {seed}: {p:?}");
        }
    }

    #[test]
    fn brightness_and_contrast_clamp() {
        let mut img = RgbImage::from_pixel(1, 1, Rgb([10, 100, 250]));
        scale_and_shift(&mut img, 1.0, 20.0);
        assert_eq!(img.get_pixel(0, 0).0, [30, 120, 255]);
        scale_and_shift(&mut img, 1.5, 0.0);
        assert_eq!(img.get_pixel(0, 0).0, [45, 180, 255]);
    }
}
