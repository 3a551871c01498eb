//! The RetinaFace network (backbone → FPN → SSH per level → class/box/landmark heads), defined
//! once over [`Ops`] so that training, inference and ONNX export run the same description.

pub mod backbone;
pub mod calibrate;
pub mod cost;
pub mod grow;
pub mod layers;
pub mod mobilenetv2;
pub mod neck;
pub mod outputs;
pub mod resnet;
pub mod retinanet;
pub mod srn;

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
pub use outputs::{MAX_LOG_SCALE, Outputs};
pub use retinanet::HeadKind;
use retinanet::RetinaNetHead;
use srn::{SrnFirstStage, SrnOps};

/// What a checkpoint needs besides its weights: the architecture and the model contract
/// (input layout and priors) that the exported ONNX will carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelConfig {
    pub backbone: BackboneKind,
    pub contract: ModelContract,
    /// Weights came from a model with BatchNorm folded in (see `onnx_io::import`): the
    /// BatchNorm statistics are placeholders until [`calibrate::calibrate_batch_norm`] runs.
    pub folded_batch_norm: bool,
    /// FPN/SSH width; `None`: the backbone's reference width
    /// ([`BackboneKind::neck_channels`]).
    pub neck_channels: Option<i64>,
    /// FPN/SSH width of each pyramid level (finest first); `None`: [`Self::neck_width`] at
    /// every level. A narrow stride-4 level keeps its cost small (it has 4× the cells of the
    /// stride-8 level).
    pub level_channels: Option<Vec<i64>>,
    /// Levels of a smaller stride have no SSH context module (the heads read the FPN level):
    /// 0 = SSH everywhere (reference). At stride 4 the SSH costs far more than its share of
    /// the multiply-adds (the convolutions are memory-bound at 4× the cells), and the FPN's
    /// 3×3 merge plus the upsampled stride-8 level give small faces their context.
    pub ssh_min_stride: u32,
    pub head: HeadKind,
}

/// The extra pyramid level above the backbone's coarsest (stride 32) map.
pub const EXTRA_STRIDE: u32 = 64;

