//! `eval`: runs a model over a validation set and scores it with [`crate::eval`].

use std::path::Path;

use anyhow::Context;
use image::RgbImage;

use crate::data::read_label_file;
use crate::eval::{
    ImagePredictions, PrCurve, WiderResult, evaluate_simple, evaluate_widerface, plot_pr_curves,
    write_prediction_file,
};
use crate::infer::{InferParams, detect};
use crate::model::RetinaFace;

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
