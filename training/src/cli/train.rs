//! `retinaface-train train`: its flags (shared with `bench`), how they combine with a `--config`
//! file and the defaults into a [`TrainConfig`] (the fine-tune recipe for `--init`), and the run.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{Recipe, TrainConfig, parse_min_sizes};
use crate::loss::{BoxLoss, ClsLoss};
use crate::model::{BackboneKind, HeadKind};
use crate::train;

/// Flags override the --config file, which overrides the defaults shown.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML file with any of these settings, keys as the flags with `_` (README "Training");
    /// flags override it [default: none: the defaults shown]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --output from its last checkpoint, with its saved configuration
    /// (only --epochs may change)
    #[arg(long)]
    pub resume: bool,
    /// WIDER FACE-style label file: an image path, then one line per face
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image root the label file's paths are relative to [default: images/ beside --labels]
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Run directory: config.toml, metrics.csv, loss.png, checkpoints/, model.safetensors
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Backbone of a network built from scratch (or with --init-partial)
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// Side of the square training crops in pixels, a multiple of 32
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Images per training step
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes over the labelled images
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Initial learning rate (SGD)
    #[arg(long)]
    pub lr: Option<f64>,
    /// Epochs at which the learning rate drops by the factor `gamma` (a --config key),
    /// comma separated
    #[arg(long, value_delimiter = ',')]
    pub lr_steps: Option<Vec<usize>>,
    /// Epochs of linear learning-rate warm-up from 1e-6 (0 = none)
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Data-loading threads (decode, augment, match priors)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seed of every random choice: initial weights, sample order, augmentation
    #[arg(long)]
    pub seed: Option<u64>,
    /// Training device: auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N
    #[arg(long)]
    pub device: Option<String>,
    /// Start from this trained model (.onnx, imported, or .safetensors) and train its own
    /// architecture with the fine-tune recipe (see --freeze-backbone and --lr) [default: none:
    /// from scratch]
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Grow a model: train the configured network, taking from --init every weight that fits
    /// it (pyramid levels matched by stride); the rest starts from scratch, with the reference
    /// recipe
    #[arg(long)]
    pub init_partial: bool,
    /// Keep BatchNorm statistics frozen while training
    #[arg(long)]
    pub freeze_batch_norm: bool,
    /// Keep the backbone fixed (weights and BatchNorm statistics): only neck and heads learn;
    /// --freeze-backbone=false trains it
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub freeze_backbone: Option<bool>,
    /// Weight of distillation from the --init model, which sees every batch and keeps the
    /// student near its outputs (0 = off)
    #[arg(long)]
    pub distill: Option<f64>,
    /// Also checkpoint every this many iterations (0 = at the end of each epoch only)
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Photometric distortion on the training device instead of the loader workers: true or
    /// false [default: true on CUDA, false on the CPU]
    #[arg(long)]
    pub photometric_on_device: Option<bool>,
    /// libtorch intra-op threads (0 = libtorch's default)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Classification loss: ce-ohem (cross-entropy, hard negatives 7:1) or focal
    #[arg(long, value_enum)]
    pub cls_loss: Option<ClsLoss>,
    /// Box loss: smooth-l1 on the offsets, or iou / giou on the decoded boxes
    #[arg(long, value_enum)]
    pub box_loss: Option<BoxLoss>,
    /// Focal loss α: weight of the faces (the background gets 1 − α)
    #[arg(long)]
    pub focal_alpha: Option<f64>,
    /// Focal loss γ: focusing exponent
    #[arg(long)]
    pub focal_gamma: Option<f64>,
    /// Pyramid levels as strides, comma separated: consecutive among 4,8,16,32,64
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<u32>>,
    /// Anchor sizes in pixels per pyramid level, levels separated by ';'
    #[arg(long)]
    pub min_sizes: Option<String>,
    /// FPN/SSH channels [default: 64 for MobileNets, 256 for ResNets]
    #[arg(long)]
    pub neck_channels: Option<i64>,
    /// FPN/SSH channels per pyramid level, finest first, comma separated [default:
    /// --neck-channels at every level]
    #[arg(long, value_delimiter = ',')]
    pub level_channels: Option<Vec<i64>>,
    /// Levels of a smaller stride get no SSH context module (0 = every level has one)
    #[arg(long)]
    pub ssh_min_stride: Option<u32>,
    /// Anchor aspect ratios (width / height), comma separated
    #[arg(long, value_delimiter = ',')]
    pub aspect_ratios: Option<Vec<f32>>,
    /// Head: ssh (RetinaFace), retinanet (shared subnets, sigmoid score) or srn (selective
    /// refinement)
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
}

