//! Synthetic tracking evaluation, shared by `examples/track_eval.rs` and the tests (`tests/track_eval.rs`, `tests/async_track.rs`):
//! faces cut from the sample photos (sprites) pasted onto a noisy background and moved along
//! known paths, pushed through `appsrc ! retinafacedetect ! [retinafacetrack] ! appsink`, and
//! scored against the known boxes with CLEAR-MOT (MOTA, ID switches), IDF1 and box IoU.
//!
//! The caller initialises GStreamer and registers the plugin first ([`crate::init`]).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use gstretinaface::facemeta::{self, FaceRecord};
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use retinaface::{Face, Tracker, TrackerConfig};

/// `x0, y0, x1, y1` in frame pixels.
pub type Box4 = [f64; 4];

/// IoU a ground-truth face and an output box need to count as a match (CLEAR-MOT and IDF1).
pub const MATCH_IOU: f64 = 0.5;
/// A ground-truth face covered more than this (by faces drawn over it, or by the frame edge) is
/// "don't care": not counted as missed, and an output on it is not a false positive.
pub const MAX_HIDDEN: f64 = 0.5;

pub use retinaface::geometry::iou;

fn area(a: &Box4) -> f64 {
    (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0)
}

fn intersection(a: &Box4, b: &Box4) -> Box4 {
    [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]
}

pub fn record_box(f: &FaceRecord) -> Box4 {
    f.corners()
}

/// A face cut from a photo: RGB pixels, an elliptical alpha mask, and the detector's face box
/// inside it.
#[derive(Clone)]
pub struct Sprite {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub alpha: Vec<f32>,
    pub face: Box4,
    pub name: String,
}

/// Decodes `path` to RGB at native size and detects its faces.
fn decode_and_detect(path: &str) -> (usize, usize, Vec<u8>, Vec<FaceRecord>) {
    let description = format!(
        "filesrc location={path} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! retinafacedetect ! appsink name=sink sync=false"
    );
    let sample = crate::first_sample(&description, None);
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let buffer = sample.buffer().unwrap();
    let faces = facemeta::read(buffer);
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        rgb.extend_from_slice(&data[y * stride..y * stride + w * 3]);
    }
    (w, h, rgb, faces)
}

/// Bilinear sample of channel `c` at `(x, y)`.
fn sample(rgb: &[u8], w: usize, h: usize, x: f64, y: f64, c: usize) -> f64 {
    let x = x.clamp(0.0, (w - 1) as f64);
    let y = y.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |xx: usize, yy: usize| rgb[(yy * w + xx) * 3 + c] as f64;
    (p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx) * (1.0 - fy)
        + (p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx) * fy
}

