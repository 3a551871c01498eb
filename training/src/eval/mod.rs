//! Evaluation: the WIDER FACE protocol (easy / medium / hard AP from the official `.mat` ground
//! truth and per-image prediction files) and the same protocol on a plain labelled set where every
//! face counts. See [`protocol`] for the arithmetic and how it follows the reference.

pub mod matfile;
pub mod predfile;
pub mod protocol;
pub mod widerface;

#[cfg(test)]
mod scipy_tests;

use std::path::Path;

use anyhow::{Result, anyhow};
use retinaface::decode::Face;

pub use predfile::{PredictionSet, read_prediction_dir, write_prediction_file};
pub use protocol::{PrCurve, average_precision};

use protocol::{PrAccumulator, normalise_scores, sort_by_score};

/// IoU at which a prediction finds a face in the WIDER FACE protocol.
pub const WIDER_IOU: f64 = 0.5;

/// One image's predictions: `[x, y, w, h, score]` in pixels, any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagePredictions {
    pub boxes: Vec<[f32; 5]>,
}

impl ImagePredictions {
    /// From detector output (`[x1, y1, x2, y2]` boxes). Coordinates are kept as they are; the
    /// Python test scripts truncate them to integers, which changes AP only marginally.
    pub fn from_faces(faces: &[Face]) -> Self {
        Self {
            boxes: faces
                .iter()
                .map(|f| [f.bbox[0], f.bbox[1], f.width(), f.height(), f.score])
                .collect(),
        }
    }
}

/// AP for each WIDER FACE setting and the curves behind them (easy, medium, hard).
#[derive(Debug, Clone, PartialEq)]
pub struct WiderResult {
    pub easy: f64,
    pub medium: f64,
    pub hard: f64,
    pub curves: [PrCurve; 3],
}

/// The WIDER FACE protocol on a set where every ground-truth face counts (no ignore lists):
/// `gt[i]` are image `i`'s faces as `[x, y, w, h]`, `preds[i]` its predictions. Scores are
/// normalised over the whole set as in the WIDER protocol; predictions with a non-finite value are
/// dropped. Returns the AP and its curve.
///
/// # Panics
/// When `gt` and `preds` differ in length (a caller bug, not a data problem).
pub fn evaluate_simple(
    gt: &[Vec<[f32; 4]>],
    preds: &[ImagePredictions],
    iou_threshold: f32,
) -> (f64, PrCurve) {
    assert_eq!(
        gt.len(),
        preds.len(),
        "evaluate_simple: ground truth for {} images, predictions for {}",
        gt.len(),
        preds.len()
    );
    let mut all: Vec<Vec<[f64; 5]>> = preds
        .iter()
        .map(|p| {
            let mut v: Vec<[f64; 5]> = p
                .boxes
                .iter()
                .filter(|b| b.iter().all(|x| x.is_finite()))
                .map(|b| b.map(f64::from))
                .collect();
            sort_by_score(&mut v);
            v
        })
        .collect();
    normalise_scores(&mut all.iter_mut().collect::<Vec<_>>());
    let mut acc = PrAccumulator::default();
    for (faces, p) in gt.iter().zip(&all) {
        let boxes: Vec<[f64; 4]> = faces.iter().map(|b| b.map(f64::from)).collect();
        let kept = vec![true; boxes.len()];
        acc.add_image(p, &boxes, &kept, boxes.len(), f64::from(iou_threshold));
    }
    let curve = acc.curve();
    (average_precision(&curve), curve)
}

/// The official WIDER FACE validation protocol: predictions from `pred_dir`
/// (`<event>/<image>.txt`, see [`write_prediction_file`]), ground truth from `gt_dir`
/// (`wider_face_val.mat`, `wider_{easy,medium,hard}_val.mat`). Every validation image needs a
/// prediction file (possibly with zero boxes); a missing one is an error naming it.
pub fn evaluate_widerface(pred_dir: &Path, gt_dir: &Path) -> Result<WiderResult> {
    let gt = widerface::load_ground_truth(gt_dir)?;
    let mut preds = read_prediction_dir(pred_dir)?;
    for p in preds.values_mut().flat_map(|e| e.values_mut()) {
        sort_by_score(p);
    }
    normalise_scores(
        &mut preds
            .values_mut()
            .flat_map(|e| e.values_mut())
            .collect::<Vec<_>>(),
    );

    let mut accs: [PrAccumulator; 3] = Default::default();
    for event in &gt {
        let event_preds = preds.get(&event.name).ok_or_else(|| {
            anyhow!(
                "no predictions for event '{}': expected folder {}",
                event.name,
                pred_dir.join(&event.name).display()
            )
        })?;
        for image in &event.images {
            let p = event_preds.get(&image.name).ok_or_else(|| {
                anyhow!(
                    "no prediction file for image '{}' of event '{}': expected {}",
                    image.name,
                    event.name,
                    pred_dir
                        .join(&event.name)
                        .join(format!("{}.txt", image.name))
                        .display()
                )
            })?;
            for (acc, keep) in accs.iter_mut().zip(&image.keep) {
                let mut kept = vec![false; image.boxes.len()];
                for &k in keep {
                    if let Some(slot) = kept.get_mut(k - 1) {
                        *slot = true;
                    }
                }
                acc.add_image(p, &image.boxes, &kept, keep.len(), WIDER_IOU);
            }
        }
    }
    let curves = accs.map(|a| a.curve());
    Ok(WiderResult {
        easy: average_precision(&curves[0]),
        medium: average_precision(&curves[1]),
        hard: average_precision(&curves[2]),
        curves,
    })
}

