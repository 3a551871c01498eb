//! Video frame → model input tensor.
//!
//! The frame is scaled so that its long side becomes the inference size (aspect kept) with
//! `fast_image_resize`, then written as planar float32 in the model's channel order with the
//! model's mean/std applied. YUV frames (I420, NV12) are scaled plane by plane and converted to
//! RGB only at the small size, so no full-frame colour conversion is needed.
//!
//! A crop of the frame ([`Frame::crop`], no copy) can be written into one slot of a batch tensor
//! ([`Preprocessor::fill`]): that is how tiles and regions of interest reach the model.
//! [`Normalisation`] is the one definition of colour order, mean and std for the plugin and the
//! trainer.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::contract::{ColorOrder, ModelContract};
pub use crate::pixfmt::{PixelLayout, YuvMatrix};

/// One memory plane of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
}

impl<'a> Plane<'a> {
    /// Row `y` and everything after it.
    fn row(&self, y: usize) -> &'a [u8] {
        &self.data[y * self.stride..]
    }
}

/// A borrowed video frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub layout: PixelLayout,
    pub width: usize,
    pub height: usize,
    /// `layout.planes()` planes: packed = 1; I420 = Y, U, V; NV12 = Y, UV.
    pub planes: &'a [Plane<'a>],
    /// Used for YUV layouts only.
    pub matrix: YuvMatrix,
}

impl<'a> Frame<'a> {
    /// The `w`×`h` pixels at (`x`, `y`) as a frame of their own, without copying. On chroma-
    /// subsampled layouts the origin moves down to even coordinates (and the size grows by the
    /// pixel moved) so that chroma samples stay aligned; the result is clipped to the frame.
    /// [`Crop::x`]/[`Crop::y`] say where it really starts.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Crop<'a> {
        let format = self.layout.format();
        let align = format
            .planes
            .iter()
            .map(|p| p.subsampling)
            .max()
            .unwrap_or(1);
        let (x0, y0) = (
            (x.min(self.width.saturating_sub(1)) / align) * align,
            (y.min(self.height.saturating_sub(1)) / align) * align,
        );
        let width = (x + w).min(self.width).saturating_sub(x0).max(1);
        let height = (y + h).min(self.height).saturating_sub(y0).max(1);
        let mut planes = [Plane {
            data: &[][..],
            stride: 0,
        }; 3];
        for (i, (p, f)) in self.planes.iter().zip(format.planes).enumerate() {
            let offset =
                (y0 / f.subsampling) * p.stride + (x0 / f.subsampling) * f.bytes_per_sample;
            planes[i] = Plane {
                data: p.data.get(offset..).unwrap_or(&[]),
                stride: p.stride,
            };
        }
        Crop {
            planes,
            x: x0,
            y: y0,
            width,
            height,
            layout: self.layout,
            matrix: self.matrix,
        }
    }
}