/// On-disk form of [`ModelConfig`] (`<checkpoint>.json`): the contract is stored as the same
/// key/value pairs the ONNX metadata uses, so there is one serialisation of it.
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    backbone: BackboneKind,
    contract: BTreeMap<String, String>,
    #[serde(default)]
    folded_batch_norm: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    neck_channels: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level_channels: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    ssh_min_stride: u32,
    #[serde(default)]
    head: HeadKind,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl ModelConfig {
    /// FPN/SSH width of this network.
    pub fn neck_width(&self) -> i64 {
        self.neck_channels
            .unwrap_or_else(|| self.backbone.neck_channels())
    }

    /// FPN/SSH width of every pyramid level, finest first.
    pub fn level_widths(&self) -> Vec<i64> {
        self.level_channels
            .clone()
            .unwrap_or_else(|| vec![self.neck_width(); self.contract.priors.steps.len()])
    }

    /// The pyramid levels (prior steps) must be consecutive strides (each twice the previous)
    /// among those the network produces: the backbone's 4, 8, 16, 32 and an extra stride-64
    /// level computed from the stride-32 map.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = &self.contract.priors;
        let available: Vec<u32> = BackboneKind::STRIDES
            .into_iter()
            .chain([EXTRA_STRIDE])
            .collect();
        let producible = |s: &u32| available.contains(s);
        if p.steps.is_empty()
            || !p.steps.iter().all(producible)
            || p.steps.windows(2).any(|w| w[1] != 2 * w[0])
            || p.steps[0] == EXTRA_STRIDE
        {
            bail!(
                "prior steps {:?}: the {} network has feature levels at strides {:?} (stride 64 \
                 from the stride-32 level); choose consecutive ones, each twice the previous, \
                 e.g. 8,16,32 (reference) or 4,8,16,32,64",
                p.steps,
                self.backbone.name(),
                available
            );
        }
        if p.min_sizes.len() != p.steps.len() {
            bail!(
                "{} prior steps but {} levels of min sizes; give one list of sizes per step",
                p.steps.len(),
                p.min_sizes.len()
            );
        }
        if p.min_sizes.iter().any(|s| s.is_empty()) {
            bail!("every prior level needs at least one min size");
        }
        if p.aspect_ratios.is_empty()
            || p.aspect_ratios.iter().any(|r| !(*r > 0.0 && r.is_finite()))
        {
            bail!(
                "aspect ratios {:?}: give at least one positive width/height ratio (1 = square)",
                p.aspect_ratios
            );
        }
        let per_cell: Vec<usize> = (0..p.steps.len()).map(|l| p.anchors_per_cell(l)).collect();
        if self.head == HeadKind::RetinaNet && per_cell.windows(2).any(|w| w[0] != w[1]) {
            bail!(
                "the retinanet head shares its weights across levels, so every level needs the \
                 same number of anchors; min sizes {:?} give {per_cell:?} per cell",
                p.min_sizes
            );
        }
        let neck = self.neck_width();
        if neck < 8 || neck % 4 != 0 {
            bail!(
                "neck_channels {neck}: the SSH module splits the FPN width in a half and two \
                 quarters; use a multiple of 4, at least 8"
            );
        }
        if let Some(widths) = &self.level_channels {
            if widths.len() != p.steps.len() {
                bail!(
                    "level_channels {widths:?}: give one width per pyramid level ({} levels: \
                     steps {:?})",
                    p.steps.len(),
                    p.steps
                );
            }
            if let Some(w) = widths.iter().find(|&&w| w < 8 || w % 4 != 0) {
                bail!(
                    "level_channels {widths:?}: width {w}: the SSH module splits a level's width \
                     in a half and two quarters; use multiples of 4, at least 8"
                );
            }
            if self.head == HeadKind::RetinaNet && widths.windows(2).any(|w| w[0] != w[1]) {
                bail!(
                    "level_channels {widths:?}: the retinanet head shares its weights across \
                     levels, so every level needs the same width"
                );
            }
        }
        Ok(())
    }

    /// Strides the backbone must deliver for the pyramid: every level but the extra stride-64
    /// one, which is computed from the stride-32 level (always present below it, as levels are
    /// consecutive).
    pub fn backbone_strides(&self) -> Vec<u32> {
        let steps = &self.contract.priors.steps;
        steps
            .iter()
            .copied()
            .filter(|s| *s != EXTRA_STRIDE)
            .collect()
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
            neck_channels: self.neck_channels,
            level_channels: self.level_channels.clone(),
            ssh_min_stride: self.ssh_min_stride,
            head: self.head,
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
            neck_channels: stored.neck_channels,
            level_channels: stored.level_channels,
            ssh_min_stride: stored.ssh_min_stride,
            head: stored.head,
        })
    }
}

/// A RetinaFace network with its variables.
pub struct RetinaFace {
    pub vs: nn::VarStore,
    pub config: ModelConfig,
    backbone: Backbone,
    /// Strides asked of the backbone ([`ModelConfig::backbone_strides`]).
    backbone_strides: Vec<u32>,
    /// 3×3/2 convolution of the stride-32 map into the stride-64 level (RetinaNet's P6), when
    /// the pyramid has one. It enters the FPN like a backbone level.
    extra: Option<ConvUnit>,
    fpn: Fpn,
    /// Per level: its SSH module, or `None` below [`ModelConfig::ssh_min_stride`].
    ssh: Vec<Option<Ssh>>,
    class_head: Vec<ConvUnit>,
    bbox_head: Vec<ConvUnit>,
    landmark_head: Vec<ConvUnit>,
    /// The shared subnets of [`HeadKind::RetinaNet`] (then `ssh` and the `*_head`s are empty).
    retinanet: Option<RetinaNetHead>,
    /// The first stage of [`HeadKind::Srn`].
    srn: Option<SrnFirstStage>,
    /// Training keeps the backbone fixed (weights and BatchNorm statistics): set by `train`
    /// from `freeze_backbone`; the optimizer leaves [`BackboneKind::all_var_prefixes`] alone.
    pub freeze_backbone: bool,
}

