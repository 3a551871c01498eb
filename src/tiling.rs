//! Which parts of a frame the model looks at, and at what scale: the whole frame, user regions
//! of interest, and overlapping tiles for small faces in wide scenes.
//!
//! **Tiles.** A region (or the frame) larger than one tile is covered by a grid of equal tiles,
//! each `inference-size / tile-scale` frame pixels at most, seen at `tile-scale` (1 = native
//! pixels), plus one pass over the whole region scaled to `inference-size` for faces larger than
//! a tile keeps. Neighbouring tiles overlap by `overlap = max_tile_face + 2·margin`; a tile keeps
//! only faces of at most `max_tile_face` that stay `margin` away from its inner borders (borders
//! that are not the region's own). A face no larger than `max_tile_face` therefore lies, with
//! `margin` to spare, wholly inside some tile, which reports it with its whole box; a tile that
//! cuts it drops its part. Where two tiles both see a face whole, NMS in the finish step keeps one.
//!
//! `max_tile_face` is the face size the whole-region pass finds reliably:
//! [`WHOLE_PASS_MIN_FACE`] model pixels, in frame pixels (60 px for 1080p at inference-size
//! 640: overlap 69 px, 4 × 2 tiles of 533 × 576 px), and `margin` is 1/16 of it (≥ 2 px). The
//! whole pass keeps faces from half that size up, so the two size ranges overlap and NMS merges
//! faces both found.
//!
//! **Batches.** Tiles of a region have one size, so they share model runs of up to
//! `detector::MAX_BATCH` slots when the model's batch dimension is dynamic (one run each
//! otherwise); the memory of a run is bounded by a few tiles, never by the frame.

use crate::postprocess::Keep;

/// Smallest face, in model input pixels, that the whole-region pass is trusted with when tiling
/// (the smallest anchor is 16 px). Measured on the 1080p wall (`examples/wall_eval`): 32 gave
/// AP 0.984 at ≈ 1.35× the native pass's time, 20 gives 0.970 at ≈ 1.25× (smaller overlap);
/// on the 4K wall 20 needs 32 tiles instead of 45.
pub const WHOLE_PASS_MIN_FACE: f32 = 20.0;

/// A rectangle of frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl Rect {
    pub const fn new(x: usize, y: usize, w: usize, h: usize) -> Self {
        Self { x, y, w, h }
    }

    /// `[x_min, y_min, x_max, y_max]` as floats.
    pub fn bounds(&self) -> [f32; 4] {
        [
            self.x as f32,
            self.y as f32,
            (self.x + self.w) as f32,
            (self.y + self.h) as f32,
        ]
    }

    /// Whether the point `(x, y)` (frame pixels) lies inside: left and top edges included,
    /// right and bottom excluded.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let [x0, y0, x1, y1] = self.bounds();
        x >= x0 && x < x1 && y >= y0 && y < y1
    }
}

/// Whether the frame is tiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tiling {
    /// One pass per region (or the whole frame) scaled to `inference-size`.
    #[default]
    Off,
    /// Tiles at `tile-scale` plus a whole-region pass when a region is larger than a tile.
    Auto,
}

/// Parses `x,y,w,h;x,y,w,h;…` (frame pixels; blanks allowed; empty = no regions).
pub fn parse_regions(text: &str) -> Result<Vec<Rect>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let v: Vec<usize> = r
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("region '{r}' is not four whole numbers x,y,w,h"))?;
            match v[..] {
                [x, y, w, h] if w > 0 && h > 0 => Ok(Rect::new(x, y, w, h)),
                [_, _, _, _] => Err(format!("region '{r}' has an empty width or height")),
                _ => Err(format!("region '{r}' is not four numbers x,y,w,h")),
            }
        })
        .collect()
}

/// The regions clipped to a `width`×`height` frame, and a message for each one that lies
/// (partly) outside it. An empty list means the whole frame.
pub fn clip_regions(regions: &[Rect], width: usize, height: usize) -> (Vec<Rect>, Vec<String>) {
    let mut kept = Vec::with_capacity(regions.len());
    let mut warnings = Vec::new();
    for r in regions {
        let (x1, y1) = ((r.x + r.w).min(width), (r.y + r.h).min(height));
        if r.x >= width || r.y >= height {
            warnings.push(format!(
                "region {},{},{},{} lies outside the {width}×{height} frame and is ignored",
                r.x, r.y, r.w, r.h
            ));
        } else {
            let c = Rect::new(r.x, r.y, x1 - r.x, y1 - r.y);
            if c != *r {
                warnings.push(format!(
                    "region {},{},{},{} reaches outside the {width}×{height} frame; using {},{},{},{}",
                    r.x, r.y, r.w, r.h, c.x, c.y, c.w, c.h
                ));
            }
            kept.push(c);
        }
    }
    (kept, warnings)
}

