//! Small faces in wide scenes: AP@0.5, time per frame and peak memory of three ways to run the
//! detector on a synthetic NVR wall (a grid of 480×270 cameras showing the sample photos):
//! `inference-size=640` (one scaled pass), `inference-size=0` (one native pass) and
//! `tiling=auto` (native tiles + one scaled pass), on a 1920×1080 (4×4) and a 3840×2160 (8×8)
//! wall. Ground truth: faces the detector finds at native size on each original photo (score ≥
//! 0.7), scaled onto the wall; faces under 10 px there are "difficult" (ignored, VOC's rule).
//!
//! Every (wall, setting) runs in a child process of its own, so that its peak memory (VmHWM) is
//! its own; children run interleaved over `--rounds`, and the table shows medians.
//!
//! ```text
//! cargo run --release --example wall_eval -- [--frames N (5)] [--rounds N (1)] [--threshold T (0.1)]
//! ```
//! `scripts/wall-eval.sh` builds and runs it. `RETINAFACE_MODEL` / `RETINAFACE_DATA` pick
//! another model / media folder.

mod wall;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use retinaface::{DetectParams, Detector, SessionConfig, Tiling};
use wall::{Rgb, Truth};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const WALLS: [(&str, usize, usize); 2] = [("1080p", 4, 4), ("4K", 8, 8)];
const SETTINGS: [&str; 3] = ["inference-size=640", "inference-size=0", "tiling=auto"];
const OUT: &str = "target/wall-eval";

fn data_dir() -> PathBuf {
    std::env::var_os("RETINAFACE_DATA").map_or_else(
        || PathBuf::from("/usr/local/share/retinaface"),
        PathBuf::from,
    )
}

fn model() -> PathBuf {
    std::env::var_os("RETINAFACE_MODEL").map_or_else(
        || data_dir().join("models/retinaface-mv025.onnx"),
        PathBuf::from,
    )
}

fn load_detector() -> Result<Detector> {
    Ok(Detector::load(&model(), &SessionConfig::default(), &[])?)
}

fn params(setting: &str, threshold: f32) -> DetectParams {
    let mut p = DetectParams {
        confidence_threshold: threshold,
        ..Default::default()
    };
    match setting {
        "inference-size=640" => p.inference_size = 640,
        "inference-size=0" => p.inference_size = 0,
        "tiling=auto" => p.tiling = Tiling::Auto,
        other => panic!("unknown setting {other}"),
    }
    p
}

