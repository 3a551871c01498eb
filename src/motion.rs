//! Where something moves in a video frame: the regions a motion-gated detector looks at (what
//! Frigate runs before its detector, DL Streamer's `gvamotiondetect`). Plain Rust, no GStreamer
//! types; any of the detector's pixel formats.
//!
//! Per frame: the luma is averaged down to a small analysis image (`analysis_width` wide, aspect
//! kept), compared with a running background (an exponential average, `learning_rate` per
//! frame), pixels that differ by more than `threshold` grey levels and are not masked count as
//! changed; the changed mask is dilated (so the parts of one moving person join), split into
//! connected components, components smaller than `min_area` (a share of the analysis image) are
//! noise, and each remaining component's box, grown by `margin` of its size on every side and
//! scaled to frame pixels, is a region. Overlapping regions are merged until none overlap.
//!
//! A sudden change of most of the frame (lights switched on, the camera's auto-exposure) is not
//! motion of something: when more than `global_change` of the unmasked pixels change at once,
//! the whole frame is one region and the background jumps to the new frame, so the next frames
//! are compared with the new lighting. The first frame only learns the background (no regions):
//! whoever gates a detector on motion also runs it on whole frames now and then.

use crate::preprocess::{Frame, FrameError, check_frame};
use crate::tiling::Rect;

/// Motion detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Width of the analysis image in pixels (the frame's luma is averaged down to it).
    pub analysis_width: usize,
    /// Grey levels (0–255) a pixel must differ from the background by to count as changed.
    pub threshold: u8,
    /// Share of the current frame blended into the background per frame (0..1).
    pub learning_rate: f32,
    /// Changed pixels joined around each changed pixel, in analysis pixels.
    pub dilation: usize,
    /// Smallest component that is motion, as a share of the analysis image's area.
    pub min_area: f32,
    /// Grown on every side of a component's box, as a share of its size.
    pub margin: f32,
    /// Share of unmasked pixels changing at once above which the frame is a lighting change.
    pub global_change: f32,
    /// Rectangles, in frame pixels, where nothing counts as motion (an on-screen clock, a tree).
    pub masks: Vec<Rect>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            analysis_width: 160,
            threshold: 25,
            learning_rate: 0.05,
            dilation: 2,
            min_area: 0.001,
            margin: 0.25,
            global_change: 0.6,
            masks: Vec::new(),
        }
    }
}

/// Motion regions of one stream, frame after frame.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    config: MotionConfig,
    /// Frame size and analysis size the background belongs to.
    geometry: Option<Geometry>,
    background: Vec<f32>,
    /// Analysis pixels covered by a mask.
    masked: Vec<bool>,
    // Per-frame scratch, kept to avoid allocating every frame.
    small: Vec<u8>,
    changed: Vec<bool>,
    grown: Vec<bool>,
    labels: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    frame: (usize, usize),
    small: (usize, usize),
}