/// Draws precision over recall for each `(name, curve, AP)` into a PNG; the legend shows the AP.
pub fn plot_pr_curves(path: &Path, curves: &[(&str, &PrCurve, f64)]) -> Result<()> {
    let names: Vec<String> = curves
        .iter()
        .map(|(name, _, ap)| format!("{name} (AP {ap:.4})"))
        .collect();
    let series: Vec<(&str, Vec<(f64, f64)>)> = names
        .iter()
        .zip(curves)
        .map(|(name, (_, c, _))| {
            let points = c.recall.iter().copied().zip(c.precision.iter().copied());
            (name.as_str(), points.collect())
        })
        .collect();
    crate::plot::line_chart_in(
        path,
        "Precision-recall",
        "recall",
        "precision",
        &series,
        Some(0.0..1.0),
        Some(0.0..1.02),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_by_hand() {
        // Image 0: faces A, B; image 1: face C.
        let gt = vec![
            vec![[10.0, 10.0, 20.0, 20.0], [100.0, 100.0, 20.0, 20.0]],
            vec![[50.0, 50.0, 30.0, 30.0]],
        ];
        let preds = vec![
            ImagePredictions {
                boxes: vec![
                    [10.0, 10.0, 20.0, 20.0, 0.9],   // A
                    [12.0, 12.0, 20.0, 20.0, 0.5],   // A again (IoU 361/521): false positive
                    [100.0, 100.0, 20.0, 20.0, 0.7], // B
                ],
            },
            ImagePredictions {
                boxes: vec![
                    [300.0, 300.0, 10.0, 10.0, 0.8], // nothing
                    [50.0, 50.0, 30.0, 30.0, 0.4],   // C
                ],
            },
        ];
        // Score order: TP(A) FP TP(B) FP TP(C) over 3 faces → (p, r) = (1, 1/3), (.5, 1/3),
        // (2/3, 2/3), (.5, 2/3), (.6, 1); envelope 1, 2/3, 2/3, .6, .6 →
        // AP = 1/3 + 1/3·2/3 + 1/3·0.6 = 34/45.
        let (ap, curve) = evaluate_simple(&gt, &preds, 0.5);
        assert!((ap - 34.0 / 45.0).abs() < 1e-12, "{ap}");
        assert_eq!(curve.precision.len(), 1000);
        assert_eq!(*curve.recall.last().unwrap(), 1.0);
        assert!((curve.precision.last().unwrap() - 0.6).abs() < 1e-12);

        // At IoU 0.7 the duplicate no longer matters (it was a false positive anyway), but a
        // sloppier box for C turns C's prediction into a false positive too.
        let mut sloppy = preds.clone();
        sloppy[1].boxes[1] = [55.0, 55.0, 30.0, 30.0, 0.4]; // IoU 676/1246 ≈ 0.54
        let (ap5, _) = evaluate_simple(&gt, &sloppy, 0.5);
        assert!((ap5 - 34.0 / 45.0).abs() < 1e-12);
        // Without C: (1,1/3) (.5,1/3) (2/3,2/3) (.5,2/3) (.4,2/3) → 1/3 + 1/3·2/3 = 5/9.
        let (ap7, _) = evaluate_simple(&gt, &sloppy, 0.7);
        assert!((ap7 - 5.0 / 9.0).abs() < 1e-12, "{ap7}");
    }

    #[test]
    fn simple_edge_cases_do_not_panic() {
        let (ap, c) = evaluate_simple(&[], &[], 0.5);
        assert_eq!(ap, 0.0);
        assert!(c.recall.iter().all(|&r| r == 0.0));
        // Faces but no predictions: AP 0.
        let (ap, _) = evaluate_simple(&[vec![[0.0, 0.0, 5.0, 5.0]]], &[Default::default()], 0.5);
        assert_eq!(ap, 0.0);
        // A single prediction (all scores equal) still counts.
        let preds = [ImagePredictions {
            boxes: vec![[0.0, 0.0, 5.0, 5.0, 0.3], [0.0, 0.0, 5.0, 5.0, f32::NAN]],
        }];
        let (ap, _) = evaluate_simple(&[vec![[0.0, 0.0, 5.0, 5.0]]], &preds, 0.5);
        assert_eq!(ap, 1.0);
    }

    #[test]
    fn from_faces_converts_corners_to_size() {
        let f = Face {
            bbox: [10.0, 20.0, 40.0, 80.0],
            score: 0.75,
            landmarks: [[0.0; 2]; 5],
        };
        assert_eq!(
            ImagePredictions::from_faces(&[f]).boxes,
            vec![[10.0, 20.0, 30.0, 60.0, 0.75]]
        );
    }
}
