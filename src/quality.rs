//! How good one picture of a face is, for choosing a track's **best shot** (the snapshot an event
//! carries, the picture a recogniser should use). GStreamer-free: a face (box, optional 5
//! landmarks, detector score) and a view of the luma around it in, a [`Quality`] out.
//!
//! The overall quality is the product of four factors, each in 0..=1, so a picture is only good
//! when it is good in every respect (a sharp profile or a blurred frontal face both score low):
//!
//! - **score**: the detector's confidence, as is;
//! - **size**: `min(1, face height / full_size)`: a face of `full_size` pixels or taller counts
//!   fully (112 px by default, the input of common recognition models); a smaller one in
//!   proportion;
//! - **frontal**: from the 5 landmarks (left eye, right eye, nose, left and right mouth corner).
//!   Yaw: the nose's horizontal position between the eyes, `1 − |(dl − dr) / (dl + dr)|`, where
//!   `dl`, `dr` are the nose's distances to the left and right eye along the line through the
//!   eyes (1 = centred, 0 = the nose at or past an eye: a profile). Pitch: the nose's height
//!   between the eye line and the mouth line, where 0.5 counts fully and the factor falls
//!   linearly to 0 at 0 or 1 (`1 − 2·|r − 0.5|`, clamped). Roll (a tilted head) does not count:
//!   alignment undoes it. Without landmarks the factor is [`UNKNOWN_FRONTAL`];
//! - **sharpness**: `v / (v + sharp_variance)`, where `v` is the variance of the Laplacian
//!   (4-neighbour kernel) of the face's luma resampled to [`SHARPNESS_SIZE`]² pixels (area
//!   averages), so faces of different sizes are compared at one scale and the factor measures
//!   blur rather than resolution. At `v = sharp_variance` the factor is 0.5.
//!
//! ```
//! use retinaface::quality::{assess, FaceBox, LumaView, QualityConfig};
//! let luma = vec![128u8; 64 * 64];
//! let view = LumaView { data: &luma, stride: 64, width: 64, height: 64 };
//! let face = FaceBox { bbox: [0.0, 0.0, 64.0, 64.0], landmarks: None, score: 0.9 };
//! let q = assess(&face, &view, &QualityConfig::default());
//! assert_eq!(q.sharpness, 0.0); // a flat grey face has no detail
//! ```

/// Frontal factor of a face without landmarks: neither rewarded nor ruled out.
pub const UNKNOWN_FRONTAL: f32 = 0.5;

/// Side of the square the face's luma is resampled to before measuring sharpness.
pub const SHARPNESS_SIZE: usize = 48;

/// The constants of the quality formula (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityConfig {
    /// Face height (pixels) from which the size factor is 1.
    pub full_size: f32,
    /// Laplacian variance at which the sharpness factor is 0.5.
    pub sharp_variance: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            full_size: 112.0,
            sharp_variance: 100.0,
        }
    }
}

/// A face as the quality sees it, in the pixels of the frame the luma comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// `[x_min, y_min, x_max, y_max]`.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose, left and right mouth corner; `None` when unknown.
    pub landmarks: Option<[[f32; 2]; 5]>,
    /// Detector confidence, 0..1.
    pub score: f32,
}

impl FaceBox {
    /// A face as the elements read it from a buffer: landmarks only when all five are there, a
    /// missing score counts as certain (the producer asserted a face).
    pub fn of_record(f: &crate::FaceRecord) -> Self {
        let landmarks = (f.landmarks.len() == 5).then(|| {
            let mut l = [[0f32; 2]; 5];
            for (d, s) in l.iter_mut().zip(&f.landmarks) {
                *d = [s[0] as f32, s[1] as f32];
            }
            l
        });
        Self {
            bbox: f.corners().map(|v| v as f32),
            landmarks,
            score: f.score.unwrap_or(1.0) as f32,
        }
    }
}

/// 8-bit luma samples; `data[y * stride + x]` is the pixel (x, y). The coordinates of a
/// [`FaceBox`] are taken relative to this view's origin, so a view may be the whole frame or a
/// crop of it with the box moved accordingly.
#[derive(Debug, Clone, Copy)]
pub struct LumaView<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl LumaView<'_> {
    fn at(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.stride + x]
    }
}

/// The factors and their product (each 0..=1, see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Quality {
    /// The product of the four factors below: what best shots are chosen by.
    pub overall: f32,
    pub score: f32,
    pub size: f32,
    pub frontal: f32,
    pub sharpness: f32,
}

/// The quality of `face` in `luma`.
pub fn assess(face: &FaceBox, luma: &LumaView, config: &QualityConfig) -> Quality {
    let score = face.score.clamp(0.0, 1.0);
    let height = (face.bbox[3] - face.bbox[1]).max(0.0);
    let size = (height / config.full_size.max(1.0)).clamp(0.0, 1.0);
    let frontal = face.landmarks.map_or(UNKNOWN_FRONTAL, |l| frontalness(&l));
    let v = laplacian_variance(luma, face.bbox);
    let sharpness = v / (v + config.sharp_variance.max(f32::MIN_POSITIVE));
    Quality {
        overall: score * size * frontal * sharpness,
        score,
        size,
        frontal,
        sharpness,
    }
}

