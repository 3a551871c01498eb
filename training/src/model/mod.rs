//! The RetinaFace network (backbone → FPN → SSH per level → class/box/landmark heads), defined
//! once over [`Ops`] so that training, inference and ONNX export run the same description.

pub mod backbone;
pub mod calibrate;
pub mod layers;
pub mod mobilenetv2;
pub mod neck;
pub mod resnet;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use retinaface::ModelContract;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use backbone::Backbone;
pub use backbone::BackboneKind;
use layers::ConvSpec;
pub use layers::{ConvUnit, Ops, TensorOps};
use neck::{Fpn, Ssh};

/// What a checkpoint needs besides its weights: the architecture and the model contract
/// (input layout and priors) that the exported ONNX will carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelConfig {
    pub backbone: BackboneKind,
    pub contract: ModelContract,
    /// Weights came from a model with BatchNorm folded in (see `onnx_io::import`): the
    /// BatchNorm statistics are placeholders until [`calibrate::calibrate_batch_norm`] runs.
    pub folded_batch_norm: bool,
}

/// On-disk form of [`ModelConfig`] (`<checkpoint>.json`): the contract is stored as the same
/// key/value pairs the ONNX metadata uses, so there is one serialisation of it.
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    backbone: BackboneKind,
    contract: BTreeMap<String, String>,
    #[serde(default)]
    folded_batch_norm: bool,
}

impl ModelConfig {
    /// The three pyramid levels of these backbones have strides 8, 16 and 32.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = &self.contract.priors;
        if p.steps != [8, 16, 32] {
            bail!(
                "prior steps {:?}: the {} network has feature levels at strides 8, 16, 32",
                p.steps,
                self.backbone.name()
            );
        }
        if p.min_sizes.iter().any(|s| s.is_empty()) {
            bail!("every prior level needs at least one min size");
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let stored = StoredConfig {
            backbone: self.backbone,
            contract: self
                .contract
                .to_metadata()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            folded_batch_norm: self.folded_batch_norm,
        };
        serde_json::to_value(stored).expect("plain data serialises")
    }

    pub fn from_json(value: serde_json::Value) -> anyhow::Result<Self> {
        let stored: StoredConfig = serde_json::from_value(value).context("model config")?;
        let contract = ModelContract::from_metadata(|k| stored.contract.get(k).cloned())?;
        Ok(Self {
            backbone: stored.backbone,
            contract,
            folded_batch_norm: stored.folded_batch_norm,
        })
    }
}

/// The three outputs: box regressions `[N, P, 4]`, class scores `[N, P, 2]` (logits in
/// training, probabilities from [`RetinaFace::infer`]) and landmark regressions `[N, P, 10]`.
pub struct Outputs<T> {
    pub loc: T,
    pub conf: T,
    pub landmarks: T,
}

/// A RetinaFace network with its variables.
pub struct RetinaFace {
    pub vs: nn::VarStore,
    pub config: ModelConfig,
    backbone: Backbone,
    fpn: Fpn,
    ssh: [Ssh; 3],
    class_head: [ConvUnit; 3],
    bbox_head: [ConvUnit; 3],
    landmark_head: [ConvUnit; 3],
}

