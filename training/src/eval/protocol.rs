//! The WIDER FACE evaluation arithmetic, step for step as the reference `widerface_evaluate`
//! (biubug6/Pytorch_Retinaface, after the official MATLAB code), so that numbers from this crate
//! can be compared with published ones:
//!
//! 1. scores are normalised over every prediction of the dataset to `(s − min)/(max − min)`,
//!    where `min` starts at 1 and `max` at 0 (so scores inside `[0, 1]` use their real range);
//! 2. per image, predictions in score order take the ground-truth box they overlap most
//!    (IoU with the inclusive `+1` pixel convention); at IoU ≥ threshold a box outside the
//!    setting's keep list makes the prediction vanish (neither true nor false positive), a kept box
//!    not yet found counts as recalled, and anything else is a false positive;
//! 3. for 1000 score thresholds `1 − (t+1)/1000` the counts of proposals and recalled faces are
//!    summed over the dataset, giving precision = recalled/proposals and recall =
//!    recalled/faces, where faces counts every kept box, also in images without predictions;
//! 4. AP is the area under the all-points interpolated precision envelope (VOC 2010+ style).
//!
//! All arithmetic is in `f64`, as numpy does it there.

/// Number of score thresholds of the protocol.
pub const THRESHOLDS: usize = 1000;

/// A precision-recall curve, one point per score threshold, from the highest threshold down.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrCurve {
    /// `recalled / proposals`; NaN at thresholds where nothing was proposed (0/0), as in the
    /// reference. Such points have recall 0 and never change the AP.
    pub precision: Vec<f64>,
    /// `recalled / faces` (0 when the dataset has no faces to find).
    pub recall: Vec<f64>,
}

/// Area under the interpolated precision envelope (the reference's `voc_ap`): sentinels
/// recall 0 / precision 0 in front and recall 1 / precision 0 behind, precision made
/// non-increasing from the right, then Σ Δrecall · precision over the points where recall changes.
/// Points are taken pairwise up to the shorter of the two vectors.
pub fn average_precision(curve: &PrCurve) -> f64 {
    let n = curve.precision.len().min(curve.recall.len());
    let mut rec = Vec::with_capacity(n + 2);
    rec.push(0.0);
    rec.extend_from_slice(&curve.recall[..n]);
    rec.push(1.0);
    let mut pre = Vec::with_capacity(n + 2);
    pre.push(0.0);
    pre.extend_from_slice(&curve.precision[..n]);
    pre.push(0.0);
    for i in (1..pre.len()).rev() {
        pre[i - 1] = numpy_maximum(pre[i - 1], pre[i]);
    }
    (0..rec.len() - 1)
        .filter(|&i| rec[i + 1] != rec[i])
        .map(|i| (rec[i + 1] - rec[i]) * pre[i + 1])
        .sum()
}

/// `np.maximum`: NaN wins (unlike `f64::max`), so the envelope matches the reference bit for bit.
fn numpy_maximum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Normalises every score (index 4) in place over all images. When all scores are equal the
/// reference divides 0 by 0 and loses every prediction; here they all become 1 instead.
pub fn normalise_scores(images: &mut [&mut Vec<[f64; 5]>]) {
    let (mut min, mut max) = (1.0f64, 0.0f64);
    for p in images.iter().flat_map(|v| v.iter()) {
        min = min.min(p[4]);
        max = max.max(p[4]);
    }
    let diff = max - min;
    for p in images.iter_mut().flat_map(|v| v.iter_mut()) {
        p[4] = if diff > 0.0 { (p[4] - min) / diff } else { 1.0 };
    }
}

/// Sorts predictions by score, highest first, keeping file order among equal scores. The reference
/// relies on its input files being written in this order (its thresholding takes everything up to
/// the last prediction above the threshold), which every RetinaFace test script does.
pub fn sort_by_score(preds: &mut [[f64; 5]]) {
    preds.sort_by(|a, b| b[4].total_cmp(&a[4]));
}

