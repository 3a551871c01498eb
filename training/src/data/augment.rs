//! Training augmentation in the style of the biubug6 RetinaFace recipe, and the conversion of an
//! image to the network's input layout.
//!
//! Steps, in this order (the order matters for reproducing the published training):
//! 1. random square crop around at least one whole face (or the whole image when none is found);
//! 2. photometric distortion (brightness, contrast, saturation, hue) — applied after step 5
//!    instead when the crop is larger than the output, where it is cheaper;
//! 3. padding to a square with the mean colour, only when step 1 fell back to the whole image;
//! 4. horizontal mirror with probability ½;
//! 5. resize to `size`×`size` with a randomly chosen filter; normalisation per the
//!    [`ModelContract`] happens on the training device ([`normalise_on_device`]).
//!
//! Every random decision comes from the `rng` argument, so a seeded RNG reproduces the sample
//! exactly (the loader relies on this for `--resume`).

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::imageops;
use image::{Rgb, RgbImage};
use rand::Rng;
use retinaface::ModelContract;
use retinaface::contract::ColorOrder;
use retinaface::preprocess::{Normalisation, color_of_channel};

use super::labels::FaceAnnotation;

/// One augmented training sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmented {
    /// The augmented `size`×`size` image (not yet normalised).
    pub image: RgbImage,
    /// Faces in the augmented image, normalised to 0..1 of its width and height.
    pub faces: Vec<FaceAnnotation>,
    /// The photometric distortion left for the training device ([`augment_deferring`]).
    pub photometric: Option<Photometric>,
}

/// Crop side as a fraction of the image's short side; smaller crops zoom in on small faces.
const CROP_SCALES: [f32; 5] = [0.3, 0.45, 0.6, 0.8, 1.0];
/// Crop attempts before falling back to the whole (padded) image.
const CROP_TRIES: usize = 250;
/// Largest brightness shift, in 0..255 pixel units.
const BRIGHTNESS_DELTA: f32 = 32.0;
/// Contrast and saturation factors are drawn from this range.
const FACTOR_RANGE: std::ops::RangeInclusive<f32> = 0.5..=1.5;
/// Largest hue shift in degrees. The reference shifts OpenCV's 8-bit hue (0..180, i.e. 2° per
/// unit) by up to ±18 units, which is ±36°.
const HUE_DELTA_DEGREES: i32 = 36;
/// Resize filters, one picked at random per sample so the network does not learn one filter's
/// artefacts (the reference picks among linear, cubic, area, nearest and Lanczos).
const RESIZE_FILTERS: [ResizeAlg; 5] = [
    ResizeAlg::Convolution(FilterType::Bilinear),
    ResizeAlg::Convolution(FilterType::CatmullRom),
    ResizeAlg::Convolution(FilterType::Gaussian),
    ResizeAlg::Nearest,
    ResizeAlg::Convolution(FilterType::Lanczos3),
];
/// Faces narrower or shorter than this many output pixels cannot be matched to any prior.
const MIN_FACE_PIXELS: f32 = 1.0;

/// Augments one image with its faces (pixel coordinates) into a `size`×`size` network input.
pub fn augment(
    image: &RgbImage,
    faces: &[FaceAnnotation],
    size: u32,
    contract: &ModelContract,
    rng: &mut impl Rng,
) -> Augmented {
    augment_deferring(image, faces, size, contract, rng, false)
}

