//! What the trainer's examples share: the sample photos, the train / held-out split, and labels
//! from the published model at native resolution (the teacher).
#![allow(dead_code)]

use std::path::PathBuf;

use anyhow::Context;
use image::RgbImage;
use retinaface_training::data::FaceAnnotation;
use retinaface_training::infer::{InferParams, detect};
use retinaface_training::model::RetinaFace;

/// Photos trained on, and photos only evaluated on (no overlap).
pub const TRAIN: [&str; 5] = [
    "sample1.jpg",
    "sample2.jpg",
    "sample3.jpg",
    "sample4.jpg",
    "sample5.jpg",
];
pub const HELD_OUT: [&str; 6] = [
    "sample6.jpg",
    "test.jpg",
    "test2.jpg",
    "test3.jpg",
    "test4.jpg",
    "test5.jpg",
];
/// Teacher detections at or above this score are labels.
pub const LABEL_SCORE: f32 = 0.7;

pub fn data_dir() -> PathBuf {
    std::env::var_os("RETINAFACE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/share/retinaface"))
}

pub fn published_model() -> PathBuf {
    data_dir().join("models/retinaface-mv025.onnx")
}

pub fn photo(name: &str) -> anyhow::Result<RgbImage> {
    let path = data_dir().join("media").join(name);
    Ok(image::open(&path)
        .with_context(|| format!("{}: run scripts/setup.sh", path.display()))?
        .to_rgb8())
}

/// The teacher's faces on `image` (score ≥ [`LABEL_SCORE`]), with landmarks.
pub fn teacher_faces(net: &RetinaFace, image: &RgbImage) -> Vec<FaceAnnotation> {
    let params = InferParams {
        confidence_threshold: LABEL_SCORE,
        ..Default::default()
    };
    detect(net, image, &params)
        .iter()
        .map(|f| FaceAnnotation {
            bbox: f.bbox,
            landmarks: Some(f.landmarks),
        })
        .collect()
}

/// The value after `--name` on the command line.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
