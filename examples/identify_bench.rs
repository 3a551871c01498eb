//! What face identification costs on the CPU (README "Who is it", **Cost.**; run through
//! `scripts/identify-bench.sh`, which makes the batched copy of the model first).
//!
//! ```text
//! identify_bench --batched FR_BATCH.onnx [--model FR.onnx] [--photo sample1.jpg]
//!                [--rounds 9] [--streams 8] [--frames 12]
//! ```
//!
//! All on one photo scaled to 640 px wide (sample1.jpg: 3 faces), models run through the
//! shared engine with `SessionConfig::default()`, as the elements run them:
//!
//! 1. **ms per embedding, alignment included** (wall time, median over the rounds): 8 crops
//!    embedded one call each (batch 1), and the 8 crops queued at once (batch 8: clients of
//!    `batch_size` 8, as `retinafaceidentify` connects) through the original model (fixed batch
//!    of 1: still one run per crop) and through the batched copy (one run).
//! 2. **Per-frame cost of `streams` streams of the photo's faces**: one thread per stream feeds
//!    `frames` frames through detection and then, as `retinafaceidentify` does: per track
//!    (quality of every face, embedded when [`Tracks::wants`] it: the track's first 3 frames,
//!    then only clearly better shots, which a still photo never has, so the rest is the steady
//!    state), or untracked (every face embedded on every frame). The photo is still, so a
//!    face's track ID is its index and every frame has the faces one detection found: the
//!    identification phases run without detection, so what they cost is what identification
//!    adds (detection, measured in a phase of its own, is printed for scale); tracking itself
//!    (`retinafacetrack`) is not counted. Cost = the process's CPU time (user + system, all
//!    threads, the engines' included) over the phase ÷ (streams × frames), median over the
//!    rounds. The library is empty (matching is a few dot products per face).

use std::path::{Path, PathBuf};
use std::time::Instant;

use retinaface::embedding::Embedder;
use retinaface::engine::{ClientOptions, EngineKey, Registry};
use retinaface::events::snapshot::face_quality;
use retinaface::library::{Library, TrackConfig, Tracks};
use retinaface::quality::{FaceBox, QualityConfig};
use retinaface::{DetectParams, Detector, Face, Frame, SessionConfig, YuvMatrix};
use retinaface_testkit::wall::{Rgb, decode};
use retinaface_testkit::{media, model};

/// Width the photo is scaled to (a camera sub-stream's); the height keeps its aspect.
const WIDTH: usize = 640;
/// Crops queued at once, and `retinafaceidentify`'s client batch size.
const BATCH: usize = 8;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU seconds (user + system) this process has used, all threads together, to the
/// nanosecond (`testkit::process::cpu_seconds` counts clock ticks: too coarse for the steady
/// state's fraction of a millisecond).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn with_frame<R>(photo: &Rgb, f: impl FnOnce(&Frame) -> R) -> R {
    let (layout, planes) = photo.frame();
    f(&Frame {
        layout,
        width: photo.width,
        height: photo.height,
        planes: &planes,
        matrix: YuvMatrix::BT601,
    })
}