/// [`augment`], but with `defer_photometric` the photometric distortion is drawn (the same
/// random draws) and returned instead of applied: the training device applies it to the batch
/// ([`photometric_on_device`]), taking the loader's costliest per-pixel step off the workers.
pub fn augment_deferring(
    image: &RgbImage,
    faces: &[FaceAnnotation],
    size: u32,
    contract: &ModelContract,
    rng: &mut impl Rng,
    defer_photometric: bool,
) -> Augmented {
    let cropped = random_square_crop(image, faces, rng);
    let cropped_ok = cropped.is_some();
    let (mut img, mut faces) = cropped.unwrap_or_else(|| (image.clone(), faces.to_vec()));
    let photometric = Photometric::draw(rng);
    // The distortion is per pixel: it runs on whichever of the crop and the output is smaller
    // (a full-size crop of a 1024-px photo has 2.5× the pixels of a 640² input). The reference
    // always distorts the crop; the difference is only in how resampling mixes clamped values.
    let distort_first = img.width().max(img.height()) <= size && !defer_photometric;
    if distort_first {
        photometric.apply(&mut img);
    }
    if !cropped_ok {
        img = pad_to_square(&img, mean_colour(contract));
    }
    if rng.random_bool(0.5) {
        mirror(&mut img, &mut faces);
    }
    let filter = RESIZE_FILTERS[rng.random_range(0..RESIZE_FILTERS.len())];
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        // Nothing to see: a mean-coloured input (all zeros after normalisation) and no faces.
        return Augmented {
            image: RgbImage::from_pixel(size, size, mean_colour(contract)),
            faces: Vec::new(),
            photometric: None,
        };
    }
    let mut resized = if (w, h) == (size, size) {
        img
    } else {
        resize(&img, size, filter)
    };
    if !distort_first && !defer_photometric {
        photometric.apply(&mut resized);
    }
    let faces = faces
        .iter()
        .map(|f| normalise(f, w as f32, h as f32))
        .filter(|f| {
            let [x0, y0, x1, y1] = f.bbox;
            (x1 - x0) * size as f32 >= MIN_FACE_PIXELS && (y1 - y0) * size as f32 >= MIN_FACE_PIXELS
        })
        .collect();
    Augmented {
        image: resized,
        faces,
        photometric: defer_photometric.then_some(photometric),
    }
}

/// Resizes to `size`×`size` with `fast_image_resize` (SIMD; the loader's largest cost after
/// JPEG decoding).
fn resize(img: &RgbImage, size: u32, filter: ResizeAlg) -> RgbImage {
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .expect("buffer fits its size");
    let mut dst = FirImage::new(size, size, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(filter))
        .expect("same pixel type");
    RgbImage::from_raw(size, size, dst.into_vec()).expect("size×size×3 bytes")
}

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
fn rgb_index_of_channel(order: ColorOrder, c: usize) -> usize {
    color_of_channel(order)[c]
}

/// The RGB colour that normalises to zero: padding then looks like "no signal" to the network.
fn mean_colour(contract: &ModelContract) -> Rgb<u8> {
    Rgb(Normalisation::for_contract(contract).mean_rgb())
}

/// Tries random square crops (side = a [`CROP_SCALES`] fraction of the short side) until one
/// wholly contains at least one face. Faces whose centre lies inside the crop are kept, boxes
/// clipped to the crop and landmarks clamped to it, all shifted to the crop's origin. `None` when
/// no attempt succeeds (for example an image without faces).
fn random_square_crop(
    image: &RgbImage,
    faces: &[FaceAnnotation],
    rng: &mut impl Rng,
) -> Option<(RgbImage, Vec<FaceAnnotation>)> {
    let (width, height) = image.dimensions();
    let short_side = width.min(height);
    for _ in 0..CROP_TRIES {
        let scale = CROP_SCALES[rng.random_range(0..CROP_SCALES.len())];
        let side = (scale * short_side as f32) as u32;
        if side == 0 {
            continue;
        }
        let left = rng.random_range(0..=width - side);
        let top = rng.random_range(0..=height - side);
        let roi = [
            left as f32,
            top as f32,
            (left + side) as f32,
            (top + side) as f32,
        ];
        if !faces.iter().any(|f| box_within(f.bbox, roi)) {
            continue;
        }
        let kept: Vec<FaceAnnotation> = faces
            .iter()
            .filter(|f| centre_inside(f.bbox, roi))
            .map(|f| shift_into(f, roi))
            .collect();
        if kept.is_empty() {
            continue;
        }
        let crop = imageops::crop_imm(image, left, top, side, side).to_image();
        return Some((crop, kept));
    }
    None
}

fn box_within(b: [f32; 4], roi: [f32; 4]) -> bool {
    b[0] >= roi[0] && b[1] >= roi[1] && b[2] <= roi[2] && b[3] <= roi[3]
}

fn centre_inside(b: [f32; 4], roi: [f32; 4]) -> bool {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    roi[0] < cx && cx < roi[2] && roi[1] < cy && cy < roi[3]
}