/// Frontal factor from the 5 landmarks: yaw factor × pitch factor (module documentation).
pub fn frontalness(l: &[[f32; 2]; 5]) -> f32 {
    let [le, re, nose, lm, rm] = *l;
    let axis = [re[0] - le[0], re[1] - le[1]];
    let eye_distance = (axis[0] * axis[0] + axis[1] * axis[1]).sqrt();
    if eye_distance < 1e-3 {
        // Both eyes in one place: a full profile (or garbage).
        return 0.0;
    }
    let (ux, uy) = (axis[0] / eye_distance, axis[1] / eye_distance);
    // Along the eye line: 0 at the left eye, 1 at the right eye.
    let along = ((nose[0] - le[0]) * ux + (nose[1] - le[1]) * uy) / eye_distance;
    let yaw = (1.0 - (2.0 * along - 1.0).abs()).clamp(0.0, 1.0);
    // Across it (perpendicular, pointing down the face): eye line 0, mouth line 1.
    let (px, py) = (-uy, ux);
    let eye_mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let mouth_mid = [(lm[0] + rm[0]) / 2.0, (lm[1] + rm[1]) / 2.0];
    let mouth_depth = (mouth_mid[0] - eye_mid[0]) * px + (mouth_mid[1] - eye_mid[1]) * py;
    if mouth_depth < 1e-3 {
        return 0.0;
    }
    let nose_depth = ((nose[0] - eye_mid[0]) * px + (nose[1] - eye_mid[1]) * py) / mouth_depth;
    let pitch = (1.0 - 2.0 * (nose_depth - 0.5).abs()).clamp(0.0, 1.0);
    yaw * pitch
}

/// Variance of the 4-neighbour Laplacian of the luma inside `bbox` (clipped to the view),
/// resampled to [`SHARPNESS_SIZE`]² by area averages; 0 for an empty box.
pub fn laplacian_variance(luma: &LumaView, bbox: [f32; 4]) -> f32 {
    let x0 = bbox[0].max(0.0).floor() as usize;
    let y0 = bbox[1].max(0.0).floor() as usize;
    let x1 = (bbox[2].ceil().max(0.0) as usize).min(luma.width);
    let y1 = (bbox[3].ceil().max(0.0) as usize).min(luma.height);
    if x1 <= x0 + 2 || y1 <= y0 + 2 {
        return 0.0;
    }
    let n = SHARPNESS_SIZE;
    let small = resample(luma, (x0, y0, x1 - x0, y1 - y0), n);
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0f64);
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let c = small[y * n + x];
            let l = small[y * n + x - 1] + small[y * n + x + 1] + small[(y - 1) * n + x] - 4.0 * c
                + small[(y + 1) * n + x];
            sum += l as f64;
            sum2 += (l * l) as f64;
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum2 / count - mean * mean).max(0.0) as f32
}