/// Sprites from the sample `photos` (file names under `media_dir`): every confidently detected
/// face at least `min_face` px high, cut with a margin of 35 % of its size on each side, scaled
/// so the face box is `face_height` px high. Faces whose crop would include much of another
/// face are skipped.
pub fn load_sprites(
    media_dir: &std::path::Path,
    photos: &[&str],
    min_face: f64,
    face_height: f64,
) -> Vec<Sprite> {
    let mut sprites = Vec::new();
    for name in photos {
        let path = media_dir.join(name);
        let (w, h, rgb, faces) = decode_and_detect(path.to_str().unwrap());
        let boxes: Vec<Box4> = faces.iter().map(record_box).collect();
        for (i, f) in faces.iter().enumerate() {
            if f.score.unwrap_or(0.0) < 0.9 || f.height < min_face {
                continue;
            }
            let b = boxes[i];
            let (mx, my) = (0.35 * f.width, 0.35 * f.height);
            let crop = [b[0] - mx, b[1] - my, b[2] + mx, b[3] + my];
            if crop[0] < 0.0 || crop[1] < 0.0 || crop[2] > w as f64 || crop[3] > h as f64 {
                continue;
            }
            let crowded = boxes
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && area(&intersection(&crop, o)) > 0.1 * area(o));
            if crowded {
                continue;
            }
            let scale = face_height / f.height;
            let sw = ((crop[2] - crop[0]) * scale).round() as usize;
            let sh = ((crop[3] - crop[1]) * scale).round() as usize;
            let mut out = vec![0u8; sw * sh * 3];
            let mut alpha = vec![0f32; sw * sh];
            for y in 0..sh {
                for x in 0..sw {
                    let (sx, sy) = (
                        crop[0] + (x as f64 + 0.5) / scale - 0.5,
                        crop[1] + (y as f64 + 0.5) / scale - 0.5,
                    );
                    for c in 0..3 {
                        out[(y * sw + x) * 3 + c] = sample(&rgb, w, h, sx, sy, c).round() as u8;
                    }
                    // Elliptical mask with a feathered edge: no rectangle corners, little of
                    // the photo's background.
                    let (nx, ny) = (
                        (x as f64 + 0.5) / sw as f64 * 2.0 - 1.0,
                        (y as f64 + 0.5) / sh as f64 * 2.0 - 1.0,
                    );
                    let r = (nx * nx + ny * ny).sqrt();
                    alpha[y * sw + x] = ((1.0 - r) / 0.12).clamp(0.0, 1.0) as f32;
                }
            }
            sprites.push(Sprite {
                width: sw,
                height: sh,
                rgb: out,
                alpha,
                face: [
                    mx * scale,
                    my * scale,
                    (mx + f.width) * scale,
                    (my + f.height) * scale,
                ],
                name: format!("{name}#{i}"),
            });
        }
    }
    sprites
}

/// Keeps the sprites the detector finds reliably at their size in a `width` × `height` frame
/// (score ≥ 0.9 on a test frame, box IoU ≥ 0.5 with the scaled photo box), and replaces each
/// sprite's face box with the box detected there: the ground truth is what the detector reports
/// for that face at that size, so box IoU measures the tracker, not the detector's scale bias.
/// Sorted by that score, highest first.
pub fn calibrate(sprites: Vec<Sprite>, width: usize, height: usize) -> Vec<Sprite> {
    let sw = sprites.iter().map(|s| s.width).max().unwrap_or(1) + 20;
    let sh = sprites.iter().map(|s| s.height).max().unwrap_or(1) + 20;
    let (cols, rows) = ((width / sw).max(1), (height / sh).max(1));
    let per_frame = cols * rows;
    let frames = sprites.len().div_ceil(per_frame);
    let place = move |i: usize| {
        let j = i % per_frame;
        ((j % cols * sw + 10) as f64, (j / cols * sh + 10) as f64)
    };
    let scene = Scene {
        name: "calibration",
        width,
        height,
        frames,
        actors: (0..sprites.len())
            .map(|i| Actor {
                sprite: i,
                path: Box::new(move |k| (k == i / per_frame).then(|| place(i))),
            })
            .collect(),
        disjoint: true,
    };
    let out = run_scene(&scene, &sprites, "retinafacedetect");
    let mut kept: Vec<(f64, Sprite)> = sprites
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut s)| {
            let (ox, oy) = place(i);
            let truth = [
                s.face[0] + ox,
                s.face[1] + oy,
                s.face[2] + ox,
                s.face[3] + oy,
            ];
            let best = out.faces[i / per_frame]
                .iter()
                .map(|f| (iou(&truth, &record_box(f)), f))
                .max_by(|a, b| a.0.total_cmp(&b.0))?;
            let score = best.1.score.unwrap_or(0.0);
            if best.0 < 0.5 || score < 0.9 {
                return None;
            }
            let b = record_box(best.1);
            s.face = [b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy];
            Some((score, s))
        })
        .collect();
    // Most confident first: the scenes take the first few.
    kept.sort_by(|a, b| b.0.total_cmp(&a.0));
    kept.into_iter().map(|(_, s)| s).collect()
}