fn embedder(registry: &Registry, path: &Path, batch_size: usize) -> Embedder {
    let options = ClientOptions {
        batch_size,
        ..ClientOptions::default()
    };
    Embedder::connect(
        registry,
        EngineKey::new(path, &SessionConfig::default()),
        &[],
        options,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Wall and CPU ms per embedding of `crops`, each in a call of its own (`one_by_one`) or all
/// queued at once.
fn ms_per_embedding(
    emb: &Embedder,
    photo: &Rgb,
    crops: &[[[f32; 2]; 5]],
    one_by_one: bool,
) -> (f64, f64) {
    with_frame(photo, |frame| {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        if one_by_one {
            for c in crops {
                emb.embed(frame, std::slice::from_ref(c)).expect("embeds");
            }
        } else {
            emb.embed(frame, crops).expect("embeds");
        }
        let n = crops.len() as f64;
        (
            t.elapsed().as_secs_f64() * 1e3 / n,
            (cpu_seconds() - cpu) * 1e3 / n,
        )
    })
}

/// How a stream identifies its faces after detection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Detection alone (the baseline).
    Detect,
    /// Every face embedded on every frame.
    Untracked,
    /// Per track, through [`Tracks`].
    Tracked,
}

struct Stream {
    detector: Detector,
    embedder: Embedder,
    tracks: Tracks,
    /// What the last detection found: the faces identification works on.
    faces: Vec<Face>,
}

/// One frame of `stream` in `mode`: detection, or identification of the faces the last
/// detection found (the photo is still: every frame has the same faces).
fn frame_work(s: &mut Stream, photo: &Rgb, mode: Mode, library: &Library) {
    if mode == Mode::Detect {
        s.faces = photo.detect(&mut s.detector, &DetectParams::default());
        return;
    }
    with_frame(photo, |frame| {
        let config = QualityConfig::default();
        let mut jobs = Vec::new();
        for (i, f) in s.faces.iter().enumerate() {
            let id = i as u64 + 1;
            let face = FaceBox {
                bbox: f.bbox,
                landmarks: Some(f.landmarks),
                score: f.score,
            };
            if mode == Mode::Untracked {
                jobs.push((id, f.landmarks, 1.0));
                continue;
            }
            let quality = face_quality(&face, Some(frame), &config).overall;
            if s.tracks.wants(id, quality) {
                jobs.push((id, f.landmarks, quality));
            }
        }
        if jobs.is_empty() {
            return;
        }
        let landmarks: Vec<_> = jobs.iter().map(|j| j.1).collect();
        let embeddings = s.embedder.embed(frame, &landmarks).expect("embeds");
        for ((id, _, quality), e) in jobs.into_iter().zip(embeddings) {
            match mode {
                Mode::Tracked => {
                    s.tracks.add(id, e, quality, library);
                }
                _ => {
                    let _ = library.nearest(&e);
                }
            }
        }
    })
}

/// CPU ms per frame per stream of `frames` frames on every stream at once (a thread each).
fn phase(streams: &mut [Stream], photo: &Rgb, mode: Mode, frames: usize, library: &Library) -> f64 {
    let cpu = cpu_seconds();
    std::thread::scope(|scope| {
        for s in streams.iter_mut() {
            scope.spawn(move || {
                for _ in 0..frames {
                    frame_work(s, photo, mode, library);
                }
            });
        }
    });
    (cpu_seconds() - cpu) * 1e3 / (streams.len() * frames) as f64
}

/// The rows of part 2 for the embedding model `path`: CPU ms per frame per stream of detection,
/// and of identification untracked, at track start and in the steady state.
fn streams_cost(
    registry: &Registry,
    detector_model: &Path,
    path: &Path,
    photo: &Rgb,
    (n, frames, rounds): (usize, usize, usize),
) -> [f64; 4] {
    let library = Library::default();
    let mut streams: Vec<Stream> = (0..n)
        .map(|_| Stream {
            detector: Detector::connect(
                registry,
                EngineKey::new(detector_model, &SessionConfig::default()),
                &[],
                ClientOptions::default(),
            )
            .expect("detector loads"),
            embedder: embedder(registry, path, BATCH),
            tracks: Tracks::new(TrackConfig::default()),
            faces: Vec::new(),
        })
        .collect();
    let first = TrackConfig::default().first_shots;
    // Warm-up (the first runs of a session are slow), and the faces to identify.
    phase(&mut streams, photo, Mode::Detect, 2, &library);
    phase(&mut streams, photo, Mode::Untracked, 2, &library);
    let mut rows: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        rows[0].push(phase(&mut streams, photo, Mode::Detect, frames, &library));
        rows[1].push(phase(
            &mut streams,
            photo,
            Mode::Untracked,
            frames,
            &library,
        ));
        for s in &mut streams {
            s.tracks.reset();
        }
        rows[2].push(phase(&mut streams, photo, Mode::Tracked, first, &library));
        rows[3].push(phase(&mut streams, photo, Mode::Tracked, frames, &library));
    }
    rows.map(median)
}

