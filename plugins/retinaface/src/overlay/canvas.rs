//! Drawing on raw video frames in place, for packed RGB variants and YUV 4:2:0 (I420, NV12).
//!
//! Every operation is expressed per memory plane, with the plane's chroma subsampling, so that
//! the same code draws on RGBx and on NV12. On subsampled planes a chroma sample is written only
//! when its whole 2×2 luma block is inside the shape (no colour bleeding out of a box), and
//! shapes are snapped to even luma coordinates so that their chroma is complete.
//!
//! Planes, subsampling and the byte of each colour component come from the core's pixel table
//! ([`retinaface::pixfmt`]), and YUV colours are written with the frame's own matrix and range
//! (full-range white is Y 255, studio-range white Y 235).

use gst_video::prelude::*;
use retinaface::pixfmt::{ColorModel, PixelFormat, PixelLayout, PlaneFormat, YuvMatrix};

/// A colour as 0xAARRGGBB; alpha blends it over the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argb(pub u32);

impl Argb {
    fn alpha(self) -> u32 {
        self.0 >> 24
    }

    fn rgb(self) -> [u8; 3] {
        [(self.0 >> 16) as u8, (self.0 >> 8) as u8, self.0 as u8]
    }

    /// Y, U, V of the colour in `matrix`'s coefficients and range.
    fn yuv(self, matrix: YuvMatrix) -> [u8; 3] {
        matrix.to_yuv(self.rgb().map(f32::from))
    }

    /// The colour's three components in the order of `model` (R, G, B or Y, U, V).
    fn components(self, model: ColorModel, matrix: YuvMatrix) -> [u8; 3] {
        match model {
            ColorModel::Rgb => self.rgb(),
            ColorModel::Yuv => self.yuv(matrix),
        }
    }
}