/// `VmHWM` / `VmRSS` of this process in MiB.
fn memory(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Child: one wall, one setting. Prints `RESULT ap ms peak_mib base_mib faces`.
fn child(name: &str, setting: &str, frames: usize, threshold: f32) -> Result<()> {
    let dir = Path::new(OUT);
    let header = std::fs::read_to_string(dir.join(format!("{name}.size")))?;
    let (w, h) = header.trim().split_once('x').ok_or("bad size file")?;
    let image = Rgb {
        width: w.parse()?,
        height: h.parse()?,
        data: std::fs::read(dir.join(format!("{name}.rgb")))?,
    };
    let truth: Vec<Truth> = std::fs::read_to_string(dir.join(format!("{name}.truth")))?
        .lines()
        .map(|l| {
            let v: Vec<f32> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            Truth {
                bbox: [v[0], v[1], v[2], v[3]],
                difficult: v[4] != 0.0,
            }
        })
        .collect();
    let mut detector = load_detector()?;
    let params = params(setting, threshold);
    let base = memory("VmRSS:");
    // Warm-up: ONNX Runtime plans its memory on the first run of a shape.
    let faces = image.detect(&mut detector, &params);
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        let t = Instant::now();
        std::hint::black_box(image.detect(&mut detector, &params));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ap = wall::average_precision(&truth, &faces, 0.5);
    println!(
        "RESULT {ap} {} {} {base} {}",
        median(times),
        memory("VmHWM:"),
        faces.len()
    );
    Ok(())
}

fn prepare(media: &Path) -> Result<Vec<usize>> {
    let mut detector = load_detector()?;
    let truth_params = DetectParams {
        confidence_threshold: 0.7,
        inference_size: 0,
        ..Default::default()
    };
    let photos: Vec<(Rgb, Vec<retinaface::Face>)> = wall::PHOTOS
        .iter()
        .map(|p| {
            let img = wall::decode(&media.join(p), None);
            let faces = img.detect(&mut detector, &truth_params);
            (img, faces)
        })
        .collect();
    std::fs::create_dir_all(OUT)?;
    let mut counts = Vec::new();
    for (name, cols, rows) in WALLS {
        let (image, truth) = wall::build_wall(&photos, media, cols, rows);
        let dir = Path::new(OUT);
        std::fs::write(dir.join(format!("{name}.rgb")), &image.data)?;
        std::fs::write(
            dir.join(format!("{name}.size")),
            format!("{}x{}", image.width, image.height),
        )?;
        let lines: Vec<String> = truth
            .iter()
            .map(|t| {
                let b = t.bbox;
                format!("{} {} {} {} {}", b[0], b[1], b[2], b[3], t.difficult as u8)
            })
            .collect();
        std::fs::write(dir.join(format!("{name}.truth")), lines.join("\n"))?;
        let sides: Vec<f32> = truth
            .iter()
            .filter(|t| !t.difficult)
            .map(|t| (t.bbox[2] - t.bbox[0]).max(t.bbox[3] - t.bbox[1]))
            .collect();
        eprintln!(
            "[wall-eval] {name}: {}×{}, {} faces ({} difficult), {:.0}–{:.0} px",
            image.width,
            image.height,
            sides.len(),
            truth.len() - sides.len(),
            sides.iter().copied().fold(f32::INFINITY, f32::min),
            sides.iter().copied().fold(0.0, f32::max)
        );
        counts.push(sides.len());
    }
    Ok(counts)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let frames: usize = value("--frames", "5").parse()?;
    let rounds: usize = value("--rounds", "1").parse()?;
    let threshold: f32 = value("--threshold", "0.1").parse()?;
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1], &args[i + 2], frames, threshold);
    }
    let counts = prepare(&data_dir().join("media"))?;
    let exe = std::env::current_exe()?;
    // results[wall][setting] = per-round (ap, ms, peak, base, faces)
    let mut results = vec![vec![Vec::new(); SETTINGS.len()]; WALLS.len()];
    for round in 0..rounds {
        for (wi, (name, _, _)) in WALLS.iter().enumerate() {
            // Flip the order every round so drift hits every setting alike.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..SETTINGS.len()).collect()
            } else {
                (0..SETTINGS.len()).rev().collect()
            };
            for si in order {
                let out = Command::new(&exe)
                    .args(["--child", name, SETTINGS[si]])
                    .args(["--frames", &frames.to_string()])
                    .args(["--threshold", &threshold.to_string()])
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find_map(|l| l.strip_prefix("RESULT "))
                    .ok_or_else(|| {
                        format!(
                            "{name} {}: no result ({})",
                            SETTINGS[si],
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })?;
                let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
                eprintln!(
                    "[wall-eval] round {round} {name} {}: AP {:.3}, {:.1} ms, peak {:.0} MiB",
                    SETTINGS[si], v[0], v[1], v[2]
                );
                results[wi][si].push(v);
            }
        }
    }
    println!(
        "| wall | setting | AP@0.5 | ms/frame | time / native pass | peak memory (MiB) | above model loaded (MiB) | faces reported |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (wi, (name, _, _)) in WALLS.iter().enumerate() {
        for (si, setting) in SETTINGS.iter().enumerate() {
            let r = &results[wi][si];
            let col = |k: usize| median(r.iter().map(|v| v[k]).collect());
            // Per round against the native pass of the same round: drift cancels out.
            let native = &results[wi][1];
            let ratio = median(r.iter().zip(native).map(|(v, n)| v[1] / n[1]).collect());
            println!(
                "| {name} ({} faces) | `{setting}` | {:.3} | {:.1} | {:.2}× | {:.0} | {:.0} | {:.0} |",
                counts[wi],
                col(0),
                col(1),
                ratio,
                col(2),
                col(2) - col(3),
                col(4)
            );
        }
    }
    Ok(())
}
