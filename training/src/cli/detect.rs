//! `retinaface-train detect`: runs a model on image files and writes, per image, a JSON list of
//! faces and a PNG with boxes and landmarks drawn: a sanity check of a checkpoint without
//! GStreamer.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;
use retinaface::{Face, FaceRecord};
use serde_json::json;

use crate::config::parse_device;
use crate::infer::{InferParams, detect};
use crate::model::RetinaFace;
use crate::onnx_io::load_any;

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Model to run (.safetensors with its .json beside it, or .onnx)
    #[arg(long)]
    pub model: PathBuf,
    /// Folder for `<name>.json` and `<name>.png` of each image
    #[arg(long, default_value = "detections")]
    pub output: PathBuf,
    /// Lowest face score kept
    #[arg(long, default_value_t = 0.6)]
    pub confidence_threshold: f32,
    /// IoU above which non-maximum suppression drops the weaker of two faces
    #[arg(long, default_value_t = 0.4)]
    pub nms_threshold: f32,
    /// Device: auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Image files to detect faces on
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Runs `detect`.
pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let net = load_any(&args.model, parse_device(&args.device)?)?;
    let params = InferParams {
        confidence_threshold: args.confidence_threshold,
        nms_threshold: args.nms_threshold,
        ..Default::default()
    };
    write_detections(&net, &args.images, &args.output, &params)?;
    Ok(())
}

/// Landmark colours: eyes, nose, mouth corners.
const LANDMARK_COLOURS: [Rgb<u8>; 5] = [
    Rgb([0, 128, 255]),
    Rgb([0, 128, 255]),
    Rgb([255, 0, 255]),
    Rgb([255, 160, 0]),
    Rgb([255, 160, 0]),
];

/// The faces as JSON objects in the plugin's schema for one face (`retinaface::FaceRecord`, which
/// `retinafacejson` writes too); `id`, the track ID, is null: single images are not tracked.
pub fn faces_json(faces: &[Face]) -> serde_json::Value {
    let records: Vec<FaceRecord> = faces
        .iter()
        .map(|f| FaceRecord::from_face(f, None))
        .collect();
    serde_json::to_value(records).expect("plain numbers and arrays serialize")
}

/// Draws boxes (green) and landmarks onto `image`.
pub fn annotate(image: &mut RgbImage, faces: &[Face]) {
    let thickness = (image.width().max(image.height()) / 400).max(2) as i32;
    for f in faces {
        for t in 0..thickness {
            let (x, y) = (f.bbox[0] as i32 - t, f.bbox[1] as i32 - t);
            let (w, h) = (f.width() as i32 + 2 * t, f.height() as i32 + 2 * t);
            if w > 0 && h > 0 {
                draw_hollow_rect_mut(
                    image,
                    Rect::at(x, y).of_size(w as u32, h as u32),
                    Rgb([0, 255, 0]),
                );
            }
        }
        for (p, colour) in f.landmarks.iter().zip(LANDMARK_COLOURS) {
            draw_filled_circle_mut(image, (p[0] as i32, p[1] as i32), thickness + 1, colour);
        }
    }
}

/// Detects faces on each of `images`; writes `<stem>.json` and `<stem>.png` into `output`.
/// Returns the faces per image.
pub fn write_detections(
    net: &RetinaFace,
    images: &[PathBuf],
    output: &Path,
    params: &InferParams,
) -> anyhow::Result<Vec<Vec<Face>>> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let mut all = Vec::with_capacity(images.len());
    for path in images {
        let mut image = image::open(path)
            .with_context(|| format!("{}: not a readable image", path.display()))?
            .to_rgb8();
        let faces = detect(net, &image, params);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let doc = json!({ "image": path, "width": image.width(), "height": image.height(), "faces": faces_json(&faces) });
        std::fs::write(
            output.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&doc)?,
        )?;
        annotate(&mut image, &faces);
        image
            .save(output.join(format!("{stem}.png")))
            .with_context(|| format!("writing {stem}.png"))?;
        println!("{}: {} faces", path.display(), faces.len());
        all.push(faces);
    }
    Ok(all)
}
