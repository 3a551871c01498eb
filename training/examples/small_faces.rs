//! The small-face model: the published mv0.25 with a stride-4 level added, fine-tuned on
//! synthetic wide scenes (README "Small faces: a stride-4 level"; run through
//! `scripts/small-faces.sh`, which also measures it on a wall of other photos).
//!
//! The scenes are NVR-wall-like mosaics of the training photos (5 sample photos; the held-out
//! ones are never used here): 2–7 "cameras" across, each photo fitted into its cell at 75–100 %,
//! on a random grey, so that faces are 5–60 px. Labels are the published model's detections on
//! the full-size originals (score ≥ 0.7), scaled into the scene: the teacher is the model at
//! native resolution.
//!
//! ```text
//! small_faces [--output DIR] [--scenes 400] [--epochs 10] [--batch 8] [--lr 1e-3]
//!             [--config training/configs/mobilenet0.25-p2-small-faces.toml]
//! ```
//! Writes `DIR/set/` (scenes + label.txt), the run in `DIR/run/` and `DIR/small-faces.onnx`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{TRAIN, flag, photo, published_model, teacher_faces};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retinaface_training::config::TrainConfig;
use retinaface_training::data::{FaceAnnotation, Sample, write_label_file};
use retinaface_training::model::RetinaFace;
use retinaface_training::onnx_io::{export::export_onnx, import::import_onnx};
use tch::Device;

/// Side of a scene in pixels (the trainer crops and resizes it to its image size).
const SCENE: u32 = 640;

type Labelled = (RgbImage, Vec<FaceAnnotation>);

/// `face` scaled by (`sx`, `sy`) and moved by (`dx`, `dy`).
fn place(face: &FaceAnnotation, [sx, sy]: [f32; 2], [dx, dy]: [f32; 2]) -> FaceAnnotation {
    let b = face.bbox;
    FaceAnnotation {
        bbox: [
            b[0] * sx + dx,
            b[1] * sy + dy,
            b[2] * sx + dx,
            b[3] * sy + dy,
        ],
        landmarks: face
            .landmarks
            .map(|l| l.map(|[x, y]| [x * sx + dx, y * sy + dy])),
    }
}

/// One mosaic scene of the photos and its faces.
fn scene(rng: &mut ChaCha8Rng, photos: &[Labelled]) -> Labelled {
    let grey = rng.random_range(40..=200u8);
    let mut canvas = RgbImage::from_pixel(SCENE, SCENE, Rgb([grey; 3]));
    let mut faces = Vec::new();
    let cols = rng.random_range(2..=7u32);
    // 16:9 cameras, as many rows as fit.
    let (cell_w, cell_h) = (SCENE / cols, SCENE / cols * 9 / 16);
    let rows = SCENE / cell_h;
    for row in 0..rows {
        for col in 0..cols {
            let (img, truth) = &photos[rng.random_range(0..photos.len())];
            let fit = (cell_w as f32 / img.width() as f32).min(cell_h as f32 / img.height() as f32);
            let s = fit * rng.random_range(0.75..=1.0f32);
            let (w, h) = (
                ((img.width() as f32 * s).round() as u32).max(1),
                ((img.height() as f32 * s).round() as u32).max(1),
            );
            // Both smooth and aliased downscales, as cameras and scalers give either.
            let filter = if rng.random_bool(0.5) {
                FilterType::Triangle
            } else {
                FilterType::Nearest
            };
            let small = imageops::resize(img, w, h, filter);
            let x = col * cell_w + rng.random_range(0..=cell_w - w.min(cell_w));
            let y = row * cell_h + rng.random_range(0..=cell_h - h.min(cell_h));
            imageops::replace(&mut canvas, &small, i64::from(x), i64::from(y));
            // The resize maps the photo's edges onto the small image's: per-axis scales.
            let scale = [
                w as f32 / img.width() as f32,
                h as f32 / img.height() as f32,
            ];
            faces.extend(truth.iter().map(|f| place(f, scale, [x as f32, y as f32])));
        }
    }
    (canvas, faces)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| flag(&args, name);
    let output = PathBuf::from(value("--output").unwrap_or_else(|| "target/small-faces".into()));
    let scenes: usize = value("--scenes").map_or(Ok(400), |v| v.parse())?;
    let epochs: usize = value("--epochs").map_or(Ok(10), |v| v.parse())?;
    let batch: usize = value("--batch").map_or(Ok(8), |v| v.parse())?;
    let lr: f64 = value("--lr").map_or(Ok(1e-3), |v| v.parse())?;
    let config_path = PathBuf::from(
        value("--config")
            .unwrap_or_else(|| "training/configs/mobilenet0.25-p2-small-faces.toml".into()),
    );
    let published = published_model();
    let teacher = import_onnx(&published, Device::Cpu)?;

    // Labels from the full-size photos; the photos then shrunk to 1/3 once (no cell is larger),
    // as every resize from the originals would filter 7–28 source pixels per output pixel.
    let photos: Vec<Labelled> = TRAIN
        .iter()
        .map(|name| {
            let img = photo(name)?;
            let faces = teacher_faces(&teacher, &img);
            let (w, h) = (img.width() / 3, img.height() / 3);
            let [sx, sy] = [
                w as f32 / img.width() as f32,
                h as f32 / img.height() as f32,
            ];
            let small = imageops::resize(&img, w, h, FilterType::Triangle);
            let faces = faces
                .iter()
                .map(|f| place(f, [sx, sy], [0.0, 0.0]))
                .collect();
            Ok((small, faces))
        })
        .collect::<anyhow::Result<_>>()?;
    let images = output.join("set/images");
    std::fs::create_dir_all(&images)?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut samples = Vec::with_capacity(scenes);
    let mut sides = Vec::new();
    for i in 0..scenes {
        let (img, faces) = scene(&mut rng, &photos);
        let path = images.join(format!("scene{i:04}.jpg"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        img.write_with_encoder(JpegEncoder::new_with_quality(file, 92))?;
        sides.extend(
            faces
                .iter()
                .map(|f| (f.bbox[2] - f.bbox[0]).max(f.bbox[3] - f.bbox[1])),
        );
        samples.push(Sample { image: path, faces });
    }
    let labels = output.join("set/label.txt");
    write_label_file(&labels, &images, &samples)?;
    sides.sort_by(f32::total_cmp);
    println!(
        "{scenes} scenes of {SCENE}×{SCENE} from {} photos: {} faces, median {:.0} px (10th–90th \
         percentile {:.0}–{:.0} px)",
        TRAIN.len(),
        sides.len(),
        sides[sides.len() / 2],
        sides[sides.len() / 10],
        sides[sides.len() * 9 / 10]
    );

    let run = output.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let config = TrainConfig {
        labels,
        output: run,
        init: Some(published),
        epochs,
        batch_size: batch,
        lr,
        lr_steps: vec![epochs.saturating_sub(1).max(1)],
        workers: 2,
        device: "cpu".into(),
        ..TrainConfig::from_toml_file(&config_path)?
    };
    println!("training: {}", config.to_toml().replace('\n', "; "));
    let start = Instant::now();
    let summary = retinaface_training::train::train(config)?;
    println!(
        "trained {} iterations in {:.1} min on the CPU",
        summary.iterations,
        start.elapsed().as_secs_f64() / 60.0
    );
    let net = RetinaFace::load(&summary.model, Device::Cpu)?;
    let onnx = output.join("small-faces.onnx");
    export_onnx(&net, &onnx)?;
    println!("exported {}", onnx.display());
    Ok(())
}