impl Frame<'_> {
    /// The frame's pixels, unscaled, as packed R, G, B bytes (rows without padding) in `out`:
    /// what a backend that scales and normalises on its device is given
    /// ([`Pixels`](crate::engine::Pixels)). Packed RGB layouts are copied with their
    /// components put in R, G, B order; YUV layouts are converted in one pass by the layout's
    /// table ([`PixelLayout::format`]: planes, subsampling, where Y, U and V live) and the
    /// frame's [`YuvMatrix`], each chroma sample serving the pixels it covers. Values round to
    /// the nearest byte.
    pub fn to_rgb(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        check_frame(self)?;
        let (w, h) = (self.width, self.height);
        out.clear();
        match self.layout.packed() {
            // Already R, G, B: whole rows.
            Some((3, [0, 1, 2])) => {
                for y in 0..h {
                    out.extend_from_slice(&self.planes[0].row(y)[..3 * w]);
                }
            }
            Some((bpp, [r, g, b])) => {
                out.reserve(3 * w * h);
                for y in 0..h {
                    let row = &self.planes[0].row(y)[..bpp * w];
                    // (Measured: as fast as indexed writes with optimisations, several times
                    // faster without.)
                    out.extend(row.chunks_exact(bpp).flat_map(|px| [px[r], px[g], px[b]]));
                }
            }
            None => {
                out.resize(3 * w * h, 0);
                let rows = out.chunks_exact_mut(3 * w).enumerate();
                let format = self.layout.format();
                let k = self.matrix.to_rgb();
                // Component `c`'s samples on pixel row `y`, by the table: the plane row from
                // the component's byte on, the bytes from one sample to the next, and the shift
                // from a pixel column to its sample (subsampling is 1 or 2).
                let component = |c: usize, y: usize| {
                    let at = format.components[c];
                    let plane = format.planes[at.plane];
                    debug_assert!(plane.subsampling.is_power_of_two());
                    let row = self.planes[at.plane].row(y / plane.subsampling);
                    let shift = plane.subsampling.trailing_zeros();
                    (&row[at.offset..], plane.bytes_per_sample, shift)
                };
                for (y, dst) in rows {
                    let (ys, ystep, yshift) = component(0, y);
                    let (us, ustep, ushift) = component(1, y);
                    let (vs, vstep, vshift) = component(2, y);
                    for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                        let rgb = k.rgb(
                            ys[(x >> yshift) * ystep],
                            us[(x >> ushift) * ustep],
                            vs[(x >> vshift) * vstep],
                        );
                        // Clamped to 0..255: adding ½ and truncating rounds.
                        for (o, v) in px.iter_mut().zip(rgb) {
                            *o = (v + 0.5) as u8;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Planes of a [`Frame::crop`]; [`Crop::frame`] borrows them as a frame.
#[derive(Debug, Clone, Copy)]
pub struct Crop<'a> {
    planes: [Plane<'a>; 3],
    /// Where the crop starts in the frame (aligned for subsampled layouts).
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    layout: PixelLayout,
    matrix: YuvMatrix,
}

impl Crop<'_> {
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            layout: self.layout,
            width: self.width,
            height: self.height,
            planes: &self.planes[..self.layout.planes()],
            matrix: self.matrix,
        }
    }
}

/// Where the scaled frame sits in the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputGeometry {
    /// Tensor width and height.
    pub width: usize,
    pub height: usize,
    /// Size of the scaled frame inside the tensor (top-left aligned; the rest is padding).
    pub content_width: usize,
    pub content_height: usize,
}

/// Smallest tensor side; tinier frames are padded so every stride-32 level has a cell.
pub const MIN_INPUT_SIDE: usize = 32;

impl InputGeometry {
    /// Scales `width`×`height` so the long side is `inference_size` (0 = keep native size).
    pub fn for_frame(width: usize, height: usize, inference_size: usize) -> Self {
        let (cw, ch) = if inference_size == 0 {
            (width, height)
        } else {
            let scale = inference_size as f64 / width.max(height) as f64;
            let side = |v: usize| ((v as f64 * scale).round() as usize).clamp(1, inference_size);
            (side(width), side(height))
        };
        Self {
            width: cw.max(MIN_INPUT_SIDE),
            height: ch.max(MIN_INPUT_SIDE),
            content_width: cw,
            content_height: ch,
        }
    }

    /// `width`×`height` scaled by `scale` (tiles: 1 = native pixels, 2 = upsampled twice).
    pub fn scaled(width: usize, height: usize, scale: f32) -> Self {
        let side = |v: usize| ((v as f64 * scale as f64).round() as usize).max(1);
        let (cw, ch) = (side(width), side(height));
        Self {
            width: cw.max(MIN_INPUT_SIDE),
            height: ch.max(MIN_INPUT_SIDE),
            content_width: cw,
            content_height: ch,
        }
    }

    /// Floats of one `[3, height, width]` tensor (one batch slot).
    pub fn slot_len(&self) -> usize {
        3 * self.width * self.height
    }

    /// Multipliers from normalised tensor coordinates to frame pixels, `[x, y]`.
    pub fn to_frame_scale(&self, frame_width: usize, frame_height: usize) -> [f32; 2] {
        [
            (self.width as f64 * frame_width as f64 / self.content_width as f64) as f32,
            (self.height as f64 * frame_height as f64 / self.content_height as f64) as f32,
        ]
    }
}

/// A frame that does not match its declared layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid frame: {0}")]
pub struct FrameError(pub String);

/// How the frame is scaled down (or up) to the inference size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleFilter {
    /// Nearest neighbour: the cheapest. The reference training recipe resizes with a randomly
    /// chosen interpolation that includes nearest, so the published models are used to it.
    #[default]
    Nearest,
    /// 2×2 bilinear interpolation (OpenCV's INTER_LINEAR, as the reference test scripts use):
    /// smoother edges for about 1 ms more per 1080p frame on this project's 2-core reference machine.
    Bilinear,
}

impl ScaleFilter {
    fn algorithm(self) -> ResizeAlg {
        match self {
            ScaleFilter::Nearest => ResizeAlg::Nearest,
            ScaleFilter::Bilinear => ResizeAlg::Interpolation(FilterType::Bilinear),
        }
    }
}

/// Reusable scaling and conversion state; keep one per stream to avoid reallocations.
#[derive(Default)]
pub struct Preprocessor {
    scaler: Scaler,
    /// Scaled planes (packed pixels, or Y / U / V), reused between frames.
    scaled: [Vec<u8>; 3],
    /// The tensor [`Preprocessor::run`] returns.
    tensor: Vec<f32>,
    /// Source byte offset of each tensor column, for nearest sampling of packed pixels.
    columns: Vec<usize>,
}

