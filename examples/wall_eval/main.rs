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
//!     [--models A.onnx,B.onnx] [--photos a.jpg,b.jpg] [--settings inference-size=640,…] [--walls 1080p]
//! ```
//! `scripts/wall-eval.sh` builds and runs it. `RETINAFACE_MODEL` / `RETINAFACE_DATA` pick
//! another model / media folder. The ground truth always comes from that model (by default the
//! published one); `--models` compares others on the same walls (`scripts/small-faces.sh`), and
//! `--photos` builds the walls from some photos only (e.g. ones a model was not trained on).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use retinaface::{DetectParams, Detector, SessionConfig, Tiling};
use retinaface_testkit::{data_dir, wall};
use wall::{Rgb, Truth};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const WALLS: [(&str, usize, usize); 2] = [("1080p", 4, 4), ("4K", 8, 8)];
const SETTINGS: [&str; 3] = ["inference-size=640", "inference-size=0", "tiling=auto"];
const OUT: &str = "target/wall-eval";

fn model() -> PathBuf {
    std::env::var_os("RETINAFACE_MODEL").map_or_else(
        || data_dir().join("models/retinaface-mv025.onnx"),
        PathBuf::from,
    )
}

fn load_detector(model: &Path) -> Result<Detector> {
    Ok(Detector::load(model, &SessionConfig::default(), &[])?)
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

/// Child: one wall, one setting, one model. Prints `RESULT ap ms peak_mib base_mib faces`.
fn child(name: &str, setting: &str, model: &Path, frames: usize, threshold: f32) -> Result<()> {
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
    let mut detector = load_detector(model)?;
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

fn prepare(media: &Path, names: &[String], walls: &[Wall]) -> Result<Vec<usize>> {
    let mut detector = load_detector(&model())?;
    let truth_params = DetectParams {
        confidence_threshold: 0.7,
        inference_size: 0,
        ..Default::default()
    };
    let photos: Vec<wall::Photo> = names
        .iter()
        .map(|name| {
            let path = media.join(name);
            let image = wall::decode(&path, None);
            let faces = image.detect(&mut detector, &truth_params);
            wall::Photo { path, image, faces }
        })
        .collect();
    std::fs::create_dir_all(OUT)?;
    let mut counts = Vec::new();
    for &(name, cols, rows) in walls {
        let (image, truth) = wall::build_wall(&photos, cols, rows);
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

/// The items of a comma-separated flag value.
fn list(value: String) -> Vec<String> {
    value.split(',').map(str::to_string).collect()
}

type Wall = (&'static str, usize, usize);

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
        let model = Path::new(&args[i + 3]);
        return child(&args[i + 1], &args[i + 2], model, frames, threshold);
    }
    let default_model = model().display().to_string();
    let models = list(value("--models", &default_model));
    let photos = list(value("--photos", &wall::PHOTOS.join(",")));
    let settings = list(value("--settings", &SETTINGS.join(",")));
    if let Some(bad) = settings.iter().find(|s| !SETTINGS.contains(&s.as_str())) {
        return Err(format!("unknown setting {bad}; choose among {SETTINGS:?}").into());
    }
    let wall_names = list(value("--walls", "1080p,4K"));
    let walls: Vec<Wall> = WALLS
        .into_iter()
        .filter(|(n, _, _)| wall_names.iter().any(|w| w == n))
        .collect();
    let counts = prepare(&data_dir().join("media"), &photos, &walls)?;
    let exe = std::env::current_exe()?;
    // Every (model, setting) pair of a wall, in a fixed order.
    let runs: Vec<(&String, &String)> = models
        .iter()
        .flat_map(|m| settings.iter().map(move |s| (m, s)))
        .collect();
    // The time reference of a run: with several models, the first model in the same setting;
    // with one, its native pass (or its first setting if the native pass does not run).
    let native = runs
        .iter()
        .position(|(_, s)| s.as_str() == "inference-size=0")
        .unwrap_or(0);
    let model_column = models.len() > 1;
    let reference = |ri: usize| {
        if model_column {
            ri % settings.len()
        } else {
            native
        }
    };
    // results[wall][run] = per-round (ap, ms, peak, base, faces)
    let mut results = vec![vec![Vec::new(); runs.len()]; walls.len()];
    for round in 0..rounds {
        for (wi, (name, _, _)) in walls.iter().enumerate() {
            // Flip the order every round so drift hits every run alike.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..runs.len()).collect()
            } else {
                (0..runs.len()).rev().collect()
            };
            for ri in order {
                let (model, setting) = runs[ri];
                let out = Command::new(&exe)
                    .args(["--child", name, setting, model])
                    .args(["--frames", &frames.to_string()])
                    .args(["--threshold", &threshold.to_string()])
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find_map(|l| l.strip_prefix("RESULT "))
                    .ok_or_else(|| {
                        format!(
                            "{name} {setting} {model}: no result ({})",
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })?;
                let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
                eprintln!(
                    "[wall-eval] round {round} {name} {setting} {model}: AP {:.3}, {:.1} ms, peak {:.0} MiB",
                    v[0], v[1], v[2]
                );
                results[wi][ri].push(v);
            }
        }
    }
    println!(
        "| wall |{} setting | AP@0.5 | ms/frame | time / {} | peak memory (MiB) | above model loaded (MiB) | faces reported |",
        if model_column { " model |" } else { "" },
        if model_column {
            format!("`{}`, same setting", file_name(&models[0]))
        } else {
            "native pass".into()
        }
    );
    println!(
        "|---|{}---|---:|---:|---:|---:|---:|---:|",
        if model_column { "---|" } else { "" }
    );
    for (wi, (name, _, _)) in walls.iter().enumerate() {
        for (ri, (model, setting)) in runs.iter().enumerate() {
            let r = &results[wi][ri];
            let col = |k: usize| median(r.iter().map(|v| v[k]).collect());
            // Per round against the reference run of the same round: drift cancels out.
            let base = &results[wi][reference(ri)];
            let ratio = median(r.iter().zip(base).map(|(v, n)| v[1] / n[1]).collect());
            println!(
                "| {name} ({} faces) |{} `{setting}` | {:.3} | {:.1} | {:.2}× | {:.0} | {:.0} | {:.0} |",
                counts[wi],
                if model_column {
                    format!(" `{}` |", file_name(model))
                } else {
                    String::new()
                },
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

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}
