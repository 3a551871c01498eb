//! Training configuration: a TOML file and/or command-line flags; [`TrainConfig::default`] holds
//! every default (the reference mobilenet0.25 recipe).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::loss::{BoxLoss, ClsLoss, LossConfig};
use crate::model::{BackboneKind, ModelConfig};
use retinaface::contract::PriorConfig;

/// Everything a training run needs. Written to `<output>/config.toml` at the start of a run;
/// `--resume` reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// WIDER FACE-style `label.txt`.
    pub labels: PathBuf,
    /// Image root; the label paths are relative to it. Default: `images/` beside the label file.
    pub images: Option<PathBuf>,
    /// Run directory: checkpoints, metrics.csv, loss.png, model.safetensors.
    pub output: PathBuf,
    pub backbone: BackboneKind,
    /// Square training crop size in pixels.
    pub image_size: u32,
    pub batch_size: usize,
    pub epochs: usize,
    /// Initial learning rate (SGD).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Learning-rate factor applied at each of `lr_steps`.
    pub gamma: f64,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub lr_steps: Vec<usize>,
    /// Linear warm-up from 1e-6 over this many epochs (0 = none).
    pub warmup_epochs: usize,
    /// Data-loading threads (decode, augment, match).
    pub workers: usize,
    pub seed: u64,
    /// `auto` (first CUDA GPU if any, else CPU), `cpu` or `cuda:N`.
    pub device: String,
    /// Start from these weights: a published/exported `.onnx` (imported, BatchNorm folded) or a
    /// `.safetensors` model of this trainer.
    pub init: Option<PathBuf>,
    /// Build this config's network (backbone, pyramid, widths, head) and take from `init` every
    /// weight that has a place in it (pyramid levels matched by stride, equal shapes); the rest
    /// starts from scratch. Off: `init`'s own architecture is trained. For growing a model, e.g.
    /// a stride-4 level added to the published mv0.25.
    pub init_partial: bool,
    /// Keep BatchNorm in inference mode (running statistics frozen, γ/β still learn). Off by
    /// default, also when fine-tuning: measured on the sample set, fine-tuning the published
    /// model at lr 1e-3 with batch statistics kept its AP at 1.0, while frozen statistics let
    /// activations drift and lost it even at lr 3e-4.
    pub freeze_batch_norm: bool,
    /// Keep the backbone as it is (weights and BatchNorm statistics); only the neck and heads
    /// learn. For fine-tuning a good model on a few images without losing what the backbone
    /// learned (README, "Fine-tuning that does not forget").
    pub freeze_backbone: bool,
    /// Weight of distillation from the `init` model (0 = off): the original network sees every
    /// batch and the student keeps its face probabilities, boxes and landmarks
    /// (`loss::distill`). Needs `init`.
    pub distill: f64,
    /// Also checkpoint every this many iterations (0 = at the end of each epoch only).
    pub checkpoint_every: usize,
    /// Photometric distortion on the training device instead of the loader workers (same
    /// random draws); unset: on for CUDA devices, where the workers are the limit, off on the
    /// CPU, where the workers apply it to the smaller of crop and output.
    pub photometric_on_device: Option<bool>,
    /// libtorch intra-op threads (0 = libtorch's default).
    pub threads: usize,
    /// Prior/face IoU from which a prior counts as a face.
    pub match_iou: f32,
    /// Classification loss: `ce-ohem` (reference) or `focal`.
    pub cls_loss: ClsLoss,
    /// Box loss: `smooth-l1` (reference), `iou` or `giou`.
    pub box_loss: BoxLoss,
    /// Focal loss α (weight of the faces; background gets 1 − α).
    pub focal_alpha: f64,
    /// Focal loss γ (focusing exponent).
    pub focal_gamma: f64,
    /// Pyramid levels as feature strides: consecutive among 4, 8, 16, 32, 64 (P2…P6).
    pub steps: Vec<u32>,
    /// Anchor sizes in pixels, one list per level of `steps`.
    pub min_sizes: Vec<Vec<f32>>,
    /// FPN/SSH width; unset: the backbone's reference width (64 for MobileNets, 256 for ResNets).
    pub neck_channels: Option<i64>,
    /// FPN/SSH width per pyramid level, finest first (unset: `neck_channels` everywhere).
    pub level_channels: Option<Vec<i64>>,
    /// Levels of a smaller stride have no SSH context module (0 = SSH on every level).
    pub ssh_min_stride: u32,
    /// Anchor aspect ratios (width / height) of every min size: `[1.0]` in RetinaFace.
    pub aspect_ratios: Vec<f32>,
    /// `ssh` (RetinaFace) or `retinanet` (shared four-convolution subnets, sigmoid score).
    pub head: crate::model::HeadKind,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            labels: PathBuf::from("data/widerface/train/label.txt"),
            images: None,
            output: PathBuf::from("runs/retinaface"),
            backbone: BackboneKind::MobileNet025,
            image_size: 640,
            batch_size: 32,
            epochs: 250,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 5e-4,
            gamma: 0.1,
            lr_steps: vec![190, 220],
            warmup_epochs: 0,
            workers: 4,
            seed: 42,
            device: "auto".into(),
            init: None,
            init_partial: false,
            freeze_batch_norm: false,
            freeze_backbone: false,
            distill: 0.0,
            checkpoint_every: 0,
            photometric_on_device: None,
            threads: 0,
            match_iou: 0.35,
            cls_loss: ClsLoss::CeOhem,
            box_loss: BoxLoss::SmoothL1,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
            steps: PriorConfig::default().steps,
            min_sizes: PriorConfig::default().min_sizes,
            neck_channels: None,
            level_channels: None,
            ssh_min_stride: 0,
            aspect_ratios: PriorConfig::default().aspect_ratios,
            head: crate::model::HeadKind::Ssh,
        }
    }
}

