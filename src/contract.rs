//! The model contract: what the plugin expects of a RetinaFace ONNX model and what the trainer
//! writes into the models it exports.
//!
//! Defaults describe the published RetinaFace (biubug6 / yakhyo layout). A model can override any
//! of them with ONNX metadata properties under the keys in [`keys`]; the trainer writes them all.

use std::fmt;

// The engine describes any model's tensors; the contract checks a RetinaFace model's.
use crate::engine::ModelInfo;
pub use crate::engine::TensorInfo;

/// ONNX metadata property keys (`metadata_props`) read by [`ModelContract::from_metadata`].
pub mod keys {
    /// Name of the image input tensor, e.g. `input`.
    pub const INPUT: &str = "retinaface.input";
    /// Names of the box, score and landmark outputs, comma separated: `loc,conf,landmarks`.
    pub const OUTPUTS: &str = "retinaface.outputs";
    /// Channel order the network expects: `bgr` or `rgb`.
    pub const COLOR_ORDER: &str = "retinaface.color_order";
    /// Per-channel mean subtracted from 0..255 pixel values, in the network's channel order.
    pub const MEAN: &str = "retinaface.mean";
    /// Per-channel divisor applied after the mean, in the network's channel order.
    pub const STD: &str = "retinaface.std";
    /// Feature strides, e.g. `8,16,32`.
    pub const STEPS: &str = "retinaface.steps";
    /// Anchor sizes per stride, levels separated by `;`: `16,32;64,128;256,512`.
    pub const MIN_SIZES: &str = "retinaface.min_sizes";
    /// Centre and size variances: `0.1,0.2`.
    pub const VARIANCES: &str = "retinaface.variances";
    /// Anchor aspect ratios (width / height), the same at every level: `1` (the default, square
    /// anchors) or e.g. `0.5,1,2`. Each min size gets one anchor per ratio.
    pub const ASPECT_RATIOS: &str = "retinaface.aspect_ratios";
    /// How `conf` is read: two columns of probabilities (`softmax`) or of raw logits (`logits`),
    /// or one raw logit per anchor (`sigmoid`, RetinaNet-style heads).
    pub const CONF: &str = "retinaface.conf";
}

/// Channel order of the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorOrder {
    Bgr,
    Rgb,
}

/// How the `conf` output is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfKind {
    /// Already softmaxed: column 1 is the face probability.
    Softmax,
    /// Two raw logits per anchor; softmax is applied while decoding.
    Logits,
    /// One raw logit per anchor (a single `[N, A, 1]` column); the sigmoid is applied while
    /// decoding.
    Sigmoid,
}

impl ConfKind {
    /// Values per anchor in the `conf` output.
    pub fn columns(self) -> usize {
        match self {
            Self::Softmax | Self::Logits => 2,
            Self::Sigmoid => 1,
        }
    }
}

/// Prior box layout; see [`crate::priors`].
#[derive(Debug, Clone, PartialEq)]
pub struct PriorConfig {
    pub steps: Vec<u32>,
    pub min_sizes: Vec<Vec<f32>>,
    pub variances: [f32; 2],
    /// Width/height ratios of the anchors of every min size; `[1.0]` (square) in RetinaFace.
    pub aspect_ratios: Vec<f32>,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            steps: vec![8, 16, 32],
            min_sizes: vec![vec![16.0, 32.0], vec![64.0, 128.0], vec![256.0, 512.0]],
            variances: [0.1, 0.2],
            aspect_ratios: vec![1.0],
        }
    }
}

impl PriorConfig {
    /// Anchors per feature-map cell of `level`: its min sizes × the aspect ratios.
    pub fn anchors_per_cell(&self, level: usize) -> usize {
        self.min_sizes.get(level).map_or(0, Vec::len) * self.aspect_ratios.len()
    }
}

/// Everything needed to feed a RetinaFace model and read its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub input: String,
    pub loc: String,
    pub conf: String,
    pub landmarks: String,
    pub color_order: ColorOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub conf_kind: ConfKind,
    pub priors: PriorConfig,
}