/// The `w`×`h` region at (`x`, `y`) as an `n`×`n` float image: each output pixel is the mean of
/// the source pixels its footprint covers (at least the nearest one, when enlarging).
fn resample(luma: &LumaView, (x, y, w, h): (usize, usize, usize, usize), n: usize) -> Vec<f32> {
    let span = |i: usize, len: usize| {
        let a = i * len / n;
        let b = ((i + 1) * len / n).max(a + 1).min(len);
        (a, b)
    };
    let columns: Vec<(usize, usize)> = (0..n).map(|i| span(i, w)).collect();
    let mut out = Vec::with_capacity(n * n);
    for j in 0..n {
        let (ya, yb) = span(j, h);
        for &(xa, xb) in &columns {
            let mut total = 0u32;
            for yy in ya..yb {
                for xx in xa..xb {
                    total += luma.at(x + xx, y + yy) as u32;
                }
            }
            out.push(total as f32 / ((yb - ya) * (xb - xa)) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic "face": a `size`² checkerboard-ish texture of `cell`-pixel squares (contrast
    /// 60 ↔ 190) in a grey frame with a margin of 8, optionally box-blurred `blur` times.
    fn textured(size: usize, cell: usize, blur: usize) -> (Vec<u8>, usize) {
        let side = size + 16;
        let mut img: Vec<u8> = (0..side * side)
            .map(|i| {
                let (x, y) = (i % side, i / side);
                if (8..8 + size).contains(&x) && (8..8 + size).contains(&y) {
                    if ((x - 8) / cell + (y - 8) / cell).is_multiple_of(2) {
                        60
                    } else {
                        190
                    }
                } else {
                    128
                }
            })
            .collect();
        for _ in 0..blur {
            let prev = img.clone();
            for y in 1..side - 1 {
                for x in 1..side - 1 {
                    let mut s = 0u32;
                    for dy in 0..3 {
                        for dx in 0..3 {
                            s += prev[(y + dy - 1) * side + x + dx - 1] as u32;
                        }
                    }
                    img[y * side + x] = (s / 9) as u8;
                }
            }
        }
        (img, side)
    }

    /// Landmarks of a face in `[x0, y0, x0+s, y0+s]`; `nose_x` = the nose's position between the
    /// eyes (0.5 = frontal).
    fn landmarks(x0: f32, y0: f32, s: f32, nose_x: f32) -> [[f32; 2]; 5] {
        let (le, re) = (x0 + 0.3 * s, x0 + 0.7 * s);
        [
            [le, y0 + 0.4 * s],
            [re, y0 + 0.4 * s],
            [le + nose_x * (re - le), y0 + 0.55 * s],
            [x0 + 0.35 * s, y0 + 0.7 * s],
            [x0 + 0.65 * s, y0 + 0.7 * s],
        ]
    }

    fn quality(size: usize, blur: usize, nose_x: f32) -> Quality {
        let (img, side) = textured(size, (size / 8).max(2), blur);
        let view = LumaView {
            data: &img,
            stride: side,
            width: side,
            height: side,
        };
        let s = size as f32;
        let face = FaceBox {
            bbox: [8.0, 8.0, 8.0 + s, 8.0 + s],
            landmarks: Some(landmarks(8.0, 8.0, s, nose_x)),
            score: 0.9,
        };
        assess(&face, &view, &QualityConfig::default())
    }

    #[test]
    fn a_sharp_frontal_face_beats_a_blurred_one() {
        let sharp = quality(128, 0, 0.5);
        let blurred = quality(128, 6, 0.5);
        assert!(sharp.sharpness > 0.9, "{sharp:?}");
        assert!(
            blurred.sharpness < sharp.sharpness,
            "{blurred:?} vs {sharp:?}"
        );
        assert!(sharp.overall > blurred.overall);
    }

    #[test]
    fn a_frontal_face_beats_a_profile_and_a_half_turned_one_lies_between() {
        let frontal = quality(128, 0, 0.5);
        let turned = quality(128, 0, 0.25);
        let profile = quality(128, 0, 1.0);
        assert!((frontal.frontal - 1.0).abs() < 1e-5, "{frontal:?}");
        // Nose a quarter of the way from the left eye: |2·0.25 − 1| = 0.5 off centre.
        assert!((turned.frontal - 0.5).abs() < 1e-5, "{turned:?}");
        assert_eq!(profile.frontal, 0.0);
        assert!(frontal.overall > turned.overall && turned.overall > profile.overall);
    }

    #[test]
    fn a_larger_face_beats_a_smaller_one_of_the_same_sharpness() {
        let large = quality(112, 0, 0.5);
        let small = quality(56, 0, 0.5);
        assert_eq!(large.size, 1.0);
        assert!((small.size - 0.5).abs() < 1e-6);
        assert!(large.overall > small.overall, "{large:?} vs {small:?}");
    }

    #[test]
    fn roll_does_not_count_against_a_face() {
        // The frontal landmarks turned by 30° about their centre.
        let l = landmarks(0.0, 0.0, 100.0, 0.5);
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let rolled = l.map(|[x, y]| {
            [
                50.0 + (x - 50.0) * c - (y - 50.0) * s,
                50.0 + (x - 50.0) * s + (y - 50.0) * c,
            ]
        });
        assert!((frontalness(&rolled) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_nose_level_with_the_eyes_is_a_pitched_head() {
        let mut l = landmarks(0.0, 0.0, 100.0, 0.5);
        l[2][1] = l[0][1];
        assert_eq!(frontalness(&l), 0.0);
    }

    #[test]
    fn the_score_multiplies_and_missing_landmarks_count_half() {
        let (img, side) = textured(112, 14, 0);
        let view = LumaView {
            data: &img,
            stride: side,
            width: side,
            height: side,
        };
        let face = |score, landmarks| FaceBox {
            bbox: [8.0, 8.0, 120.0, 120.0],
            landmarks,
            score,
        };
        let config = QualityConfig::default();
        let full = assess(
            &face(1.0, Some(landmarks(8.0, 8.0, 112.0, 0.5))),
            &view,
            &config,
        );
        let half = assess(
            &face(0.5, Some(landmarks(8.0, 8.0, 112.0, 0.5))),
            &view,
            &config,
        );
        let unknown = assess(&face(1.0, None), &view, &config);
        assert!((half.overall - full.overall / 2.0).abs() < 1e-6);
        assert_eq!(unknown.frontal, UNKNOWN_FRONTAL);
        assert!((unknown.overall - full.overall * UNKNOWN_FRONTAL).abs() < 1e-6);
    }

    #[test]
    fn a_box_outside_the_view_or_empty_has_no_sharpness() {
        let img = vec![0u8; 100];
        let view = LumaView {
            data: &img,
            stride: 10,
            width: 10,
            height: 10,
        };
        assert_eq!(laplacian_variance(&view, [20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(laplacian_variance(&view, [-5.0, -5.0, -1.0, -1.0]), 0.0);
        assert_eq!(laplacian_variance(&view, [2.0, 2.0, 2.0, 9.0]), 0.0);
    }
}