/// Faces 60 px high cut from sample1.jpg and sample2.jpg that the detector finds reliably in a
/// `width` × `height` frame (at least 3): what the short scene tests are made of.
pub fn face_sprites(width: usize, height: usize) -> Vec<Sprite> {
    crate::init();
    let media = crate::data_dir().join("media");
    let sprites = calibrate(
        load_sprites(&media, &["sample1.jpg", "sample2.jpg"], 60.0, 60.0),
        width,
        height,
    );
    assert!(sprites.len() >= 3, "{} sprites", sprites.len());
    sprites
}

/// One face of a scene: a sprite and where its top-left corner is on each frame (`None`:
/// not in the scene on that frame). Faces later in [`Scene::actors`] are drawn on top.
pub struct Actor {
    pub sprite: usize,
    pub path: Box<dyn Fn(usize) -> Option<(f64, f64)>>,
}

pub struct Scene {
    pub name: &'static str,
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    pub actors: Vec<Actor>,
    /// Whether the faces never overlap (the "0 ID switches" target applies).
    pub disjoint: bool,
}

/// A ground-truth face on one frame.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    pub id: usize,
    pub bbox: Box4,
    /// Mostly hidden (by faces drawn over it or by the frame edge): neither required nor wrong.
    pub ignore: bool,
}

fn lcg(state: &mut u32) -> u32 {
    *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    *state >> 8
}

impl Scene {
    pub fn background(&self) -> Vec<u8> {
        let mut rng = 0x5eed_u32;
        let mut bg = vec![0u8; self.width * self.height * 3];
        for y in 0..self.height {
            for x in 0..self.width {
                let base = 90.0
                    + 60.0 * x as f64 / self.width as f64
                    + 30.0 * y as f64 / self.height as f64;
                for c in 0..3 {
                    let n = (lcg(&mut rng) % 31) as f64 - 15.0;
                    let tint = [1.0, 0.95, 0.9][c];
                    bg[(y * self.width + x) * 3 + c] = (base * tint + n).clamp(0.0, 255.0) as u8;
                }
            }
        }
        bg
    }

    /// Frame `k`: the background with the sprites pasted.
    pub fn render(&self, k: usize, sprites: &[Sprite], bg: &[u8], out: &mut [u8]) {
        out.copy_from_slice(bg);
        for a in &self.actors {
            let Some((ox, oy)) = (a.path)(k) else {
                continue;
            };
            let s = &sprites[a.sprite];
            let (ox, oy) = (ox.round() as i64, oy.round() as i64);
            for y in 0..s.height as i64 {
                let fy = oy + y;
                if fy < 0 || fy >= self.height as i64 {
                    continue;
                }
                for x in 0..s.width as i64 {
                    let fx = ox + x;
                    if fx < 0 || fx >= self.width as i64 {
                        continue;
                    }
                    let al = s.alpha[(y as usize) * s.width + x as usize];
                    if al <= 0.0 {
                        continue;
                    }
                    let d = ((fy as usize) * self.width + fx as usize) * 3;
                    let p = ((y as usize) * s.width + x as usize) * 3;
                    for c in 0..3 {
                        let v = al * s.rgb[p + c] as f32 + (1.0 - al) * out[d + c] as f32;
                        out[d + c] = v.round() as u8;
                    }
                }
            }
        }
    }