impl Default for ModelContract {
    fn default() -> Self {
        Self {
            input: "input".into(),
            loc: "loc".into(),
            conf: "conf".into(),
            landmarks: "landmarks".into(),
            color_order: ColorOrder::Bgr,
            mean: [104.0, 117.0, 123.0],
            std: [1.0, 1.0, 1.0],
            conf_kind: ConfKind::Softmax,
            priors: PriorConfig::default(),
        }
    }
}

/// A metadata value that could not be understood, or a model that does not fit the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError(pub String);

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ContractError {}

impl ModelContract {
    /// Defaults overridden by whichever of the [`keys`] the model's metadata defines.
    pub fn from_metadata(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ContractError> {
        let mut c = Self::default();
        if let Some(v) = lookup(keys::INPUT) {
            c.input = v.trim().to_string();
        }
        if let Some(v) = lookup(keys::OUTPUTS) {
            let names: Vec<&str> = v.split(',').map(str::trim).collect();
            let [loc, conf, landmarks] = names[..] else {
                return Err(bad(keys::OUTPUTS, &v, "three names: loc,conf,landmarks"));
            };
            (c.loc, c.conf, c.landmarks) = (loc.into(), conf.into(), landmarks.into());
        }
        if let Some(v) = lookup(keys::COLOR_ORDER) {
            c.color_order = match v.trim().to_ascii_lowercase().as_str() {
                "bgr" => ColorOrder::Bgr,
                "rgb" => ColorOrder::Rgb,
                _ => return Err(bad(keys::COLOR_ORDER, &v, "bgr or rgb")),
            };
        }
        if let Some(v) = lookup(keys::MEAN) {
            c.mean = three_floats(&v).ok_or_else(|| bad(keys::MEAN, &v, "three numbers"))?;
        }
        if let Some(v) = lookup(keys::STD) {
            c.std = three_floats(&v)
                .filter(|s| s.iter().all(|x| *x > 0.0))
                .ok_or_else(|| bad(keys::STD, &v, "three positive numbers"))?;
        }
        if let Some(v) = lookup(keys::CONF) {
            c.conf_kind = match v.trim() {
                "softmax" => ConfKind::Softmax,
                "logits" => ConfKind::Logits,
                "sigmoid" => ConfKind::Sigmoid,
                _ => return Err(bad(keys::CONF, &v, "softmax, logits or sigmoid")),
            };
        }
        if let Some(v) = lookup(keys::STEPS) {
            c.priors.steps = floats(&v)
                .filter(|s| !s.is_empty() && s.iter().all(|x| *x >= 1.0 && x.fract() == 0.0))
                .map(|s| s.into_iter().map(|x| x as u32).collect())
                .ok_or_else(|| bad(keys::STEPS, &v, "positive integers such as 8,16,32"))?;
        }
        if let Some(v) = lookup(keys::MIN_SIZES) {
            c.priors.min_sizes = v
                .split(';')
                .map(floats)
                .collect::<Option<Vec<_>>>()
                .filter(|l| {
                    l.iter()
                        .all(|s| !s.is_empty() && s.iter().all(|x| *x > 0.0))
                })
                .ok_or_else(|| {
                    bad(
                        keys::MIN_SIZES,
                        &v,
                        "sizes per level such as 16,32;64,128;256,512",
                    )
                })?;
        }
        if let Some(v) = lookup(keys::VARIANCES) {
            let f = floats(&v)
                .filter(|f| f.len() == 2 && f.iter().all(|x| *x > 0.0))
                .ok_or_else(|| bad(keys::VARIANCES, &v, "two positive numbers such as 0.1,0.2"))?;
            c.priors.variances = [f[0], f[1]];
        }
        if let Some(v) = lookup(keys::ASPECT_RATIOS) {
            c.priors.aspect_ratios = floats(&v)
                .filter(|f| !f.is_empty() && f.iter().all(|x| *x > 0.0))
                .ok_or_else(|| {
                    bad(
                        keys::ASPECT_RATIOS,
                        &v,
                        "positive width/height ratios such as 1 or 0.5,1,2",
                    )
                })?;
        }
        if c.priors.steps.len() != c.priors.min_sizes.len() {
            return Err(ContractError(format!(
                "model metadata gives {} prior steps but {} levels of min sizes; they must match",
                c.priors.steps.len(),
                c.priors.min_sizes.len()
            )));
        }
        Ok(c)
    }

    /// The metadata properties that describe this contract, as the trainer writes them.
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let join = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
        vec![
            (keys::INPUT, self.input.clone()),
            (
                keys::OUTPUTS,
                format!("{},{},{}", self.loc, self.conf, self.landmarks),
            ),
            (
                keys::COLOR_ORDER,
                match self.color_order {
                    ColorOrder::Bgr => "bgr".into(),
                    ColorOrder::Rgb => "rgb".into(),
                },
            ),
            (keys::MEAN, join(&self.mean)),
            (keys::STD, join(&self.std)),
            (
                keys::CONF,
                match self.conf_kind {
                    ConfKind::Softmax => "softmax".into(),
                    ConfKind::Logits => "logits".into(),
                    ConfKind::Sigmoid => "sigmoid".into(),
                },
            ),
            (
                keys::STEPS,
                self.priors
                    .steps
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                keys::MIN_SIZES,
                self.priors
                    .min_sizes
                    .iter()
                    .map(|s| join(s))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            (keys::VARIANCES, join(&self.priors.variances)),
            (keys::ASPECT_RATIOS, join(&self.priors.aspect_ratios)),
        ]
    }

    /// The contract of a loaded model: read from its metadata ([`ModelContract::from_metadata`])
    /// and checked against its inputs and outputs ([`ModelContract::check_io`]).
    pub fn of_model(model: &ModelInfo) -> Result<Self, ContractError> {
        let contract = Self::from_metadata(|k| model.metadata.get(k).cloned())?;
        contract.check_io(&model.inputs, &model.outputs)?;
        Ok(contract)
    }

    /// Checks the model's declared inputs and outputs against the contract.
    pub fn check_io(
        &self,
        inputs: &[TensorInfo],
        outputs: &[TensorInfo],
    ) -> Result<(), ContractError> {
        let conf_columns = self.conf_kind.columns() as i64;
        let expected = format!(
            "expected one float32 input '{}' shaped [N,3,H,W] and float32 outputs '{}' [N,A,4], '{}' [N,A,{conf_columns}], '{}' [N,A,10]",
            self.input, self.loc, self.conf, self.landmarks
        );
        let found = || {
            let list = |t: &[TensorInfo]| {
                t.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "found inputs {} and outputs {}",
                list(inputs),
                list(outputs)
            )
        };
        let fail = |what: String| Err(ContractError(format!("{what}: {expected}; {}", found())));

        let [input] = inputs else {
            return fail(format!("model has {} inputs", inputs.len()));
        };
        let channels_ok = input.shape.len() == 4 && (input.shape[1] == 3 || input.shape[1] < 0);
        if input.name != self.input || !input.is_f32 || !channels_ok {
            return fail("model input does not fit".into());
        }
        for (name, last) in [
            (&self.loc, 4),
            (&self.conf, conf_columns),
            (&self.landmarks, 10),
        ] {
            let Some(out) = outputs.iter().find(|o| &o.name == name) else {
                return fail(format!("model has no output '{name}'"));
            };
            let last_ok = out.shape.last().is_some_and(|d| *d == last || *d < 0);
            if !out.is_f32 || out.shape.len() != 3 || !last_ok {
                return fail(format!("model output '{name}' does not fit"));
            }
        }
        Ok(())
    }
}

pub(crate) fn bad(key: &str, value: &str, expected: &str) -> ContractError {
    ContractError(format!(
        "model metadata {key}='{value}' is not valid: expected {expected}"
    ))
}

fn floats(s: &str) -> Option<Vec<f32>> {
    s.split(',')
        .map(|x| x.trim().parse::<f32>().ok().filter(|v| v.is_finite()))
        .collect()
}

pub(crate) fn three_floats(s: &str) -> Option<[f32; 3]> {
    floats(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_metadata_gives_published_layout() {
        let c = ModelContract::from_metadata(|_| None).unwrap();
        assert_eq!(c, ModelContract::default());
        assert_eq!(c.mean, [104.0, 117.0, 123.0]);
        assert_eq!(c.color_order, ColorOrder::Bgr);
    }

    #[test]
    fn metadata_round_trips() {
        let c = ModelContract {
            color_order: ColorOrder::Rgb,
            conf_kind: ConfKind::Logits,
            priors: PriorConfig {
                steps: vec![4, 8, 16, 32],
                min_sizes: vec![
                    vec![8.0],
                    vec![16.0, 24.0],
                    vec![64.0, 128.0],
                    vec![256.0, 512.0],
                ],
                variances: [0.1, 0.2],
                aspect_ratios: vec![0.5, 1.0, 2.0],
            },
            ..Default::default()
        };
        let meta = c.to_metadata();
        let back = ModelContract::from_metadata(|k| {
            meta.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        });
        assert_eq!(back.unwrap(), c);
    }

    #[test]
    fn bad_metadata_names_the_key() {
        let err = ModelContract::from_metadata(lookup(&[(keys::MEAN, "1,2")])).unwrap_err();
        assert!(err.0.contains("retinaface.mean"), "{err}");
        let err = ModelContract::from_metadata(lookup(&[(keys::STEPS, "8,16")])).unwrap_err();
        assert!(err.0.contains("must match"), "{err}");
        for ratios in ["", "1,0", "1,-2", "1,x"] {
            let err =
                ModelContract::from_metadata(lookup(&[(keys::ASPECT_RATIOS, ratios)])).unwrap_err();
            assert!(err.0.contains("retinaface.aspect_ratios"), "{err}");
        }
        let c = ModelContract::from_metadata(lookup(&[(keys::ASPECT_RATIOS, "0.5, 1,2")])).unwrap();
        assert_eq!(c.priors.aspect_ratios, [0.5, 1.0, 2.0]);
        assert_eq!(c.priors.anchors_per_cell(0), 6);
    }

    #[test]
    fn io_check_reports_expected_and_found() {
        let c = ModelContract::default();
        let t = |name: &str, shape: &[i64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            is_f32: true,
        };
        let outs = [
            t("loc", &[-1, -1, 4]),
            t("conf", &[-1, -1, 2]),
            t("landmarks", &[-1, -1, 10]),
        ];
        assert!(c.check_io(&[t("input", &[-1, 3, -1, -1])], &outs).is_ok());
        let err = c
            .check_io(&[t("images", &[1, 3, 224, 224])], &outs)
            .unwrap_err();
        assert!(
            err.0.contains("expected one float32 input 'input'"),
            "{err}"
        );
        assert!(err.0.contains("'images' [1,3,224,224]"), "{err}");
        let err = c
            .check_io(&[t("input", &[-1, 3, -1, -1])], &outs[..2])
            .unwrap_err();
        assert!(err.0.contains("no output 'landmarks'"), "{err}");
    }

    #[test]
    fn sigmoid_conf_is_one_column_read_from_metadata() {
        let c = ModelContract::from_metadata(lookup(&[(keys::CONF, "sigmoid")])).unwrap();
        assert_eq!(c.conf_kind, ConfKind::Sigmoid);
        assert_eq!(c.conf_kind.columns(), 1);
        assert!(
            c.to_metadata()
                .iter()
                .any(|(k, v)| *k == keys::CONF && v == "sigmoid")
        );
        let t = |name: &str, shape: &[i64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            is_f32: true,
        };
        let input = [t("input", &[-1, 3, -1, -1])];
        let outs = |conf: i64| {
            [
                t("loc", &[-1, -1, 4]),
                t("conf", &[-1, -1, conf]),
                t("landmarks", &[-1, -1, 10]),
            ]
        };
        assert!(c.check_io(&input, &outs(1)).is_ok());
        let err = c.check_io(&input, &outs(2)).unwrap_err();
        assert!(err.0.contains("'conf' [N,A,1]"), "{err}");
        // A two-column model declared as sigmoid, or the other way round, is refused at load.
        let softmax = ModelContract::default();
        assert!(softmax.check_io(&input, &outs(1)).is_err());
        let err = ModelContract::from_metadata(lookup(&[(keys::CONF, "tanh")])).unwrap_err();
        assert!(err.0.contains("softmax, logits or sigmoid"), "{err}");
    }
}
