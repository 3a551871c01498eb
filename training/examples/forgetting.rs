//! Does fine-tuning forget? Fine-tunes the published mv0.25 on a few photos and measures AP@0.5
//! on photos it did not see, at full size and at 1/2 and 1/3 of it (README "Fine-tuning that
//! does not forget"; run through `scripts/forgetting.sh`).
//!
//! Labels, for training and for the held-out photos alike, are the published model's own
//! detections at full size (score ≥ 0.7): the teacher is the model at native resolution, so
//! a recipe that keeps the model's small-face ability keeps AP at 1/2 and 1/3.
//!
//! ```text
//! forgetting [--output DIR] [--iterations 30] [--batch 4] [--recipes issue,recommended,…]
//! ```

mod common;

use std::path::PathBuf;

use common::{HELD_OUT, TRAIN, flag, photo, published_model, teacher_faces};
use image::RgbImage;
use retinaface_training::config::TrainConfig;
use retinaface_training::data::{Sample, write_label_file};
use retinaface_training::eval::{ImagePredictions, evaluate_simple};
use retinaface_training::infer::{InferParams, detect};
use retinaface_training::model::RetinaFace;
use retinaface_training::onnx_io::import::import_onnx;
use tch::Device;

const SCALES: [(&str, f32); 3] = [("1×", 1.0), ("1/2", 0.5), ("1/3", 1.0 / 3.0)];

/// Images of one scale and their ground-truth boxes `[x, y, w, h]`.
type ScaledSet = (Vec<RgbImage>, Vec<Vec<[f32; 4]>>);

/// The held-out photos with their labels, at each scale.
struct HeldOut {
    sets: Vec<ScaledSet>,
}

impl HeldOut {
    fn new(teacher: &RetinaFace) -> anyhow::Result<Self> {
        let mut sets = vec![(Vec::new(), Vec::new()); SCALES.len()];
        for name in HELD_OUT {
            let full = photo(name)?;
            let faces = teacher_faces(teacher, &full);
            for ((_, s), (images, gt)) in SCALES.iter().zip(&mut sets) {
                let (w, h) = (
                    (full.width() as f32 * s).round() as u32,
                    (full.height() as f32 * s).round() as u32,
                );
                images.push(image::imageops::resize(
                    &full,
                    w,
                    h,
                    image::imageops::FilterType::Triangle,
                ));
                gt.push(
                    faces
                        .iter()
                        .map(|f| {
                            let b = f.bbox.map(|v| v * s);
                            [b[0], b[1], b[2] - b[0], b[3] - b[1]]
                        })
                        .collect(),
                );
            }
        }
        Ok(Self { sets })
    }

    fn faces(&self) -> usize {
        self.sets[0].1.iter().map(Vec::len).sum()
    }

    /// AP@0.5 of `net` at each scale.
    fn ap(&self, net: &RetinaFace) -> Vec<f64> {
        let params = InferParams::evaluation();
        self.sets
            .iter()
            .map(|(images, gt)| {
                let preds: Vec<ImagePredictions> = images
                    .iter()
                    .map(|img| ImagePredictions::from_faces(&detect(net, img, &params)))
                    .collect();
                evaluate_simple(gt, &preds, 0.5).0
            })
            .collect()
    }
}

/// A fine-tuning recipe: a name, what it changes, and the change.
type Recipe = (&'static str, &'static str, fn(&mut TrainConfig));

fn recipes() -> Vec<Recipe> {
    vec![
        (
            "issue",
            "the issue's run: lr 1e-3, everything trains",
            |c| c.lr = 1e-3,
        ),
        ("lr1e-4", "lr 1e-4, everything trains", |c| c.lr = 1e-4),
        (
            "freeze",
            "lr 1e-3, backbone frozen (weights and BatchNorm statistics)",
            |c| {
                c.lr = 1e-3;
                c.freeze_backbone = true;
            },
        ),
        (
            "distill",
            "lr 1e-3, everything trains, distillation from the published model (weight 1)",
            |c| {
                c.lr = 1e-3;
                c.distill = 1.0;
            },
        ),
        (
            "recommended",
            "the recommended fine-tune: lr 1e-4, backbone frozen",
            |c| {
                c.lr = 1e-4;
                c.freeze_backbone = true;
            },
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| flag(&args, name);
    let output = PathBuf::from(value("--output").unwrap_or_else(|| "target/forgetting".into()));
    let iterations: usize = value("--iterations").map_or(Ok(30), |v| v.parse())?;
    let batch: usize = value("--batch").map_or(Ok(4), |v| v.parse())?;
    let chosen = value("--recipes");
    let published = published_model();
    let teacher = import_onnx(&published, Device::Cpu)?;

    // The training set: the photos and the teacher's labels.
    let images = output.join("set/images");
    std::fs::create_dir_all(&images)?;
    let mut samples = Vec::new();
    for name in TRAIN {
        let img = photo(name)?;
        let path = images.join(name);
        img.save(&path)?;
        samples.push(Sample {
            faces: teacher_faces(&teacher, &img),
            image: path,
        });
    }
    let labels = output.join("set/label.txt");
    write_label_file(&labels, &images, &samples)?;
    let held_out = HeldOut::new(&teacher)?;

    println!(
        "Fine-tuning {} photos ({} faces), batch {batch}, {iterations} iterations; held out: {} photos, {} faces",
        TRAIN.len(),
        samples.iter().map(|s| s.faces.len()).sum::<usize>(),
        HELD_OUT.len(),
        held_out.faces()
    );
    println!();
    println!("| recipe | AP@0.5 held out, 1× | 1/2 | 1/3 |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, ap: &[f64]| {
        println!(
            "| {name} | {} |",
            ap.iter()
                .map(|a| format!("{a:.3}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    };
    row("published model (before)", &held_out.ap(&teacher));
    let per_epoch = TRAIN.len().div_ceil(batch);
    for (name, what, change) in recipes() {
        if chosen
            .as_deref()
            .is_some_and(|c| !c.split(',').any(|n| n == name))
        {
            continue;
        }
        let run = output.join(name);
        let _ = std::fs::remove_dir_all(&run);
        let mut config = TrainConfig {
            labels: labels.clone(),
            output: run,
            init: Some(published.clone()),
            batch_size: batch,
            epochs: iterations.div_ceil(per_epoch),
            workers: 2,
            device: "cpu".into(),
            ..Default::default()
        };
        change(&mut config);
        let summary = retinaface_training::train::train(config)?;
        let net = RetinaFace::load(&summary.model, Device::Cpu)?;
        row(&format!("{name}: {what}"), &held_out.ap(&net));
    }
    Ok(())
}