impl Preprocessor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills and returns the `[3, height, width]` input tensor for `frame`.
    pub fn run(
        &mut self,
        frame: &Frame,
        geometry: InputGeometry,
        contract: &ModelContract,
        filter: ScaleFilter,
    ) -> Result<&[f32], FrameError> {
        let mut tensor = std::mem::take(&mut self.tensor);
        tensor.resize(geometry.slot_len(), 0.0);
        let result = self.fill(frame, geometry, contract, filter, &mut tensor);
        self.tensor = tensor;
        result.map(|()| self.tensor.as_slice())
    }

    /// Writes `frame` scaled to `geometry` into `slot` (`[3, height, width]`, e.g. one slot of a
    /// batch tensor); the padding is set to zero (= the mean colour).
    pub fn fill(
        &mut self,
        frame: &Frame,
        geometry: InputGeometry,
        contract: &ModelContract,
        filter: ScaleFilter,
        slot: &mut [f32],
    ) -> Result<(), FrameError> {
        check_frame(frame)?;
        if slot.len() != geometry.slot_len() {
            return Err(FrameError(format!(
                "tensor slot holds {} values, a {}×{} input needs {}",
                slot.len(),
                geometry.width,
                geometry.height,
                geometry.slot_len()
            )));
        }
        clear_padding(slot, geometry);
        self.scaler.algorithm = filter.algorithm();
        let n = Normalisation::for_contract(contract);
        let color_of_channel = n.color_of_channel;
        let norm: [Normalise; 3] = std::array::from_fn(|c| Normalise {
            mean: n.mean[c],
            inv_std: n.inv_std[c],
        });
        let packed = frame.layout.packed().map(|(bpp, offsets)| Packed {
            bpp,
            byte_offset: std::array::from_fn(|c| offsets[color_of_channel[c]]),
            norm,
        });
        match (filter, packed) {
            // Packed pixels: sample and normalise in one pass, reading the frame once, sparsely.
            (ScaleFilter::Nearest, Some(packed)) => {
                self.nearest_packed(frame, geometry, &packed, slot)
            }
            (ScaleFilter::Bilinear, Some(packed)) => self.packed(frame, geometry, &packed, slot)?,
            // YUV: scaling each plane with SIMD and converting contiguous rows is faster than
            // gathering three planes per pixel.
            (_, None) => self.yuv(frame, geometry, color_of_channel, norm, slot)?,
        }
        Ok(())
    }

    fn packed(
        &mut self,
        frame: &Frame,
        g: InputGeometry,
        packed: &Packed,
        tensor: &mut [f32],
    ) -> Result<(), FrameError> {
        let Packed {
            bpp,
            byte_offset,
            norm,
        } = *packed;
        let pixel_type = if bpp == 3 {
            PixelType::U8x3
        } else {
            PixelType::U8x4
        };
        let plane = frame.planes[0];
        let (src, src_stride): (&[u8], usize) =
            if g.content_width == frame.width && g.content_height == frame.height {
                (plane.data, plane.stride)
            } else {
                let out = &mut self.scaled[0];
                self.scaler
                    .scale(plane, frame.width, frame.height, pixel_type, g, out)?;
                (out.as_slice(), g.content_width * bpp)
            };
        tensor_rows(tensor, g).for_each(|(y, outs)| {
            let row = &src[y * src_stride..][..g.content_width * bpp];
            for (c, out) in outs.into_iter().enumerate() {
                match bpp {
                    3 => normalise_channel::<3>(row, byte_offset[c], norm[c], out),
                    _ => normalise_channel::<4>(row, byte_offset[c], norm[c], out),
                }
            }
        });
        Ok(())
    }

    /// Nearest-neighbour sampling of packed pixels straight from the frame into the tensor.
    fn nearest_packed(
        &mut self,
        frame: &Frame,
        g: InputGeometry,
        packed: &Packed,
        tensor: &mut [f32],
    ) {
        let Packed {
            bpp,
            byte_offset,
            norm,
        } = *packed;
        // Source column of each output column: the pixel whose centre is nearest.
        let source = |out: usize, out_len: usize, src_len: usize| {
            (((out as f64 + 0.5) * src_len as f64 / out_len as f64) as usize).min(src_len - 1)
        };
        self.columns.clear();
        self.columns
            .extend((0..g.content_width).map(|x| source(x, g.content_width, frame.width) * bpp));
        let columns = &self.columns;
        tensor_rows(tensor, g).for_each(|(y, outs)| {
            let row = frame.planes[0].row(source(y, g.content_height, frame.height));
            for (c, out) in outs.into_iter().enumerate() {
                for (o, &sx) in out.iter_mut().zip(columns) {
                    *o = norm[c].apply(row[sx + byte_offset[c]] as f32);
                }
            }
        });
    }

    fn yuv(
        &mut self,
        frame: &Frame,
        g: InputGeometry,
        color_of_channel: [usize; 3],
        norm: [Normalise; 3],
        tensor: &mut [f32],
    ) -> Result<(), FrameError> {
        // Where Y, U and V live (pixfmt's table): a full-resolution luma plane of single bytes,
        // and U and V either interleaved in one plane (NV12) or in planes of their own (I420).
        let format = frame.layout.format();
        let [yc, uc, vc] = format.components;
        let (cw, ch) = format.planes[uc.plane].samples(frame.width, frame.height);
        let interleaved = uc.plane == vc.plane;
        let [ys, us, vs] = &mut self.scaled;
        self.scaler.scale(
            frame.planes[yc.plane],
            frame.width,
            frame.height,
            PixelType::U8,
            g,
            ys,
        )?;
        if interleaved {
            self.scaler
                .scale(frame.planes[uc.plane], cw, ch, PixelType::U8x2, g, us)?;
        } else {
            self.scaler
                .scale(frame.planes[uc.plane], cw, ch, PixelType::U8, g, us)?;
            self.scaler
                .scale(frame.planes[vc.plane], cw, ch, PixelType::U8, g, vs)?;
        }
        let k = frame.matrix.to_rgb();
        let width = g.content_width;
        let (ys, us, vs) = (&*ys, &*us, &*vs);
        tensor_rows(tensor, g).for_each(|(y, outs)| {
            let mut put = rgb_writer(outs, color_of_channel, norm);
            let i = y * width;
            let luma = &ys[i..i + width];
            if interleaved {
                let uv = us[2 * i..2 * (i + width)].chunks_exact(2);
                for (x, (&l, c)) in luma.iter().zip(uv).enumerate() {
                    put(x, k.rgb(l, c[uc.offset], c[vc.offset]));
                }
            } else {
                let chroma = us[i..i + width].iter().zip(&vs[i..i + width]);
                for (x, (&l, (&u, &v))) in luma.iter().zip(chroma).enumerate() {
                    put(x, k.rgb(l, u, v));
                }
            }
        });
        Ok(())
    }
}