/// The learning rate and backbone freezing a user gave, by flag or in the --config file;
/// `None`: not given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GivenRecipe {
    pub lr: Option<f64>,
    pub freeze_backbone: Option<bool>,
}

/// Sets `config`'s learning rate and backbone freezing: the user's where given, else
/// [`TrainConfig::default_recipe`]'s. Returns the note to print when the fine-tune recipe filled
/// in any of them.
pub fn resolve_recipe(config: &mut TrainConfig, given: GivenRecipe) -> Option<String> {
    let recipe = config.default_recipe();
    config.lr = given.lr.unwrap_or(recipe.lr);
    config.freeze_backbone = given.freeze_backbone.unwrap_or(recipe.freeze_backbone);
    if recipe != Recipe::FINE_TUNE {
        return None;
    }
    let mut filled = Vec::new();
    let mut overrides = Vec::new();
    if given.freeze_backbone.is_none() {
        filled.push(format!("--freeze-backbone={}", recipe.freeze_backbone));
        overrides.push(format!("--freeze-backbone={}", !recipe.freeze_backbone));
    }
    if given.lr.is_none() {
        filled.push(format!("--lr {}", recipe.lr));
        overrides.push("--lr <LR>".to_string());
    }
    if filled.is_empty() {
        return None;
    }
    let init = config
        .init
        .as_ref()
        .expect("the fine-tune recipe is for --init");
    Some(format!(
        "note: --init {}: the recommended fine-tune recipe (README \"Training\"): {}; give {} to \
         override",
        init.display(),
        filled.join(" "),
        overrides.join(" or ")
    ))
}

impl TrainArgs {
    /// The run's configuration: the flags over the --config file over the defaults, then
    /// [`resolve_recipe`] (its note goes to stderr).
    pub fn into_config(self) -> anyhow::Result<TrainConfig> {
        let (mut c, file_keys) = match &self.config {
            Some(path) => TrainConfig::from_toml_file_with_keys(path)?,
            None => (TrainConfig::default(), Default::default()),
        };
        let in_file = |key: &str| file_keys.contains(key);
        let given = GivenRecipe {
            lr: self.lr.or(in_file("lr").then_some(c.lr)),
            freeze_backbone: self
                .freeze_backbone
                .or(in_file("freeze_backbone").then_some(c.freeze_backbone)),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            labels,
            output,
            backbone,
            image_size,
            batch_size,
            epochs,
            lr_steps,
            warmup_epochs,
            workers,
            seed,
            device,
            checkpoint_every,
            threads,
            cls_loss,
            box_loss,
            focal_alpha,
            focal_gamma,
            steps,
            aspect_ratios,
            ssh_min_stride,
            head,
            distill
        );
        macro_rules! set_option {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field; } )* };
        }
        set_option!(
            neck_channels,
            images,
            init,
            photometric_on_device,
            level_channels
        );
        if let Some(sizes) = &self.min_sizes {
            c.min_sizes =
                parse_min_sizes(sizes).map_err(|e| anyhow::anyhow!("--min-sizes: {e}"))?;
        }
        c.freeze_batch_norm |= self.freeze_batch_norm;
        c.init_partial |= self.init_partial;
        if let Some(note) = resolve_recipe(&mut c, given) {
            eprintln!("{note}");
        }
        Ok(c)
    }
}

/// `[default: …]` after the help of every flag of `train` (and `bench`) whose default is a
/// [`TrainConfig::default`] value, written from it; the recipe's two say which applies when.
pub fn with_defaults(cmd: clap::Command) -> clap::Command {
    let table: toml::Table =
        toml::from_str(&TrainConfig::default().to_toml()).expect("the config reads back");
    let (reference, fine_tune) = (Recipe::reference(), Recipe::FINE_TUNE);
    let recipe_default = |from_scratch: String, fine_tune: String| {
        format!("{from_scratch}; {fine_tune} with --init (the fine-tune recipe)")
    };
    let defaults: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|arg| arg.get_action().takes_values())
        .filter_map(|arg| {
            let id = arg.get_id().as_str();
            let default = match id {
                "lr" => recipe_default(reference.lr.to_string(), fine_tune.lr.to_string()),
                "freeze_backbone" => recipe_default(
                    reference.freeze_backbone.to_string(),
                    fine_tune.freeze_backbone.to_string(),
                ),
                _ => flag_syntax(table.get(id)?),
            };
            Some((id.to_string(), default))
        })
        .collect();
    defaults.into_iter().fold(cmd, |cmd, (id, default)| {
        cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        })
    })
}