impl RetinaFace {
    pub fn new(config: ModelConfig, device: Device) -> anyhow::Result<Self> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let kind = config.backbone;
        let width = kind.neck_channels();
        let anchors = |level: usize| config.contract.priors.min_sizes[level].len() as i64;
        let head = |name: &str, level: usize, per_anchor: i64| {
            ConvUnit::new(
                &root,
                &format!("{name}.{level}"),
                width,
                anchors(level) * per_anchor,
                ConvSpec::head(),
            )
        };
        let model = Self {
            backbone: Backbone::new(&root, kind),
            fpn: Fpn::new(&root, kind.feature_channels(), width),
            ssh: std::array::from_fn(|i| Ssh::new(&root, &format!("ssh{}", i + 1), width)),
            class_head: std::array::from_fn(|l| head("class_head", l, 2)),
            bbox_head: std::array::from_fn(|l| head("bbox_head", l, 4)),
            landmark_head: std::array::from_fn(|l| head("landmark_head", l, 10)),
            config,
            vs,
        };
        Ok(model)
    }

    /// The forward pass, written once over [`Ops`]. `conf` is raw logits unless
    /// `softmax` is set (as in inference and the exported model).
    pub fn forward<O: Ops>(&self, ops: &mut O, x: &O::T, softmax: bool) -> Outputs<O::T> {
        let features = self.backbone.forward(ops, x);
        let pyramid = self.fpn.forward(ops, &features);
        let levels: Vec<O::T> = pyramid
            .iter()
            .zip(&self.ssh)
            .map(|(f, ssh)| ssh.forward(ops, f))
            .collect();
        let mut heads = |units: &[ConvUnit; 3], per_anchor: i64| {
            let parts: Vec<O::T> = levels
                .iter()
                .zip(units)
                .map(|(f, u)| ops.head(f, u, per_anchor))
                .collect();
            ops.concat_priors(&parts)
        };
        let loc = heads(&self.bbox_head, 4);
        let conf = heads(&self.class_head, 2);
        let landmarks = heads(&self.landmark_head, 10);
        let conf = if softmax { ops.softmax(&conf) } else { conf };
        Outputs {
            loc,
            conf,
            landmarks,
        }
    }

    /// Training forward: class logits; BatchNorm uses batch statistics when `train_batch_norm`.
    pub fn forward_train(&self, x: &Tensor, train_batch_norm: bool) -> Outputs<Tensor> {
        self.forward(&mut TensorOps { train_batch_norm }, x, false)
    }

    /// Inference forward (no gradients, BatchNorm running statistics, softmaxed `conf`).
    pub fn infer(&self, x: &Tensor) -> Outputs<Tensor> {
        tch::no_grad(|| {
            self.forward(
                &mut TensorOps {
                    train_batch_norm: false,
                },
                x,
                true,
            )
        })
    }

    /// Every convolution unit, in a fixed order.
    pub fn units(&self) -> Vec<&ConvUnit> {
        let mut units: Vec<&ConvUnit> = self.backbone.units().chain(self.fpn.units()).collect();
        units.extend(self.ssh.iter().flat_map(|s| s.units()));
        units.extend(
            self.class_head
                .iter()
                .chain(&self.bbox_head)
                .chain(&self.landmark_head),
        );
        units
    }

    pub fn units_mut(&mut self) -> Vec<&mut ConvUnit> {
        let mut units: Vec<&mut ConvUnit> = self
            .backbone
            .units_mut()
            .chain(self.fpn.units_mut())
            .collect();
        units.extend(self.ssh.iter_mut().flat_map(|s| s.units_mut()));
        units.extend(
            self.class_head
                .iter_mut()
                .chain(&mut self.bbox_head)
                .chain(&mut self.landmark_head),
        );
        units
    }

    /// Saves weights (`path`, safetensors, incl. BatchNorm statistics) and the config beside it
    /// (`path` with extension `json`). Both are written to temporary names and renamed, so a
    /// crash never leaves a half-written model.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        // The temporary name keeps the .safetensors suffix: tch picks the format from it.
        let tmp = path.with_extension("tmp.safetensors");
        self.vs
            .save(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)?;
        crate::fsutil::write_atomic(
            &path.with_extension("json"),
            serde_json::to_string_pretty(&self.config.to_json())?.as_bytes(),
        )
    }

    /// Loads a model saved by [`RetinaFace::save`].
    pub fn load(path: &Path, device: Device) -> anyhow::Result<Self> {
        let config_path = path.with_extension("json");
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "reading {} (the model config written beside {})",
                config_path.display(),
                path.display()
            )
        })?;
        let config = ModelConfig::from_json(serde_json::from_str(&text)?)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let mut model = Self::new(config, device)?;
        model
            .vs
            .load(path)
            .with_context(|| format!("loading weights from {}", path.display()))?;
        Ok(model)
    }

    /// Biases the class heads so that an untrained network scores every prior as a face with
    /// probability `p` (RetinaNet's prior initialisation, π = 0.01 there). With the focal loss
    /// every prior contributes to the classification term; starting at p = 0.5, the tens of
    /// thousands of background priors of a batch would dominate the first updates.
    pub fn set_face_prior(&mut self, p: f64) {
        let logit = (p / (1.0 - p)).ln();
        tch::no_grad(|| {
            for unit in &mut self.class_head {
                if let Some(bias) = unit.bias.as_mut() {
                    // Columns alternate background, face per anchor: σ(l_face − l_bg) = p.
                    let per_anchor = 2;
                    let anchors = unit.out_channels / per_anchor;
                    let values: Vec<f32> = (0..anchors).flat_map(|_| [0.0, logit as f32]).collect();
                    bias.copy_(&Tensor::from_slice(&values).to_device(bias.device()));
                }
            }
        });
    }

    pub fn parameter_count(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .map(|n| n as i64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_prior_sets_the_face_probability_of_every_anchor() {
        let mut net = RetinaFace::new(ModelConfig::default(), Device::Cpu).unwrap();
        // Without the features' contribution the scores are the biases alone.
        tch::no_grad(|| {
            for unit in &mut net.class_head {
                let _ = unit.weight.zero_();
            }
        });
        net.set_face_prior(0.01);
        let x = Tensor::rand([1, 3, 64, 64], tch::kind::FLOAT_CPU) * 100.0;
        let conf = net.infer(&x).conf;
        let face: Vec<f32> = Vec::try_from(conf.select(-1, 1).flatten(0, -1)).unwrap();
        assert_eq!(face.len(), (64 + 16 + 4) * 2);
        assert!(face.iter().all(|p| (p - 0.01).abs() < 1e-6), "{face:?}");
    }
}