/// An axis-aligned rectangle in luma pixels, `x0..x1` × `y0..y1` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    pub fn new(x: f64, y: f64, width: f64, height: f64) -> Self {
        Self {
            x0: x.floor() as i64,
            y0: y.floor() as i64,
            x1: (x + width).ceil() as i64,
            y1: (y + height).ceil() as i64,
        }
    }

    pub fn grow(self, by: i64) -> Self {
        Self {
            x0: self.x0 - by,
            y0: self.y0 - by,
            x1: self.x1 + by,
            y1: self.y1 + by,
        }
    }

    pub(super) fn clip(self, width: usize, height: usize) -> Self {
        Self {
            x0: self.x0.clamp(0, width as i64),
            y0: self.y0.clamp(0, height as i64),
            x1: self.x1.clamp(0, width as i64),
            y1: self.y1.clamp(0, height as i64),
        }
    }

    pub(super) fn snap_even(self) -> Self {
        Self {
            x0: self.x0 & !1,
            y0: self.y0 & !1,
            x1: (self.x1 + 1) & !1,
            y1: (self.y1 + 1) & !1,
        }
    }

    pub(super) fn intersects(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    pub(super) fn union(self, other: Rect) -> Rect {
        Rect {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }

    /// The samples of a plane with `sub`-sampling whose whole luma footprint lies in `self`.
    pub(super) fn inner_samples(self, sub: usize) -> Self {
        let s = sub as i64;
        Self {
            x0: (self.x0 + s - 1) / s,
            y0: (self.y0 + s - 1) / s,
            x1: self.x1 / s,
            y1: self.y1 / s,
        }
    }

    /// The samples of a plane with `sub`-sampling that touch `self`.
    pub(super) fn touching_samples(self, sub: usize) -> Self {
        let s = sub as i64;
        Self {
            x0: self.x0 / s,
            y0: self.y0 / s,
            x1: (self.x1 + s - 1) / s,
            y1: (self.y1 + s - 1) / s,
        }
    }
}

/// Per plane of `format`: the byte values of `color` for each byte of a sample, and which bytes
/// to write (padding and alpha bytes are left as they are).
fn plane_values(format: &PixelFormat, matrix: YuvMatrix, color: Argb) -> [([u8; 4], [bool; 4]); 3] {
    let values = color.components(format.model, matrix);
    let mut out = [([0u8; 4], [false; 4]); 3];
    for (component, value) in format.components.iter().zip(values) {
        let (v, mask) = &mut out[component.plane];
        v[component.offset] = value;
        mask[component.offset] = true;
    }
    out
}

/// A mapped, writable video frame to draw on.
pub struct Canvas<'a, 'b> {
    frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>,
    /// The frame's planes and where each colour component lives.
    format: PixelFormat,
    /// Shapes snap to the 2×2 chroma grid.
    pub(super) subsampled: bool,
    pub(super) width: usize,
    pub(super) height: usize,
    /// Coefficients and range YUV colours are written in (the frame's own colorimetry).
    matrix: YuvMatrix,
}

impl<'a, 'b> Canvas<'a, 'b> {
    /// A canvas on `frame`, whose pixels are in `layout` and, for YUV, `matrix` (see
    /// [`crate::videoformat`] for both from the caps).
    pub fn new(
        frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>,
        layout: PixelLayout,
        matrix: YuvMatrix,
    ) -> Self {
        let info = frame.info();
        let (width, height) = (info.width() as usize, info.height() as usize);
        Self {
            frame,
            format: layout.format(),
            subsampled: layout.is_subsampled(),
            width,
            height,
            matrix,
        }
    }

    fn plane_values(&self, color: Argb) -> [([u8; 4], [bool; 4]); 3] {
        plane_values(&self.format, self.matrix, color)
    }

    /// Runs `f(samples, components, row_bytes, stride)` on each plane's part of `area`, where
    /// `select` picks the plane samples (`inner_samples` or `touching_samples`).
    pub(super) fn for_each_plane(
        &mut self,
        area: Rect,
        select: fn(Rect, usize) -> Rect,
        mut f: impl FnMut(usize, &mut [u8], usize, Rect, PlaneFormat),
    ) {
        let area = if self.subsampled {
            area.snap_even()
        } else {
            area
        };
        let area = area.clip(self.width, self.height);
        if area.is_empty() {
            return;
        }
        for (index, &plane) in self.format.planes.iter().enumerate() {
            let samples = select(area, plane.subsampling);
            let samples = samples.clip(
                self.width.div_ceil(plane.subsampling),
                self.height.div_ceil(plane.subsampling),
            );
            if samples.is_empty() {
                continue;
            }
            let stride = self.frame.plane_stride()[index] as usize;
            let Ok(data) = self.frame.plane_data_mut(index as u32) else {
                continue;
            };
            f(index, data, stride, samples, plane);
        }
    }

    /// Fills `rect` with `color` (alpha-blended).
    pub fn fill(&mut self, rect: Rect, color: Argb) {
        let values = self.plane_values(color);
        let alpha = color.alpha();
        self.for_each_plane(
            rect,
            Rect::inner_samples,
            |index, data, stride, s, plane| {
                let (v, mask) = values[index];
                for y in s.y0..s.y1 {
                    let row = &mut data[y as usize * stride..];
                    for x in s.x0..s.x1 {
                        let px = &mut row[x as usize * plane.bytes_per_sample..]
                            [..plane.bytes_per_sample];
                        for c in 0..plane.bytes_per_sample {
                            if mask[c] {
                                px[c] = blend(px[c], v[c], alpha);
                            }
                        }
                    }
                }
            },
        );
    }

    /// Draws the outline of `rect`, `thickness` pixels wide, inside the rectangle.
    pub fn outline(&mut self, rect: Rect, thickness: i64, color: Argb) {
        let t = if self.subsampled {
            (thickness + 1) & !1
        } else {
            thickness
        }
        .max(1);
        let r = if self.subsampled {
            rect.snap_even()
        } else {
            rect
        };
        let sides = [
            Rect { y1: r.y0 + t, ..r },
            Rect { y0: r.y1 - t, ..r },
            Rect {
                x1: r.x0 + t,
                y0: r.y0 + t,
                y1: r.y1 - t,
                ..r
            },
            Rect {
                x0: r.x1 - t,
                y0: r.y0 + t,
                y1: r.y1 - t,
                ..r
            },
        ];
        for side in sides {
            self.fill(side, color);
        }
    }

    /// A filled square dot of `radius` around (x, y).
    pub fn dot(&mut self, x: f64, y: f64, radius: i64, color: Argb) {
        let (x, y) = (x.round() as i64, y.round() as i64);
        self.fill(
            Rect {
                x0: x - radius,
                y0: y - radius,
                x1: x + radius + 1,
                y1: y + radius + 1,
            },
            color,
        );
    }

    /// Blends `color` into the frame with per-pixel `coverage` (0..1) of a `width`×`height` mask
    /// whose top-left corner is at (x, y). On subsampled formats only luma is touched, so the
    /// mask keeps the chroma under it (e.g. text drawn over a filled label bar).
    pub fn paint_mask(
        &mut self,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
        coverage: &[f32],
        color: Argb,
    ) {
        let values = self.plane_values(color);
        let alpha = color.alpha() as f32;
        let area = Rect {
            x0: x,
            y0: y,
            x1: x + width as i64,
            y1: y + height as i64,
        }
        .clip(self.width, self.height);
        if area.is_empty() {
            return;
        }
        for (index, &plane) in self.format.planes.iter().enumerate() {
            if plane.subsampling != 1 {
                continue;
            }
            let (v, mask) = values[index];
            let stride = self.frame.plane_stride()[index] as usize;
            let Ok(data) = self.frame.plane_data_mut(index as u32) else {
                continue;
            };
            for py in area.y0..area.y1 {
                for px in area.x0..area.x1 {
                    let cov =
                        coverage[(py - y) as usize * width + (px - x) as usize].clamp(0.0, 1.0);
                    let a = (cov * alpha).round() as u32;
                    if a == 0 {
                        continue;
                    }
                    let p = &mut data
                        [py as usize * stride + px as usize * plane.bytes_per_sample..]
                        [..plane.bytes_per_sample];
                    for c in 0..plane.bytes_per_sample {
                        if mask[c] {
                            p[c] = blend(p[c], v[c], a);
                        }
                    }
                }
            }
        }
    }
}

fn blend(under: u8, over: u8, alpha: u32) -> u8 {
    ((over as u32 * alpha + under as u32 * (255 - alpha) + 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_convert_to_studio_range_yuv() {
        assert_eq!(Argb(0xffffffff).yuv(YuvMatrix::BT601), [235, 128, 128]);
        assert_eq!(Argb(0xff000000).yuv(YuvMatrix::BT601), [16, 128, 128]);
        let [y, u, v] = Argb(0xffff0000).yuv(YuvMatrix::BT601);
        assert_eq!((y, u, v), (81, 90, 240));
    }

    #[test]
    fn colours_convert_to_full_range_yuv() {
        let full = YuvMatrix::BT601.with_full_range(true);
        assert_eq!(Argb(0xffffffff).yuv(full), [255, 128, 128]);
        assert_eq!(Argb(0xff000000).yuv(full), [0, 128, 128]);
        // Y = 0.299·255 = 76.24, U = 128 − 76.24/1.772 = 84.97, V = 128 + 178.76/1.402 → 255.
        assert_eq!(Argb(0xffff0000).yuv(full), [76, 85, 255]);
    }

    #[test]
    fn colour_bytes_go_where_the_table_says() {
        let canvas_values =
            |layout: PixelLayout, matrix, color| plane_values(&layout.format(), matrix, color);
        let red = Argb(0xffff0000);
        let [(v, m), ..] = canvas_values(PixelLayout::Xbgr, YuvMatrix::BT601, red);
        assert_eq!((v, m), ([0, 0, 0, 255], [false, true, true, true]));
        let nv12 = canvas_values(PixelLayout::Nv12, YuvMatrix::BT601, red);
        assert_eq!(nv12[0], ([81, 0, 0, 0], [true, false, false, false]));
        assert_eq!(nv12[1], ([90, 240, 0, 0], [true, true, false, false]));
        assert_eq!(nv12[2].1, [false; 4]);
        let full = YuvMatrix::BT601.with_full_range(true);
        let i420 = canvas_values(PixelLayout::I420, full, Argb(0xffffffff));
        assert_eq!(
            i420.map(|(v, m)| (v[0], m)),
            [
                (255, [true, false, false, false]),
                (128, [true, false, false, false]),
                (128, [true, false, false, false])
            ]
        );
    }

    #[test]
    fn chroma_samples_stay_inside() {
        let r = Rect {
            x0: 2,
            y0: 2,
            x1: 6,
            y1: 4,
        };
        assert_eq!(
            r.inner_samples(2),
            Rect {
                x0: 1,
                y0: 1,
                x1: 3,
                y1: 2
            }
        );
        let odd = Rect {
            x0: 3,
            y0: 3,
            x1: 6,
            y1: 6,
        };
        assert_eq!(
            odd.inner_samples(2),
            Rect {
                x0: 2,
                y0: 2,
                x1: 3,
                y1: 3
            }
        );
        assert_eq!(
            odd.touching_samples(2),
            Rect {
                x0: 1,
                y0: 1,
                x1: 3,
                y1: 3
            }
        );
        assert_eq!(
            odd.snap_even(),
            Rect {
                x0: 2,
                y0: 2,
                x1: 6,
                y1: 6
            }
        );
    }
}
