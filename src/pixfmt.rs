//! Raw pixel formats and YUV colour matrices: the one description of every frame layout the
//! detector reads and the overlay draws on.
//!
//! [`PixelLayout::format`] gives, per layout, its memory planes (bytes per sample, chroma
//! subsampling) and where each colour component lives (plane and byte offset of R, G, B for
//! packed RGB; of Y, U, V for planar and semi-planar YUV). [`YuvMatrix`] holds the matrix
//! coefficients and the range with both directions of conversion: YUV → RGB for preprocessing
//! ([`YuvMatrix::to_rgb`]) and RGB → YUV for drawing ([`YuvMatrix::to_yuv`]).
//!
//! No GStreamer types here; the plugin maps its `VideoFormat`s and colorimetry onto these.

/// Pixel formats (GStreamer's names, in memory byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelLayout {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    Rgba,
    Bgra,
    Argb,
    Abgr,
    I420,
    Nv12,
}

/// How one memory plane stores samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneFormat {
    /// Bytes per sample (a packed pixel, a luma sample, an interleaved UV pair, …).
    pub bytes_per_sample: usize,
    /// 1 = one sample per pixel; 2 = one sample per 2×2 pixel block (4:2:0 chroma).
    pub subsampling: usize,
}

impl PlaneFormat {
    const fn new(bytes_per_sample: usize, subsampling: usize) -> Self {
        Self {
            bytes_per_sample,
            subsampling,
        }
    }

    /// `(samples per row, rows)` of this plane in a `width`×`height` frame.
    pub fn samples(&self, width: usize, height: usize) -> (usize, usize) {
        (
            width.div_ceil(self.subsampling),
            height.div_ceil(self.subsampling),
        )
    }
}

/// Where one colour component lives: plane index and byte offset within a sample of that plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub plane: usize,
    pub offset: usize,
}

impl Component {
    const fn at(plane: usize, offset: usize) -> Self {
        Self { plane, offset }
    }
}

/// What the three components of a layout are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorModel {
    /// R, G, B (any padding or alpha byte is not a component).
    Rgb,
    /// Y, U (Cb), V (Cr), converted with a [`YuvMatrix`].
    Yuv,
}

/// The full description of a [`PixelLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub model: ColorModel,
    /// The memory planes, in order.
    pub planes: &'static [PlaneFormat],
    /// R, G, B ([`ColorModel::Rgb`]) or Y, U, V ([`ColorModel::Yuv`]).
    pub components: [Component; 3],
}

const PACKED3: &[PlaneFormat] = &[PlaneFormat::new(3, 1)];
const PACKED4: &[PlaneFormat] = &[PlaneFormat::new(4, 1)];
/// Y plane, then U and V planes at half resolution.
const I420_PLANES: &[PlaneFormat] = &[
    PlaneFormat::new(1, 1),
    PlaneFormat::new(1, 2),
    PlaneFormat::new(1, 2),
];
/// Y plane, then one plane of interleaved U, V pairs at half resolution.
const NV12_PLANES: &[PlaneFormat] = &[PlaneFormat::new(1, 1), PlaneFormat::new(2, 2)];

const fn packed(planes: &'static [PlaneFormat], rgb: [usize; 3]) -> PixelFormat {
    PixelFormat {
        model: ColorModel::Rgb,
        planes,
        components: [
            Component::at(0, rgb[0]),
            Component::at(0, rgb[1]),
            Component::at(0, rgb[2]),
        ],
    }
}

impl PixelLayout {
    /// Every layout, in the order the plugin advertises them.
    pub const ALL: [PixelLayout; 12] = [
        PixelLayout::Rgb,
        PixelLayout::Bgr,
        PixelLayout::Rgbx,
        PixelLayout::Bgrx,
        PixelLayout::Xrgb,
        PixelLayout::Xbgr,
        PixelLayout::Rgba,
        PixelLayout::Bgra,
        PixelLayout::Argb,
        PixelLayout::Abgr,
        PixelLayout::I420,
        PixelLayout::Nv12,
    ];

