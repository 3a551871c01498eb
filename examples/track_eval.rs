//! Tracker evaluation on synthetic scenes with known ground truth (issue 11).
//!
//! ```text
//! cargo build --release -p retinaface --example track_eval
//! target/release/examples/track_eval            # table: scenario × interval, then the sweep
//! target/release/examples/track_eval table      # only the table
//! target/release/examples/track_eval sweep      # only the parameter sweep (interval 3)
//! target/release/examples/track_eval bench      # Tracker::update/predict cost, 50 faces
//! ```
//!
//! Faces are cut from the sample photos (detected once at native size), pasted onto a noisy
//! background and moved along known paths (the test kit's `track_eval` has the scenes and the
//! metrics, shared with tests/track_eval.rs). Every frame goes through
//! `appsrc ! retinafacedetect interval=N confidence-threshold=0.1 ! retinafacetrack ! appsink`.
//! The sweep replays the per-frame detections through `retinaface::Tracker` directly (update
//! on every third frame, predict in between: what the element does at interval 3).

use std::time::{Duration, Instant};

use retinaface::{Face, Tracker, TrackerConfig};
use retinaface_testkit::PHOTOS;
use retinaface_testkit::track_eval::*;

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;
const FRAMES: usize = 150;
const FACE_HEIGHT: f64 = 90.0;
/// The detector's threshold: the tracker's `low_score`, so low-score faces reach stage 2.
const DETECT: &str = "retinafacedetect confidence-threshold=0.1";

fn media_dir() -> std::path::PathBuf {
    retinaface_testkit::data_dir().join("media")
}

struct Prepared {
    scene: Scene,
    truth: Vec<Vec<Truth>>,
    reference: RunOutput,
}

fn prepare(sprites: &[Sprite]) -> Vec<Prepared> {
    all_scenes(sprites, WIDTH, HEIGHT, FRAMES)
        .into_iter()
        .map(|scene| {
            let truth = (0..scene.frames).map(|k| scene.truth(k, sprites)).collect();
            let reference = run_scene(&scene, sprites, DETECT);
            Prepared {
                scene,
                truth,
                reference,
            }
        })
        .collect()
}

fn table(sprites: &[Sprite], prepared: &[Prepared]) {
    println!(
        "\n{WIDTH}×{HEIGHT}, {FRAMES} frames per scene, faces {FACE_HEIGHT} px high; \
         `{DETECT} interval=N ! retinafacetrack` (defaults: {:?})\n",
        TrackerConfig::default()
    );
    println!(
        "| scenario | interval | MOTA | IDF1 | IDSW | FN | FP | IDs (true) | mean IoU (truth) | IoU vs per-frame det. | fps |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in prepared {
        println!(
            "| {} | detector alone | | | | | | | | 1.000 | {:.1} |",
            p.scene.name, p.reference.fps
        );
        for interval in [1usize, 2, 3, 5] {
            let out = run_scene(
                &p.scene,
                sprites,
                &format!("{DETECT} interval={interval} ! retinafacetrack"),
            );
            let t = tracked(&out.faces);
            let s = score(&p.truth, &t, 0);
            let vs = iou_vs_detection(&p.truth, &p.reference.faces, &t, interval, interval);
            println!(
                "| {} | {interval} | {:.3} | {:.3} | {} | {} | {} | {} ({}) | {:.3} | {:.3} | {:.1} |",
                p.scene.name,
                s.mota,
                s.idf1,
                s.idsw,
                s.fn_,
                s.fp,
                s.ids,
                p.scene.actors.len(),
                s.iou,
                vs,
                out.fps
            );
        }
    }
}

fn sweep(prepared: &[Prepared]) {
    const INTERVAL: usize = 3;
    let d = TrackerConfig::default();
    let mut rows = Vec::new();
    for match_iou in [0.1f32, 0.2, 0.3, 0.5] {
        for confirm_hits in [1u32, 2, 3] {
            for max_missed in [5u32, 15, 30] {
                for output_missed in [0u32, 1] {
                    let c = TrackerConfig {
                        match_iou,
                        confirm_hits,
                        max_missed,
                        output_missed,
                        ..d
                    };
                    let (mut mota, mut idf1, mut idsw, mut vs, mut idsw_disjoint) =
                        (0.0, 0.0, 0, 0.0, 0);
                    let mut fpfn = 0;
                    for p in prepared {
                        let out = replay(&p.reference.faces, INTERVAL, c);
                        let s = score(&p.truth, &out, 0);
                        mota += s.mota;
                        idf1 += s.idf1;
                        idsw += s.idsw;
                        fpfn += s.fp + s.fn_;
                        if p.scene.disjoint {
                            idsw_disjoint += s.idsw;
                        }
                        vs += iou_vs_detection(
                            &p.truth,
                            &p.reference.faces,
                            &out,
                            INTERVAL,
                            INTERVAL,
                        );
                    }
                    let n = prepared.len() as f64;
                    rows.push((c, mota / n, idf1 / n, idsw, idsw_disjoint, fpfn, vs / n));
                }
            }
        }
    }
    rows.sort_by(|a, b| (b.2 + b.1).total_cmp(&(a.2 + a.1)));
    println!(
        "\nSweep at interval {INTERVAL}, replaying the per-frame detections of all {} scenes \
         (means over scenes; other settings default). Best first by IDF1 + MOTA:\n",
        prepared.len()
    );
    println!(
        "| match-iou | confirm-hits | max-missed | output-missed | MOTA | IDF1 | IDSW (disjoint) | FP+FN | IoU vs det. | |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (i, (c, mota, idf1, idsw, idsw_d, fpfn, vs)) in rows.iter().enumerate() {
        let is_default = c == &d;
        let ladder = c.confirm_hits == d.confirm_hits
            && c.max_missed == d.max_missed
            && c.output_missed == d.output_missed;
        if i < 15 || is_default || ladder {
            println!(
                "| {} | {} | {} | {} | {mota:.3} | {idf1:.3} | {idsw} ({idsw_d}) | {fpfn} | {vs:.3} | {} |",
                c.match_iou,
                c.confirm_hits,
                c.max_missed,
                c.output_missed,
                if is_default { "default" } else { "" }
            );
        }
    }
}