/// How a pass scales its crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PassScale {
    /// Long side becomes this many pixels (0 = native), as `InputGeometry::for_frame`.
    Fit(usize),
    /// Multiplied by this factor (a tile).
    Factor(f32),
}

/// One model input: a crop of the frame, its scale, and which faces it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub crop: Rect,
    pub scale: PassScale,
    /// Boxes are clamped to this rectangle (the region the pass belongs to).
    pub clip: Rect,
    pub keep: Keep,
}

/// The passes for one frame: one per region (the whole frame when `regions` is empty), each
/// tiled as the module documentation says when `tiling` is [`Tiling::Auto`] and the region is
/// larger than a tile; a region one tile holds is one pass, as with [`Tiling::Off`].
/// `inference_size` 0 (native scale) never tiles.
pub fn plan(
    width: usize,
    height: usize,
    regions: &[Rect],
    inference_size: usize,
    tiling: Tiling,
    tile_scale: f32,
) -> Vec<Pass> {
    let whole = [Rect::new(0, 0, width, height)];
    let regions = if regions.is_empty() {
        &whole[..]
    } else {
        regions
    };
    let mut passes = Vec::new();
    for &region in regions {
        let single = Pass {
            crop: region,
            scale: PassScale::Fit(inference_size),
            clip: region,
            keep: Keep::ALL,
        };
        // A scale that is not a positive number (NaN included) cannot size a tile: no tiling.
        let usable_scale = tile_scale.is_finite() && tile_scale > 0.0;
        if tiling == Tiling::Off || inference_size == 0 || !usable_scale {
            passes.push(single);
            continue;
        }
        // Frame pixels one tile covers at most.
        let tile = ((inference_size as f32 / tile_scale).floor() as usize).max(1);
        if region.w <= tile && region.h <= tile {
            // One tile holds the region: one pass, seen as `Tiling::Off` sees it. Scaled up to
            // the inference size it is seen at least at tile scale (its long side is at most a
            // tile), so small faces in a small frame or region (a motion region) are never
            // seen smaller than without tiling.
            passes.push(single);
            continue;
        }
        let long = region.w.max(region.h) as f32;
        // What the whole pass finds reliably, in frame pixels, capped so tiles still advance
        // by at least half their size.
        // Room for a cut face's box that stops short of the border it is cut by.
        let margin_of = |face: f32| (face / 16.0).max(2.0);
        let mut max_face = WHOLE_PASS_MIN_FACE * long / inference_size as f32;
        let cap = tile as f32 / 2.0;
        if max_face + 2.0 * margin_of(max_face) > cap {
            max_face = cap / 1.5;
        }
        let margin = margin_of(max_face);
        let overlap = (max_face + 2.0 * margin).ceil() as usize + 1;
        let (xs, tw) = axis(region.x, region.w, tile, overlap);
        let (ys, th) = axis(region.y, region.h, tile, overlap);
        let [rx0, ry0, rx1, ry1] = region.bounds();
        for &y in &ys {
            for &x in &xs {
                let crop = Rect::new(x, y, tw, th);
                let [x0, y0, x1, y1] = crop.bounds();
                let inner = |edge: f32, region_edge: f32| (edge != region_edge).then_some(edge);
                passes.push(Pass {
                    crop,
                    scale: PassScale::Factor(tile_scale),
                    clip: region,
                    keep: Keep {
                        min_side: 0.0,
                        max_side: max_face,
                        cut_edges: [
                            inner(x0, rx0),
                            inner(y0, ry0),
                            inner(x1, rx1),
                            inner(y1, ry1),
                        ],
                        margin,
                    },
                });
            }
        }
        passes.push(Pass {
            keep: Keep {
                min_side: max_face / 2.0,
                ..Keep::ALL
            },
            ..single
        });
    }
    passes
}

/// How the regions of interest are scaled (the whole frame is always scaled to `inference-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegionScale {
    /// Each region on its own: its long side becomes `inference-size` (small regions are
    /// zoomed into, at the cost of a whole-frame input each).
    #[default]
    Fit,
    /// At the scale the whole frame's plan sees that area (the frame's `inference-size` scale,
    /// or the tile scale when the frame is tiled), never above `Fit`'s: the model sees the
    /// region's pixels as it would in the whole frame, at a cost in proportion to its area. For
    /// motion gating, where the regions stand in for the whole frame.
    WholeFrame,
}