    /// The table: planes, subsampling and component positions of each layout.
    pub const fn format(self) -> PixelFormat {
        use PixelLayout::*;
        match self {
            Rgb => packed(PACKED3, [0, 1, 2]),
            Bgr => packed(PACKED3, [2, 1, 0]),
            Rgbx | Rgba => packed(PACKED4, [0, 1, 2]),
            Bgrx | Bgra => packed(PACKED4, [2, 1, 0]),
            Xrgb | Argb => packed(PACKED4, [1, 2, 3]),
            Xbgr | Abgr => packed(PACKED4, [3, 2, 1]),
            I420 => PixelFormat {
                model: ColorModel::Yuv,
                planes: I420_PLANES,
                components: [
                    Component::at(0, 0),
                    Component::at(1, 0),
                    Component::at(2, 0),
                ],
            },
            Nv12 => PixelFormat {
                model: ColorModel::Yuv,
                planes: NV12_PLANES,
                components: [
                    Component::at(0, 0),
                    Component::at(1, 0),
                    Component::at(1, 1),
                ],
            },
        }
    }

    /// Number of memory planes the layout uses.
    pub const fn planes(self) -> usize {
        self.format().planes.len()
    }

    /// Whether the components are Y, U, V.
    pub const fn is_yuv(self) -> bool {
        matches!(self.format().model, ColorModel::Yuv)
    }

    /// Whether any plane is chroma-subsampled (shapes drawn on it snap to its sample grid).
    pub fn is_subsampled(self) -> bool {
        self.format().planes.iter().any(|p| p.subsampling > 1)
    }

    /// Bytes per pixel and byte offsets of R, G and B for packed RGB layouts; `None` for YUV.
    pub const fn packed(self) -> Option<(usize, [usize; 3])> {
        let f = self.format();
        match f.model {
            ColorModel::Rgb => Some((
                f.planes[0].bytes_per_sample,
                [
                    f.components[0].offset,
                    f.components[1].offset,
                    f.components[2].offset,
                ],
            )),
            ColorModel::Yuv => None,
        }
    }

    /// `(bytes per row, rows)` that plane `plane` needs at least in a `width`×`height` frame.
    pub fn plane_size(self, plane: usize, width: usize, height: usize) -> (usize, usize) {
        let p = self.format().planes[plane];
        let (samples, rows) = p.samples(width, height);
        (samples * p.bytes_per_sample, rows)
    }
}

/// YUV matrix coefficients and range; converts in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvMatrix {
    pub kr: f32,
    pub kb: f32,
    /// `true` for full range (Y, U, V in 0..255), `false` for studio range (Y 16..235,
    /// U/V 16..240).
    pub full_range: bool,
}

