//! How many cameras one machine analyses in real time, the way NVRs run (README "How many
//! cameras"; run through `scripts/capacity-bench.sh`).
//!
//! ```text
//! capacity make-clip --out CLIP.mp4 --activity 0.2 [--seconds 40]
//!     A camera sub-stream: 640×360, 15 fps H.264, a still background and faces cut from the
//!     sample photos walking through it for `activity` of the time (two passes).
//! capacity search --clip CLIP.mp4 --idle IDLE.mp4 [--window S] [--max N]
//!     For each way of analysing (every frame; interval=3 + track; motion-gated + track): the
//!     largest number of cameras that stay real time, each camera its own pipeline in this
//!     process (one shared engine), each started at another point of the clip, paced by the
//!     clock like a live source. Then, at each configuration's count: CPU, memory per camera
//!     above decoding alone, and the faces found against per-frame detection of the same
//!     frames. Prints a markdown table.
//! ```
//!
//! Real time: a frame is late when it reaches the camera's sink more than `LATE` after its
//! time on the pipeline clock (decode, motion, detect and track included); a count is
//! sustained when at most 1 % of the frames in the measuring window are late and the shared
//! engine ran the model at most 90 % of the time. The first is a backlog test: a machine that
//! cannot keep up falls further behind every second; the second catches async mode, where a
//! saturated engine leaves frames unanalysed instead of late (its faces found are reported).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use retinaface_testkit::facemeta::{self, FaceRecord};
use retinaface_testkit::process::{cpu_seconds, mib, status_kib};
use retinaface_testkit::track_eval::{Actor, Scene, face_sprites};
use retinaface_testkit::{init, play};

const WIDTH: usize = 640;
const HEIGHT: usize = 360;
const FPS: usize = 15;
/// A frame later than this at the sink is late (three frames at 15 fps: what a live sink with
/// a little latency configured still shows).
const LATE: Duration = Duration::from_millis(200);
/// Share of late frames a sustained count may have (a hiccup of the machine, not a backlog).
const LATE_SHARE: f64 = 0.01;
/// Seconds before the measuring window (start-up, the first inferences).
const WARMUP: Duration = Duration::from_secs(3);

/// The ways of analysing a camera compared, as they are written after the decoder.
const CONFIGS: [(&str, &str); 4] = [
    ("every frame", "retinafacedetect"),
    (
        "interval=3 + track",
        "retinafacedetect interval=3 ! retinafacetrack",
    ),
    (
        "motion-gated + track",
        "retinafacemotion ! retinafacedetect roi-type=motion refresh-interval=30 ! retinafacetrack",
    ),
    (
        "motion-gated, async + track",
        "retinafacemotion ! retinafacedetect roi-type=motion refresh-interval=30 async=true ! retinafacetrack",
    ),
];
/// Most of the time the shared engine may run the model for a count to be sustained: past it,
/// requests queue (sync: frames wait; async: frames go unanalysed).
const ENGINE_BUSY: f64 = 0.9;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("make-clip") => {
            let out = arg(&args, "--out").expect("--out CLIP.mp4");
            let activity: f64 = arg(&args, "--activity").map_or(0.2, |v| v.parse().unwrap());
            let seconds: usize = arg(&args, "--seconds").map_or(40, |v| v.parse().unwrap());
            make_clip(&out, activity, seconds * FPS);
        }
        Some("search") => {
            let clip = arg(&args, "--clip").expect("--clip CLIP.mp4");
            let idle = arg(&args, "--idle").expect("--idle IDLE.mp4");
            let window =
                Duration::from_secs(arg(&args, "--window").map_or(12, |v| v.parse().unwrap()));
            let max: usize = arg(&args, "--max").map_or(96, |v| v.parse().unwrap());
            // One way of analysing instead of the three compared (e.g. other properties).
            let only = arg(&args, "--analysis");
            search(&clip, &idle, window, max, only.as_deref());
        }
        Some("memory") => {
            let clip = arg(&args, "--clip").expect("--clip CLIP.mp4");
            let analysis = arg(&args, "--analysis").expect("--analysis 'ELEMENTS'");
            let n: usize = arg(&args, "--cameras").map_or(1, |v| v.parse().unwrap());
            let t = trial(&clip, &analysis, n, Duration::from_secs(4), false);
            println!("rss_mib={:.1}", t.rss_mib);
        }
        _ => {
            eprintln!(
                "usage: capacity make-clip --out CLIP --activity A | search --clip CLIP --idle IDLE [--window S] [--max N] [--analysis ELEMENTS] | memory --clip CLIP --analysis ELEMENTS --cameras N"
            );
            std::process::exit(2);
        }
    }
}