/// The face in the coordinates of the crop `roi`, clipped to it.
fn shift_into(face: &FaceAnnotation, roi: [f32; 4]) -> FaceAnnotation {
    let (side_x, side_y) = (roi[2] - roi[0], roi[3] - roi[1]);
    let b = face.bbox;
    FaceAnnotation {
        bbox: [
            b[0].max(roi[0]) - roi[0],
            b[1].max(roi[1]) - roi[1],
            b[2].min(roi[2]) - roi[0],
            b[3].min(roi[3]) - roi[1],
        ],
        landmarks: face.landmarks.map(|points| {
            points.map(|[x, y]| {
                [
                    (x - roi[0]).clamp(0.0, side_x),
                    (y - roi[1]).clamp(0.0, side_y),
                ]
            })
        }),
    }
}

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
    fn draw(rng: &mut impl Rng) -> Self {
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
    fn apply(&self, img: &mut RgbImage) {
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

/// Puts the image in the top-left corner of a square of `fill`; faces keep their coordinates.
fn pad_to_square(img: &RgbImage, fill: Rgb<u8>) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut square = RgbImage::from_pixel(side, side, fill);
    imageops::replace(&mut square, img, 0, 0);
    square
}

/// Flips the image left-right. Boxes and landmarks are mirrored (`x → width − x`, the pixel-edge
/// convention of the boxes), and left/right eyes and mouth corners swap names: the person's left
/// eye appears on the other side after the flip.
fn mirror(img: &mut RgbImage, faces: &mut [FaceAnnotation]) {
    imageops::flip_horizontal_in_place(img);
    let width = img.width() as f32;
    for face in faces {
        let [x0, y0, x1, y1] = face.bbox;
        face.bbox = [width - x1, y0, width - x0, y1];
        if let Some(points) = &mut face.landmarks {
            for p in points.iter_mut() {
                p[0] = width - p[0];
            }
            points.swap(0, 1);
            points.swap(3, 4);
        }
    }
}

/// Pixel coordinates → 0..1 of the image size.
fn normalise(face: &FaceAnnotation, width: f32, height: f32) -> FaceAnnotation {
    let [x0, y0, x1, y1] = face.bbox;
    FaceAnnotation {
        bbox: [x0 / width, y0 / height, x1 / width, y1 / height],
        landmarks: face
            .landmarks
            .map(|points| points.map(|[x, y]| [x / width, y / height])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn face(bbox: [f32; 4]) -> FaceAnnotation {
        FaceAnnotation {
            bbox,
            landmarks: None,
        }
    }

    /// A gradient so that flips and crops are visible in the pixels.
    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
    }

    #[test]
    fn mirror_swaps_left_and_right_and_mirrors_x() {
        let mut img = gradient(100, 50);
        let mut faces = [FaceAnnotation {
            bbox: [10.0, 5.0, 30.0, 25.0],
            landmarks: Some([
                [14.0, 10.0],
                [26.0, 11.0],
                [20.0, 15.0],
                [15.0, 20.0],
                [25.0, 21.0],
            ]),
        }];
        mirror(&mut img, &mut faces);
        assert_eq!(img.get_pixel(0, 3).0, [99, 3, 7]);
        assert_eq!(img.get_pixel(99, 3).0, [0, 3, 7]);
        assert_eq!(faces[0].bbox, [70.0, 5.0, 90.0, 25.0]);
        // The old right eye (x 26) becomes the left eye at 100 − 26.
        assert_eq!(
            faces[0].landmarks,
            Some([
                [74.0, 11.0],
                [86.0, 10.0],
                [80.0, 15.0],
                [75.0, 21.0],
                [85.0, 20.0]
            ])
        );
    }

    #[test]
    fn crop_keeps_only_faces_whose_centre_is_inside() {
        let img = gradient(200, 100);
        let inside = FaceAnnotation {
            bbox: [40.0, 40.0, 60.0, 60.0],
            landmarks: Some([[45.0, 45.0]; 5]),
        };
        let faces = [
            inside,
            face([0.0, 0.0, 6.0, 6.0]),
            face([150.0, 10.0, 190.0, 90.0]),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let (crop, kept) = random_square_crop(&img, &faces, &mut rng).unwrap();
            let side = crop.width();
            assert_eq!(crop.height(), side);
            assert!([30, 45, 60, 80, 100].contains(&side), "{side}");
            // Recover the crop origin from the gradient pixel at its corner.
            let [left, top, _] = crop.get_pixel(0, 0).0.map(f32::from);
            let roi = [left, top, left + side as f32, top + side as f32];
            let expected: Vec<_> = faces
                .iter()
                .filter(|f| centre_inside(f.bbox, roi))
                .collect();
            assert!(faces.iter().any(|f| box_within(f.bbox, roi)), "{roi:?}");
            assert_eq!(kept.len(), expected.len(), "{roi:?}");
            for (k, f) in kept.iter().zip(expected) {
                assert_eq!(k.bbox[0], f.bbox[0].max(left) - left);
                assert_eq!(k.bbox[3], f.bbox[3].min(roi[3]) - top);
                assert!(k.bbox.iter().all(|v| (0.0..=side as f32).contains(v)));
            }
        }
    }

    #[test]
    fn hand_computed_crop_shift() {
        let f = FaceAnnotation {
            bbox: [5.0, 12.0, 30.0, 50.0],
            landmarks: Some([
                [8.0, 15.0],
                [28.0, 15.0],
                [12.0, 30.0],
                [9.0, 45.0],
                [60.0, 45.0],
            ]),
        };
        let s = shift_into(&f, [10.0, 10.0, 40.0, 40.0]);
        assert_eq!(s.bbox, [0.0, 2.0, 20.0, 30.0]);
        assert_eq!(
            s.landmarks,
            Some([
                [0.0, 5.0],
                [18.0, 5.0],
                [2.0, 20.0],
                [0.0, 30.0],
                [30.0, 30.0]
            ])
        );
    }

    #[test]
    fn crop_without_faces_falls_back_to_padded_whole_image() {
        let img = gradient(40, 20);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(random_square_crop(&img, &[], &mut rng).is_none());
        let padded = pad_to_square(&img, Rgb([1, 2, 3]));
        assert_eq!(padded.dimensions(), (40, 40));
        assert_eq!(padded.get_pixel(39, 19).0, [39, 19, 7]);
        assert_eq!(padded.get_pixel(39, 20).0, [1, 2, 3]);
    }

    #[test]
    fn augment_gives_requested_size_and_normalised_faces() {
        let img = gradient(120, 80);
        let faces = [
            FaceAnnotation {
                bbox: [30.0, 20.0, 60.0, 56.0],
                landmarks: Some([
                    [40.0, 30.0],
                    [50.0, 30.0],
                    [45.0, 40.0],
                    [40.0, 50.0],
                    [50.0, 50.0],
                ]),
            },
            face([100.0, 70.0, 100.2, 70.2]),
        ];
        let contract = ModelContract::default();
        let mut with_faces = 0;
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = augment(&img, &faces, 64, &contract, &mut rng);
            assert_eq!(out.image.dimensions(), (64, 64));
            // The 0.2 px face is below one output pixel at every crop scale: always dropped.
            assert!(out.faces.len() <= 1, "seed {seed}: {:?}", out.faces);
            with_faces += out.faces.len();
            for f in &out.faces {
                let [x0, y0, x1, y1] = f.bbox;
                assert!(0.0 <= x0 && x0 < x1 && x1 <= 1.0, "{f:?}");
                assert!(0.0 <= y0 && y0 < y1 && y1 <= 1.0, "{f:?}");
                assert!((x1 - x0) * 64.0 >= 1.0 && (y1 - y0) * 64.0 >= 1.0, "{f:?}");
                assert!(f.landmarks.is_some(), "only the big face can remain: {f:?}");
            }
        }
        assert!(
            with_faces >= 10,
            "the big face survives most crops: {with_faces}/20"
        );
    }

    #[test]
    fn same_rng_seed_same_result() {
        let img = gradient(90, 70);
        let faces = [face([20.0, 20.0, 50.0, 50.0])];
        let c = ModelContract::default();
        let a = augment(&img, &faces, 32, &c, &mut ChaCha8Rng::seed_from_u64(9));
        let b = augment(&img, &faces, 32, &c, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b);
    }

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
    fn deferring_the_distortion_draws_the_same_randomness() {
        let img = gradient(90, 70);
        let faces = [face([20.0, 20.0, 50.0, 50.0])];
        let c = ModelContract::default();
        let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(4), ChaCha8Rng::seed_from_u64(4));
        let a = augment(&img, &faces, 64, &c, &mut r1);
        let b = augment_deferring(&img, &faces, 64, &c, &mut r2, true);
        assert_eq!(a.faces, b.faces);
        assert!(a.photometric.is_none() && b.photometric.is_some());
        assert_eq!(r1.random::<u64>(), r2.random::<u64>());
    }

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
