//! The picture of a face: a crop of a frame in any of the pixel table's layouts as packed RGB
//! (what a JPEG encoder takes), and its luma (what [`crate::quality`] measures).

use crate::pixfmt::ColorModel;
use crate::preprocess::Frame;
use crate::quality::{self, FaceBox, LumaView, Quality, QualityConfig};

/// Packed 8-bit RGB pixels, `width * height * 3` bytes, rows without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// BT.601 luma of every pixel, `width * height` bytes (a [`crate::quality::LumaView`] with
    /// `stride = width`).
    pub fn luma(&self) -> Vec<u8> {
        self.data
            .chunks_exact(3)
            .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
            .collect()
    }
}

/// The luma of the pixels of `bbox` (clipped to the frame), `width * height` bytes, and where
/// they start in the frame: for YUV layouts the Y samples as they are, for packed RGB the same
/// BT.601 weights as [`RgbImage::luma`]. What [`crate::quality`] measures, without converting
/// colour. `None` when nothing of the box lies inside the frame.
pub fn face_luma(frame: &Frame, bbox: [f32; 4]) -> Option<(Vec<u8>, [usize; 4])> {
    let [x0, y0, x1, y1] = clip_box(frame, bbox, 0.0)?;
    let (w, h) = (x1 - x0, y1 - y0);
    let format = frame.layout.format();
    let mut luma = Vec::with_capacity(w * h);
    match format.model {
        ColorModel::Yuv => {
            let comp = format.components[0];
            let bps = format.planes[comp.plane].bytes_per_sample;
            let p = &frame.planes[comp.plane];
            for y in y0..y1 {
                let row = &p.data[y * p.stride..];
                luma.extend((x0..x1).map(|x| row[x * bps + comp.offset]));
            }
        }
        ColorModel::Rgb => {
            let rgb = crop_rgb(frame, x0, y0, w, h);
            luma = rgb.luma();
        }
    }
    Some((luma, [x0, y0, w, h]))
}

/// The quality of `face` in `frame` (its pixels); with no frame (unreadable), or a box outside
/// it, the quality of a face without sharpness. What the publish and identify elements choose
/// best shots by.
pub fn face_quality(face: &FaceBox, frame: Option<&Frame>, config: &QualityConfig) -> Quality {
    let Some((luma, [x0, y0, w, h])) = frame.and_then(|f| face_luma(f, face.bbox)) else {
        let empty = LumaView {
            data: &[],
            stride: 0,
            width: 0,
            height: 0,
        };
        return quality::assess(face, &empty, config);
    };
    let view = LumaView {
        data: &luma,
        stride: w,
        width: w,
        height: h,
    };
    // The luma starts at (x0, y0): the box is taken relative to it.
    let (dx, dy) = (x0 as f32, y0 as f32);
    let b = face.bbox;
    let shifted = FaceBox {
        bbox: [b[0] - dx, b[1] - dy, b[2] - dx, b[3] - dy],
        ..*face
    };
    quality::assess(&shifted, &view, config)
}

/// `bbox` grown by `margin` × its size on every side, clipped to the frame, as pixel corners.
fn clip_box(frame: &Frame, bbox: [f32; 4], margin: f32) -> Option<[usize; 4]> {
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let clip = |v: f32, max: usize| (v.max(0.0) as usize).min(max);
    let x0 = clip((bbox[0] - margin * w).floor(), frame.width);
    let y0 = clip((bbox[1] - margin * h).floor(), frame.height);
    let x1 = clip((bbox[2] + margin * w).ceil(), frame.width);
    let y1 = clip((bbox[3] + margin * h).ceil(), frame.height);
    (x1 > x0 && y1 > y0).then_some([x0, y0, x1, y1])
}

/// The pixels of `[x_min, y_min, x_max, y_max]` grown by `margin` × its width/height on every
/// side, clipped to the frame, as RGB; also where the crop starts in the frame. `None` when
/// nothing of it lies inside the frame.
pub fn face_crop(frame: &Frame, bbox: [f32; 4], margin: f32) -> Option<(RgbImage, [usize; 2])> {
    let [x0, y0, x1, y1] = clip_box(frame, bbox, margin)?;
    Some((crop_rgb(frame, x0, y0, x1 - x0, y1 - y0), [x0, y0]))
}

