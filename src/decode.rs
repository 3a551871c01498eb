//! Turning raw network rows into faces (the biubug6 `decode` / `decode_landm` formulas).

use crate::contract::{ConfKind, ModelContract};
use crate::priors::Prior;

/// One detected face. Coordinates are in the pixel space given to [`decode_faces`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// `[x_min, y_min, x_max, y_max]`.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose, left mouth corner, right mouth corner, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

/// Where the five landmarks of an average frontal face sit, as fractions of its box: eyes,
/// nose, mouth corners.
const FRONTAL_LANDMARKS: [[f32; 2]; 5] =
    [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]];

impl Face {
    /// A face of which only the box and score are known, with the landmarks of an average
    /// frontal face inside the box (tests, and producers without landmarks).
    pub fn from_box(bbox: [f32; 4], score: f32) -> Self {
        let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
        Self {
            bbox,
            score,
            landmarks: FRONTAL_LANDMARKS.map(|[u, v]| [bbox[0] + u * w, bbox[1] + v * h]),
        }
    }

    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    /// Plain intersection over union of the two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        crate::geometry::iou(&self.bbox, &other.bbox)
    }
}

/// Box regression → `[x_min, y_min, x_max, y_max]`, normalised like the prior.
pub fn decode_box(loc: &[f32], p: &Prior, variances: [f32; 2]) -> [f32; 4] {
    let cx = p.cx + loc[0] * variances[0] * p.w;
    let cy = p.cy + loc[1] * variances[0] * p.h;
    let w = p.w * (loc[2] * variances[1]).exp();
    let h = p.h * (loc[3] * variances[1]).exp();
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// Landmark regression → five normalised points.
pub fn decode_landmarks(landm: &[f32], p: &Prior, variances: [f32; 2]) -> [[f32; 2]; 5] {
    std::array::from_fn(|i| {
        [
            p.cx + landm[2 * i] * variances[0] * p.w,
            p.cy + landm[2 * i + 1] * variances[0] * p.h,
        ]
    })
}

/// Inverse of [`decode_box`]: the regression target that makes `p` decode to `bbox`
/// (`[x_min, y_min, x_max, y_max]`, normalised like the prior). The trainer's box targets.
pub fn encode_box(bbox: [f32; 4], p: &Prior, variances: [f32; 2]) -> [f32; 4] {
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let (cx, cy) = ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0);
    [
        (cx - p.cx) / (variances[0] * p.w),
        (cy - p.cy) / (variances[0] * p.h),
        // Degenerate (zero-size) boxes would give -inf; the matcher never assigns them.
        (w / p.w).ln() / variances[1],
        (h / p.h).ln() / variances[1],
    ]
}

/// Inverse of [`decode_landmarks`]: the regression target for five normalised points.
pub fn encode_landmarks(points: &[[f32; 2]; 5], p: &Prior, variances: [f32; 2]) -> [f32; 10] {
    std::array::from_fn(|i| {
        let [x, y] = points[i / 2];
        if i % 2 == 0 {
            (x - p.cx) / (variances[0] * p.w)
        } else {
            (y - p.cy) / (variances[0] * p.h)
        }
    })
}

/// Face probability of one `conf` row.
pub fn face_score(conf: &[f32], kind: ConfKind) -> f32 {
    match kind {
        ConfKind::Softmax => conf[1],
        ConfKind::Logits => 1.0 / (1.0 + (conf[0] - conf[1]).exp()),
        ConfKind::Sigmoid => 1.0 / (1.0 + (-conf[0]).exp()),
    }
}