/// The learning rate and backbone freezing of a run: what the reference recipe (training from
/// scratch, [`TrainConfig::default`]) and the recommended fine-tune of a trained model differ in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub lr: f64,
    pub freeze_backbone: bool,
}

impl Recipe {
    /// The recommended fine-tune (README "Fine-tuning that does not forget"): the backbone
    /// frozen, lr 1e-4. Measured on the sample photos, it keeps the published model's AP where
    /// the reference recipe's lr 1e-3 with everything training loses it.
    pub const FINE_TUNE: Recipe = Recipe {
        lr: 1e-4,
        freeze_backbone: true,
    };

    /// The reference recipe's values ([`TrainConfig::default`]).
    pub fn reference() -> Recipe {
        let d = TrainConfig::default();
        Recipe {
            lr: d.lr,
            freeze_backbone: d.freeze_backbone,
        }
    }
}

impl TrainConfig {
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::from_toml_file_with_keys(path)?.0)
    }

    /// [`Self::from_toml_file`], and the keys the file sets.
    pub fn from_toml_file_with_keys(
        path: &Path,
    ) -> anyhow::Result<(Self, std::collections::BTreeSet<String>)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let invalid = || format!("{}: invalid training config", path.display());
        let config = toml::from_str(&text).with_context(invalid)?;
        let table: toml::Table = toml::from_str(&text).with_context(invalid)?;
        Ok((config, table.keys().cloned().collect()))
    }

    /// The recipe for the settings a user leaves unset: the fine-tune recipe when the run starts
    /// from a trained model as it is (`init` without `init_partial`), the reference recipe
    /// otherwise: from scratch, or growing a model (`init_partial`), whose new parts start from
    /// scratch.
    pub fn default_recipe(&self) -> Recipe {
        if self.init.is_some() && !self.init_partial {
            Recipe::FINE_TUNE
        } else {
            Recipe::reference()
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The data loader settings of this run on `device`.
    pub fn loader(&self, device: Device) -> crate::data::LoaderConfig {
        crate::data::LoaderConfig {
            batch_size: self.batch_size,
            image_size: self.image_size,
            workers: self.workers,
            seed: self.seed,
            iou_threshold: self.match_iou,
            prefetch: 2,
            photometric_on_device: self
                .photometric_on_device
                .unwrap_or_else(|| device.is_cuda()),
        }
    }

    /// The network a run from scratch builds: the backbone and pyramid of this config.
    pub fn model_config(&self) -> ModelConfig {
        let mut config = ModelConfig {
            backbone: self.backbone,
            neck_channels: self.neck_channels,
            level_channels: self.level_channels.clone(),
            ssh_min_stride: self.ssh_min_stride,
            head: self.head,
            ..Default::default()
        };
        config.contract.priors.aspect_ratios = self.aspect_ratios.clone();
        config.contract.priors.steps = self.steps.clone();
        config.contract.priors.min_sizes = self.min_sizes.clone();
        config
    }

    /// The loss settings of this run.
    pub fn loss(&self) -> LossConfig {
        LossConfig {
            cls: self.cls_loss,
            boxes: self.box_loss,
            focal_alpha: self.focal_alpha,
            focal_gamma: self.focal_gamma,
            ..Default::default()
        }
    }

    pub fn images_root(&self) -> PathBuf {
        self.images.clone().unwrap_or_else(|| {
            self.labels
                .parent()
                .map(|p| p.join("images"))
                .unwrap_or_else(|| PathBuf::from("images"))
        })
    }

    /// Learning rate at `iteration` (0-based) with `batches_per_epoch` iterations per epoch.
    pub fn learning_rate(&self, iteration: usize, batches_per_epoch: usize) -> f64 {
        let epoch = iteration / batches_per_epoch.max(1);
        let warmup_iters = self.warmup_epochs * batches_per_epoch;
        if iteration < warmup_iters {
            return 1e-6 + (self.lr - 1e-6) * iteration as f64 / warmup_iters as f64;
        }
        let steps = self.lr_steps.iter().filter(|&&s| epoch >= s).count();
        self.lr * self.gamma.powi(steps as i32)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch_size > 0, "batch_size must be at least 1");
        anyhow::ensure!(self.epochs > 0, "epochs must be at least 1");
        anyhow::ensure!(
            self.image_size >= 32 && self.image_size.is_multiple_of(32),
            "image_size {} must be a multiple of 32 (the coarsest feature stride)",
            self.image_size
        );
        anyhow::ensure!(self.lr > 0.0, "lr must be positive");
        anyhow::ensure!(
            self.distill >= 0.0 && self.distill.is_finite(),
            "distill {} must be 0 (off) or a positive weight",
            self.distill
        );
        anyhow::ensure!(
            self.distill == 0.0 || self.init.is_some(),
            "distill needs --init: the model to distil from is the one the fine-tune starts from"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.focal_alpha),
            "focal_alpha {} must be within 0..1",
            self.focal_alpha
        );
        anyhow::ensure!(
            self.focal_gamma >= 0.0,
            "focal_gamma {} must not be negative",
            self.focal_gamma
        );
        self.model_config().validate()?;
        parse_device(&self.device)?;
        Ok(())
    }
}