/// The site scene: faces walk across a still background in two passes that together last
/// `activity` of the frames (the second pass two faces in opposite directions).
fn site_scene(activity: f64, frames: usize) -> Scene {
    let sprites = face_sprites(WIDTH, HEIGHT);
    let pass = ((activity * frames as f64) / 2.0).round() as usize;
    let starts = [frames / 6, frames * 4 / 6];
    let mut actors = Vec::new();
    for (p, &start) in starts.iter().enumerate() {
        for (lane, (dir, row)) in [(1.0, 0.45), (-1.0, 0.7)]
            .into_iter()
            .enumerate()
            .take(p + 1)
        {
            let s = &sprites[(p + lane) % sprites.len()];
            let (w, h) = (s.width as f64, s.height as f64);
            let y = HEIGHT as f64 * row - h / 2.0;
            // From just outside one edge to just outside the other within the pass.
            let (x0, x1) = if dir > 0.0 {
                (-w * 0.6, WIDTH as f64 - w * 0.4)
            } else {
                (WIDTH as f64 - w * 0.4, -w * 0.6)
            };
            actors.push(Actor {
                sprite: (p + lane) % sprites.len(),
                path: Box::new(move |k| {
                    (k >= start && k < start + pass).then(|| {
                        let t = (k - start) as f64 / pass.max(1) as f64;
                        (x0 + (x1 - x0) * t, y)
                    })
                }),
            });
        }
    }
    Scene {
        name: "site",
        width: WIDTH,
        height: HEIGHT,
        frames,
        actors,
        disjoint: true,
    }
}

fn make_clip(out: &str, activity: f64, frames: usize) {
    let sprites = face_sprites(WIDTH, HEIGHT);
    let scene = site_scene(activity, frames);
    let part = format!("{out}.part");
    // A camera's encoder: a keyframe every 2 s, no B-frames.
    let description = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={WIDTH},height={HEIGHT},framerate={FPS}/1 \
         ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=veryfast key-int-max={} bframes=0 \
         ! h264parse ! mp4mux ! filesink location={part}",
        2 * FPS
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bg = scene.background();
    for k in 0..frames {
        let mut buffer = gst::Buffer::with_size(WIDTH * HEIGHT * 3).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(
                (k as u64) * 1_000_000_000 / FPS as u64,
            ));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / FPS as u64));
            scene.render(k, &sprites, &bg, &mut b.map_writable().unwrap());
        }
        src.push_buffer(buffer).expect("encoder takes frames");
    }
    src.end_of_stream().unwrap();
    let played = play(pipeline.upcast_ref(), Duration::from_secs(600), |_| {});
    pipeline.set_state(gst::State::Null).unwrap();
    played.expect("clip encoded");
    std::fs::rename(&part, out).unwrap();
    eprintln!(
        "[capacity] {out}: {frames} frames, faces on {:.0} % of them",
        100.0 * activity
    );
}

/// Faces of every frame of one camera, by pts (ns).
type Faces = HashMap<u64, Vec<FaceRecord>>;

/// One camera: its pipeline and what its sink saw.
struct Camera {
    pipeline: gst::Pipeline,
    faces: Arc<Mutex<Faces>>,
    /// How late each frame reached the sink, while measuring.
    lateness: Arc<Mutex<Vec<Duration>>>,
}