/// Median and 99th percentile, in ms, of `samples`.
fn stats(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 99 / 100]),
    )
}

fn bench() {
    const FACES: usize = 50;
    const STEPS: usize = 3000;
    let mut rng = 12345u32;
    let mut jitter = move || {
        rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (rng >> 8) as f32 / (1 << 24) as f32 - 0.5
    };
    let face = |x: f32, y: f32, s: f32| Face {
        bbox: [x, y, x + s, y + s],
        score: 0.9,
        landmarks: [[x + s / 2.0, y + s / 2.0]; 5],
    };
    println!(
        "Tracker cost, {FACES} faces, {STEPS} frames (`cargo run --release -p retinaface --example track_eval -- bench`):\n"
    );
    println!("| case | call | median ms/frame | p99 ms/frame |");
    println!("| --- | --- | ---: | ---: |");
    // Spread: a 10 × 5 grid of 60 px faces 150 px apart, drifting, ±1 px detection noise;
    // crowded: the same 50 in a block of overlapping boxes 30 px apart (every track has several
    // admissible detections: the solver sees the whole 50 × 50 problem).
    for (case, pitch) in [("spread", 150.0f32), ("crowded", 30.0)] {
        let mut t = Tracker::default();
        let (mut update, mut predict) = (Vec::new(), Vec::new());
        for k in 0..STEPS {
            let dets: Vec<Face> = (0..FACES)
                .map(|i| {
                    let (gx, gy) = ((i % 10) as f32, (i / 10) as f32);
                    let mut f = face(
                        50.0 + pitch * gx + 0.5 * k as f32,
                        50.0 + pitch * gy + 0.3 * k as f32,
                        60.0,
                    );
                    for v in &mut f.bbox {
                        *v += jitter() * 2.0;
                    }
                    f
                })
                .collect();
            let start = Instant::now();
            let out = t.update(&dets);
            update.push(start.elapsed());
            if k > 2 {
                assert_eq!(out.len(), FACES, "{case}: every face tracked");
            }
            let start = Instant::now();
            std::hint::black_box(t.predict());
            predict.push(start.elapsed());
        }
        for (call, samples) in [("update", &mut update), ("predict", &mut predict)] {
            let (median, p99) = stats(samples);
            println!("| {case} | {call} | {median:.4} | {p99:.4} |");
        }
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "bench" {
        bench();
        return;
    }
    retinaface_testkit::init();
    let start = Instant::now();
    let all = load_sprites(&media_dir(), &PHOTOS, 60.0, FACE_HEIGHT);
    let found = all.len();
    let sprites = calibrate(all, WIDTH, HEIGHT);
    println!(
        "{found} faces cut, {} detected reliably at {FACE_HEIGHT} px",
        sprites.len()
    );
    assert!(sprites.len() >= 6, "{} sprites", sprites.len());
    println!(
        "{} face sprites from {} photos: {}",
        sprites.len(),
        PHOTOS.len(),
        sprites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if mode == "debug" {
        let scene = scene_lanes(&sprites, WIDTH, HEIGHT, 60);
        let r = run_scene(&scene, &sprites, DETECT);
        for (k, f) in r.faces.iter().enumerate() {
            let t = scene.truth(k, &sprites);
            println!(
                "{k}: truth {:?}",
                t.iter()
                    .map(|g| g.bbox.map(|v| v.round()))
                    .collect::<Vec<_>>()
            );
            for x in f {
                println!(
                    "    det {:.2} {:?}",
                    x.score.unwrap_or(0.0),
                    record_box(x).map(|v| v.round())
                );
            }
        }
        return;
    }
    let prepared = prepare(&sprites);
    if mode.is_empty() || mode == "table" {
        table(&sprites, &prepared);
    }
    if mode.is_empty() || mode == "sweep" {
        sweep(&prepared);
    }
    println!("\n{:.0} s in all", start.elapsed().as_secs_f64());
}