/// IoU of two `[x1, y1, x2, y2]` boxes with the inclusive `+1` convention of the reference's
/// `bbox_overlaps` (a box from x1 to x2 is `x2 − x1 + 1` pixels wide); 0 without overlap.
pub fn overlap(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = a[2].min(b[2]) - a[0].max(b[0]) + 1.0;
    if iw <= 0.0 {
        return 0.0;
    }
    let ih = a[3].min(b[3]) - a[1].max(b[1]) + 1.0;
    if ih <= 0.0 {
        return 0.0;
    }
    let area = |r: &[f64; 4]| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    let union = area(a) + area(b) - iw * ih;
    if union > 0.0 { iw * ih / union } else { 0.0 }
}

/// `[x, y, w, h]` → `[x, y, x + w, y + h]`, as the reference converts (no `−1`).
fn corners(b: &[f64]) -> [f64; 4] {
    [b[0], b[1], b[0] + b[2], b[1] + b[3]]
}

/// Per-threshold sums over the dataset: `[proposals, recalled]`, and the number of faces.
#[derive(Debug, Clone)]
pub struct PrAccumulator {
    counts: Vec<[f64; 2]>,
    faces: usize,
}

impl Default for PrAccumulator {
    fn default() -> Self {
        Self {
            counts: vec![[0.0; 2]; THRESHOLDS],
            faces: 0,
        }
    }
}

impl PrAccumulator {
    /// Adds one image. `preds`: `[x, y, w, h, normalised score]` sorted by score (highest first);
    /// `gt`: `[x, y, w, h]`; `kept[i]`: whether `gt[i]` is in the setting's keep list;
    /// `keep_count`: the length of the keep list (the reference counts its entries).
    pub fn add_image(
        &mut self,
        preds: &[[f64; 5]],
        gt: &[[f64; 4]],
        kept: &[bool],
        keep_count: usize,
        iou_threshold: f64,
    ) {
        debug_assert_eq!(gt.len(), kept.len());
        self.faces += keep_count;
        if gt.is_empty() || preds.is_empty() {
            return;
        }
        let gt: Vec<[f64; 4]> = gt.iter().map(|g| corners(g)).collect();
        // Per GT: 0 untouched, 1 recalled, -1 hit but ignored. Per prediction: does it count as a
        // proposal, and how many faces are recalled after it.
        let mut gt_state = vec![0i8; gt.len()];
        let mut recalled = 0usize;
        let mut recalled_after = Vec::with_capacity(preds.len());
        let mut proposals_upto = Vec::with_capacity(preds.len());
        let mut proposals = 0usize;
        for p in preds {
            let b = corners(p);
            // argmax: the first of equal maxima.
            let (best, best_iou) = gt.iter().map(|g| overlap(&b, g)).enumerate().fold(
                (0, f64::NEG_INFINITY),
                |acc, (i, o)| {
                    if o > acc.1 { (i, o) } else { acc }
                },
            );
            let mut proposal = true;
            if best_iou >= iou_threshold {
                if !kept[best] {
                    gt_state[best] = -1;
                    proposal = false;
                } else if gt_state[best] == 0 {
                    gt_state[best] = 1;
                    recalled += 1;
                }
            }
            proposals += usize::from(proposal);
            proposals_upto.push(proposals);
            recalled_after.push(recalled);
        }
        // For each threshold, the predictions scoring at least it form a prefix of `preds`.
        let mut taken = 0;
        for (t, c) in self.counts.iter_mut().enumerate() {
            let thresh = threshold(t);
            while taken < preds.len() && preds[taken][4] >= thresh {
                taken += 1;
            }
            if taken > 0 {
                c[0] += proposals_upto[taken - 1] as f64;
                c[1] += recalled_after[taken - 1] as f64;
            }
        }
    }

    /// The dataset's precision-recall curve.
    pub fn curve(&self) -> PrCurve {
        let faces = self.faces as f64;
        PrCurve {
            precision: self.counts.iter().map(|c| c[1] / c[0]).collect(),
            recall: self
                .counts
                .iter()
                .map(|c| if self.faces > 0 { c[1] / faces } else { 0.0 })
                .collect(),
        }
    }
}