/// A config value as a flag takes it: lists comma separated, lists of lists `;` between them.
fn flag_syntax(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Array(items) => {
            let nested = items.iter().any(toml::Value::is_array);
            let parts: Vec<String> = items.iter().map(flag_syntax).collect();
            parts.join(if nested { ";" } else { "," })
        }
        other => other.to_string(),
    }
}

/// Runs `train`: a new run, or `--resume` of the one in --output.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let summary = if args.resume {
        let output = args
            .output
            .context("--resume needs --output <run directory>")?;
        train::resume(&output, args.epochs)?
    } else {
        train::train(args.into_config()?)?
    };
    let last = summary.rows.last().map_or(f64::NAN, |r| r.loss);
    println!(
        "trained {} iterations; last loss {last:.4}; model {}",
        summary.iterations,
        summary.model.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(init: bool, init_partial: bool, given: GivenRecipe) -> (f64, bool, bool) {
        let mut config = TrainConfig {
            init: init.then(|| PathBuf::from("published.onnx")),
            init_partial,
            ..Default::default()
        };
        let note = resolve_recipe(&mut config, given);
        (config.lr, config.freeze_backbone, note.is_some())
    }

    #[test]
    fn init_fine_tunes_unless_told_otherwise_and_scratch_keeps_the_reference() {
        let nothing = GivenRecipe::default();
        let reference = TrainConfig::default();
        assert_eq!((reference.lr, reference.freeze_backbone), (1e-3, false));
        // --init, nothing set: the fine-tune recipe, said on stderr.
        assert_eq!(resolved(true, false, nothing), (1e-4, true, true));
        // --init with the user's values: theirs, with nothing to say.
        let both = GivenRecipe {
            lr: Some(3e-3),
            freeze_backbone: Some(false),
        };
        assert_eq!(resolved(true, false, both), (3e-3, false, false));
        // One given: the other from the fine-tune recipe.
        let lr_only = GivenRecipe {
            lr: Some(5e-4),
            ..nothing
        };
        assert_eq!(resolved(true, false, lr_only), (5e-4, true, true));
        // From scratch, or growing a model: the reference recipe, or the user's values.
        assert_eq!(resolved(false, false, nothing), (1e-3, false, false));
        assert_eq!(resolved(true, true, nothing), (1e-3, false, false));
        let freeze = GivenRecipe {
            freeze_backbone: Some(true),
            ..nothing
        };
        assert_eq!(resolved(false, false, freeze), (1e-3, true, false));
    }

    #[test]
    fn the_note_names_the_recipe_and_how_to_override_it() {
        let mut config = TrainConfig {
            init: Some(PathBuf::from("m.onnx")),
            ..Default::default()
        };
        let note = resolve_recipe(&mut config, GivenRecipe::default()).unwrap();
        assert_eq!(
            note,
            "note: --init m.onnx: the recommended fine-tune recipe (README \"Training\"): \
             --freeze-backbone=true --lr 0.0001; give --freeze-backbone=false or --lr <LR> to \
             override"
        );
        assert!(!note.contains('\n'));
    }

    #[test]
    fn a_config_file_setting_the_recipe_counts_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "init = \"published.onnx\"\nlr = 0.002\n").unwrap();
        let args = |extra: &[&str]| {
            let mut argv = vec!["train", "--config", file.to_str().unwrap()];
            argv.extend_from_slice(extra);
            <TrainArgs as clap::FromArgMatches>::from_arg_matches(
                &<TrainArgs as clap::Args>::augment_args(clap::Command::new("train"))
                    .get_matches_from(argv),
            )
            .unwrap()
        };
        let c = args(&[]).into_config().unwrap();
        assert_eq!((c.lr, c.freeze_backbone), (0.002, true));
        let c = args(&["--lr", "0.01", "--freeze-backbone=false"])
            .into_config()
            .unwrap();
        assert_eq!((c.lr, c.freeze_backbone), (0.01, false));
        let c = args(&["--freeze-backbone"]).into_config().unwrap();
        assert!(c.freeze_backbone);
    }
}