    /// The known face boxes of frame `k` (same rounding as [`Self::render`]).
    pub fn truth(&self, k: usize, sprites: &[Sprite]) -> Vec<Truth> {
        let frame = [0.0, 0.0, self.width as f64, self.height as f64];
        let placed: Vec<(usize, Box4, Box4)> = self
            .actors
            .iter()
            .enumerate()
            .filter_map(|(id, a)| {
                let (ox, oy) = (a.path)(k)?;
                let s = &sprites[a.sprite];
                let (ox, oy) = (ox.round(), oy.round());
                let f = [
                    s.face[0] + ox,
                    s.face[1] + oy,
                    s.face[2] + ox,
                    s.face[3] + oy,
                ];
                // The visible ellipse, roughly: the sprite box shrunk by 15 %.
                let (mx, my) = (0.15 * s.width as f64, 0.15 * s.height as f64);
                let cover = [
                    ox + mx,
                    oy + my,
                    ox + s.width as f64 - mx,
                    oy + s.height as f64 - my,
                ];
                Some((id, f, cover))
            })
            .collect();
        placed
            .iter()
            .enumerate()
            .filter_map(|(i, (id, f, _))| {
                let inside = area(&intersection(f, &frame));
                if inside <= 0.0 {
                    return None;
                }
                // Covered by faces drawn later (upper bound: the covers' union is not computed,
                // the largest single cover is used).
                let covered = placed[i + 1..]
                    .iter()
                    .map(|(_, _, c)| area(&intersection(f, c)))
                    .fold(0.0, f64::max);
                let visible = (inside - covered).max(0.0) / area(f);
                Some(Truth {
                    id: *id,
                    bbox: intersection(f, &frame),
                    ignore: visible < 1.0 - MAX_HIDDEN,
                })
            })
            .collect()
    }
}

/// Output of one pipeline run: the faces of every frame, and frames per second.
pub struct RunOutput {
    pub faces: Vec<Vec<FaceRecord>>,
    pub fps: f64,
}

/// Renders `scene` into `appsrc ! {chain} ! appsink` and collects the faces of every frame.
/// `chain` is e.g. `retinafacedetect interval=3 confidence-threshold=0.1 ! retinafacetrack`.
pub fn run_scene(scene: &Scene, sprites: &[Sprite], chain: &str) -> RunOutput {
    let faces = Arc::new(Mutex::new(Vec::new()));
    let collected = faces.clone();
    let secs = push_scene(
        scene,
        sprites,
        chain,
        Duration::ZERO,
        |_| {},
        move |buffer| collected.lock().unwrap().push(facemeta::read(&buffer)),
    );
    let faces = std::mem::take(&mut *faces.lock().unwrap());
    assert_eq!(
        faces.len(),
        scene.frames,
        "{}: one output per frame",
        scene.name
    );
    RunOutput {
        fps: scene.frames as f64 / secs,
        faces,
    }
}

/// Pts of frame `k` of a scene (30 frames/s).
pub fn scene_pts(k: usize) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(k as u64 * 1_000_000_000 / 30)
}

/// Renders `scene` into `appsrc ! {chain} ! appsink`, a frame at most every `pace` (zero: as
/// fast as the pipeline takes them), and hands every output buffer to `on_output` (on the
/// streaming thread). `prepare` sees the pipeline before it starts (probes, bus handlers).
/// Returns the seconds from start to end of stream; panics on an error or when the stream
/// does not end within 300 s.
pub fn push_scene(
    scene: &Scene,
    sprites: &[Sprite],
    chain: &str,
    pace: Duration,
    prepare: impl FnOnce(&gst::Pipeline),
    mut on_output: impl FnMut(gst::Buffer) + Send + 'static,
) -> f64 {
    let description = format!(
        "appsrc name=src format=time block=true max-bytes={} caps=video/x-raw,format=RGB,width={},height={},framerate=30/1 ! {chain} ! appsink name=sink sync=false",
        scene.width * scene.height * 3 * 2,
        scene.width,
        scene.height
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                on_output(sample.buffer_owned().unwrap());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    prepare(&pipeline);
    let bg = scene.background();
    let size = scene.width * scene.height * 3;
    pipeline.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    for k in 0..scene.frames {
        let mut buffer = gst::Buffer::with_size(size).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(scene_pts(k));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / 30));
            let mut map = b.map_writable().unwrap();
            scene.render(k, sprites, &bg, &mut map);
        }
        if src.push_buffer(buffer).is_err() {
            break;
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    let _ = src.end_of_stream();
    let played = crate::play(pipeline.upcast_ref(), Duration::from_secs(300), |_| {});
    let secs = start.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null).unwrap();
    if let Err(e) = played {
        panic!("{description}: {e}");
    }
    secs
}