fn main() {
    retinaface_testkit::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let original = PathBuf::from(arg(&args, "--model").unwrap_or_else(|| model("fr_feature.onnx")));
    let batched = PathBuf::from(arg(&args, "--batched").expect(
        "--batched FR_BATCH.onnx (retinaface-train rebatch --model fr_feature.onnx --output FR_BATCH.onnx)",
    ));
    let photo_name = arg(&args, "--photo").unwrap_or_else(|| "sample1.jpg".into());
    let number =
        |name: &str, default: usize| arg(&args, name).map_or(default, |v| v.parse().expect(name));
    let rounds = number("--rounds", 9);
    let n_streams = number("--streams", 8);
    let frames = number("--frames", 12);
    let detector_model = PathBuf::from(model("retinaface-mv025.onnx"));

    let path = PathBuf::from(media(&photo_name));
    let probe = decode(&path, None);
    let height = (probe.height * WIDTH + probe.width / 2) / probe.width;
    let photo = decode(&path, Some((WIDTH, height)));
    let mut detector =
        Detector::load(&detector_model, &SessionConfig::default(), &[]).expect("detector loads");
    let faces = photo.detect(&mut detector, &DetectParams::default());
    assert!(
        !faces.is_empty(),
        "no face on {photo_name} at {WIDTH}×{height}"
    );
    let crops: Vec<[[f32; 2]; 5]> = faces
        .iter()
        .cycle()
        .take(BATCH)
        .map(|f| f.landmarks)
        .collect();

    // Part 1: ms per embedding. The one-by-one client is on an engine of its own, so that
    // the runs of each way are counted apart.
    let registry = Registry::new();
    let ways = [
        (
            format!("batch 1: {BATCH} crops, one call each"),
            embedder(&Registry::new(), &original, 1),
            true,
        ),
        (
            format!("batch {BATCH}: {BATCH} crops queued at once"),
            embedder(&registry, &original, BATCH),
            false,
        ),
        (
            format!("batch {BATCH}: {BATCH} crops queued at once"),
            embedder(&registry, &batched, BATCH),
            false,
        ),
    ];
    assert!(
        ways[2].1.client().engine().max_batch() >= BATCH,
        "{} has no batch dimension: make it with retinaface-train rebatch",
        batched.display()
    );
    for (_, emb, one_by_one) in &ways {
        ms_per_embedding(emb, &photo, &crops, *one_by_one);
    }
    let mut part1 = Vec::new();
    for (way, emb, one_by_one) in &ways {
        let runs = emb.client().engine().stats().batches;
        let (wall, cpu): (Vec<f64>, Vec<f64>) = (0..rounds)
            .map(|_| ms_per_embedding(emb, &photo, &crops, *one_by_one))
            .unzip();
        let runs = (emb.client().engine().stats().batches - runs) as f64 / rounds as f64;
        let model = emb.client().engine().key().model.clone();
        part1.push((way.clone(), name(&model), median(wall), median(cpu), runs));
    }
    drop(ways);

    // Part 2: streams.
    let shape = (n_streams, frames, rounds.div_ceil(3).max(3));
    let cost_original = streams_cost(&registry, &detector_model, &original, &photo, shape);
    let cost_batched = streams_cost(&registry, &detector_model, &batched, &photo, shape);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    println!(
        "### Face identification cost: {} cores ({cpu}); {photo_name} at {WIDTH}×{height}, {} faces",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        faces.len()
    );
    println!();
    println!(
        "| ms per embedding, alignment included (median of {rounds}) | model | wall ms | CPU ms | model runs per {BATCH} crops |"
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    for (way, model, wall, cpu, runs) in &part1 {
        println!("| {way} | {model} | {wall:.2} | {cpu:.2} | {runs:.0} |");
    }
    println!();
    println!(
        "| {n_streams} streams × {} faces, CPU ms per frame per stream (median of {} rounds of {frames} frames) | {} | {} |",
        faces.len(),
        shape.2,
        name(&original),
        name(&batched)
    );
    println!("| --- | ---: | ---: |");
    let rows = [
        "detection (for scale)",
        "identification, untracked: every face embedded on every frame",
        "identification per track: track start (its first 3 frames)",
        "identification per track: steady state (no better shot)",
    ];
    for (k, row) in rows.iter().enumerate() {
        println!(
            "| {row} | {:.2} | {:.2} |",
            cost_original[k], cost_batched[k]
        );
    }
}

fn name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