/// The `t`-th score threshold, `1 − (t+1)/1000`, computed as the reference does.
pub fn threshold(t: usize) -> f64 {
    1.0 - (t + 1) as f64 / THRESHOLDS as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_uses_inclusive_pixels() {
        // Corner-touching 1-pixel-step boxes overlap in one pixel: 1 / (4 + 4 − 1).
        let a = corners(&[0.0, 0.0, 1.0, 1.0]);
        let b = corners(&[1.0, 1.0, 1.0, 1.0]);
        assert!((overlap(&a, &b) - 1.0 / 7.0).abs() < 1e-12);
        // 20×20 boxes shifted by 2: (19·19) / (2·21² − 19²) = 361 / 521.
        let a = corners(&[10.0, 10.0, 20.0, 20.0]);
        let b = corners(&[12.0, 12.0, 20.0, 20.0]);
        assert!((overlap(&a, &b) - 361.0 / 521.0).abs() < 1e-12);
        assert_eq!(overlap(&a, &corners(&[40.0, 0.0, 5.0, 5.0])), 0.0);
    }

    #[test]
    fn voc_ap_by_hand() {
        // Envelope [1, 1, .6, .6]: 0.5·1 + 0.5·0.6.
        let c = PrCurve {
            recall: vec![0.5, 0.5, 1.0],
            precision: vec![1.0, 0.5, 0.6],
        };
        assert!((average_precision(&c) - 0.8).abs() < 1e-12);
        // A NaN (0/0) prefix at recall 0 does not change it.
        let c = PrCurve {
            recall: vec![0.0, 0.0, 0.5, 0.5, 1.0],
            precision: vec![f64::NAN, f64::NAN, 1.0, 0.5, 0.6],
        };
        assert!((average_precision(&c) - 0.8).abs() < 1e-12);
        // Recall never reaching 1: the sentinel step adds nothing.
        let c = PrCurve {
            recall: vec![0.25],
            precision: vec![0.5],
        };
        assert!((average_precision(&c) - 0.125).abs() < 1e-12);
        assert_eq!(average_precision(&PrCurve::default()), 0.0);
    }

    #[test]
    fn normalisation_starts_from_min_1_and_max_0() {
        let mut a = vec![[0.0, 0.0, 1.0, 1.0, 2.0], [0.0, 0.0, 1.0, 1.0, 3.0]];
        let mut b = vec![];
        normalise_scores(&mut [&mut a, &mut b]);
        // min = min(1, 2, 3) = 1, max = 3.
        assert_eq!((a[0][4], a[1][4]), (0.5, 1.0));

        let mut a = vec![[0.0, 0.0, 1.0, 1.0, 0.4], [0.0, 0.0, 1.0, 1.0, 0.9]];
        normalise_scores(&mut [&mut a]);
        assert!((a[0][4] - 0.0).abs() < 1e-12 && (a[1][4] - 1.0).abs() < 1e-12);

        let mut a = vec![[0.0, 0.0, 1.0, 1.0, 0.7]];
        normalise_scores(&mut [&mut a]);
        assert_eq!(a[0][4], 1.0);
    }

    #[test]
    fn ignored_match_is_not_a_proposal_and_duplicates_are_false_positives() {
        let gt = [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 10.0, 10.0]];
        let preds = [
            [0.0, 0.0, 10.0, 10.0, 0.9],   // recalls gt 0
            [50.0, 50.0, 10.0, 10.0, 0.7], // hits ignored gt 1
            [1.0, 1.0, 10.0, 10.0, 0.5],   // duplicate of gt 0
        ];
        let mut acc = PrAccumulator::default();
        acc.add_image(&preds, &gt, &[true, false], 1, 0.5);
        let c = acc.curve();
        // Look at thresholds safely between the scores.
        let at = |s: f64| (0..THRESHOLDS).find(|&t| threshold(t) <= s).unwrap();
        let (t1, t2, t3) = (at(0.85), at(0.65), at(0.45));
        assert_eq!((c.precision[t1], c.recall[t1]), (1.0, 1.0));
        assert_eq!((c.precision[t2], c.recall[t2]), (1.0, 1.0));
        assert_eq!((c.precision[t3], c.recall[t3]), (0.5, 1.0));
        assert!(c.precision[0].is_nan() && c.recall[0] == 0.0);
    }
}