impl MotionDetector {
    pub fn new(config: MotionConfig) -> Self {
        Self {
            config,
            geometry: None,
            background: Vec::new(),
            masked: Vec::new(),
            small: Vec::new(),
            changed: Vec::new(),
            grown: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// New settings; a new analysis size or new masks start the background again.
    pub fn set_config(&mut self, config: MotionConfig) {
        if config.analysis_width != self.config.analysis_width || config.masks != self.config.masks
        {
            self.reset();
        }
        self.config = config;
    }

    /// Forgets the background (a seek, a new stream, new caps): the next frame only learns it.
    pub fn reset(&mut self) {
        self.geometry = None;
    }

    /// The regions where `frame` moved against the frames before it, in frame pixels.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Rect>, FrameError> {
        check_frame(frame)?;
        let sw = self.config.analysis_width.clamp(1, frame.width);
        let sh = ((frame.height * sw) as f64 / frame.width as f64)
            .round()
            .max(1.0) as usize;
        let geometry = Geometry {
            frame: (frame.width, frame.height),
            small: (sw, sh),
        };
        downscale_luma(frame, sw, sh, &mut self.small);
        if self.geometry != Some(geometry) {
            self.geometry = Some(geometry);
            self.background.clear();
            self.background.extend(self.small.iter().map(|&v| v as f32));
            self.masked = mask_pixels(&self.config.masks, geometry);
            return Ok(Vec::new());
        }
        let threshold = self.config.threshold as f32;
        self.changed.clear();
        self.changed.extend(
            self.small
                .iter()
                .zip(&self.background)
                .zip(&self.masked)
                .map(|((&v, &b), &m)| !m && (v as f32 - b).abs() > threshold),
        );
        let unmasked = self.masked.iter().filter(|m| !**m).count().max(1);
        let changed = self.changed.iter().filter(|c| **c).count();
        if changed as f32 > self.config.global_change * unmasked as f32 {
            // Lighting, not motion: look at everything, and compare with the new light from now.
            for (b, &v) in self.background.iter_mut().zip(&self.small) {
                *b = v as f32;
            }
            return Ok(vec![Rect::new(0, 0, frame.width, frame.height)]);
        }
        let rate = self.config.learning_rate.clamp(0.0, 1.0);
        for (b, &v) in self.background.iter_mut().zip(&self.small) {
            *b += rate * (v as f32 - *b);
        }
        dilate(&self.changed, sw, sh, self.config.dilation, &mut self.grown);
        let min_pixels = (self.config.min_area * (sw * sh) as f32).max(1.0);
        let boxes = components(&self.grown, &self.changed, sw, sh, &mut self.labels)
            .into_iter()
            .filter(|c| c.pixels as f32 >= min_pixels)
            .map(|c| to_frame(c.bounds, self.config.margin, geometry))
            .collect();
        Ok(merge_overlapping(boxes))
    }
}

/// Averages the frame's luma down to `sw`×`sh` (box filter: each analysis pixel is the mean of
/// the frame pixels it covers), into `out`.
fn downscale_luma(frame: &Frame, sw: usize, sh: usize, out: &mut Vec<u8>) {
    let luma = LumaReader::new(frame);
    let (w, h) = (frame.width, frame.height);
    out.clear();
    let mut sums = vec![0u32; sw];
    let mut counts = vec![0u32; sw];
    for sy in 0..sh {
        let (y0, y1) = (sy * h / sh, ((sy + 1) * h / sh).max(sy * h / sh + 1));
        sums.iter_mut().for_each(|s| *s = 0);
        counts.iter_mut().for_each(|c| *c = 0);
        for y in y0..y1.min(h) {
            for (sx, (sum, count)) in sums.iter_mut().zip(counts.iter_mut()).enumerate() {
                let (x0, x1) = (sx * w / sw, ((sx + 1) * w / sw).max(sx * w / sw + 1));
                for x in x0..x1.min(w) {
                    *sum += luma.at(x, y) as u32;
                    *count += 1;
                }
            }
        }
        out.extend(
            sums.iter()
                .zip(&counts)
                .map(|(s, c)| (s / (*c).max(1)) as u8),
        );
    }
}

/// Reads the luma of any of the pixel table's layouts: the Y plane of YUV frames, BT.601
/// weights of R, G, B for packed RGB frames (the motion threshold does not need more).
struct LumaReader<'a> {
    frame: &'a Frame<'a>,
    /// Packed RGB: bytes per pixel and the offsets of R, G, B.
    packed: Option<(usize, [usize; 3])>,
    /// YUV: the plane and byte offset of Y, and its bytes per sample.
    y: (usize, usize, usize),
}

impl<'a> LumaReader<'a> {
    fn new(frame: &'a Frame<'a>) -> Self {
        let format = frame.layout.format();
        let yc = format.components[0];
        Self {
            frame,
            packed: frame.layout.packed(),
            y: (
                yc.plane,
                yc.offset,
                format.planes[yc.plane].bytes_per_sample,
            ),
        }
    }