/// How 0..255 colour values become network input: the one definition for the plugin's
/// preprocessing and the trainer (loader, evaluation, `detect`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    /// Tensor channel `c` holds colour `color_of_channel[c]` (0 = R, 1 = G, 2 = B).
    pub color_of_channel: [usize; 3],
    /// Per tensor channel: value = (colour − mean) · inv_std.
    pub mean: [f32; 3],
    pub inv_std: [f32; 3],
}

impl Normalisation {
    pub fn for_contract(contract: &ModelContract) -> Self {
        Self {
            color_of_channel: color_of_channel(contract.color_order),
            mean: contract.mean,
            inv_std: contract.std.map(|s| 1.0 / s),
        }
    }

    /// Planar `[3, h, w]` network input from interleaved RGB bytes (`w`·`h` pixels, no padding).
    pub fn planar_from_rgb(&self, rgb: &[u8], out: &mut [f32]) {
        let plane = rgb.len() / 3;
        if plane == 0 {
            return;
        }
        for (c, out) in out.chunks_exact_mut(plane).take(3).enumerate() {
            let n = Normalise {
                mean: self.mean[c],
                inv_std: self.inv_std[c],
            };
            normalise_channel::<3>(rgb, self.color_of_channel[c], n, out);
        }
    }

    /// The RGB colour that normalises to (nearly) zero: padding that looks like "no signal".
    pub fn mean_rgb(&self) -> [u8; 3] {
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            rgb[self.color_of_channel[c]] = self.mean[c].round().clamp(0.0, 255.0) as u8;
        }
        rgb
    }
}

/// Which colour (0 = R, 1 = G, 2 = B) each tensor channel holds.
pub const fn color_of_channel(order: ColorOrder) -> [usize; 3] {
    match order {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    }
}

/// Zeroes what lies outside the content area of a `[3, height, width]` slot.
fn clear_padding(slot: &mut [f32], g: InputGeometry) {
    if g.content_width == g.width && g.content_height == g.height {
        return;
    }
    for channel in slot.chunks_exact_mut(g.width * g.height) {
        for (y, row) in channel.chunks_exact_mut(g.width).enumerate() {
            if y < g.content_height {
                row[g.content_width..].fill(0.0);
            } else {
                row.fill(0.0);
            }
        }
    }
}

/// How a packed frame's bytes become the tensor's channels: bytes per pixel, the byte offset
/// of each tensor channel's colour within a pixel, and each channel's normalisation.
#[derive(Clone, Copy)]
struct Packed {
    bpp: usize,
    byte_offset: [usize; 3],
    norm: [Normalise; 3],
}

/// `(value − mean) / std` of one tensor channel.
#[derive(Debug, Clone, Copy, Default)]
struct Normalise {
    mean: f32,
    inv_std: f32,
}

impl Normalise {
    #[inline]
    fn apply(self, v: f32) -> f32 {
        (v - self.mean) * self.inv_std
    }
}

