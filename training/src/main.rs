//! `retinaface-train`: train, evaluate, import and export RetinaFace models for the GStreamer
//! plugin. See the "Training" section of the top-level README.md.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use retinaface_training::config::{TrainConfig, parse_device};
use retinaface_training::infer::InferParams;
use retinaface_training::loss::{BoxLoss, ClsLoss};
use retinaface_training::model::{BackboneKind, RetinaFace};
use retinaface_training::onnx_io::{export::export_onnx, import::import_onnx};
use retinaface_training::{detect, evaluate, train};
use tch::Device;

#[derive(Parser)]
#[command(
    name = "retinaface-train",
    version,
    about = "Train, evaluate and export RetinaFace models for the retinafacedetect GStreamer element"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on a WIDER FACE-style label.txt (or continue a run with --resume).
    Train(TrainArgs),
    /// Training throughput: data loader alone, training step alone, and both (images/s, JSON).
    Bench {
        #[command(flatten)]
        train: TrainArgs,
        /// Timed batches per measurement (after 3 warm-up batches).
        #[arg(long, default_value_t = 20)]
        batches: usize,
    },
    /// Average precision of a model: WIDER FACE easy/medium/hard, or every face of a label.txt.
    Eval(EvalArgs),
    /// Write a model as ONNX for retinafacedetect (BatchNorm folded, contract in the metadata).
    Export {
        /// Trained model (.safetensors with its .json beside it) or an ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// Output .onnx file.
        #[arg(long)]
        output: PathBuf,
    },
    /// Size and cost of a network (JSON): parameters, convolution multiply-accumulates and priors
    /// at a square input; of a model, or of the network a training config builds.
    Describe {
        /// A model (.safetensors or .onnx).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        model: Option<PathBuf>,
        /// A training config (TOML): its network from scratch.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Side of the square input.
        #[arg(long, default_value_t = 640)]
        size: i64,
    },
    /// Load a RetinaFace ONNX model (e.g. the published mv0.25) into a trainable checkpoint.
    Import {
        #[arg(long)]
        onnx: PathBuf,
        /// Output .safetensors (a .json with the architecture and contract is written beside it).
        #[arg(long)]
        output: PathBuf,
    },
    /// Detect faces on images: writes <name>.json and an annotated <name>.png per image.
    Detect {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "detections")]
        output: PathBuf,
        #[arg(long, default_value_t = 0.6)]
        confidence_threshold: f32,
        #[arg(long, default_value_t = 0.4)]
        nms_threshold: f32,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
}

/// Flags override the config file, which overrides the defaults.
#[derive(Args)]
struct TrainArgs {
    /// TOML file with any TrainConfig keys (listed in README.md, "Training").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --output from its last checkpoint (with its saved configuration;
    /// only --epochs may change).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    labels: Option<PathBuf>,
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long, value_enum)]
    backbone: Option<BackboneKind>,
    #[arg(long)]
    image_size: Option<u32>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Epochs at which the learning rate drops by `gamma`, comma separated.
    #[arg(long, value_delimiter = ',')]
    lr_steps: Option<Vec<usize>>,
    #[arg(long)]
    warmup_epochs: Option<usize>,
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Start from a .onnx (imported) or .safetensors model.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Train the configured network, taking from --init every weight that fits it (pyramid
    /// levels matched by stride); without it --init's own architecture is trained.
    #[arg(long)]
    init_partial: bool,
    /// Keep BatchNorm statistics frozen while training.
    #[arg(long)]
    freeze_batch_norm: bool,
    /// Keep the backbone fixed (weights and BatchNorm statistics): fine-tune only neck and heads.
    #[arg(long)]
    freeze_backbone: bool,
    /// Weight of distillation from the --init model (0 = off).
    #[arg(long)]
    distill: Option<f64>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Photometric distortion on the training device: true or false (default: true on CUDA).
    #[arg(long)]
    photometric_on_device: Option<bool>,
    #[arg(long)]
    threads: Option<usize>,
    /// Classification loss (default ce-ohem, the reference recipe).
    #[arg(long, value_enum)]
    cls_loss: Option<ClsLoss>,
    /// Box loss (default smooth-l1, the reference recipe).
    #[arg(long, value_enum)]
    box_loss: Option<BoxLoss>,
    /// Focal loss α (default 0.25).
    #[arg(long)]
    focal_alpha: Option<f64>,
    /// Focal loss γ (default 2).
    #[arg(long)]
    focal_gamma: Option<f64>,
    /// Pyramid levels as strides, comma separated: consecutive among 4,8,16,32,64
    /// (default 8,16,32).
    #[arg(long, value_delimiter = ',')]
    steps: Option<Vec<u32>>,
    /// Anchor sizes per level, levels separated by ';' (default 16,32;64,128;256,512).
    #[arg(long)]
    min_sizes: Option<String>,
    /// FPN/SSH channels (default 64 for MobileNets, 256 for ResNets).
    #[arg(long)]
    neck_channels: Option<i64>,
    /// FPN/SSH channels per level, finest first, comma separated (default: --neck-channels).
    #[arg(long, value_delimiter = ',')]
    level_channels: Option<Vec<i64>>,
    /// Levels of a smaller stride get no SSH context module (default 0: every level has one).
    #[arg(long)]
    ssh_min_stride: Option<u32>,
    /// Anchor aspect ratios (width / height), comma separated (default 1).
    #[arg(long, value_delimiter = ',')]
    aspect_ratios: Option<Vec<f32>>,
    /// ssh (RetinaFace, default) or retinanet.
    #[arg(long, value_enum)]
    head: Option<retinaface_training::model::HeadKind>,
}