    fn at(&self, x: usize, y: usize) -> u8 {
        match self.packed {
            Some((bpp, [r, g, b])) => {
                let p = &self.frame.planes[0].data[y * self.frame.planes[0].stride + x * bpp..];
                ((77 * p[r] as u32 + 150 * p[g] as u32 + 29 * p[b] as u32) >> 8) as u8
            }
            None => {
                let (plane, offset, bps) = self.y;
                let p = &self.frame.planes[plane];
                p.data[y * p.stride + x * bps + offset]
            }
        }
    }
}

/// Analysis pixels whose centre lies inside one of `masks` (frame pixels).
fn mask_pixels(masks: &[Rect], g: Geometry) -> Vec<bool> {
    let ((fw, fh), (sw, sh)) = (g.frame, g.small);
    let mut out = vec![false; sw * sh];
    for y in 0..sh {
        for x in 0..sw {
            let (cx, cy) = (
                (x as f32 + 0.5) * fw as f32 / sw as f32,
                (y as f32 + 0.5) * fh as f32 / sh as f32,
            );
            out[y * sw + x] = masks.iter().any(|m| m.contains(cx, cy));
        }
    }
    out
}

/// Marks every pixel within `radius` (a square) of a marked pixel of `mask`, into `out`.
fn dilate(mask: &[bool], w: usize, h: usize, radius: usize, out: &mut Vec<bool>) {
    // Separable: rows, then columns.
    let mut rows = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(radius), (x + radius).min(w - 1));
            rows[y * w + x] = mask[y * w + x0..=y * w + x1].iter().any(|m| *m);
        }
    }
    out.clear();
    out.resize(w * h, false);
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(radius), (y + radius).min(h - 1));
        for x in 0..w {
            out[y * w + x] = (y0..=y1).any(|yy| rows[yy * w + x]);
        }
    }
}

/// A connected component of marked pixels: its box `[x0, y0, x1, y1)` and how many changed
/// pixels it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Component {
    bounds: [usize; 4],
    pixels: usize,
}

/// The 8-connected components of `mask` (the dilated change), each counting the pixels of
/// `changed` (before dilation: dilation must not turn a speck into motion) it holds. `labels`
/// is scratch space.
fn components(
    mask: &[bool],
    changed: &[bool],
    w: usize,
    h: usize,
    labels: &mut Vec<u32>,
) -> Vec<Component> {
    labels.clear();
    labels.resize(w * h, 0);
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = found.len() as u32 + 1;
        let mut c = Component {
            bounds: [start % w, start / w, start % w + 1, start / w + 1],
            pixels: 0,
        };
        labels[start] = label;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            c.pixels += changed[i] as usize;
            c.bounds = [
                c.bounds[0].min(x),
                c.bounds[1].min(y),
                c.bounds[2].max(x + 1),
                c.bounds[3].max(y + 1),
            ];
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = label;
                        stack.push(j);
                    }
                }
            }
        }
        found.push(c);
    }
    found
}

/// A component's box in frame pixels, grown by `margin` of its size on every side, inside the
/// frame.
fn to_frame(b: [usize; 4], margin: f32, g: Geometry) -> Rect {
    let ((fw, fh), (sw, sh)) = (g.frame, g.small);
    let (kx, ky) = (fw as f32 / sw as f32, fh as f32 / sh as f32);
    let (x0, y0, x1, y1) = (
        b[0] as f32 * kx,
        b[1] as f32 * ky,
        b[2] as f32 * kx,
        b[3] as f32 * ky,
    );
    let (mx, my) = (margin * (x1 - x0), margin * (y1 - y0));
    let x0 = (x0 - mx).floor().max(0.0) as usize;
    let y0 = (y0 - my).floor().max(0.0) as usize;
    let x1 = ((x1 + mx).ceil() as usize).min(fw);
    let y1 = ((y1 + my).ceil() as usize).min(fh);
    Rect::new(x0, y0, x1 - x0, y1 - y0)
}