impl YuvMatrix {
    pub const BT601: Self = Self {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    pub const BT709: Self = Self {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };
    pub const BT2020: Self = Self {
        kr: 0.2627,
        kb: 0.0593,
        full_range: false,
    };

    /// The same matrix with the given range.
    pub const fn with_full_range(self, full_range: bool) -> Self {
        Self { full_range, ..self }
    }

    /// `(y_scale, y_offset, c_scale)` of the encoder: code value = offset + scale · value, with
    /// values in 0..255 (Y) and −127.5..127.5 (U, V).
    fn range(self) -> (f32, f32, f32) {
        if self.full_range {
            (1.0, 0.0, 1.0)
        } else {
            (219.0 / 255.0, 16.0, 224.0 / 255.0)
        }
    }

    /// YUV → RGB constants, computed once per frame.
    pub fn to_rgb(self) -> YuvToRgb {
        // The inverses of `range`'s scales.
        let (y_scale, y_offset, c_scale) = if self.full_range {
            (1.0, 0.0, 1.0)
        } else {
            (255.0 / 219.0, 16.0, 255.0 / 224.0)
        };
        let kg = 1.0 - self.kr - self.kb;
        YuvToRgb {
            y_scale,
            y_offset,
            rv: 2.0 * (1.0 - self.kr) * c_scale,
            gu: -2.0 * self.kb * (1.0 - self.kb) / kg * c_scale,
            gv: -2.0 * self.kr * (1.0 - self.kr) / kg * c_scale,
            bu: 2.0 * (1.0 - self.kb) * c_scale,
        }
    }

    /// `[y, u, v]` code values (rounded, clamped) of an `[r, g, b]` colour in 0..255.
    pub fn to_yuv(self, rgb: [f32; 3]) -> [u8; 3] {
        let [r, g, b] = rgb;
        let (y_scale, y_offset, c_scale) = self.range();
        let y = self.kr * r + (1.0 - self.kr - self.kb) * g + self.kb * b;
        let u = (b - y) / (2.0 * (1.0 - self.kb));
        let v = (r - y) / (2.0 * (1.0 - self.kr));
        [
            y_offset + y * y_scale,
            128.0 + u * c_scale,
            128.0 + v * c_scale,
        ]
        .map(|c| c.round().clamp(0.0, 255.0) as u8)
    }
}

/// `R = Y' + rv·V'`, `G = Y' + gu·U' + gv·V'`, `B = Y' + bu·U'` with `Y' = (Y − y_offset)·y_scale`
/// and `U' = U − 128`, `V' = V − 128`.
#[derive(Debug, Clone, Copy)]
pub struct YuvToRgb {
    y_scale: f32,
    y_offset: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvToRgb {
    /// `[r, g, b]` in 0..255 for one YUV sample.
    #[inline]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [f32; 3] {
        let y = (y as f32 - self.y_offset) * self.y_scale;
        let (u, v) = (u as f32 - 128.0, v as f32 - 128.0);
        [
            (y + self.rv * v).clamp(0.0, 255.0),
            (y + self.gu * u + self.gv * v).clamp(0.0, 255.0),
            (y + self.bu * u).clamp(0.0, 255.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: [f32; 3] = [255.0, 255.0, 255.0];
    const BLACK: [f32; 3] = [0.0, 0.0, 0.0];
    const RED: [f32; 3] = [255.0, 0.0, 0.0];

    #[test]
    fn studio_range_colours() {
        let m = YuvMatrix::BT601;
        assert_eq!(m.to_yuv(WHITE), [235, 128, 128]);
        assert_eq!(m.to_yuv(BLACK), [16, 128, 128]);
        // Y = 16 + 0.299·219 = 81.48; U = 128 − 0.299·255/1.772·224/255 = 90.20;
        // V = 128 + 127.5·224/255 = 240.
        assert_eq!(m.to_yuv(RED), [81, 90, 240]);
    }

    #[test]
    fn full_range_colours() {
        let m = YuvMatrix::BT601.with_full_range(true);
        assert_eq!(m.to_yuv(WHITE), [255, 128, 128]);
        assert_eq!(m.to_yuv(BLACK), [0, 128, 128]);
        // Y = 0.299·255 = 76.24; U = 128 − 76.24/1.772 = 84.97; V = 128 + 178.76/1.402 = 255.5
        // → clamped to 255.
        assert_eq!(m.to_yuv(RED), [76, 85, 255]);
        // BT.709 red: Y = 0.2126·255 = 54.21; U = 128 − 54.21/1.8556 = 98.78;
        // V = 128 + 200.79/1.5748 = 255.5 → 255.
        let m = YuvMatrix::BT709.with_full_range(true);
        assert_eq!(m.to_yuv(RED), [54, 99, 255]);
    }

    #[test]
    fn encoding_then_decoding_gives_the_colour_back() {
        for m in [YuvMatrix::BT601, YuvMatrix::BT709, YuvMatrix::BT2020] {
            for full in [false, true] {
                let m = m.with_full_range(full);
                let k = m.to_rgb();
                for rgb in [WHITE, BLACK, RED, [0.0, 255.0, 0.0], [40.0, 90.0, 200.0]] {
                    let [y, u, v] = m.to_yuv(rgb);
                    let back = k.rgb(y, u, v);
                    for c in 0..3 {
                        assert!(
                            (back[c] - rgb[c]).abs() <= 3.0,
                            "{m:?}: {rgb:?} → {:?} → {back:?}",
                            [y, u, v]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn table_is_consistent() {
        for layout in PixelLayout::ALL {
            let f = layout.format();
            assert_eq!(layout.planes(), f.planes.len());
            for c in f.components {
                assert!(c.plane < f.planes.len(), "{layout:?}");
                assert!(c.offset < f.planes[c.plane].bytes_per_sample, "{layout:?}");
            }
            // No two components share a byte.
            for (i, a) in f.components.iter().enumerate() {
                assert!(!f.components[i + 1..].contains(a), "{layout:?}");
            }
            assert_eq!(layout.is_yuv(), layout.packed().is_none());
            assert_eq!(layout.is_subsampled(), layout.is_yuv());
        }
        assert_eq!(PixelLayout::Xbgr.packed(), Some((4, [3, 2, 1])));
        assert_eq!(PixelLayout::Nv12.plane_size(1, 5, 3), (6, 2));
        assert_eq!(PixelLayout::I420.plane_size(2, 5, 3), (3, 2));
        assert_eq!(PixelLayout::Rgb.plane_size(0, 5, 3), (15, 3));
    }
}