/// The tracker run directly on recorded per-frame detections, analysing every `interval`-th
/// frame as `retinafacedetect interval=N ! retinafacetrack` does (`update` on analysed frames,
/// `predict` on the others). For parameter sweeps without re-running the detector.
pub fn replay(
    detections: &[Vec<FaceRecord>],
    interval: usize,
    config: TrackerConfig,
) -> Vec<Vec<(u64, Box4)>> {
    let mut t = Tracker::new(config);
    detections
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let out = if k % interval == 0 {
                let faces: Vec<Face> = d.iter().map(FaceRecord::to_face).collect();
                t.update(&faces)
            } else {
                t.predict()
            };
            out.iter()
                .map(|f| {
                    let b = f.face.bbox;
                    (f.id, [b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64])
                })
                .collect()
        })
        .collect()
}

/// Tracked faces as `(id, box)`. Faces without an ID (tentative tracks the element may show
/// before confirmation) are not tracks and are left out.
pub fn tracked(faces: &[Vec<FaceRecord>]) -> Vec<Vec<(u64, Box4)>> {
    faces
        .iter()
        .map(|f| {
            f.iter()
                .filter_map(|r| Some((r.id?, record_box(r))))
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Scores {
    /// Ground-truth faces that count (not ignored), summed over frames.
    pub gt: usize,
    pub fn_: usize,
    pub fp: usize,
    pub idsw: usize,
    pub mota: f64,
    pub idf1: f64,
    /// Mean IoU of the CLEAR-MOT matches.
    pub iou: f64,
    /// Distinct output IDs.
    pub ids: usize,
}

/// Maximum-weight one-to-one assignment; `w[r][c] <= 0` means "not allowed". Returns the pairs.
fn assign(w: &[Vec<i64>]) -> Vec<(usize, usize)> {
    let rows = w.len();
    let cols = w.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let n = rows.max(cols);
    let mut m = Matrix::new(n, n, 0i64);
    for (r, row) in w.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            m[(r, c)] = v.max(0);
        }
    }
    let (_, cols_of) = kuhn_munkres(&m);
    cols_of
        .into_iter()
        .enumerate()
        .filter(|&(r, c)| r < rows && c < cols && w[r][c] > 0)
        .collect()
}

/// CLEAR-MOT (MOTA, ID switches; matching at IoU ≥ [`MATCH_IOU`], optimal per frame, keeping
/// last frame's pairs when still valid) and IDF1 (optimal global GT-ID ↔ output-ID assignment)
/// over `from..` frames. Outputs matching an ignored ground-truth face are dropped first.
pub fn score(truth: &[Vec<Truth>], out: &[Vec<(u64, Box4)>], from: usize) -> Scores {
    let mut s = Scores::default();
    let mut last: std::collections::HashMap<usize, u64> = Default::default();
    let mut gt_ids: Vec<usize> = Vec::new();
    let mut out_ids: Vec<u64> = Vec::new();
    // Per (gt id, out id): frames with IoU ≥ MATCH_IOU; and per-id frame counts.
    let mut pair: std::collections::HashMap<(usize, u64), usize> = Default::default();
    let (mut gt_total, mut out_total) = (0usize, 0usize);
    let mut iou_sum = 0.0;
    let mut matches = 0usize;
    for (t, o) in truth.iter().zip(out).skip(from) {
        // Drop outputs on ignored faces.
        let o: Vec<&(u64, Box4)> = o
            .iter()
            .filter(|(_, b)| {
                !t.iter().any(|g| g.ignore && iou(&g.bbox, b) >= MATCH_IOU)
                    || t.iter().any(|g| !g.ignore && iou(&g.bbox, b) >= MATCH_IOU)
            })
            .collect();
        let t: Vec<&Truth> = t.iter().filter(|g| !g.ignore).collect();
        gt_total += t.len();
        out_total += o.len();
        for g in &t {
            if !gt_ids.contains(&g.id) {
                gt_ids.push(g.id);
            }
            for (id, b) in &o {
                if iou(&g.bbox, b) >= MATCH_IOU {
                    *pair.entry((g.id, *id)).or_default() += 1;
                }
            }
        }
        for (id, _) in &o {
            if !out_ids.contains(id) {
                out_ids.push(*id);
            }
        }
        let w: Vec<Vec<i64>> = t
            .iter()
            .map(|g| {
                o.iter()
                    .map(|(id, b)| {
                        let v = iou(&g.bbox, b);
                        if v < MATCH_IOU {
                            0
                        } else {
                            let keep = last.get(&g.id) == Some(id);
                            (v * 1e6) as i64 + 1 + if keep { 10_000_000 } else { 0 }
                        }
                    })
                    .collect()
            })
            .collect();
        let m = assign(&w);
        s.gt += t.len();
        s.fn_ += t.len() - m.len();
        s.fp += o.len() - m.len();
        for (r, c) in m {
            let (gid, (oid, b)) = (t[r].id, o[c]);
            iou_sum += iou(&t[r].bbox, b);
            matches += 1;
            if let Some(prev) = last.insert(gid, *oid)
                && prev != *oid
            {
                s.idsw += 1;
            }
        }
    }
    s.mota = if s.gt > 0 {
        1.0 - (s.fn_ + s.fp + s.idsw) as f64 / s.gt as f64
    } else {
        1.0
    };
    s.iou = if matches > 0 {
        iou_sum / matches as f64
    } else {
        0.0
    };
    s.ids = out_ids.len();
    let w: Vec<Vec<i64>> = gt_ids
        .iter()
        .map(|g| {
            out_ids
                .iter()
                .map(|o| pair.get(&(*g, *o)).copied().unwrap_or(0) as i64)
                .collect()
        })
        .collect();
    let idtp: i64 = assign(&w).iter().map(|&(r, c)| w[r][c]).sum();
    s.idf1 = if gt_total + out_total > 0 {
        2.0 * idtp as f64 / (gt_total + out_total) as f64
    } else {
        1.0
    };
    s
}

/// Mean IoU of the output boxes with per-frame detection (`reference`, the detector alone at
/// interval 1) on the frames `from..` that the detector skipped at `interval` (all frames at
/// interval 1): per reference face that is a real, visible face (matches a non-ignored truth
/// box), the best IoU among that frame's outputs, 0 when none.
pub fn iou_vs_detection(
    truth: &[Vec<Truth>],
    reference: &[Vec<FaceRecord>],
    out: &[Vec<(u64, Box4)>],
    interval: usize,
    from: usize,
) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (k, ((t, r), o)) in truth.iter().zip(reference).zip(out).enumerate().skip(from) {
        if interval > 1 && k % interval == 0 {
            continue;
        }
        for f in r {
            let b = record_box(f);
            if !t.iter().any(|g| !g.ignore && iou(&g.bbox, &b) >= MATCH_IOU) {
                continue;
            }
            sum += o.iter().map(|(_, ob)| iou(&b, ob)).fold(0.0, f64::max);
            n += 1;
        }
    }
    if n > 0 { sum / n as f64 } else { 0.0 }
}