/// Anchor sizes per level as written on the command line: `16,32;64,128;256,512`.
pub fn parse_min_sizes(s: &str) -> Result<Vec<Vec<f32>>, String> {
    s.split(';')
        .map(|level| {
            level
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .ok_or_else(|| format!("'{x}' in '{s}' is not a positive size"))
                })
                .collect()
        })
        .collect()
}

/// `auto`, `cpu`, `cuda` or `cuda:N`. On a GPU, cuDNN may pick the fastest convolution
/// algorithms (training input sizes are fixed), as the reference training does.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    let wants_cuda = s != "cpu";
    let cuda = wants_cuda.then(load_cuda_backend);
    let device = parse_device_name(s)?;
    if device.is_cuda() {
        if let Some(Err(why)) = cuda {
            anyhow::bail!("device {s}: {why}; use --device cpu");
        }
        anyhow::ensure!(
            tch::Cuda::is_available(),
            "device {s}: libtorch sees no CUDA GPU here; use --device cpu"
        );
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(device)
}

/// Loads libtorch's CUDA backend (`libtorch_cuda.so`), once. It registers itself when loaded,
/// but the linker drops it from the binary because no symbol of it is referenced — and it must
/// stay optional: on a machine without the CUDA libraries (cuBLAS, cuDNN…) it cannot load.
fn load_cuda_backend() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading libtorch's own CUDA library, built for the libtorch this binary
            // links; its initialisers only register the CUDA backend.
            match unsafe { Library::open(Some("libtorch_cuda.so"), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    // Stays loaded for the life of the process.
                    std::mem::forget(lib);
                    Ok(())
                }
                Err(e) => Err(format!(
                    "libtorch's CUDA backend could not be loaded ({e}); install the CUDA build of \
                     torch 2.11.0 with its nvidia-* libraries and put its torch/lib on LD_LIBRARY_PATH"
                )),
            }
        })
        .clone()
}