/// [`plan`] with each region that is one pass (no tiles of its own) seen at the scale
/// [`RegionScale::WholeFrame`] says.
pub fn plan_like_whole_frame(
    width: usize,
    height: usize,
    regions: &[Rect],
    inference_size: usize,
    tiling: Tiling,
    tile_scale: f32,
) -> Vec<Pass> {
    let mut passes = plan(width, height, regions, inference_size, tiling, tile_scale);
    if regions.is_empty() || inference_size == 0 {
        // The whole frame, or native scale: already what the whole frame gets.
        return passes;
    }
    let tile = (inference_size as f32 / tile_scale).floor() as usize;
    let frame_tiled = tiling == Tiling::Auto
        && tile_scale.is_finite()
        && tile_scale > 0.0
        && (width > tile || height > tile);
    let frame_scale = if frame_tiled {
        tile_scale
    } else {
        inference_size as f32 / width.max(height) as f32
    };
    // Never above what `Fit` gives: a region is no longer than the frame, and a region one pass
    // covers in a tiled frame is no longer than a tile.
    for pass in &mut passes {
        if pass.keep == Keep::ALL && matches!(pass.scale, PassScale::Fit(_)) {
            pass.scale = PassScale::Factor(frame_scale);
        }
    }
    passes
}

/// Tile starts and the common tile length covering `len` pixels from `start`: the fewest tiles
/// of at most `tile` pixels whose neighbours share at least `overlap`, shrunk to equal lengths
/// and spread evenly (the last one ends at the region's end).
fn axis(start: usize, len: usize, tile: usize, overlap: usize) -> (Vec<usize>, usize) {
    if len <= tile {
        return (vec![start], len);
    }
    let overlap = overlap.min(tile - 1);
    let n = (len - overlap).div_ceil(tile - overlap);
    // +1 pixel per tile absorbs the rounding of the starts below.
    let tile_len = ((len + (n - 1) * overlap).div_ceil(n) + 1)
        .min(tile)
        .min(len);
    let span = len - tile_len;
    let starts = (0..n)
        .map(|i| start + (i * span + (n - 1) / 2) / (n - 1).max(1))
        .collect();
    (starts, tile_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_and_reject_garbage() {
        assert_eq!(
            parse_regions(" 1,2,3,4 ; 10,20,30,40;").unwrap(),
            vec![Rect::new(1, 2, 3, 4), Rect::new(10, 20, 30, 40)]
        );
        assert_eq!(parse_regions("").unwrap(), vec![]);
        assert!(parse_regions("1,2,3").unwrap_err().contains("four"));
        assert!(parse_regions("1,2,0,4").unwrap_err().contains("empty"));
        assert!(
            parse_regions("1,2,-3,4")
                .unwrap_err()
                .contains("whole numbers")
        );
    }

    #[test]
    fn regions_are_clipped_with_a_warning() {
        let (kept, warnings) = clip_regions(
            &[
                Rect::new(0, 0, 10, 10),
                Rect::new(90, 50, 20, 20),
                Rect::new(200, 0, 5, 5),
            ],
            100,
            60,
        );
        assert_eq!(
            kept,
            vec![Rect::new(0, 0, 10, 10), Rect::new(90, 50, 10, 10)]
        );
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("using 90,50,10,10"), "{warnings:?}");
        assert!(
            warnings[1].contains("outside the 100×60 frame"),
            "{warnings:?}"
        );
    }

    #[test]
    fn axis_covers_with_the_overlap() {
        // 1920 px, tiles ≤ 640, overlap 100: (1920 − 100) / 540 → 4 tiles of
        // ⌈(1920 + 300) / 4⌉ + 1 = 556 px at 0, 455, 909, 1364.
        let (starts, len) = axis(0, 1920, 640, 100);
        assert_eq!(len, 556);
        assert_eq!(starts, vec![0, 455, 909, 1364]);
        assert_eq!(starts[3] + len, 1920);
        for w in starts.windows(2) {
            assert!(w[0] + len >= w[1] + 100, "{starts:?}");
        }
        // Fits: one tile, the region itself.
        assert_eq!(axis(7, 300, 640, 100), (vec![7], 300));
        // Exactly two tiles' worth plus overlap.
        let (starts, len) = axis(10, 1180, 640, 100);
        assert_eq!((starts.len(), starts[0], starts[1] + len), (2, 10, 1190));
    }

    #[test]
    fn plan_tiles_a_wide_frame_and_adds_a_whole_pass() {
        let passes = plan(1920, 1080, &[], 640, Tiling::Auto, 1.0);
        // max face = 20 · 1920 / 640 = 60 px, margin 60 / 16 = 3.75, overlap ⌈67.5⌉ + 1 = 69:
        // 4 × 2 tiles + whole.
        assert_eq!(passes.len(), 9);
        let tiles = &passes[..8];
        assert!(tiles.iter().all(|p| p.scale == PassScale::Factor(1.0)));
        assert!(
            tiles
                .iter()
                .all(|p| p.crop.w == tiles[0].crop.w && p.crop.h == tiles[0].crop.h)
        );
        assert!(
            tiles
                .iter()
                .all(|p| p.keep.max_side == 60.0 && p.keep.margin == 3.75)
        );
        // The top-left tile cuts only on its right and bottom edges.
        let k = tiles[0].keep;
        assert_eq!(k.cut_edges[0], None);
        assert_eq!(k.cut_edges[1], None);
        assert_eq!(k.cut_edges[2], Some(tiles[0].crop.w as f32));
        let whole = passes[8];
        assert_eq!(whole.crop, Rect::new(0, 0, 1920, 1080));
        assert_eq!(whole.scale, PassScale::Fit(640));
        assert_eq!(whole.keep.min_side, 30.0);
        // Every face up to 60 px fits in some tile with the margin to spare: check all
        // positions of a 60-px square along both axes.
        for (pos, len) in [(0usize, 1920usize), (1, 1080)] {
            for a in 0..=len - 60 {
                let inside = tiles.iter().any(|t| {
                    let (s, l) = if pos == 0 {
                        (t.crop.x, t.crop.w)
                    } else {
                        (t.crop.y, t.crop.h)
                    };
                    let lo_ok = s == 0 || a as f32 >= s as f32 + 3.75;
                    let hi_ok = s + l == len || (a + 60) as f32 <= (s + l) as f32 - 3.75;
                    lo_ok && hi_ok
                });
                assert!(inside, "axis {pos}: face at {a} is cut by every tile");
            }
        }
    }

    #[test]
    fn regions_like_the_whole_frame_are_seen_at_the_frames_scale() {
        let r = [Rect::new(100, 100, 150, 120), Rect::new(0, 0, 1920, 1080)];
        // 1080p at 640: the frame is seen at 1/3; so is a small region (its Fit would be 4.27).
        let off = plan_like_whole_frame(1920, 1080, &r, 640, Tiling::Off, 1.0);
        assert_eq!(off[0].scale, PassScale::Factor(1.0 / 3.0));
        assert_eq!(off[0].crop, r[0]);
        assert_eq!(off[1].scale, PassScale::Factor(1.0 / 3.0));
        // A 640×360 sub-stream is seen at its own pixels, and so are its regions.
        let sub = plan_like_whole_frame(640, 360, &r[..1], 640, Tiling::Off, 1.0);
        assert_eq!(sub[0].scale, PassScale::Factor(1.0));
        // A tiled frame sees small faces at the tile scale: so does a region one tile holds.
        let auto = plan_like_whole_frame(1920, 1080, &r[..1], 640, Tiling::Auto, 2.0);
        assert_eq!(
            auto,
            vec![Pass {
                scale: PassScale::Factor(2.0),
                ..plan(1920, 1080, &r[..1], 640, Tiling::Auto, 2.0)[0]
            }]
        );
        // No regions: the plan of the whole frame, unchanged.
        assert_eq!(
            plan_like_whole_frame(1920, 1080, &[], 640, Tiling::Auto, 1.0),
            plan(1920, 1080, &[], 640, Tiling::Auto, 1.0)
        );
    }

    #[test]
    fn plan_without_tiling_or_small_regions() {
        let r = [Rect::new(100, 100, 300, 200), Rect::new(0, 0, 1, 1)];
        let off = plan(1920, 1080, &r, 640, Tiling::Off, 1.0);
        assert_eq!(off.len(), 2);
        assert!(
            off.iter()
                .all(|p| p.scale == PassScale::Fit(640) && p.keep == Keep::ALL)
        );
        assert_eq!(off[0].crop, r[0]);
        // A region within one tile is one pass, as without tiling: scaled up to the
        // inference size (300 → 640 px here, more than the tile scale 2 would give).
        let auto = plan(1920, 1080, &r, 640, Tiling::Auto, 2.0);
        assert_eq!(auto, off);
        // Native inference size never tiles.
        assert_eq!(plan(1920, 1080, &[], 0, Tiling::Auto, 1.0).len(), 1);
    }
}