// ---- Scenarios ----

fn actor(sprites: &[Sprite], i: usize, f: impl Fn(usize) -> Option<(f64, f64)> + 'static) -> Actor {
    let i = i % sprites.len();
    let (w, h) = (sprites[i].width as f64, sprites[i].height as f64);
    Actor {
        sprite: i,
        path: Box::new(move |k| f(k).map(|(cx, cy)| (cx - w / 2.0, cy - h / 2.0))),
    }
}

/// (a) Faces on separate horizontal lanes, straight and curved (sine) paths, never
/// overlapping. Sizes scale with the frame (`width` 1280 → the positions below).
pub fn scene_lanes(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Scene {
    let (w, h) = (width as f64, height as f64);
    let lanes = 3;
    let n = frames as f64;
    let actors = (0..lanes)
        .map(|i| {
            let y = h * (i as f64 + 0.5) / lanes as f64;
            let amp = if i % 2 == 1 { 0.04 * h } else { 0.0 };
            let (x0, x1) = if i % 2 == 0 {
                (0.2 * w, 0.8 * w)
            } else {
                (0.75 * w, 0.25 * w)
            };
            actor(sprites, i, move |k| {
                let t = k as f64 / n;
                Some((x0 + (x1 - x0) * t, y + amp * (t * 12.0).sin()))
            })
        })
        .collect();
    Scene {
        name: "a: lanes",
        width,
        height,
        frames,
        actors,
        disjoint: true,
    }
}

/// (b) Two faces crossing diagonally (an X), meeting in the middle with partial overlap, and a
/// third still one.
pub fn scene_crossing(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Scene {
    let (w, h, n) = (width as f64, height as f64, frames as f64);
    let actors = vec![
        actor(sprites, 2, move |_| Some((0.88 * w, 0.15 * h))),
        actor(sprites, 0, move |k| {
            let t = k as f64 / n;
            Some((0.2 * w + 0.6 * w * t, 0.3 * h + 0.4 * h * t))
        }),
        actor(sprites, 1, move |k| {
            let t = k as f64 / n;
            // Shifted 0.06 w (≈ 0.85 face widths): the boxes overlap, not coincide.
            Some((0.26 * w + 0.6 * w * t, 0.75 * h - 0.4 * h * t))
        }),
    ];
    Scene {
        name: "b: crossing",
        width,
        height,
        frames,
        actors,
        disjoint: false,
    }
}

/// (c) One face walking in front of another, hiding it completely for a few frames.
pub fn scene_occlusion(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Scene {
    let (w, h, n) = (width as f64, height as f64, frames as f64);
    let actors = vec![
        actor(sprites, 3, move |k| {
            Some((0.5 * w + 0.03 * w * (k as f64 * 0.05).sin(), 0.5 * h))
        }),
        actor(sprites, 4, move |k| {
            let t = k as f64 / n;
            Some((0.1 * w + 0.8 * w * t, 0.52 * h))
        }),
    ];
    Scene {
        name: "c: occlusion",
        width,
        height,
        frames,
        actors,
        disjoint: false,
    }
}

/// (d) A face leaving the frame on the right and coming back the same way after ≈ 1 s, and a
/// second face that stays.
pub fn scene_reenter(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Scene {
    let (w, h, n) = (width as f64, height as f64, frames as f64);
    let actors = vec![
        actor(sprites, 5, move |k| {
            Some((0.25 * w, 0.5 * h + 0.1 * h * (k as f64 * 0.04).sin()))
        }),
        actor(sprites, 1, move |k| {
            // Out to x = 1.25 w by 40 % of the clip, back in from 60 %.
            let t = k as f64 / n;
            let x = if t < 0.5 {
                0.6 * w + (0.65 * w) * (t / 0.4)
            } else {
                1.25 * w - 0.65 * w * ((t - 0.5) / 0.4)
            };
            Some((x.min(1.25 * w), 0.45 * h))
        }),
    ];
    Scene {
        name: "d: leave+re-enter",
        width,
        height,
        frames,
        actors,
        // No overlap, but a face coming back after a long absence is a new track unless the
        // tracker remembers it: not held to the "0 ID switches" target.
        disjoint: false,
    }
}

/// (e) Fast motion: three faces on separate circles, `speed` px per frame at 1280 wide.
pub fn scene_fast(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Scene {
    let (w, h) = (width as f64, height as f64);
    let scale = w / 1280.0;
    let actors = (0..3)
        .map(|i| {
            let cx = w * (0.2 + 0.3 * i as f64);
            let cy = 0.5 * h;
            let r = 0.18 * w.min(2.0 * h) * 0.8;
            let speed = (8.0 + 3.5 * i as f64) * scale;
            let omega = speed / r * if i % 2 == 0 { 1.0 } else { -1.0 };
            actor(sprites, i + 2, move |k| {
                let a = omega * k as f64 + i as f64;
                Some((cx + 0.45 * r * a.cos(), cy + r * a.sin()))
            })
        })
        .collect();
    Scene {
        name: "e: fast",
        width,
        height,
        frames,
        actors,
        disjoint: true,
    }
}

pub fn all_scenes(sprites: &[Sprite], width: usize, height: usize, frames: usize) -> Vec<Scene> {
    vec![
        scene_lanes(sprites, width, height, frames),
        scene_crossing(sprites, width, height, frames),
        scene_occlusion(sprites, width, height, frames),
        scene_reenter(sprites, width, height, frames),
        scene_fast(sprites, width, height, frames),
    ]
}

// ---- Anonymisation ----

/// Mean absolute luma change between `out` (RGB) and `reference` inside `[x0, y0, x1, y1)`.
fn luma_change(out: &[u8], reference: &[u8], width: usize, r: [usize; 4]) -> f64 {
    let luma = |p: &[u8]| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
    let mut sum = 0.0;
    for y in r[1]..r[3] {
        for x in r[0]..r[2] {
            let i = (y * width + x) * 3;
            sum += (luma(&out[i..i + 3]) - luma(&reference[i..i + 3])).abs();
        }
    }
    sum / ((r[2] - r[0]) * (r[3] - r[1])).max(1) as f64
}

/// Checks that on every output frame (RGB, as rendered) from `from` the scene's first face is
/// anonymised all over: each
/// quarter of its known box changed clearly from the frame as rendered, and that the blur is a
/// region around the face, not the whole frame: most of the frame is untouched and the changed
/// pixels are centred within two face sizes of the face (the area grows on every side with the
/// frames since detection, so the face need not be at its centre). Returns the frames that
/// fail, with why, and the centre of the changed pixels on each frame checked.
pub fn uncovered_frames(
    scene: &Scene,
    sprites: &[Sprite],
    outs: &[gst::Buffer],
    from: usize,
) -> (Vec<String>, Vec<f64>) {
    let (width, height) = (scene.width, scene.height);
    let bg = scene.background();
    let mut reference = vec![0u8; width * height * 3];
    let (mut failures, mut centres) = (Vec::new(), Vec::new());
    for (k, out) in outs.iter().enumerate().skip(from) {
        scene.render(k, sprites, &bg, &mut reference);
        let map = out.map_readable().unwrap();
        let truth = scene.truth(k, sprites);
        let Some(t) = truth.first() else { continue };
        let b = t.bbox.map(|v| v.round() as usize);
        let (mx, my) = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        let quarters = [
            [b[0], b[1], mx, my],
            [mx, b[1], b[2], my],
            [b[0], my, mx, b[3]],
            [mx, my, b[2], b[3]],
        ];
        let changes: Vec<f64> = quarters
            .iter()
            .map(|q| luma_change(&map, &reference, width, *q))
            .collect();
        // Changed pixels over the frame, and their centre.
        let (mut n, mut sx) = (0usize, 0.0);
        for y in 0..height {
            for x in 0..width {
                let i = (y * width + x) * 3;
                if map[i..i + 3] != reference[i..i + 3] {
                    n += 1;
                    sx += x as f64;
                }
            }
        }
        let share = n as f64 / (width * height) as f64;
        let centre = if n > 0 { sx / n as f64 } else { -1.0 };
        centres.push(centre);
        let size = (t.bbox[2] - t.bbox[0]).max(t.bbox[3] - t.bbox[1]);
        let face_cx = (t.bbox[0] + t.bbox[2]) / 2.0;
        if changes.iter().any(|c| *c < 2.0) || share > 0.5 || (centre - face_cx).abs() > 2.0 * size
        {
            failures.push(format!(
                "frame {k}: face at {:.0}..{:.0}: luma change per quarter {changes:.1?}, {:.0} % of the frame changed, centred at x {centre:.0}",
                t.bbox[0],
                t.bbox[2],
                share * 100.0
            ));
        }
    }
    (failures, centres)
}