fn parse_device_name(s: &str) -> anyhow::Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => anyhow::bail!("device '{other}': use auto, cpu, cuda or cuda:N"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distillation_needs_a_model_to_distil_from() {
        let c = TrainConfig {
            distill: 1.0,
            ..Default::default()
        };
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("distill needs --init"), "{err}");
        let c = TrainConfig {
            distill: -1.0,
            init: Some("m.onnx".into()),
            ..Default::default()
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn step_schedule_and_warmup() {
        let c = TrainConfig {
            lr: 1e-3,
            lr_steps: vec![2, 4],
            warmup_epochs: 1,
            ..Default::default()
        };
        // 10 iterations per epoch: warm-up over the first 10.
        assert!((c.learning_rate(0, 10) - 1e-6).abs() < 1e-12);
        assert!((c.learning_rate(5, 10) - (1e-6 + (1e-3 - 1e-6) * 0.5)).abs() < 1e-12);
        assert_eq!(c.learning_rate(10, 10), 1e-3);
        assert!((c.learning_rate(20, 10) - 1e-4).abs() < 1e-15);
        assert!((c.learning_rate(45, 10) - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c = TrainConfig {
            epochs: 3,
            init: Some("m.onnx".into()),
            ..Default::default()
        };
        assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);
        let partial: TrainConfig =
            toml::from_str("epochs = 5\nbackbone = \"mobilenet0.5\"").unwrap();
        assert_eq!(partial.epochs, 5);
        assert_eq!(partial.backbone, BackboneKind::MobileNet05);
        assert_eq!(partial.batch_size, 32);
        assert!(toml::from_str::<TrainConfig>("epoch = 5").is_err());
    }

    #[test]
    fn pyramid_from_toml_and_command_line_syntax() {
        let c: TrainConfig = toml::from_str(
            "backbone = \"resnet18\"\nsteps = [4, 8, 16, 32, 64]\nneck_channels = 64\n\
             min_sizes = [[8, 11], [16, 23], [32, 45], [64, 90], [128, 181]]",
        )
        .unwrap();
        c.check().unwrap();
        let m = c.model_config();
        assert_eq!(m.contract.priors.steps, [4, 8, 16, 32, 64]);
        assert_eq!(m.contract.priors.min_sizes[4], [128.0, 181.0]);
        assert_eq!(m.neck_width(), 64);
        assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);
        // The default is the reference pyramid and width.
        let d = TrainConfig::default().model_config();
        assert_eq!(d, ModelConfig::default());
        assert_eq!(
            parse_min_sizes("16,32; 64 ,128;256,512").unwrap(),
            PriorConfig::default().min_sizes
        );
        assert!(parse_min_sizes("16,x").unwrap_err().contains("'x'"));
        assert!(parse_min_sizes("16,-2").is_err());
        // A pyramid the network cannot build is refused before anything runs.
        let bad = TrainConfig {
            steps: vec![8, 16],
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("min sizes"));
    }

    #[test]
    fn shipped_variant_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = TrainConfig::from_toml_file(&path).unwrap();
                c.check()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen} configs in {}", dir.display());
        // The reference file is the default recipe.
        let reference = TrainConfig::from_toml_file(&dir.join("mobilenet0.25.toml")).unwrap();
        assert_eq!(reference, TrainConfig::default());
    }

    #[test]
    fn loss_choices_from_toml() {
        // The reference recipe is the default.
        let d = TrainConfig::default().loss();
        assert_eq!((d.cls, d.boxes), (ClsLoss::CeOhem, BoxLoss::SmoothL1));
        let c: TrainConfig = toml::from_str(
            "cls_loss = \"focal\"\nbox_loss = \"giou\"\nfocal_alpha = 0.5\nfocal_gamma = 1.5",
        )
        .unwrap();
        let l = c.loss();
        assert_eq!((l.cls, l.boxes), (ClsLoss::Focal, BoxLoss::Giou));
        assert_eq!((l.focal_alpha, l.focal_gamma), (0.5, 1.5));
        assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);
        assert!(toml::from_str::<TrainConfig>("box_loss = \"l2\"").is_err());
        let bad = TrainConfig {
            focal_alpha: 1.5,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("focal_alpha"));
    }
}
