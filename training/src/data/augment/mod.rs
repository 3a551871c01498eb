//! Training augmentation in the style of the biubug6 RetinaFace recipe ([`augment`]), made of
//! its [`geometry`] and [`photometric`] steps, and the conversion of an image to the network's
//! input layout ([`tensor`]).
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

pub mod geometry;
pub mod photometric;
pub mod tensor;

use image::RgbImage;
use rand::Rng;
use retinaface::ModelContract;

use crate::data::labels::FaceAnnotation;
use geometry::{RESIZE_FILTERS, mirror, normalise, pad_to_square, random_square_crop, resize};
pub use photometric::{PHOTOMETRIC_ROW, Photometric, photometric_on_device};
use tensor::mean_colour;
pub use tensor::{append_planar, normalise_on_device, to_network_input};

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

#[cfg(test)]
mod tests {
    use super::geometry::tests::{face, gradient};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
}
