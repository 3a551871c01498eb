//! Face alignment: the similarity transform that maps a face's five landmarks onto a template
//! ([`Similarity::estimate`]), and the bilinear warp of that face out of a video frame of any
//! of the detector's pixel formats into an embedding model's input tensor ([`warp_into`]).
//!
//! The template is the one ArcFace-style recognition networks are trained on
//! ([`ARCFACE_112`]: eyes, nose tip, mouth corners in a 112×112 crop). A similarity (rotation,
//! uniform scale, shift — no shear, no reflection) keeps the face's proportions, so the network
//! sees the face as in training whatever its position, size and roll in the frame.
//!
//! Pixels are read through [`crate::pixfmt`]'s one table of layouts (planes, subsampling,
//! component positions), so every format the detector takes can be warped without a conversion
//! of the whole frame; the tensor's colour order, mean and std are a
//! [`Normalisation`](crate::preprocess::Normalisation), as for the detector.

use crate::pixfmt::ColorModel;
use crate::preprocess::{Frame, FrameError, Normalisation, check_frame};

/// The five-point template of ArcFace-style networks for a 112×112 input (insightface's
/// `arcface_dst`): left eye, right eye, nose tip, left mouth corner, right mouth corner, in the
/// order RetinaFace gives its landmarks.
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The template for a `width`×`height` input: [`ARCFACE_112`] scaled by `width / 112` (the
/// template's own convention; other sizes are trained with it scaled the same way), shifted
/// down by the extra height of a non-square input.
pub fn template(width: usize, height: usize) -> [[f32; 2]; 5] {
    let s = width as f32 / 112.0;
    let dy = (height as f32 - width as f32) / 2.0;
    ARCFACE_112.map(|[x, y]| [x * s, y * s + dy])
}

/// `(x, y) ↦ (a·x − b·y + tx, b·x + a·y + ty)`: a rotation by `atan2(b, a)`, a uniform scale
/// by `hypot(a, b)` and a shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The similarity that maps `src` onto `dst` with the least sum of squared distances
    /// (closed form: the normal equations of the four parameters, which are linear in them;
    /// Umeyama's solution restricted to proper rotations). `None` when the source points all
    /// coincide or a coordinate is not finite: no transform is determined then.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Self> {
        if src.len() != dst.len() || src.len() < 2 {
            return None;
        }
        let n = src.len() as f64;
        let mean = |p: &[[f32; 2]]| {
            let (x, y) = p
                .iter()
                .fold((0.0, 0.0), |(x, y), q| (x + q[0] as f64, y + q[1] as f64));
            (x / n, y / n)
        };
        let ((sx, sy), (dx, dy)) = (mean(src), mean(dst));
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (px, py) = (s[0] as f64 - sx, s[1] as f64 - sy);
            let (qx, qy) = (d[0] as f64 - dx, d[1] as f64 - dy);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        // Points closer together than a millionth of a pixel determine no scale or angle.
        if norm.is_nan() || norm <= 1e-12 * n || !dot.is_finite() || !cross.is_finite() {
            return None;
        }
        let (a, b) = (dot / norm, cross / norm);
        Some(Self {
            a,
            b,
            tx: dx - (a * sx - b * sy),
            ty: dy - (b * sx + a * sy),
        })
    }

    pub fn apply(&self, [x, y]: [f64; 2]) -> [f64; 2] {
        [
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        ]
    }

    /// The scale factor (how many output pixels one source pixel becomes).
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The rotation in radians (counter-clockwise in x-right, y-up axes; clockwise on screen).
    pub fn angle(&self) -> f64 {
        self.b.atan2(self.a)
    }

    /// The inverse map; `None` for a zero scale.
    pub fn inverse(&self) -> Option<Self> {
        let k = self.a * self.a + self.b * self.b;
        if k.is_nan() || k <= 0.0 {
            return None;
        }
        let (a, b) = (self.a / k, -self.b / k);
        Some(Self {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// Why a face could not be aligned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("the face's landmarks determine no transform (they coincide or are not finite)")]
    Degenerate,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("tensor slot holds {got} values, a {width}×{height} input needs {needed}")]
    Slot {
        got: usize,
        width: usize,
        height: usize,
        needed: usize,
    },
}

/// Where the face with `landmarks` (frame pixels) lands in a `width`×`height` aligned crop.
pub fn face_to_crop(
    landmarks: &[[f32; 2]; 5],
    width: usize,
    height: usize,
) -> Result<Similarity, AlignError> {
    Similarity::estimate(landmarks, &template(width, height)).ok_or(AlignError::Degenerate)
}

/// Writes the face with `landmarks` (frame pixels) aligned onto the template into `slot`, a
/// planar `[3, height, width]` tensor normalised by `norm`. Each output pixel takes the
/// bilinear mix of the four frame pixels around the point it comes from (pixel centres at
/// integer coordinates, as OpenCV's `warpAffine`, which the template was made with); a point
/// outside the frame reads black (OpenCV's constant border). On YUV layouts each of the four
/// pixels is converted with the frame's matrix (its chroma sample is the one of its 2×2 block)
/// before they are mixed. Returns the transform used.
pub fn warp_into(
    frame: &Frame,
    landmarks: &[[f32; 2]; 5],
    width: usize,
    height: usize,
    norm: &Normalisation,
    slot: &mut [f32],
) -> Result<Similarity, AlignError> {
    check_frame(frame)?;
    let plane = width * height;
    if slot.len() != 3 * plane || plane == 0 {
        return Err(AlignError::Slot {
            got: slot.len(),
            width,
            height,
            needed: 3 * plane,
        });
    }
    let forward = face_to_crop(landmarks, width, height)?;
    let back = forward.inverse().ok_or(AlignError::Degenerate)?;
    let reader = Reader::new(frame);
    // The tensor channel each colour goes to, with its normalisation.
    let mut channel_of_color = [0; 3];
    for (c, &color) in norm.color_of_channel.iter().enumerate() {
        channel_of_color[color] = c;
    }
    for v in 0..height {
        for u in 0..width {
            let [x, y] = back.apply([u as f64, v as f64]);
            let rgb = reader.bilinear(x, y);
            for (color, value) in rgb.into_iter().enumerate() {
                let c = channel_of_color[color];
                slot[c * plane + v * width + u] = (value - norm.mean[c]) * norm.inv_std[c];
            }
        }
    }
    Ok(forward)
}

/// Reads RGB colours of single pixels of a frame through the pixel-format table.
struct Reader<'a> {
    frame: &'a Frame<'a>,
    format: crate::pixfmt::PixelFormat,
    yuv: Option<crate::pixfmt::YuvToRgb>,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a Frame<'a>) -> Self {
        let format = frame.layout.format();
        let yuv = matches!(format.model, ColorModel::Yuv).then(|| frame.matrix.to_rgb());
        Self { frame, format, yuv }
    }

    /// `[r, g, b]` in 0..255 of pixel (`x`, `y`), black outside the frame.
    fn pixel(&self, x: i64, y: i64) -> [f32; 3] {
        let f = self.frame;
        if x < 0 || y < 0 || x >= f.width as i64 || y >= f.height as i64 {
            return [0.0; 3];
        }
        let (x, y) = (x as usize, y as usize);
        let value = |i: usize| {
            let c = self.format.components[i];
            let p = self.format.planes[c.plane];
            let plane = &f.planes[c.plane];
            let at = (y / p.subsampling) * plane.stride
                + (x / p.subsampling) * p.bytes_per_sample
                + c.offset;
            plane.data[at]
        };
        match &self.yuv {
            Some(k) => k.rgb(value(0), value(1), value(2)),
            None => [value(0) as f32, value(1) as f32, value(2) as f32],
        }
    }

    fn bilinear(&self, x: f64, y: f64) -> [f32; 3] {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let p00 = self.pixel(x0, y0);
        let p10 = self.pixel(x0 + 1, y0);
        let p01 = self.pixel(x0, y0 + 1);
        let p11 = self.pixel(x0 + 1, y0 + 1);
        std::array::from_fn(|c| {
            let top = p00[c] + (p10[c] - p00[c]) * fx;
            let bottom = p01[c] + (p11[c] - p01[c]) * fx;
            top + (bottom - top) * fy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixfmt::{PixelLayout, YuvMatrix};
    use crate::preprocess::Plane;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Maps points by a known similarity written out by hand (not with `Similarity::apply`).
    fn map(points: &[[f32; 2]; 5], scale: f64, degrees: f64, shift: [f64; 2]) -> [[f32; 2]; 5] {
        let (s, c) = degrees.to_radians().sin_cos();
        points.map(|[x, y]| {
            let (x, y) = (x as f64, y as f64);
            [
                (scale * (c * x - s * y) + shift[0]) as f32,
                (scale * (s * x + c * y) + shift[1]) as f32,
            ]
        })
    }

    #[test]
    fn identity_is_recovered_from_the_template_itself() {
        let t = Similarity::estimate(&ARCFACE_112, &ARCFACE_112).unwrap();
        assert!(close(t.a, 1.0, 1e-9) && close(t.b, 0.0, 1e-9), "{t:?}");
        assert!(close(t.tx, 0.0, 1e-6) && close(t.ty, 0.0, 1e-6), "{t:?}");
    }

    #[test]
    fn pure_shift_scale_and_rotation_are_recovered_exactly() {
        // Source = template moved by a known similarity; the estimate must be its inverse.
        for (scale, degrees, shift) in [
            (1.0, 0.0, [100.0, -20.0]),
            (2.5, 0.0, [0.0, 0.0]),
            (1.0, 30.0, [0.0, 0.0]),
            (0.4, -75.0, [640.0, 360.0]),
            (3.0, 180.0, [12.5, 7.25]),
        ] {
            let src = map(&ARCFACE_112, scale, degrees, shift);
            let t = Similarity::estimate(&src, &ARCFACE_112).unwrap();
            assert!(
                close(t.scale(), 1.0 / scale, 1e-5),
                "{scale} {degrees}: {t:?}"
            );
            let angle = (-degrees).to_radians();
            let diff = (t.angle() - angle).rem_euclid(std::f64::consts::TAU);
            assert!(
                !(1e-5..=std::f64::consts::TAU - 1e-5).contains(&diff),
                "{degrees}: {t:?}"
            );
            for (s, d) in src.iter().zip(&ARCFACE_112) {
                let p = t.apply([s[0] as f64, s[1] as f64]);
                assert!(close(p[0], d[0] as f64, 1e-3) && close(p[1], d[1] as f64, 1e-3));
            }
        }
    }

    #[test]
    fn a_hand_computed_two_point_case() {
        // (0,0)→(10,10) and (1,0)→(10,12): scale 2, rotated by 90°, shifted by (10,10):
        // a = 0, b = 2, tx = 10, ty = 10.
        let t =
            Similarity::estimate(&[[0.0, 0.0], [1.0, 0.0]], &[[10.0, 10.0], [10.0, 12.0]]).unwrap();
        assert!(close(t.a, 0.0, 1e-12) && close(t.b, 2.0, 1e-12), "{t:?}");
        assert!(
            close(t.tx, 10.0, 1e-12) && close(t.ty, 10.0, 1e-12),
            "{t:?}"
        );
        let inv = t.inverse().unwrap();
        let p = inv.apply([10.0, 12.0]);
        assert!(close(p[0], 1.0, 1e-12) && close(p[1], 0.0, 1e-12), "{p:?}");
    }

    #[test]
    fn a_mirrored_face_is_not_fitted_by_a_reflection() {
        // Left and right swapped by a mirror: a similarity cannot reflect, so the best fit
        // shrinks the face (the x spread cancels) instead of flipping it.
        let mirrored = ARCFACE_112.map(|[x, y]| [112.0 - x, y]);
        let t = Similarity::estimate(&mirrored, &ARCFACE_112).unwrap();
        assert!(t.scale() < 0.9, "{t:?}");
    }

    #[test]
    fn noisy_points_give_the_least_squares_fit() {
        // Noise of ±0.5 px on a face twice the template's size: the estimate stays close to the
        // true transform, and no small change of it lowers the squared error (a minimum).
        let truth = map(&ARCFACE_112, 2.0, 12.0, [300.0, 200.0]);
        let noise = [
            [0.5, -0.3],
            [-0.4, 0.2],
            [0.1, 0.5],
            [-0.5, -0.5],
            [0.3, 0.1],
        ];
        let mut src = truth;
        for (p, n) in src.iter_mut().zip(noise) {
            p[0] += n[0];
            p[1] += n[1];
        }
        let t = Similarity::estimate(&src, &ARCFACE_112).unwrap();
        assert!(close(t.scale(), 0.5, 0.01), "{t:?}");
        assert!(close(t.angle(), (-12.0f64).to_radians(), 0.01), "{t:?}");
        let error = |t: &Similarity| -> f64 {
            src.iter()
                .zip(&ARCFACE_112)
                .map(|(s, d)| {
                    let p = t.apply([s[0] as f64, s[1] as f64]);
                    (p[0] - d[0] as f64).powi(2) + (p[1] - d[1] as f64).powi(2)
                })
                .sum()
        };
        let best = error(&t);
        for (da, db, dx, dy) in [
            (1e-4, 0.0, 0.0, 0.0),
            (-1e-4, 0.0, 0.0, 0.0),
            (0.0, 1e-4, 0.0, 0.0),
            (0.0, -1e-4, 0.0, 0.0),
            (0.0, 0.0, 0.01, 0.0),
            (0.0, 0.0, -0.01, 0.0),
            (0.0, 0.0, 0.0, 0.01),
            (0.0, 0.0, 0.0, -0.01),
        ] {
            let other = Similarity {
                a: t.a + da,
                b: t.b + db,
                tx: t.tx + dx,
                ty: t.ty + dy,
            };
            assert!(error(&other) > best, "not a minimum: {other:?}");
        }
    }

    #[test]
    fn coinciding_or_missing_points_determine_nothing() {
        let same = [[5.0, 5.0]; 5];
        assert_eq!(Similarity::estimate(&same, &ARCFACE_112), None);
        let mut nan = ARCFACE_112;
        nan[2][0] = f32::NAN;
        assert_eq!(Similarity::estimate(&nan, &ARCFACE_112), None);
        assert_eq!(
            Similarity::estimate(&ARCFACE_112[..1], &ARCFACE_112[..1]),
            None
        );
    }

    #[test]
    fn the_template_scales_with_the_input_size() {
        assert_eq!(template(112, 112), ARCFACE_112);
        let t = template(224, 224);
        assert!(close(t[0][0] as f64, 2.0 * 38.2946, 1e-4));
        // 112×128 (some recognisers): the face moves down by 8 px.
        assert!(close(template(112, 128)[2][1] as f64, 71.7366 + 8.0, 1e-4));
    }

    /// A 64×48 RGB test image whose colour is a smooth, known function of the position, so a
    /// bilinear read can be checked against the function itself.
    fn ramp(x: usize, y: usize) -> [u8; 3] {
        [(x * 3) as u8, (y * 4 + 10) as u8, (200 - x - y) as u8]
    }

    fn rgb_image(w: usize, h: usize) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| ramp(x, y)))
            .collect()
    }

    /// A BT.601 frame of `planes`.
    fn frame_of<'a>(
        layout: PixelLayout,
        width: usize,
        height: usize,
        planes: &'a [Plane<'a>],
    ) -> Frame<'a> {
        Frame {
            layout,
            width,
            height,
            planes,
            matrix: YuvMatrix::BT601,
        }
    }

    fn identity_norm() -> Normalisation {
        Normalisation {
            color_of_channel: [0, 1, 2],
            mean: [0.0; 3],
            inv_std: [1.0; 3],
        }
    }

    #[test]
    fn warped_crop_matches_an_independent_computation() {
        // A face at 0.25× the template size, rotated by 20° and shifted into the image.
        let (w, h) = (64, 48);
        let rgb = rgb_image(w, h);
        let planes = [Plane {
            data: &rgb,
            stride: w * 3,
        }];
        let frame = frame_of(PixelLayout::Rgb, w, h, &planes);
        let landmarks = map(&ARCFACE_112, 0.25, 20.0, [20.0, 5.0]);
        let mut slot = vec![0.0; 3 * 112 * 112];
        warp_into(&frame, &landmarks, 112, 112, &identity_norm(), &mut slot).unwrap();
        // Independently: crop pixel (u, v) comes from the inverse of the known map, i.e. scale
        // 4·(u, v)·R(20°)^-1 … written out: p = R(20°)·0.25·(u, v) + shift.
        let (s, c) = 20f64.to_radians().sin_cos();
        let mut checked = 0;
        for v in (0..112).step_by(7) {
            for u in (0..112).step_by(5) {
                let (uf, vf) = (u as f64 * 0.25, v as f64 * 0.25);
                let x = c * uf - s * vf + 20.0;
                let y = s * uf + c * vf + 5.0;
                if x < 0.0 || y < 0.0 || x > (w - 1) as f64 || y > (h - 1) as f64 {
                    continue;
                }
                // The ramp is linear inside the image, so bilinear reads it exactly (the blue
                // channel only while 200 − x − y stays positive, which holds here).
                let want = [3.0 * x, 4.0 * y + 10.0, 200.0 - x - y];
                for ch in 0..3 {
                    let got = slot[ch * 112 * 112 + v * 112 + u] as f64;
                    assert!(
                        close(got, want[ch], 0.02),
                        "({u},{v}) ch {ch}: {got} vs {}",
                        want[ch]
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} pixels inside the image");
        // A crop pixel whose source lies far outside the frame is black.
        let far = map(&ARCFACE_112, 0.25, 0.0, [-200.0, -200.0]);
        warp_into(&frame, &far, 112, 112, &identity_norm(), &mut slot).unwrap();
        assert!(slot.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn colour_order_mean_and_std_follow_the_normalisation() {
        // A uniform colour: every crop pixel inside is exactly that colour, normalised.
        let (w, h) = (40, 40);
        let bgrx: Vec<u8> = (0..w * h).flat_map(|_| [30u8, 60, 200, 255]).collect();
        let planes = [Plane {
            data: &bgrx,
            stride: w * 4,
        }];
        let frame = frame_of(PixelLayout::Bgrx, w, h, &planes);
        // ArcFace's normalisation, BGR channel order: channel 0 = blue.
        let norm = Normalisation {
            color_of_channel: [2, 1, 0],
            mean: [127.5; 3],
            inv_std: [1.0 / 128.0; 3],
        };
        let landmarks = map(&ARCFACE_112, 0.2, 0.0, [8.0, 8.0]);
        let mut slot = vec![0.0; 3 * 112 * 112];
        warp_into(&frame, &landmarks, 112, 112, &norm, &mut slot).unwrap();
        let centre = 56 * 112 + 56;
        let got = [
            slot[centre],
            slot[112 * 112 + centre],
            slot[2 * 112 * 112 + centre],
        ];
        let want = [
            (30.0 - 127.5) / 128.0,
            (60.0 - 127.5) / 128.0,
            (200.0 - 127.5) / 128.0,
        ];
        for c in 0..3 {
            assert!(close(got[c] as f64, want[c], 1e-6), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn yuv_frames_warp_like_their_rgb_conversion() {
        // An I420 and an NV12 frame of a smooth image, warped, against the same warp of their
        // own RGB conversion (done here per pixel with the matrix, its chroma per 2×2 block).
        let (w, h) = (48, 32);
        let luma: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (40 + 3 * x + 2 * y) as u8))
            .collect();
        let (cw, chh) = (w / 2, h / 2);
        let u: Vec<u8> = (0..chh)
            .flat_map(|y| (0..cw).map(move |x| (100 + 2 * x + y) as u8))
            .collect();
        let v: Vec<u8> = (0..chh)
            .flat_map(|y| (0..cw).map(move |x| (150 - x - 2 * y) as u8))
            .collect();
        let uv: Vec<u8> = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
        let matrix = YuvMatrix::BT709;
        let k = matrix.to_rgb();
        let rgb: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                let c = (y / 2) * cw + x / 2;
                k.rgb(luma[y * w + x], u[c], v[c]).map(|f| f.round() as u8)
            })
            .collect();
        let landmarks = map(&ARCFACE_112, 0.3, -15.0, [6.0, 4.0]);
        let warp = |layout, planes: &[Plane]| {
            let frame = Frame {
                layout,
                width: w,
                height: h,
                planes,
                matrix,
            };
            let mut slot = vec![0.0; 3 * 112 * 112];
            warp_into(&frame, &landmarks, 112, 112, &identity_norm(), &mut slot).unwrap();
            slot
        };
        let reference = warp(
            PixelLayout::Rgb,
            &[Plane {
                data: &rgb,
                stride: w * 3,
            }],
        );
        let i420 = warp(
            PixelLayout::I420,
            &[
                Plane {
                    data: &luma,
                    stride: w,
                },
                Plane {
                    data: &u,
                    stride: cw,
                },
                Plane {
                    data: &v,
                    stride: cw,
                },
            ],
        );
        let nv12 = warp(
            PixelLayout::Nv12,
            &[
                Plane {
                    data: &luma,
                    stride: w,
                },
                Plane {
                    data: &uv,
                    stride: w,
                },
            ],
        );
        for (name, got) in [("I420", &i420), ("NV12", &nv12)] {
            // Within the rounding of the reference's RGB bytes.
            let worst = got
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 0.51, "{name}: differs by {worst}");
        }
        assert!(
            reference.iter().any(|&v| v > 50.0),
            "the face is inside the frame"
        );
    }

    #[test]
    fn bad_slots_and_degenerate_faces_are_errors() {
        let rgb = rgb_image(8, 8);
        let planes = [Plane {
            data: &rgb,
            stride: 24,
        }];
        let frame = frame_of(PixelLayout::Rgb, 8, 8, &planes);
        let mut small = vec![0.0; 10];
        let err = warp_into(&frame, &ARCFACE_112, 112, 112, &identity_norm(), &mut small);
        assert!(
            matches!(err, Err(AlignError::Slot { needed: 37632, .. })),
            "{err:?}"
        );
        let mut slot = vec![0.0; 3 * 112 * 112];
        let err = warp_into(
            &frame,
            &[[1.0, 1.0]; 5],
            112,
            112,
            &identity_norm(),
            &mut slot,
        );
        assert_eq!(err, Err(AlignError::Degenerate));
        let short = Frame { width: 9, ..frame };
        let err = warp_into(&short, &ARCFACE_112, 112, 112, &identity_norm(), &mut slot);
        assert!(matches!(err, Err(AlignError::Frame(_))), "{err:?}");
    }
}