/// Writes normalised `[r, g, b]` values at column `x` of one tensor row, each colour into the
/// channel the model expects it in.
fn rgb_writer<'a>(
    outs: [&'a mut [f32]; 3],
    color_of_channel: [usize; 3],
    norm: [Normalise; 3],
) -> impl FnMut(usize, [f32; 3]) + 'a {
    let mut by_color: [(&mut [f32], Normalise); 3] = Default::default();
    for (c, out) in outs.into_iter().enumerate() {
        by_color[color_of_channel[c]] = (out, norm[c]);
    }
    let [(r, nr), (g, ng), (b, nb)] = by_color;
    move |x, rgb| {
        r[x] = nr.apply(rgb[0]);
        g[x] = ng.apply(rgb[1]);
        b[x] = nb.apply(rgb[2]);
    }
}

/// The content rows of the three tensor channels, as `(row, [c0, c1, c2])`. (Spreading the rows
/// over a thread pool was measured: no gain inside the pipeline, so it stays on one thread.)
fn tensor_rows(
    tensor: &mut [f32],
    g: InputGeometry,
) -> impl Iterator<Item = (usize, [&mut [f32]; 3])> {
    let plane = g.width * g.height;
    let (c0, rest) = tensor.split_at_mut(plane);
    let (c1, c2) = rest.split_at_mut(plane);
    let (cw, ch) = (g.content_width, g.content_height);
    let rows = [c0, c1, c2].map(|c| c.chunks_mut(g.width).take(ch));
    let [rows0, rows1, rows2] = rows;
    rows0
        .zip(rows1)
        .zip(rows2)
        .enumerate()
        .map(move |(y, ((a, b), c))| (y, [&mut a[..cw], &mut b[..cw], &mut c[..cw]]))
}

/// Writes one channel (byte `offset` of each `BPP`-byte pixel) of `row` as normalised floats.
#[inline]
fn normalise_channel<const BPP: usize>(row: &[u8], offset: usize, n: Normalise, out: &mut [f32]) {
    for (o, px) in out.iter_mut().zip(row.chunks_exact(BPP)) {
        *o = n.apply(px[offset] as f32);
    }
}

/// `fast_image_resize` with the chosen algorithm, for strided planes.
struct Scaler {
    resizer: Resizer,
    algorithm: ResizeAlg,
    /// Row-compacted copy of a source plane whose stride is not a whole number of pixels.
    compact: Vec<u8>,
}

impl Default for Scaler {
    fn default() -> Self {
        Self {
            resizer: Resizer::new(),
            algorithm: ScaleFilter::default().algorithm(),
            compact: Vec::new(),
        }
    }
}

impl Scaler {
    /// Scales one plane (`width`×`height` pixels of `pixel_type`) to the content size into `out`.
    fn scale(
        &mut self,
        plane: Plane,
        width: usize,
        height: usize,
        pixel_type: PixelType,
        g: InputGeometry,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let bpp = pixel_type.size();
        // fast_image_resize has no stride: read a strided plane as a wider image and crop it, or
        // compact the rows when the stride is not a whole number of pixels (e.g. RGB, width 5).
        let (data, src_width) =
            if plane.stride.is_multiple_of(bpp) && plane.data.len() >= plane.stride * height {
                (plane.data, plane.stride / bpp)
            } else {
                self.compact.clear();
                for y in 0..height {
                    self.compact
                        .extend_from_slice(&plane.data[y * plane.stride..][..width * bpp]);
                }
                (self.compact.as_slice(), width)
            };
        let err = |e: &dyn std::fmt::Display| FrameError(format!("cannot scale plane: {e}"));
        let src = ImageRef::new(src_width as u32, height as u32, data, pixel_type)
            .map_err(|e| err(&e))?;
        out.clear();
        out.resize(g.content_width * g.content_height * bpp, 0);
        let (dw, dh) = (g.content_width as u32, g.content_height as u32);
        let mut dst = Image::from_slice_u8(dw, dh, out, pixel_type).map_err(|e| err(&e))?;
        let options = ResizeOptions::new()
            .resize_alg(self.algorithm)
            .use_alpha(false)
            .crop(0.0, 0.0, width as f64, height as f64);
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| err(&e))
    }
}

