//! The geometric steps of augmentation: the random square crop around whole faces, padding to a
//! square, the mirror (with left/right landmarks swapped), the resize to the network's input
//! size, and face coordinates from pixels to 0..1.

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::imageops;
use image::{Rgb, RgbImage};
use rand::Rng;

use crate::data::labels::FaceAnnotation;

/// Crop side as a fraction of the image's short side; smaller crops zoom in on small faces.
const CROP_SCALES: [f32; 5] = [0.3, 0.45, 0.6, 0.8, 1.0];
/// Crop attempts before falling back to the whole (padded) image.
const CROP_TRIES: usize = 250;
/// Resize filters, one picked at random per sample so the network does not learn one filter's
/// artefacts (the reference picks among linear, cubic, area, nearest and Lanczos).
pub(super) const RESIZE_FILTERS: [ResizeAlg; 5] = [
    ResizeAlg::Convolution(FilterType::Bilinear),
    ResizeAlg::Convolution(FilterType::CatmullRom),
    ResizeAlg::Convolution(FilterType::Gaussian),
    ResizeAlg::Nearest,
    ResizeAlg::Convolution(FilterType::Lanczos3),
];

/// Resizes to `size`×`size` with `fast_image_resize` (SIMD; the loader's largest cost after
/// JPEG decoding).
pub(super) fn resize(img: &RgbImage, size: u32, filter: ResizeAlg) -> RgbImage {
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .expect("buffer fits its size");
    let mut dst = FirImage::new(size, size, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(filter))
        .expect("same pixel type");
    RgbImage::from_raw(size, size, dst.into_vec()).expect("size×size×3 bytes")
}

/// Tries random square crops (side = a [`CROP_SCALES`] fraction of the short side) until one
/// wholly contains at least one face. Faces whose centre lies inside the crop are kept, boxes
/// clipped to the crop and landmarks clamped to it, all shifted to the crop's origin. `None` when
/// no attempt succeeds (for example an image without faces).
pub(super) fn random_square_crop(
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

/// Puts the image in the top-left corner of a square of `fill`; faces keep their coordinates.
pub(super) fn pad_to_square(img: &RgbImage, fill: Rgb<u8>) -> RgbImage {
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
pub(super) fn mirror(img: &mut RgbImage, faces: &mut [FaceAnnotation]) {
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
pub(super) fn normalise(face: &FaceAnnotation, width: f32, height: f32) -> FaceAnnotation {
    let [x0, y0, x1, y1] = face.bbox;
    FaceAnnotation {
        bbox: [x0 / width, y0 / height, x1 / width, y1 / height],
        landmarks: face
            .landmarks
            .map(|points| points.map(|[x, y]| [x / width, y / height])),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    pub(crate) fn face(bbox: [f32; 4]) -> FaceAnnotation {
        FaceAnnotation {
            bbox,
            landmarks: None,
        }
    }

    /// A gradient so that flips and crops are visible in the pixels.
    pub(crate) fn gradient(w: u32, h: u32) -> RgbImage {
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
}