fn camera(clip: &str, analysis: &str, measuring: &Arc<AtomicBool>, keep_faces: bool) -> Camera {
    // One decoder thread per camera, as NVRs decode sub-streams (frame threads add latency).
    let description = format!(
        "filesrc location={clip} ! qtdemux ! h264parse ! avdec_h264 max-threads=1 ! {analysis} \
         ! fakesink name=sink sync=true qos=false"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let faces: Arc<Mutex<Faces>> = Arc::default();
    let lateness: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let sink = pipeline.by_name("sink").unwrap();
    let pad = sink.static_pad("sink").unwrap();
    let (f, l, m) = (faces.clone(), lateness.clone(), measuring.clone());
    let element = sink.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if !m.load(Ordering::Relaxed) {
            return gst::PadProbeReturn::Ok;
        }
        let pts = buffer.pts();
        if let (Some(clock), Some(base), Some(pts), Some(segment)) = (
            element.clock(),
            element.base_time(),
            pts,
            pad.sticky_event::<gst::event::Segment>(0),
        ) && let Some(segment) = segment.segment().downcast_ref::<gst::ClockTime>()
            && let Some(due) = segment.to_running_time(pts)
        {
            let running = clock.time().saturating_sub(base);
            let late = running.saturating_sub(due);
            l.lock()
                .unwrap()
                .push(Duration::from_nanos(late.nseconds()));
        }
        if keep_faces && let Some(pts) = pts {
            f.lock()
                .unwrap()
                .insert(pts.nseconds(), facemeta::read(buffer));
        }
        gst::PadProbeReturn::Ok
    });
    Camera {
        pipeline,
        faces,
        lateness,
    }
}

/// What one trial of `n` cameras measured.
struct Trial {
    n: usize,
    late_share: f64,
    cpu_cores: f64,
    /// Share of the time the shared engine's worker ran the model, and its runs per second.
    engine_busy: f64,
    engine_runs: f64,
    rss_mib: f64,
    cameras: Vec<Camera>,
}

impl Trial {
    fn sustained(&self) -> bool {
        self.late_share <= LATE_SHARE && self.engine_busy <= ENGINE_BUSY
    }
}

