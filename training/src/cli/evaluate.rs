//! `retinaface-train eval`: runs a model over a validation set and scores it with
//! [`crate::eval`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use image::RgbImage;

use crate::config::parse_device;
use crate::data::read_label_file;
use crate::eval::{
    ImagePredictions, PrCurve, WiderResult, evaluate_simple, evaluate_widerface, plot_pr_curves,
    write_prediction_file,
};
use crate::infer::{InferParams, detect};
use crate::model::RetinaFace;
use crate::onnx_io::load_any;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model to evaluate (.safetensors with its .json beside it, or .onnx)
    #[arg(long)]
    pub model: PathBuf,
    /// A label.txt set: every face counts (IoU 0.5) [default: none; give it or --widerface]
    #[arg(long, conflicts_with = "widerface")]
    pub labels: Option<PathBuf>,
    /// Image root of --labels [default: images/ beside it]
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// WIDER FACE validation folder (with `images/<event>/…`); needs --gt [default: none; give it
    /// or --labels]
    #[arg(long, requires = "gt")]
    pub widerface: Option<PathBuf>,
    /// Folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat, for --widerface
    /// [default: none]
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// Where predictions and pr.png go
    #[arg(long, default_value = "eval")]
    pub output: PathBuf,
    /// Downscale images whose longer side exceeds this (0 = original size, as the reference)
    #[arg(long, default_value_t = 0)]
    pub max_size: u32,
    /// Device: auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Runs `eval`: prints the AP of `--labels` or the WIDER FACE easy/medium/hard APs.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let net = load_any(&args.model, parse_device(&args.device)?)?;
    match (&args.labels, &args.widerface, &args.gt) {
        (Some(labels), _, _) => {
            let images = args
                .images
                .clone()
                .unwrap_or_else(|| labels.parent().unwrap_or(Path::new(".")).join("images"));
            let r = eval_labels(&net, labels, &images, &args.output, args.max_size)?;
            let chart = match &r.chart {
                Ok(path) => format!("PR curve: {}", path.display()),
                Err(why) => why.clone(),
            };
            println!("AP {:.4} over {} faces  ({chart})", r.ap, r.faces);
        }
        (None, Some(wider), Some(gt)) => {
            let r = eval_widerface(&net, wider, gt, &args.output, args.max_size)?;
            println!(
                "easy AP {:.4}  medium AP {:.4}  hard AP {:.4}  (PR curves: {})",
                r.easy,
                r.medium,
                r.hard,
                args.output.join("pr.png").display()
            );
        }
        _ => anyhow::bail!(
            "give --labels <label.txt>, or --widerface <val dir> with --gt <ground_truth dir>"
        ),
    }
    Ok(())
}

/// Downscales images whose longer side exceeds `max_side` (0 = never); returns the factor that
/// maps detections back to the original pixels.
fn fit(image: RgbImage, max_side: u32) -> (RgbImage, f32) {
    let long = image.width().max(image.height());
    if max_side == 0 || long <= max_side {
        return (image, 1.0);
    }
    let s = max_side as f32 / long as f32;
    let (w, h) = (
        ((image.width() as f32 * s).round() as u32).max(1),
        ((image.height() as f32 * s).round() as u32).max(1),
    );
    (
        image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle),
        1.0 / s,
    )
}

fn predict(
    net: &RetinaFace,
    path: &Path,
    max_side: u32,
    params: &InferParams,
) -> anyhow::Result<ImagePredictions> {
    let image = image::open(path)
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .to_rgb8();
    let (image, back) = fit(image, max_side);
    let mut faces = detect(net, &image, params);
    for f in &mut faces {
        f.bbox = f.bbox.map(|v| v * back);
    }
    Ok(ImagePredictions::from_faces(&faces))
}

/// What `eval --labels` found.
pub struct LabelsResult {
    pub ap: f64,
    pub curve: PrCurve,
    /// Faces in the ground truth (malformed lines skipped).
    pub faces: usize,
    /// The precision-recall chart, or why there is none (no faces, or no detection at all:
    /// then there is no curve to draw, and AP is 0).
    pub chart: Result<std::path::PathBuf, String>,
}

/// AP of `net` on a `label.txt` set (every face counts, IoU 0.5); writes `pr.png` into `output`
/// when there is a curve to draw.
pub fn eval_labels(
    net: &RetinaFace,
    labels: &Path,
    images: &Path,
    output: &Path,
    max_side: u32,
) -> anyhow::Result<LabelsResult> {
    let set = read_label_file(labels, images)?;
    set.report_skipped();
    anyhow::ensure!(
        !set.samples.is_empty(),
        "{} lists no images",
        labels.display()
    );
    let params = InferParams::evaluation();
    let mut gt = Vec::with_capacity(set.samples.len());
    let mut preds = Vec::with_capacity(set.samples.len());
    for s in &set.samples {
        gt.push(
            s.faces
                .iter()
                .map(|f| {
                    [
                        f.bbox[0],
                        f.bbox[1],
                        f.bbox[2] - f.bbox[0],
                        f.bbox[3] - f.bbox[1],
                    ]
                })
                .collect(),
        );
        preds.push(predict(net, &s.image, max_side, &params)?);
    }
    let (ap, curve) = evaluate_simple(&gt, &preds, 0.5);
    let faces = gt.iter().map(Vec::len).sum();
    let drawable = curve
        .recall
        .iter()
        .zip(&curve.precision)
        .any(|(r, p)| r.is_finite() && p.is_finite());
    let chart = if faces == 0 {
        Err("no precision-recall chart: the labels hold no face".to_string())
    } else if !drawable {
        Err("no precision-recall chart: the model detected nothing".to_string())
    } else {
        std::fs::create_dir_all(output)?;
        let path = output.join("pr.png");
        plot_pr_curves(&path, &[("faces", &curve, ap)])?;
        Ok(path)
    };
    // No faces to find: nothing was found either, AP 0 rather than NaN.
    let ap = if faces == 0 { 0.0 } else { ap };
    Ok(LabelsResult {
        ap,
        curve,
        faces,
        chart,
    })
}

/// The WIDER FACE protocol: predictions for every image of the official validation list
/// (`<widerface>/images/<event>/<name>.jpg`) into `<output>/predictions`, then easy / medium /
/// hard AP against the `.mat` ground truth in `gt_dir`; writes `pr.png`.
pub fn eval_widerface(
    net: &RetinaFace,
    widerface: &Path,
    gt_dir: &Path,
    output: &Path,
    max_side: u32,
) -> anyhow::Result<WiderResult> {
    let events = crate::eval::widerface::load_ground_truth(gt_dir)?;
    let pred_dir = output.join("predictions");
    let params = InferParams::evaluation();
    for event in &events {
        for image in &event.images {
            let path = widerface
                .join("images")
                .join(&event.name)
                .join(format!("{}.jpg", image.name));
            let preds = predict(net, &path, max_side, &params)?;
            write_prediction_file(&pred_dir, &event.name, &image.name, &preds.boxes)?;
        }
    }
    let result = evaluate_widerface(&pred_dir, gt_dir)?;
    plot_pr_curves(
        &output.join("pr.png"),
        &[
            ("easy", &result.curves[0], result.easy),
            ("medium", &result.curves[1], result.medium),
            ("hard", &result.curves[2], result.hard),
        ],
    )?;
    Ok(result)
}