/// The `w`×`h` pixels at (`x`, `y`) of `frame` as RGB (the caller keeps them inside the frame).
pub fn crop_rgb(frame: &Frame, x: usize, y: usize, w: usize, h: usize) -> RgbImage {
    let format = frame.layout.format();
    let mut data = Vec::with_capacity(w * h * 3);
    // Byte position of component `c` of pixel (px, py).
    let at = |c: usize, px: usize, py: usize| {
        let comp = format.components[c];
        let plane = format.planes[comp.plane];
        let p = &frame.planes[comp.plane];
        let (sx, sy) = (px / plane.subsampling, py / plane.subsampling);
        p.data[sy * p.stride + sx * plane.bytes_per_sample + comp.offset]
    };
    let yuv = frame.matrix.to_rgb();
    for py in y..y + h {
        for px in x..x + w {
            let [a, b, c] = [at(0, px, py), at(1, px, py), at(2, px, py)];
            match format.model {
                ColorModel::Rgb => data.extend_from_slice(&[a, b, c]),
                ColorModel::Yuv => {
                    data.extend(yuv.rgb(a, b, c).map(|v| v.round() as u8));
                }
            }
        }
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixfmt::{PixelLayout, YuvMatrix};
    use crate::preprocess::Plane;

    #[test]
    fn a_bgrx_crop_comes_out_as_rgb() {
        // 4×2 BGRx frame: pixel (x, y) has R = 10x + y, G = 100, B = 200.
        let mut bytes = Vec::new();
        for y in 0..2u8 {
            for x in 0..4u8 {
                bytes.extend_from_slice(&[200, 100, 10 * x + y, 0]);
            }
        }
        let planes = [Plane {
            data: &bytes,
            stride: 16,
        }];
        let frame = Frame {
            layout: PixelLayout::Bgrx,
            width: 4,
            height: 2,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let crop = crop_rgb(&frame, 1, 1, 2, 1);
        assert_eq!(crop.data, [11, 100, 200, 21, 100, 200]);
        assert_eq!(
            crop.luma(),
            [
                (77 * 11 + 150 * 100 + 29 * 200) >> 8,
                (77 * 21 + 150 * 100 + 29 * 200) >> 8
            ]
            .map(|v: u32| v as u8)
        );
    }

    #[test]
    fn an_i420_crop_reads_its_chroma_at_half_resolution_and_a_margin_is_clipped() {
        // 4×4 I420, full-range BT.601: Y = 128 everywhere, U = V = 128 (grey) except the
        // bottom-right chroma sample, V = 255 (red-ish).
        let ys = [128u8; 16];
        let us = [128u8; 4];
        let vs = [128, 128, 128, 255];
        let planes = [
            Plane {
                data: &ys,
                stride: 4,
            },
            Plane {
                data: &us,
                stride: 2,
            },
            Plane {
                data: &vs,
                stride: 2,
            },
        ];
        let frame = Frame {
            layout: PixelLayout::I420,
            width: 4,
            height: 4,
            planes: &planes,
            matrix: YuvMatrix::BT601.with_full_range(true),
        };
        let (crop, origin) = face_crop(&frame, [2.0, 2.0, 4.0, 4.0], 0.5).unwrap();
        assert_eq!(origin, [1, 1]);
        assert_eq!((crop.width, crop.height), (3, 3));
        // (1, 1) is grey; (3, 3) has V = 255: R = 128 + 1.402 × 127 clamps to 255.
        assert_eq!(&crop.data[..3], &[128, 128, 128]);
        assert_eq!(crop.data[8 * 3], 255);
        assert!(face_crop(&frame, [5.0, 5.0, 9.0, 9.0], 0.0).is_none());
    }

    #[test]
    fn face_luma_is_the_y_plane_of_yuv_and_weighted_rgb_of_packed_frames() {
        let ys: Vec<u8> = (0..16).collect();
        let (us, vs) = ([128u8; 4], [128u8; 4]);
        let planes = [
            Plane {
                data: &ys,
                stride: 4,
            },
            Plane {
                data: &us,
                stride: 2,
            },
            Plane {
                data: &vs,
                stride: 2,
            },
        ];
        let frame = Frame {
            layout: PixelLayout::I420,
            width: 4,
            height: 4,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let (luma, rect) = face_luma(&frame, [1.0, 2.0, 3.0, 9.0]).unwrap();
        assert_eq!((luma, rect), (vec![9, 10, 13, 14], [1, 2, 2, 2]));
        let rgb = [10u8, 20, 30, 40, 50, 60];
        let packed = [Plane {
            data: &rgb,
            stride: 6,
        }];
        let frame = Frame {
            layout: PixelLayout::Rgb,
            width: 2,
            height: 1,
            planes: &packed,
            matrix: YuvMatrix::BT601,
        };
        let (luma, _) = face_luma(&frame, [0.0, 0.0, 2.0, 1.0]).unwrap();
        let weigh =
            |p: &[u8]| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8;
        assert_eq!(luma, [weigh(&rgb[..3]), weigh(&rgb[3..])]);
    }
}