fn percentile(values: &mut [Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Plays `n` cameras of `clip` for WARMUP + `window`, camera `i` starting `i/n` of the way
/// into the first half of the clip (so their people come at different times).
fn trial(clip: &str, analysis: &str, n: usize, window: Duration, keep_faces: bool) -> Trial {
    let measuring = Arc::new(AtomicBool::new(false));
    let cameras: Vec<Camera> = (0..n)
        .map(|_| camera(clip, analysis, &measuring, keep_faces))
        .collect();
    let clip_s = clip_duration(clip).as_secs_f64();
    let span = (clip_s - (WARMUP + window).as_secs_f64() - 1.0).max(0.0);
    for (i, c) in cameras.iter().enumerate() {
        c.pipeline.set_state(gst::State::Paused).unwrap();
        let (r, _, _) = c.pipeline.state(gst::ClockTime::from_seconds(60));
        r.unwrap_or_else(|_| panic!("camera {i} did not preroll"));
        let offset = span * i as f64 / n as f64;
        c.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::from_nseconds((offset * 1e9) as u64),
            )
            .expect("seekable clip");
        let (r, _, _) = c.pipeline.state(gst::ClockTime::from_seconds(60));
        r.unwrap_or_else(|_| panic!("camera {i} did not preroll after the seek"));
    }
    for c in &cameras {
        c.pipeline.set_state(gst::State::Playing).unwrap();
    }
    watch(&cameras, WARMUP);
    let rss_before = status_kib("VmRSS:");
    let cpu_before = cpu_seconds();
    let engine_before = engine_work();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    watch(&cameras, window);
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_cores = (cpu_seconds() - cpu_before) / seconds;
    let (busy, runs) = engine_work();
    let engine_busy = (busy - engine_before.0).as_secs_f64() / seconds;
    let engine_runs = (runs - engine_before.1) as f64 / seconds;
    let rss_mib = mib(status_kib("VmRSS:").max(rss_before));
    for c in &cameras {
        c.pipeline.set_state(gst::State::Null).unwrap();
    }
    let mut lateness: Vec<Duration> = cameras
        .iter()
        .flat_map(|c| c.lateness.lock().unwrap().clone())
        .collect();
    let late = lateness.iter().filter(|&&l| l > LATE).count();
    let late_share = late as f64 / lateness.len().max(1) as f64;
    let p99 = percentile(&mut lateness, 0.99);
    eprintln!(
        "[capacity] {analysis:?} × {n}: {:.1} % late (p99 {:.0} ms), {cpu_cores:.2} cores, \
         engine busy {:.0} % ({engine_runs:.0} runs/s), {rss_mib:.0} MiB",
        100.0 * late_share,
        p99.as_secs_f64() * 1e3,
        100.0 * engine_busy
    );
    Trial {
        n,
        late_share,
        cpu_cores,
        engine_busy,
        engine_runs,
        rss_mib,
        cameras,
    }
}

/// Time the process's engines have run the model, and their runs, so far.
fn engine_work() -> (Duration, u64) {
    retinaface::engine::Registry::global()
        .live_engines()
        .iter()
        .map(|e| e.stats())
        .fold((Duration::ZERO, 0), |(busy, runs), s| {
            (busy + s.busy, runs + s.batches)
        })
}

/// Waits `how_long`, failing on any camera's ERROR.
fn watch(cameras: &[Camera], how_long: Duration) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        for c in cameras {
            while let Some(msg) = c.pipeline.bus().unwrap().pop() {
                match msg.view() {
                    gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
                    gst::MessageView::Eos(_) => panic!("the clip is too short for the window"),
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The clip's duration, from a paused pipeline.
fn clip_duration(clip: &str) -> Duration {
    let pipeline = gst::parse::launch(&format!("filesrc location={clip} ! qtdemux ! fakesink"))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let _ = pipeline.state(gst::ClockTime::from_seconds(30));
    let d = pipeline
        .query_duration::<gst::ClockTime>()
        .expect("clip duration");
    pipeline.set_state(gst::State::Null).unwrap();
    Duration::from_nanos(d.nseconds())
}

/// The largest sustained count of `analysis`, by doubling then bisecting.
fn largest(clip: &str, analysis: &str, window: Duration, max: usize) -> (Option<Trial>, usize) {
    let mut best: Option<Trial> = None;
    let mut failed = max + 1;
    let mut n = 1;
    while n <= max {
        let t = trial(clip, analysis, n, window, false);
        if t.sustained() {
            best = Some(t);
            n = if n < 8 { n * 2 } else { n + 8 };
        } else {
            failed = n;
            break;
        }
    }
    let mut low = best.as_ref().map_or(0, |t| t.n);
    // Bisect until the step is under an eighth of the count.
    while failed - low > (low / 8).max(1) {
        let mid = (low + failed) / 2;
        let t = trial(clip, analysis, mid, window, false);
        if t.sustained() {
            low = mid;
            best = Some(t);
        } else {
            failed = mid;
        }
    }
    (best, failed)
}

/// Per-frame detection (and tracking) of the whole clip, as fast as it goes: the reference.
fn reference(clip: &str, analysis: &str) -> Faces {
    let description = format!(
        "filesrc location={clip} ! qtdemux ! h264parse ! avdec_h264 ! {analysis} ! fakesink name=sink"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let faces: Arc<Mutex<Faces>> = Arc::default();
    let f = faces.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                f.lock()
                    .unwrap()
                    .insert(b.pts().unwrap().nseconds(), facemeta::read(b));
            }
            gst::PadProbeReturn::Ok
        });
    let played = play(pipeline.upcast_ref(), Duration::from_secs(900), |_| {});
    pipeline.set_state(gst::State::Null).unwrap();
    played.expect("reference run");
    std::mem::take(&mut *faces.lock().unwrap())
}

/// Faces found against the reference, over the frames each camera saw: (matched, reference
/// faces), a match being IoU ≥ 0.5; and ID changes along the reference's tracks (a reference
/// face's ID differing from the one its track had on the previous frame it was matched).
struct Recall {
    matched: usize,
    total: usize,
    id_changes: usize,
}

fn recall(reference: &Faces, cameras: &[Camera]) -> Recall {
    let mut r = Recall {
        matched: 0,
        total: 0,
        id_changes: 0,
    };
    for c in cameras {
        let seen = c.faces.lock().unwrap();
        let mut pts: Vec<&u64> = seen.keys().collect();
        pts.sort();
        // Reference track ID → the ID the camera gave it last.
        let mut last: HashMap<u64, u64> = HashMap::new();
        for p in pts {
            let Some(want) = reference.get(p) else {
                continue;
            };
            let got = &seen[p];
            for w in want {
                r.total += 1;
                let best = got
                    .iter()
                    .map(|g| (retinaface_testkit::iou(w, g), g))
                    .filter(|(overlap, _)| *overlap >= 0.5)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if let Some((_, g)) = best {
                    r.matched += 1;
                    if let (Some(ref_id), Some(id)) = (w.id, g.id)
                        && let Some(before) = last.insert(ref_id, id)
                        && before != id
                    {
                        r.id_changes += 1;
                    }
                }
            }
        }
    }
    r
}

/// Resident memory of a process of its own playing `n` cameras of `analysis` (a process per
/// figure: memory a trial allocated stays with the process that ran it).
fn memory(clip: &str, analysis: &str, n: usize) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["memory", "--clip", clip, "--analysis", analysis])
        .args(["--cameras", &n.to_string()])
        .output()
        .expect("runs itself");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("rss_mib=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "memory run: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// MiB each camera adds with `analysis` beyond what its decoding alone adds, the model's
/// session (once per process) left out: the growth from 1 to `n` cameras, against decoding's.
fn memory_per_camera(clip: &str, analysis: &str, n: usize) -> f64 {
    let n = n.max(2);
    let analysed = memory(clip, analysis, n) - memory(clip, analysis, 1);
    let decoded = memory(clip, "identity", n) - memory(clip, "identity", 1);
    (analysed - decoded) / (n - 1) as f64
}

fn search(clip: &str, idle: &str, window: Duration, max: usize, only: Option<&str>) {
    eprintln!("[capacity] reference: every frame detected and tracked");
    let reference = reference(clip, "retinafacedetect ! retinafacetrack");
    let ref_faces: usize = reference.values().map(Vec::len).sum();
    eprintln!(
        "[capacity] reference: {ref_faces} faces on {} frames",
        reference.len()
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    let configs: Vec<(&str, &str)> = match only {
        Some(analysis) => vec![("given", analysis)],
        None => CONFIGS.to_vec(),
    };
    for (name, analysis) in configs {
        let (best, failed) = largest(clip, analysis, window, max);
        rows.push((name, analysis, best, failed));
    }
    println!(
        "| analysis after decode | cameras sustained | first count not sustained | CPU cores | engine busy (model runs/s) | RSS | memory per camera beyond its decoding | faces found (of per-frame detection) | ID changes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, analysis, best, failed) in &rows {
        let Some(best) = best else {
            println!("| {name} | 0 | {failed} | | | | | | |");
            continue;
        };
        // Recall and memory at the sustained count, in trials of their own (the search kept no
        // faces, so that recording cost nothing there).
        let with_faces = trial(clip, analysis, best.n, window, true);
        let found = recall(&reference, &with_faces.cameras);
        let per_camera = memory_per_camera(clip, analysis, best.n);
        println!(
            "| {name} (`{analysis}`) | **{}** | {failed} | {:.2} | {:.0} % ({:.0}) | {:.0} MiB | {per_camera:+.1} MiB | {:.3} ({} of {}) | {} |",
            best.n,
            best.cpu_cores,
            100.0 * best.engine_busy,
            best.engine_runs,
            best.rss_mib,
            found.matched as f64 / found.total.max(1) as f64,
            found.matched,
            found.total,
            found.id_changes,
        );
    }
    // The cost of a camera where nobody comes: decode alone, decode + motion, and the gated
    // pipeline, at the gated count.
    let Some(gated) = rows.iter().rev().find(|r| r.1.contains("retinafacemotion")) else {
        return;
    };
    let n = gated.2.as_ref().map_or(8, |t| t.n);
    let gated = gated.1;
    println!();
    println!("Cameras with nobody passing (0 % activity), {n} cameras:");
    println!();
    println!(
        "| analysis after decode | CPU cores | per camera | engine busy (model runs/s) | frames late |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, analysis) in [
        ("decode only", "identity"),
        ("decode + motion", "retinafacemotion"),
        ("motion-gated + track", gated),
    ] {
        let t = trial(idle, analysis, n, window, false);
        println!(
            "| {name} | {:.2} | {:.1} ms/s | {:.0} % ({:.0}) | {:.1} % |",
            t.cpu_cores,
            1e3 * t.cpu_cores / n as f64,
            100.0 * t.engine_busy,
            t.engine_runs,
            100.0 * t.late_share
        );
    }
    eprintln!(
        "[capacity] done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