impl RetinaFace {
    pub fn new(config: ModelConfig, device: Device) -> anyhow::Result<Self> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let kind = config.backbone;
        let widths = config.level_widths();
        let steps = config.contract.priors.steps.clone();
        let levels = steps.len();
        let anchors = |level: usize| config.contract.priors.anchors_per_cell(level) as i64;
        // Per-level SSH heads (RetinaFace) or the shared RetinaNet subnets.
        let ssh_levels = if config.head == HeadKind::RetinaNet {
            0
        } else {
            levels
        };
        let head = |name: &str, level: usize, per_anchor: i64| {
            ConvUnit::new(
                &root,
                &format!("{name}.{level}"),
                widths[level],
                anchors(level) * per_anchor,
                ConvSpec::head(),
            )
        };
        let c32 = kind
            .level_channels(32)
            .expect("every backbone has stride 32");
        // The extra level is the last one (validated).
        let extra_width = *widths.last().expect("validated: at least one level");
        // One activation for the whole neck, from its reference width, whatever a level's width.
        let neck_act = layers::Act::for_width(config.neck_width());
        let extra = steps.contains(&EXTRA_STRIDE).then(|| {
            ConvUnit::new(
                &root,
                "fpn.extra",
                c32,
                extra_width,
                ConvSpec::bn(3, 2, neck_act),
            )
        });
        let in_channels: Vec<i64> = steps
            .iter()
            .map(|&s| match s {
                EXTRA_STRIDE => extra_width,
                s => kind.level_channels(s).expect("validated stride"),
            })
            .collect();
        let model = Self {
            backbone: Backbone::new(&root, kind),
            backbone_strides: config.backbone_strides(),
            extra,
            fpn: Fpn::new(&root, &in_channels, &widths, neck_act),
            ssh: (0..ssh_levels)
                .map(|i| {
                    (steps[i] >= config.ssh_min_stride)
                        .then(|| Ssh::new(&root, &format!("ssh{}", i + 1), widths[i], neck_act))
                })
                .collect(),
            class_head: (0..ssh_levels).map(|l| head("class_head", l, 2)).collect(),
            bbox_head: (0..ssh_levels).map(|l| head("bbox_head", l, 4)).collect(),
            landmark_head: (0..ssh_levels)
                .map(|l| head("landmark_head", l, 10))
                .collect(),
            retinanet: (config.head == HeadKind::RetinaNet)
                .then(|| RetinaNetHead::new(&root, widths[0], anchors(0))),
            srn: (config.head == HeadKind::Srn).then(|| {
                let per_cell: Vec<i64> = (0..levels).map(anchors).collect();
                SrnFirstStage::new(&root, &in_channels, &per_cell)
            }),
            freeze_backbone: false,
            config,
            vs,
        };
        Ok(model)
    }

    /// The forward pass, written once over [`Ops`] (with SRN's [`SrnOps`]). `conf` is raw logits
    /// unless `softmax` is set (as in inference and the exported model).
    pub fn forward<O: SrnOps>(&self, ops: &mut O, x: &O::T, softmax: bool) -> Outputs<O::T> {
        let strides = &self.backbone_strides;
        let mut features = ops.backbone_pass(|ops| self.backbone.forward(ops, x, strides));
        if let Some(extra) = &self.extra {
            // Validation put stride 32 right before 64, so it is the last backbone map.
            let p6 = ops.conv(features.last().expect("the stride-32 map"), extra);
            features.push(p6);
        }
        let first_stage = self.srn.as_ref().map(|s| s.forward(ops, &features));
        let pyramid = self.fpn.forward(ops, &features);
        if let Some(head) = &self.retinanet {
            let (mut loc, mut logit, mut landmarks) = (Vec::new(), Vec::new(), Vec::new());
            for f in &pyramid {
                let o = head.forward(ops, f);
                loc.push(o.loc);
                logit.push(o.logit);
                landmarks.push(o.landmarks);
            }
            let loc = ops.concat_priors(&loc);
            let logit = ops.concat_priors(&logit);
            let landmarks = ops.concat_priors(&landmarks);
            // Training reads the single logit; inference and export the contract's two columns.
            let conf = if softmax {
                ops.sigmoid_pair(&logit)
            } else {
                logit
            };
            return Outputs {
                loc,
                conf,
                landmarks,
                first_stage: None,
            };
        }
        let with_context: Vec<Option<O::T>> = pyramid
            .iter()
            .zip(&self.ssh)
            .map(|(f, ssh)| ssh.as_ref().map(|ssh| ssh.forward(ops, f)))
            .collect();
        let levels: Vec<&O::T> = with_context
            .iter()
            .zip(&pyramid)
            .map(|(c, f)| c.as_ref().unwrap_or(f))
            .collect();
        let loc = ops.heads(levels.iter().copied(), &self.bbox_head, 4);
        let conf = ops.heads(levels.iter().copied(), &self.class_head, 2);
        let landmarks = ops.heads(levels.iter().copied(), &self.landmark_head, 10);
        let conf = if softmax { ops.softmax(&conf) } else { conf };
        let second = Outputs {
            loc,
            conf,
            landmarks,
            first_stage: None,
        };
        match first_stage {
            None => second,
            Some(first) if softmax => ops.srn_refine(
                &first,
                &second,
                self.config.contract.priors.variances[1],
                srn::FILTER_FACE_PROBABILITY,
            ),
            Some(first) => Outputs {
                first_stage: Some(first),
                ..second
            },
        }
    }

    /// Training forward: class logits; BatchNorm uses batch statistics when `train_batch_norm`.
    pub fn forward_train(&self, x: &Tensor, train_batch_norm: bool) -> Outputs<Tensor> {
        let mut ops = TensorOps {
            train_batch_norm,
            freeze_backbone: self.freeze_backbone,
        };
        self.forward(&mut ops, x, false)
    }

    /// Inference forward (no gradients, BatchNorm running statistics, softmaxed `conf`).
    pub fn infer(&self, x: &Tensor) -> Outputs<Tensor> {
        tch::no_grad(|| self.forward(&mut TensorOps::default(), x, true))
    }

    /// Every convolution unit, in a fixed order.
    pub fn units(&self) -> Vec<&ConvUnit> {
        let mut units: Vec<&ConvUnit> = self
            .backbone
            .units()
            .chain(self.extra.as_ref())
            .chain(self.fpn.units())
            .collect();
        units.extend(self.ssh.iter().flatten().flat_map(|s| s.units()));
        units.extend(
            self.class_head
                .iter()
                .chain(&self.bbox_head)
                .chain(&self.landmark_head),
        );
        units.extend(self.retinanet.iter().flat_map(RetinaNetHead::units));
        units.extend(self.srn.iter().flat_map(SrnFirstStage::units));
        units
    }

    pub fn units_mut(&mut self) -> Vec<&mut ConvUnit> {
        let mut units: Vec<&mut ConvUnit> = self
            .backbone
            .units_mut()
            .chain(self.extra.as_mut())
            .chain(self.fpn.units_mut())
            .collect();
        units.extend(self.ssh.iter_mut().flatten().flat_map(|s| s.units_mut()));
        units.extend(
            self.class_head
                .iter_mut()
                .chain(&mut self.bbox_head)
                .chain(&mut self.landmark_head),
        );
        units.extend(self.retinanet.iter_mut().flat_map(RetinaNetHead::units_mut));
        units.extend(self.srn.iter_mut().flat_map(SrnFirstStage::units_mut));
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
        if let Some(head) = self.retinanet.as_mut() {
            head.set_face_prior(p);
            return;
        }
        if let Some(first) = self.srn.as_mut() {
            first.set_face_prior(p);
        }
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

    fn with_steps(backbone: BackboneKind, steps: &[u32]) -> ModelConfig {
        let mut c = ModelConfig {
            backbone,
            ..Default::default()
        };
        c.contract.priors.steps = steps.to_vec();
        c.contract.priors.min_sizes = steps.iter().map(|&s| vec![2.0 * s as f32]).collect();
        c
    }

    #[test]
    fn validate_accepts_the_strides_the_network_produces() {
        for backbone in [
            BackboneKind::MobileNet025,
            BackboneKind::MobileNetV2,
            BackboneKind::ResNet18,
            BackboneKind::ResNet50,
        ] {
            for steps in [
                &[8, 16, 32][..],
                &[4, 8, 16, 32, 64],
                &[16, 32, 64],
                &[4, 8],
                &[32],
            ] {
                with_steps(backbone, steps).validate().unwrap();
            }
        }
    }

    #[test]
    fn validate_names_what_is_wrong() {
        for steps in [
            &[8, 32][..],
            &[8, 16, 32, 64, 128],
            &[64],
            &[2, 4, 8],
            &[32, 16, 8],
            &[],
        ] {
            let err = with_steps(BackboneKind::ResNet18, steps)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{steps:?}")) && err.contains("[4, 8, 16, 32, 64]"),
                "{steps:?}: {err}"
            );
        }
        let mut c = with_steps(BackboneKind::ResNet18, &[8, 16, 32]);
        c.contract.priors.min_sizes.pop();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("3 prior steps but 2 levels")
        );
        let c = ModelConfig {
            neck_channels: Some(30),
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of 4")
        );
    }

    #[test]
    fn every_level_has_the_priors_the_plugin_generates() {
        // Odd input sizes: each level's map must round up exactly as the prior generator does.
        let x = Tensor::rand([1, 3, 70, 45], tch::kind::FLOAT_CPU);
        for backbone in [
            BackboneKind::MobileNet025,
            BackboneKind::MobileNetV2,
            BackboneKind::ResNet34,
        ] {
            let config = with_steps(backbone, &[4, 8, 16, 32, 64]);
            let expected = retinaface::priors::count(&config.contract.priors, 70, 45);
            let net = RetinaFace::new(config, Device::Cpu).unwrap();
            let out = net.infer(&x);
            assert_eq!(out.loc.size(), [1, expected as i64, 4], "{backbone:?}");
            assert_eq!(
                out.landmarks.size(),
                [1, expected as i64, 10],
                "{backbone:?}"
            );
        }
    }

    #[test]
    fn reference_pyramid_keeps_the_published_unit_names() {
        let net = RetinaFace::new(ModelConfig::default(), Device::Cpu).unwrap();
        let names: Vec<&str> = net.units().iter().map(|u| u.name.as_str()).collect();
        for name in [
            "fpn.output3",
            "fpn.merge1",
            "fpn.merge2",
            "ssh3.conv7x7_3",
            "class_head.2",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("fpn.extra") || *n == "fpn.merge3")
        );
        let p6 = RetinaFace::new(
            with_steps(BackboneKind::MobileNet025, &[4, 8, 16, 32, 64]),
            Device::Cpu,
        )
        .unwrap();
        let names: Vec<&str> = p6.units().iter().map(|u| u.name.as_str()).collect();
        for name in [
            "fpn.extra",
            "fpn.output5",
            "fpn.merge4",
            "ssh5.conv3X3",
            "landmark_head.4",
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }

    fn retinanet_config() -> ModelConfig {
        let mut c = with_steps(BackboneKind::MobileNet025, &[8, 16, 32, 64]);
        c.head = HeadKind::RetinaNet;
        c.contract.priors.aspect_ratios = vec![0.5, 1.0, 2.0];
        c.contract.priors.min_sizes = [8.0f32, 16.0, 32.0, 64.0]
            .iter()
            .map(|&s| vec![2.0 * s, 2.52 * s, 3.17 * s])
            .collect();
        c
    }

    #[test]
    fn retinanet_head_trains_one_logit_and_infers_two_columns() {
        // Random weights and input: seeded, so every run checks the same draw.
        tch::manual_seed(0);
        let config = retinanet_config();
        let priors = retinaface::priors::count(&config.contract.priors, 64, 96);
        // 9 anchors per cell: (8·12 + 4·6 + 2·3 + 1·2) cells × 9.
        assert_eq!(priors, (96 + 24 + 6 + 2) * 9);
        let mut net = RetinaFace::new(config, Device::Cpu).unwrap();
        net.set_face_prior(0.01);
        let x = Tensor::rand([2, 3, 64, 96], tch::kind::FLOAT_CPU) * 50.0;
        let train = net.forward_train(&x, false);
        assert_eq!(train.conf.size(), [2, priors as i64, 1]);
        assert_eq!(train.loc.size(), [2, priors as i64, 4]);
        assert_eq!(train.landmarks.size(), [2, priors as i64, 10]);
        let infer = net.infer(&x);
        assert_eq!(infer.conf.size(), [2, priors as i64, 2]);
        let logit = Vec::<f32>::try_from(train.conf.flatten(0, -1)).unwrap();
        let conf = Vec::<f32>::try_from(infer.conf.flatten(0, -1)).unwrap();
        for (z, pair) in logit.iter().zip(conf.chunks(2)) {
            let p = 1.0 / (1.0 + (-z).exp());
            assert!((pair[1] - p).abs() < 1e-6 && (pair[0] + pair[1] - 1.0).abs() < 1e-6);
        }
        // Small output weights (σ 0.01) and the prior bias: most anchors start at the prior
        // π = 0.01. The median, not the mean: an untrained backbone on noise × 50 saturates a
        // tail of anchors, which moved the mean between 0.03 and 0.26 over seeds 0–3 (medians
        // 0.0096–0.0126).
        let mut face: Vec<f32> = conf.chunks(2).map(|c| c[1]).collect();
        face.sort_by(f32::total_cmp);
        let median = face[face.len() / 2];
        assert!(
            (0.005..0.02).contains(&median),
            "median face probability {median}"
        );
        // One set of subnet weights for every level; no SSH.
        let names: Vec<&str> = net.units().iter().map(|u| u.name.as_str()).collect();
        assert!(names.contains(&"cls_subnet.3") && names.contains(&"landmark_subnet.out"));
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("ssh") || n.starts_with("class_head"))
        );
    }

    #[test]
    fn retinanet_head_needs_the_same_anchors_at_every_level() {
        let mut c = retinanet_config();
        c.contract.priors.min_sizes[1].pop();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("same number of anchors") && err.contains("[9, 6, 9, 9]"),
            "{err}"
        );
        let mut c = ModelConfig::default();
        c.contract.priors.aspect_ratios = vec![1.0, 0.0];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("aspect ratios")
        );
    }

    #[test]
    fn srn_inference_decodes_the_second_stage_from_the_refined_anchors() {
        use retinaface::decode::{decode_box, decode_landmarks};
        tch::manual_seed(3);
        let mut config = ModelConfig {
            head: HeadKind::Srn,
            ..Default::default()
        };
        config.contract.priors.steps = vec![8, 16, 32];
        let v = config.contract.priors.variances;
        let mut net = RetinaFace::new(config, Device::Cpu).unwrap();
        // First-stage scores around the filter threshold, so that both branches are checked.
        net.srn.as_mut().unwrap().set_face_prior(0.01);
        let x = Tensor::rand([1, 3, 64, 96], tch::kind::FLOAT_CPU) * 4.0;
        // The raw outputs of both stages (BatchNorm on running statistics, as in inference).
        let raw = tch::no_grad(|| net.forward(&mut TensorOps::default(), &x, false));
        let first = raw
            .first_stage
            .as_ref()
            .expect("the srn head trains two stages");
        let out = net.infer(&x);
        assert!(out.first_stage.is_none());
        let rows = |t: &Tensor, k: usize| -> Vec<Vec<f32>> {
            Vec::<f32>::try_from(t.flatten(0, -1))
                .unwrap()
                .chunks(k)
                .map(<[f32]>::to_vec)
                .collect()
        };
        let (l1, z1) = (rows(&first.loc, 4), rows(&first.logit, 1));
        let (l2, c2, m2) = (
            rows(&raw.loc, 4),
            rows(&raw.conf, 2),
            rows(&raw.landmarks, 10),
        );
        let (loc, conf, marks) = (
            rows(&out.loc, 4),
            rows(&out.conf, 2),
            rows(&out.landmarks, 10),
        );
        let priors = retinaface::priors::generate(&net.config.contract.priors, 64, 96);
        assert_eq!(priors.len(), loc.len());
        let (mut kept, mut filtered) = (0, 0);
        for (i, prior) in priors.iter().enumerate() {
            // Two steps by the core crate's decoder: the refined anchor, then the second stage.
            let r = decode_box(&l1[i], prior, v);
            let refined = retinaface::priors::Prior {
                cx: (r[0] + r[2]) / 2.0,
                cy: (r[1] + r[3]) / 2.0,
                w: r[2] - r[0],
                h: r[3] - r[1],
            };
            let want = decode_box(&l2[i], &refined, v);
            let got = decode_box(&loc[i], prior, v);
            for k in 0..4 {
                assert!(
                    (want[k] - got[k]).abs() < 1e-4,
                    "prior {i}: {got:?} vs {want:?}"
                );
            }
            let want = decode_landmarks(&m2[i], &refined, v);
            let got = decode_landmarks(&marks[i], prior, v);
            for k in 0..5 {
                for d in 0..2 {
                    assert!(
                        (want[k][d] - got[k][d]).abs() < 1e-4,
                        "prior {i} landmark {k}"
                    );
                }
            }
            // The face probability: the second stage's, unless the first filters the anchor.
            let p2 = 1.0 / (1.0 + (c2[i][0] - c2[i][1]).exp());
            let p1 = 1.0 / (1.0 + (-z1[i][0]).exp());
            let want = if p1 >= srn::FILTER_FACE_PROBABILITY {
                kept += 1;
                p2
            } else {
                filtered += 1;
                0.0
            };
            assert!(
                (conf[i][1] - want).abs() < 1e-5,
                "prior {i}: {} vs {want}",
                conf[i][1]
            );
            assert!((conf[i][0] + conf[i][1] - 1.0).abs() < 1e-6);
        }
        assert!(
            kept > 10 && filtered > 10,
            "kept {kept}, filtered {filtered}"
        );
    }
}