impl TrainArgs {
    fn into_config(self) -> anyhow::Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?,
            None => TrainConfig::default(),
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
            lr,
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
            head
        );
        if let Some(sizes) = &self.min_sizes {
            c.min_sizes = retinaface_training::config::parse_min_sizes(sizes)
                .map_err(|e| anyhow::anyhow!("--min-sizes: {e}"))?;
        }
        if self.neck_channels.is_some() {
            c.neck_channels = self.neck_channels;
        }
        if self.images.is_some() {
            c.images = self.images;
        }
        if self.init.is_some() {
            c.init = self.init;
        }
        if self.freeze_batch_norm {
            c.freeze_batch_norm = true;
        }
        if self.freeze_backbone {
            c.freeze_backbone = true;
        }
        if self.init_partial {
            c.init_partial = true;
        }
        if self.photometric_on_device.is_some() {
            c.photometric_on_device = self.photometric_on_device;
        }
        if self.level_channels.is_some() {
            c.level_channels = self.level_channels;
        }
        if let Some(w) = self.distill {
            c.distill = w;
        }
        Ok(c)
    }
}

#[derive(Args)]
struct EvalArgs {
    /// Model to evaluate (.safetensors or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// A label.txt set: every face counts (IoU 0.5).
    #[arg(long, conflicts_with = "widerface")]
    labels: Option<PathBuf>,
    /// Image root of --labels (default: images/ beside it).
    #[arg(long)]
    images: Option<PathBuf>,
    /// WIDER FACE validation folder (with images/<event>/…); needs --gt.
    #[arg(long, requires = "gt")]
    widerface: Option<PathBuf>,
    /// Folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Where predictions and pr.png go.
    #[arg(long, default_value = "eval")]
    output: PathBuf,
    /// Downscale images whose longer side exceeds this (0 = original size, as the reference).
    #[arg(long, default_value_t = 0)]
    max_size: u32,
    #[arg(long, default_value = "auto")]
    device: String,
}

/// A trainer model (.safetensors) or an ONNX model (imported).
fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(args) => {
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
        }
        Command::Bench { train, batches } => {
            let report = retinaface_training::bench::benchmark(&train.into_config()?, batches)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Eval(args) => {
            let net = RetinaFace::load_any(&args.model, parse_device(&args.device)?)?;
            match (&args.labels, &args.widerface, &args.gt) {
                (Some(labels), _, _) => {
                    let images = args.images.clone().unwrap_or_else(|| {
                        labels.parent().unwrap_or(Path::new(".")).join("images")
                    });
                    let r =
                        evaluate::eval_labels(&net, labels, &images, &args.output, args.max_size)?;
                    let chart = match &r.chart {
                        Ok(path) => format!("PR curve: {}", path.display()),
                        Err(why) => why.clone(),
                    };
                    println!("AP {:.4} over {} faces  ({chart})", r.ap, r.faces);
                }
                (None, Some(wider), Some(gt)) => {
                    let r = evaluate::eval_widerface(&net, wider, gt, &args.output, args.max_size)?;
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
        }
        Command::Export { model, output } => {
            let net = RetinaFace::load_any(&model, Device::Cpu)?;
            export_onnx(&net, &output)?;
            println!(
                "exported {} ({} backbone) to {}",
                model.display(),
                net.config.backbone.name(),
                output.display()
            );
        }
        Command::Describe {
            model,
            config,
            size,
        } => {
            anyhow::ensure!(
                (32..=8192).contains(&size),
                "--size {size}: give a side between 32 and 8192 pixels"
            );
            let net = match (model, config) {
                (Some(model), _) => RetinaFace::load_any(&model, Device::Cpu)?,
                (None, Some(config)) => RetinaFace::new(
                    TrainConfig::from_toml_file(&config)?.model_config(),
                    Device::Cpu,
                )?,
                (None, None) => unreachable!("clap requires one"),
            };
            let c = &net.config;
            let priors =
                retinaface::priors::count(&c.contract.priors, size as usize, size as usize);
            let description = serde_json::json!({
                "backbone": c.backbone.name(),
                "head": c.head.name(),
                "steps": c.contract.priors.steps,
                "level_channels": c.level_widths(),
                "parameters": net.parameter_count(),
                "macs": retinaface_training::model::cost::macs(&net, size, size),
                "priors": priors,
                "size": size,
            });
            println!("{description}");
        }
        Command::Import { onnx, output } => {
            let net = import_onnx(&onnx, Device::Cpu)?;
            net.save(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "imported {} ({}, {} parameters) to {}",
                onnx.display(),
                net.config.backbone.name(),
                net.parameter_count(),
                output.display()
            );
        }
        Command::Detect {
            model,
            output,
            confidence_threshold,
            nms_threshold,
            device,
            images,
        } => {
            let net = RetinaFace::load_any(&model, parse_device(&device)?)?;
            let params = InferParams {
                confidence_threshold,
                nms_threshold,
                ..Default::default()
            };
            detect::run(&net, &images, &output, &params)?;
        }
    }
    Ok(())
}