/// Decodes every prior whose score reaches `threshold`.
///
/// `loc`, `conf` and `landmarks` are the flat outputs of one image (A×4, A×columns, A×10; see
/// [`ConfKind::columns`]).
/// `scale` maps normalised coordinates to output pixels (`[x, y]`).
pub fn decode_faces(
    contract: &ModelContract,
    priors: &[Prior],
    loc: &[f32],
    conf: &[f32],
    landmarks: &[f32],
    threshold: f32,
    scale: [f32; 2],
) -> Vec<Face> {
    let v = contract.priors.variances;
    let c = contract.conf_kind.columns();
    priors
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let score = face_score(&conf[c * i..c * i + c], contract.conf_kind);
            if score.is_nan() || score < threshold {
                return None;
            }
            let b = decode_box(&loc[4 * i..4 * i + 4], p, v);
            let l = decode_landmarks(&landmarks[10 * i..10 * i + 10], p, v);
            Some(Face {
                bbox: [
                    b[0] * scale[0],
                    b[1] * scale[1],
                    b[2] * scale[0],
                    b[3] * scale[1],
                ],
                score,
                landmarks: l.map(|[x, y]| [x * scale[0], y * scale[1]]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [f32; 2] = [0.1, 0.2];

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn zero_regression_gives_the_prior() {
        let p = Prior {
            cx: 0.5,
            cy: 0.25,
            w: 0.2,
            h: 0.1,
        };
        let b = decode_box(&[0.0; 4], &p, V);
        assert!(
            close(b[0], 0.4) && close(b[1], 0.2) && close(b[2], 0.6) && close(b[3], 0.3),
            "{b:?}"
        );
    }

    #[test]
    fn hand_computed_box_and_landmarks() {
        // cx = 0.5 + 1.0*0.1*0.2 = 0.52; cy = 0.25 + (-2.0)*0.1*0.1 = 0.23
        // w = 0.2*exp(0.5*0.2) = 0.221034; h = 0.1*exp(-1*0.2) = 0.0818731
        let p = Prior {
            cx: 0.5,
            cy: 0.25,
            w: 0.2,
            h: 0.1,
        };
        let b = decode_box(&[1.0, -2.0, 0.5, -1.0], &p, V);
        let (w, h) = (0.2 * 0.1f32.exp(), 0.1 * (-0.2f32).exp());
        assert!(
            close(b[0], 0.52 - w / 2.0) && close(b[2], 0.52 + w / 2.0),
            "{b:?}"
        );
        assert!(
            close(b[1], 0.23 - h / 2.0) && close(b[3], 0.23 + h / 2.0),
            "{b:?}"
        );
        let l = decode_landmarks(&[1.0, 1.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0, 0.0], &p, V);
        assert!(close(l[0][0], 0.52) && close(l[0][1], 0.26));
        assert!(close(l[1][0], 0.5) && close(l[1][1], 0.25));
        assert!(close(l[2][0], 0.48) && close(l[2][1], 0.27));
    }

    #[test]
    fn encoding_inverts_decoding() {
        let p = Prior {
            cx: 0.3,
            cy: 0.6,
            w: 0.05,
            h: 0.08,
        };
        let bbox = [0.27, 0.55, 0.34, 0.66];
        let enc = encode_box(bbox, &p, V);
        let dec = decode_box(&enc, &p, V);
        for (a, b) in bbox.iter().zip(dec) {
            assert!(close(*a, b), "{bbox:?} -> {enc:?} -> {dec:?}");
        }
        // Hand-computed: centre offset (0.305-0.3)/(0.1*0.05) = 1.0; ln(0.07/0.05)/0.2.
        assert!((enc[0] - 1.0).abs() < 1e-4, "{enc:?}");
        assert!(
            (enc[2] - (0.07f32 / 0.05).ln() / 0.2).abs() < 1e-4,
            "{enc:?}"
        );
        let pts = [
            [0.28, 0.58],
            [0.32, 0.58],
            [0.3, 0.6],
            [0.285, 0.63],
            [0.315, 0.63],
        ];
        let l = decode_landmarks(&encode_landmarks(&pts, &p, V), &p, V);
        for (a, b) in pts.iter().zip(l) {
            assert!(close(a[0], b[0]) && close(a[1], b[1]), "{pts:?} vs {l:?}");
        }
    }

    #[test]
    fn logits_go_through_softmax() {
        assert!(close(face_score(&[0.0, 0.0], ConfKind::Logits), 0.5));
        let s = face_score(&[1.0, 3.0], ConfKind::Logits);
        assert!(close(s, 3f32.exp() / (1f32.exp() + 3f32.exp())));
        assert_eq!(face_score(&[0.3, 0.7], ConfKind::Softmax), 0.7);
        // σ(0) = 0.5; σ(ln 3) = 3 / (1 + 3) = 0.75.
        assert!(close(face_score(&[0.0], ConfKind::Sigmoid), 0.5));
        assert!(close(face_score(&[3f32.ln()], ConfKind::Sigmoid), 0.75));
    }

    #[test]
    fn threshold_filters_and_scale_maps_to_pixels() {
        let c = ModelContract::default();
        let priors = [
            Prior {
                cx: 0.5,
                cy: 0.5,
                w: 0.1,
                h: 0.2,
            },
            Prior {
                cx: 0.25,
                cy: 0.25,
                w: 0.1,
                h: 0.1,
            },
        ];
        let faces = decode_faces(
            &c,
            &priors,
            &[0.0; 8],
            &[0.1, 0.9, 0.8, 0.2],
            &[0.0; 20],
            0.5,
            [200.0, 100.0],
        );
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert_eq!(f.score, 0.9);
        // Pixel values: compare with a tolerance that fits f32 at this magnitude.
        let px = |a: f32, b: f32| (a - b).abs() < 1e-4;
        assert!(px(f.bbox[0], 90.0) && px(f.bbox[1], 40.0), "{f:?}");
        assert!(px(f.bbox[2], 110.0) && px(f.bbox[3], 60.0), "{f:?}");
        assert!(
            px(f.landmarks[4][0], 100.0) && px(f.landmarks[4][1], 50.0),
            "{f:?}"
        );
    }

    #[test]
    fn sigmoid_conf_reads_one_logit_per_prior() {
        let c = ModelContract {
            conf_kind: ConfKind::Sigmoid,
            ..Default::default()
        };
        let prior = Prior {
            cx: 0.5,
            cy: 0.5,
            w: 0.1,
            h: 0.1,
        };
        // Logits ln 3 (σ = 0.75) and −ln 3 (σ = 0.25): only the first prior reaches 0.5, and
        // the second prior's row is its own single value, not the first one's second column.
        let faces = decode_faces(
            &c,
            &[prior, prior],
            &[0.0; 8],
            &[3f32.ln(), -(3f32.ln())],
            &[0.0; 20],
            0.5,
            [100.0, 100.0],
        );
        assert_eq!(faces.len(), 1);
        assert!((faces[0].score - 0.75).abs() < 1e-6, "{:?}", faces[0]);
    }
}