/// Checks that every plane holds the rows the layout and size promise.
pub(crate) fn check_frame(frame: &Frame) -> Result<(), FrameError> {
    let (w, h) = (frame.width, frame.height);
    if w == 0 || h == 0 {
        return Err(FrameError(format!("frame is {w}×{h}")));
    }
    if frame.planes.len() < frame.layout.planes() {
        return Err(FrameError(format!(
            "{:?} needs {} planes, got {}",
            frame.layout,
            frame.layout.planes(),
            frame.planes.len()
        )));
    }
    for i in 0..frame.layout.planes() {
        let (row, rows) = frame.layout.plane_size(i, w, h);
        let p = frame.planes[i];
        if p.stride < row || p.data.len() < p.stride * (rows - 1) + row {
            return Err(FrameError(format!(
                "plane {i} of a {w}×{h} {:?} frame needs {rows} rows of {row} bytes, has stride {} and {} bytes",
                frame.layout,
                p.stride,
                p.data.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_for(
        layout: PixelLayout,
        planes: &[Plane],
        w: usize,
        h: usize,
        size: usize,
    ) -> (InputGeometry, Vec<f32>) {
        let frame = Frame {
            layout,
            width: w,
            height: h,
            planes,
            matrix: YuvMatrix::BT601,
        };
        let g = InputGeometry::for_frame(w, h, size);
        let mut p = Preprocessor::new();
        let mut run = |filter| {
            p.run(&frame, g, &ModelContract::default(), filter)
                .unwrap()
                .to_vec()
        };
        let (nearest, bilinear) = (run(ScaleFilter::Nearest), run(ScaleFilter::Bilinear));
        if g.content_width == w && g.content_height == h {
            // Without scaling the two paths (fused sampling vs. resize + convert) must agree.
            assert_eq!(nearest, bilinear, "{layout:?} {w}x{h}");
        }
        (g, bilinear)
    }

    #[test]
    fn geometry_keeps_aspect_and_pads_tiny_frames() {
        let g = InputGeometry::for_frame(1920, 1080, 640);
        assert_eq!(
            (g.width, g.height, g.content_width, g.content_height),
            (640, 360, 640, 360)
        );
        let g = InputGeometry::for_frame(3, 5, 640);
        assert_eq!((g.content_width, g.content_height), (384, 640));
        let g = InputGeometry::for_frame(1, 1, 0);
        assert_eq!(
            (g.width, g.height, g.content_width, g.content_height),
            (32, 32, 1, 1)
        );
        // Normalised tensor coordinates span the 32-px padded tensor, i.e. 32 frame pixels.
        assert_eq!(g.to_frame_scale(1, 1), [32.0, 32.0]);
        let g = InputGeometry::for_frame(1920, 1080, 640);
        assert_eq!(g.to_frame_scale(1920, 1080), [1920.0, 1080.0]);
    }

    #[test]
    fn packed_pixels_land_in_bgr_planes_minus_mean() {
        // 2×1 RGBx frame with a stride of 12 bytes (padding must be ignored).
        let data = [10u8, 20, 30, 0, 200, 150, 100, 0, 99, 99, 99, 99];
        let (_, t) = tensor_for(
            PixelLayout::Rgbx,
            &[Plane {
                data: &data,
                stride: 12,
            }],
            2,
            1,
            0,
        );
        // Tensor is 32×32 (padded); row 0 holds the two pixels.
        let at = |c: usize, x: usize| t[c * 32 * 32 + x];
        assert_eq!(
            [at(0, 0), at(1, 0), at(2, 0)],
            [30.0 - 104.0, 20.0 - 117.0, 10.0 - 123.0]
        );
        assert_eq!(
            [at(0, 1), at(1, 1), at(2, 1)],
            [100.0 - 104.0, 150.0 - 117.0, 200.0 - 123.0]
        );
        assert_eq!(at(0, 2), 0.0, "padding is zero after mean subtraction");
    }

    #[test]
    fn nearest_sampling_picks_the_pixel_whose_centre_is_nearest() {
        // 6×1 RGB frame halved to 3×1 (long side 3): samples source columns 1, 3, 5.
        let data: Vec<u8> = (0..6u8).flat_map(|i| [i * 10, 0, 0]).collect();
        let frame = Frame {
            layout: PixelLayout::Rgb,
            width: 6,
            height: 1,
            planes: &[Plane {
                data: &data,
                stride: 18,
            }],
            matrix: YuvMatrix::BT601,
        };
        let g = InputGeometry::for_frame(6, 1, 3);
        let contract = ModelContract {
            color_order: ColorOrder::Rgb,
            mean: [0.0; 3],
            ..Default::default()
        };
        let t = Preprocessor::new()
            .run(&frame, g, &contract, ScaleFilter::Nearest)
            .unwrap()
            .to_vec();
        assert_eq!(&t[..3], &[10.0, 30.0, 50.0]);
    }

    #[test]
    fn rgb_with_odd_stride_and_bgr_agree() {
        // 5×2 RGB (stride 16) and the same pixels as BGR (stride 15) give the same tensor.
        let px: Vec<[u8; 3]> = (0..10).map(|i| [i * 20, 255 - i * 10, i * 7]).collect();
        let mut rgb = vec![0u8; 32];
        let mut bgr = vec![0u8; 30];
        for (i, p) in px.iter().enumerate() {
            let (x, y) = (i % 5, i / 5);
            rgb[y * 16 + x * 3..][..3].copy_from_slice(p);
            bgr[y * 15 + x * 3..][..3].copy_from_slice(&[p[2], p[1], p[0]]);
        }
        let (_, a) = tensor_for(
            PixelLayout::Rgb,
            &[Plane {
                data: &rgb,
                stride: 16,
            }],
            5,
            2,
            64,
        );
        let (_, b) = tensor_for(
            PixelLayout::Bgr,
            &[Plane {
                data: &bgr,
                stride: 15,
            }],
            5,
            2,
            64,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn yuv_grey_and_colour_convert() {
        // 2×2 I420, Y=235 (white in studio range), neutral chroma → 255 on every channel.
        let y = [235u8; 4];
        let (u, v) = ([128u8], [128u8]);
        let planes = [
            Plane {
                data: &y,
                stride: 2,
            },
            Plane {
                data: &u,
                stride: 1,
            },
            Plane {
                data: &v,
                stride: 1,
            },
        ];
        let (_, t) = tensor_for(PixelLayout::I420, &planes, 2, 2, 0);
        assert!((t[0] - (255.0 - 104.0)).abs() < 0.5);
        // NV12 pure red in BT.601 studio range: Y=81, U=90, V=240 → R≈255, G≈0, B≈0.
        let y = [81u8; 4];
        let uv = [90u8, 240];
        let planes = [
            Plane {
                data: &y,
                stride: 2,
            },
            Plane {
                data: &uv,
                stride: 2,
            },
        ];
        let (_, t) = tensor_for(PixelLayout::Nv12, &planes, 2, 2, 0);
        let n = 32 * 32;
        assert!(
            (t[2 * n] - (255.0 - 123.0)).abs() < 3.0,
            "R {}",
            t[2 * n] + 123.0
        );
        assert!((t[n] + 117.0).abs() < 3.0, "G {}", t[n] + 117.0);
        assert!((t[0] + 104.0).abs() < 3.0, "B {}", t[0] + 104.0);
    }

    #[test]
    fn short_buffers_are_rejected_not_read_past() {
        let data = [0u8; 10];
        let frame = Frame {
            layout: PixelLayout::Rgba,
            width: 4,
            height: 4,
            planes: &[Plane {
                data: &data,
                stride: 16,
            }],
            matrix: YuvMatrix::BT601,
        };
        let err = Preprocessor::new()
            .run(
                &frame,
                InputGeometry::for_frame(4, 4, 0),
                &ModelContract::default(),
                ScaleFilter::Nearest,
            )
            .unwrap_err();
        assert!(err.0.contains("needs 4 rows"), "{err}");
    }

    #[test]
    fn crop_into_a_batch_slot_equals_the_cropped_pixels() {
        // 4×2 RGB frame, pixel value = 10·x + y in R; crop (1,0) 2×2 → R values 10, 11, 20, 21.
        let mut data = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 0..4 {
                data[(y * 4 + x) * 3] = (10 * x + y) as u8;
            }
        }
        let planes = [Plane {
            data: &data,
            stride: 12,
        }];
        let frame = Frame {
            layout: PixelLayout::Rgb,
            width: 4,
            height: 2,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let crop = frame.crop(1, 0, 2, 2);
        assert_eq!((crop.x, crop.y, crop.width, crop.height), (1, 0, 2, 2));
        let contract = ModelContract {
            color_order: ColorOrder::Rgb,
            mean: [0.0; 3],
            ..Default::default()
        };
        let g = InputGeometry::scaled(2, 2, 1.0);
        // A dirty slot: padding must come back as zero.
        let mut slot = vec![7.0; g.slot_len()];
        Preprocessor::new()
            .fill(&crop.frame(), g, &contract, ScaleFilter::Nearest, &mut slot)
            .unwrap();
        assert_eq!(&slot[..3], &[10.0, 20.0, 0.0]);
        assert_eq!(&slot[32..34], &[11.0, 21.0]);
        assert!(slot[2 * 32..32 * 32].iter().all(|v| *v == 0.0));
        // Subsampled layouts start crops on even pixels; crops are clipped to the frame.
        let y = [0u8; 16];
        let c = [0u8; 4];
        let planes = [
            Plane {
                data: &y,
                stride: 4,
            },
            Plane {
                data: &c,
                stride: 2,
            },
            Plane {
                data: &c,
                stride: 2,
            },
        ];
        let i420 = Frame {
            layout: PixelLayout::I420,
            width: 4,
            height: 4,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let crop = i420.crop(1, 3, 9, 9);
        assert_eq!((crop.x, crop.y, crop.width, crop.height), (0, 2, 4, 2));
    }

    /// A `w`×`h` frame of one plane of `bpp`-byte pixels, rows `stride` bytes apart, pixel
    /// (x, y) being `px(x, y)` at the layout's R, G, B offsets (other bytes 77).
    fn packed_frame(
        layout: PixelLayout,
        w: usize,
        h: usize,
        stride: usize,
        px: impl Fn(usize, usize) -> [u8; 3],
    ) -> Vec<u8> {
        let (bpp, offsets) = layout.packed().unwrap();
        let mut data = vec![77u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                for (c, &o) in offsets.iter().enumerate() {
                    data[y * stride + x * bpp + o] = px(x, y)[c];
                }
            }
        }
        data
    }

    #[test]
    fn packed_frames_become_rgb_bytes_in_rgb_order_without_row_padding() {
        let px = |x: usize, y: usize| [(10 * x + y) as u8, 100 + x as u8, 200 + y as u8];
        let expected: Vec<u8> = (0..2)
            .flat_map(|y| (0..3).flat_map(move |x| px(x, y)))
            .collect();
        for layout in PixelLayout::ALL.into_iter().filter(|l| !l.is_yuv()) {
            let bpp = layout.packed().unwrap().0;
            // Rows padded by 5 bytes: the padding must not reach the output.
            let stride = 3 * bpp + 5;
            let data = packed_frame(layout, 3, 2, stride, px);
            let frame = Frame {
                layout,
                width: 3,
                height: 2,
                planes: &[Plane {
                    data: &data,
                    stride,
                }],
                matrix: YuvMatrix::BT601,
            };
            let mut out = vec![1, 2, 3];
            frame.to_rgb(&mut out).unwrap();
            assert_eq!(out, expected, "{layout:?}");
        }
    }

    #[test]
    fn yuv_frames_become_rgb_bytes_with_each_chroma_sample_covering_its_block() {
        // 4×2 frame: the left 2×2 block studio-range red (Y 81, U 90, V 240), the right one white
        // (Y 235, U = V = 128). BT.601: red → (255, 0, 0) within 2, white → (255, 255, 255).
        let y = [81u8, 81, 235, 235, 81, 81, 235, 235];
        let (u, v) = ([90u8, 128], [240u8, 128]);
        let uv = [90u8, 240, 128, 128];
        let i420 = [
            Plane {
                data: &y,
                stride: 4,
            },
            Plane {
                data: &u,
                stride: 2,
            },
            Plane {
                data: &v,
                stride: 2,
            },
        ];
        let nv12 = [
            Plane {
                data: &y,
                stride: 4,
            },
            Plane {
                data: &uv,
                stride: 4,
            },
        ];
        let mut outputs = Vec::new();
        for (layout, planes) in [
            (PixelLayout::I420, &i420[..]),
            (PixelLayout::Nv12, &nv12[..]),
        ] {
            let frame = Frame {
                layout,
                width: 4,
                height: 2,
                planes,
                matrix: YuvMatrix::BT601,
            };
            let mut out = Vec::new();
            frame.to_rgb(&mut out).unwrap();
            assert_eq!(out.len(), 4 * 2 * 3);
            for (i, px) in out.chunks_exact(3).enumerate() {
                let red = i % 4 < 2;
                let want: [u8; 3] = if red { [255, 0, 0] } else { [255; 3] };
                for c in 0..3 {
                    assert!(
                        px[c].abs_diff(want[c]) <= 2,
                        "{layout:?} pixel {i}: {px:?}, want {want:?}"
                    );
                }
            }
            outputs.push(out);
        }
        assert_eq!(outputs[0], outputs[1], "I420 and NV12 of one image agree");
    }

    #[test]
    fn a_crop_becomes_the_rgb_bytes_of_its_own_pixels() {
        let px = |x: usize, y: usize| [(10 * x + y) as u8, 0, 0];
        let data = packed_frame(PixelLayout::Bgrx, 4, 3, 16, px);
        let frame = Frame {
            layout: PixelLayout::Bgrx,
            width: 4,
            height: 3,
            planes: &[Plane {
                data: &data,
                stride: 16,
            }],
            matrix: YuvMatrix::BT601,
        };
        let mut out = Vec::new();
        frame.crop(1, 1, 2, 2).frame().to_rgb(&mut out).unwrap();
        assert_eq!(out, [11, 0, 0, 21, 0, 0, 12, 0, 0, 22, 0, 0]);
        // A frame shorter than it says is an error, not a read past its end.
        let short = Frame { height: 4, ..frame };
        assert!(short.to_rgb(&mut out).is_err());
    }

    #[test]
    fn normalisation_is_one_definition() {
        let n = Normalisation::for_contract(&ModelContract::default());
        assert_eq!(n.color_of_channel, [2, 1, 0]);
        assert_eq!(n.mean_rgb(), [123, 117, 104]);
        let mut out = [0.0f32; 3];
        n.planar_from_rgb(&[200, 100, 50], &mut out);
        assert_eq!(out, [50.0 - 104.0, 100.0 - 117.0, 200.0 - 123.0]);
    }
}