/// Merges overlapping rectangles into their bounding boxes until none overlap.
fn merge_overlapping(mut rects: Vec<Rect>) -> Vec<Rect> {
    let overlap = |a: &Rect, b: &Rect| {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    };
    loop {
        let mut merged = false;
        'outer: for i in 0..rects.len() {
            for j in i + 1..rects.len() {
                if overlap(&rects[i], &rects[j]) {
                    let (a, b) = (rects[i], rects.swap_remove(j));
                    let (x0, y0) = (a.x.min(b.x), a.y.min(b.y));
                    let (x1, y1) = ((a.x + a.w).max(b.x + b.w), (a.y + a.h).max(b.y + b.h));
                    rects[i] = Rect::new(x0, y0, x1 - x0, y1 - y0);
                    merged = true;
                    break 'outer;
                }
            }
        }
        if !merged {
            rects.sort_by_key(|r| (r.y, r.x));
            return rects;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::YuvMatrix;
    use crate::pixfmt::PixelLayout;
    use crate::preprocess::Plane;

    const W: usize = 320;
    const H: usize = 180;

    /// A grey frame (level `grey`, with a fixed pseudo-random texture of ±`noise`) with white
    /// blocks `[x, y, w, h]`, as one I420 luma plane plus flat chroma.
    struct Scene {
        y: Vec<u8>,
        uv: Vec<u8>,
    }

    impl Scene {
        fn new(grey: u8, noise: u8, blocks: &[[usize; 4]], seed: u32) -> Self {
            let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
            let mut y = vec![0u8; W * H];
            for v in &mut y {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let n = if noise == 0 {
                    0
                } else {
                    (state >> 24) as i32 % (2 * noise as i32 + 1) - noise as i32
                };
                *v = (grey as i32 + n).clamp(0, 255) as u8;
            }
            for b in blocks {
                for yy in b[1]..(b[1] + b[3]).min(H) {
                    for xx in b[0]..(b[0] + b[2]).min(W) {
                        y[yy * W + xx] = 250;
                    }
                }
            }
            Self {
                y,
                uv: vec![128u8; (W / 2) * (H / 2)],
            }
        }

        fn regions(&self, m: &mut MotionDetector) -> Vec<Rect> {
            let planes = [
                Plane {
                    data: &self.y,
                    stride: W,
                },
                Plane {
                    data: &self.uv,
                    stride: W / 2,
                },
                Plane {
                    data: &self.uv,
                    stride: W / 2,
                },
            ];
            let frame = Frame {
                layout: PixelLayout::I420,
                width: W,
                height: H,
                planes: &planes,
                matrix: YuvMatrix::BT601,
            };
            m.detect(&frame).unwrap()
        }
    }

    fn contains(r: &Rect, b: [usize; 4]) -> bool {
        r.x <= b[0] && r.y <= b[1] && r.x + r.w >= b[0] + b[2] && r.y + r.h >= b[1] + b[3]
    }

    #[test]
    fn a_moving_block_gives_one_region_around_it_and_a_still_scene_none() {
        let mut m = MotionDetector::new(MotionConfig::default());
        assert!(
            Scene::new(100, 3, &[], 1).regions(&mut m).is_empty(),
            "first frame learns"
        );
        assert!(
            Scene::new(100, 3, &[], 2).regions(&mut m).is_empty(),
            "sensor noise"
        );
        let block = [100, 60, 30, 40];
        let regions = Scene::new(100, 3, &[block], 3).regions(&mut m);
        assert_eq!(regions.len(), 1, "{regions:?}");
        assert!(contains(&regions[0], block), "{regions:?} holds {block:?}");
        // Grown by about a quarter of its size, not the whole frame.
        assert!(
            regions[0].w < 30 + 2 * 20 && regions[0].h < 40 + 2 * 26,
            "{regions:?}"
        );
    }

    #[test]
    fn two_distant_blocks_are_two_regions_and_overlapping_ones_merge() {
        let mut m = MotionDetector::new(MotionConfig::default());
        Scene::new(100, 0, &[], 1).regions(&mut m);
        let (a, b) = ([20, 20, 20, 20], [250, 120, 30, 30]);
        let regions = Scene::new(100, 0, &[a, b], 2).regions(&mut m);
        assert_eq!(regions.len(), 2, "{regions:?}");
        assert!(
            contains(&regions[0], a) && contains(&regions[1], b),
            "{regions:?}"
        );
        // Two blocks close enough that their grown boxes overlap: one region holding both.
        let mut m = MotionDetector::new(MotionConfig::default());
        Scene::new(100, 0, &[], 1).regions(&mut m);
        let (c, d) = ([100, 50, 20, 40], [126, 50, 20, 40]);
        let regions = Scene::new(100, 0, &[c, d], 2).regions(&mut m);
        assert_eq!(regions.len(), 1, "{regions:?}");
        assert!(contains(&regions[0], c) && contains(&regions[0], d));
    }

    #[test]
    fn tiny_changes_and_masked_areas_are_not_motion() {
        let mut m = MotionDetector::new(MotionConfig {
            masks: vec![Rect::new(0, 0, 80, 30)],
            ..MotionConfig::default()
        });
        Scene::new(100, 0, &[], 1).regions(&mut m);
        // A 2×2 speck (under min_area at the analysis scale) and a clock in the masked corner.
        let regions = Scene::new(100, 0, &[[200, 100, 2, 2], [10, 5, 50, 20]], 2).regions(&mut m);
        assert!(regions.is_empty(), "{regions:?}");
    }

    #[test]
    fn a_lighting_step_is_the_whole_frame_once_then_the_new_light_is_the_background() {
        let mut m = MotionDetector::new(MotionConfig::default());
        Scene::new(80, 2, &[], 1).regions(&mut m);
        let lit = Scene::new(160, 2, &[], 2).regions(&mut m);
        assert_eq!(lit, [Rect::new(0, 0, W, H)], "lights on");
        assert!(
            Scene::new(160, 2, &[], 3).regions(&mut m).is_empty(),
            "adapted at once"
        );
    }

    #[test]
    fn a_block_that_stops_fades_into_the_background() {
        let mut m = MotionDetector::new(MotionConfig::default());
        Scene::new(100, 0, &[], 1).regions(&mut m);
        let block = [150, 80, 30, 30];
        let mut frames_with_motion = 0;
        for k in 0..200 {
            frames_with_motion +=
                !Scene::new(100, 0, &[block], k).regions(&mut m).is_empty() as usize;
        }
        assert!(frames_with_motion >= 1, "seen when it appears");
        assert!(
            frames_with_motion < 100,
            "learnt once it stays: {frames_with_motion}"
        );
        assert!(Scene::new(100, 0, &[block], 300).regions(&mut m).is_empty());
    }

    #[test]
    fn packed_rgb_frames_give_the_same_regions_as_their_luma() {
        // The same scene as RGBx (grey: R = G = B = luma) and as I420.
        let block = [60, 40, 40, 40];
        let (before, after) = (Scene::new(90, 0, &[], 1), Scene::new(90, 0, &[block], 2));
        let rgbx = |s: &Scene| s.y.iter().flat_map(|&v| [v, v, v, 0]).collect::<Vec<u8>>();
        let (b, a) = (rgbx(&before), rgbx(&after));
        let mut m = MotionDetector::new(MotionConfig::default());
        let mut run = |data: &[u8]| {
            let planes = [Plane {
                data,
                stride: W * 4,
            }];
            let frame = Frame {
                layout: PixelLayout::Rgbx,
                width: W,
                height: H,
                planes: &planes,
                matrix: YuvMatrix::BT601,
            };
            m.detect(&frame).unwrap()
        };
        run(&b);
        let packed = run(&a);
        let mut m = MotionDetector::new(MotionConfig::default());
        before.regions(&mut m);
        assert_eq!(packed, after.regions(&mut m));
    }

    #[test]
    fn a_new_frame_size_starts_the_background_again() {
        let mut m = MotionDetector::new(MotionConfig::default());
        Scene::new(100, 0, &[], 1).regions(&mut m);
        assert_eq!(
            Scene::new(100, 0, &[[10, 10, 30, 30]], 2)
                .regions(&mut m)
                .len(),
            1
        );
        m.reset();
        assert!(
            Scene::new(100, 0, &[[10, 10, 30, 30]], 3)
                .regions(&mut m)
                .is_empty()
        );
    }
}
