//! `train`: the training loop (data loader → forward → MultiBoxLoss → SGD), with metrics,
//! progress, checkpoints and exact resume.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use crate::checkpoint::{self, Position};
use crate::config::{TrainConfig, parse_device};
use crate::data::{Sample, batches_per_epoch, epoch_batches, read_label_file};
use crate::device_batch::{DeviceBatch, on_device};
use crate::loss::{ClsLoss, Criterion, LossTerms};
use crate::model::RetinaFace;
use crate::model::calibrate::calibrate_batch_norm;

/// Images used to estimate BatchNorm statistics of an imported (folded) model.
const CALIBRATION_IMAGES: usize = 64;
/// Face probability an untrained network starts from when trained with the focal loss
/// (RetinaNet's π).
const FOCAL_FACE_PRIOR: f64 = 0.01;
use crate::sgd::Sgd;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricsRow {
    pub iteration: usize,
    pub epoch: usize,
    pub lr: f64,
    pub loss: f64,
    pub loss_box: f64,
    pub loss_class: f64,
    pub loss_landmark: f64,
    pub images_per_s: f64,
    pub faces: usize,
    pub skipped_images: usize,
}

/// What a finished run produced.
pub struct TrainSummary {
    pub model: PathBuf,
    pub iterations: usize,
    pub rows: Vec<MetricsRow>,
}

/// The network a new run starts from.
pub fn initial_network(config: &TrainConfig, device: Device) -> anyhow::Result<RetinaFace> {
    let scratch = || -> anyhow::Result<RetinaFace> {
        let mut net = RetinaFace::new(config.model_config(), device)?;
        // The focal loss, and the RetinaNet head designed with it, start from face prior π.
        if config.cls_loss == ClsLoss::Focal || config.head == crate::model::HeadKind::RetinaNet {
            net.set_face_prior(FOCAL_FACE_PRIOR);
        }
        Ok(net)
    };
    let Some(init) = &config.init else {
        return scratch();
    };
    let source = RetinaFace::load_any(init, device)?;
    if config.init_partial {
        let mut net = scratch()?;
        let report = crate::model::grow::copy_matching(&source, &mut net)?;
        eprintln!(
            "note: {} weights of {} taken from {} ({} of its weights have no place in the \
             configured network); the others start from scratch",
            report.copied,
            report.copied + report.fresh.len(),
            init.display(),
            report.unused.len()
        );
        return Ok(net);
    }
    let net = source;
    if net.config.backbone != config.backbone {
        eprintln!(
            "note: {} is a {} model; training that backbone (config said {})",
            init.display(),
            net.config.backbone.name(),
            config.backbone.name()
        );
    }
    let wanted = config.model_config();
    if net.config.contract.priors.steps != wanted.contract.priors.steps
        || net.config.contract.priors.min_sizes != wanted.contract.priors.min_sizes
        || net.config.contract.priors.aspect_ratios != wanted.contract.priors.aspect_ratios
        || net.config.level_widths() != wanted.level_widths()
        || net.config.head != wanted.head
    {
        eprintln!(
            "note: {} has pyramid steps {:?}, min sizes {:?}, aspect ratios {:?}, level widths \
             {:?} and the {} head; training that network (the config's architecture applies \
             to runs from scratch, or with init_partial)",
            init.display(),
            net.config.contract.priors.steps,
            net.config.contract.priors.min_sizes,
            net.config.contract.priors.aspect_ratios,
            net.config.level_widths(),
            net.config.head.name()
        );
    }
    Ok(net)
}

fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricsRow>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(path)?;
    reader
        .deserialize()
        .collect::<Result<Vec<MetricsRow>, _>>()
        .with_context(|| format!("reading {}", path.display()))
}

/// Rewrites `metrics.csv` with `rows` (those before the resume point) and returns the writer,
/// to append the rows that follow. The header comes from [`MetricsRow`] with the first row.
fn metrics_writer(path: &Path, rows: &[MetricsRow]) -> anyhow::Result<csv::Writer<std::fs::File>> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(w)
}

/// The run's labelled images; label problems are reported on stderr and skipped.
pub fn load_samples(config: &TrainConfig) -> anyhow::Result<Arc<Vec<Sample>>> {
    let labels = read_label_file(&config.labels, &config.images_root())?;
    labels.report_skipped();
    if labels.samples.is_empty() {
        bail!("{} lists no usable images", config.labels.display());
    }
    Ok(Arc::new(labels.samples))
}

/// One SGD step on `input`; returns the loss terms (on the device: reading them synchronises).
pub fn step(
    net: &RetinaFace,
    sgd: &mut Sgd,
    input: &DeviceBatch,
    lr: f64,
    train_batch_norm: bool,
    criterion: &Criterion,
) -> LossTerms {
    let out = net.forward_train(&input.images, train_batch_norm);
    let loss = criterion.loss(&out, input);
    sgd.zero_grad(&net.vs);
    loss.total.backward();
    sgd.step(&net.vs, lr);
    loss
}

/// Starts a new run as `config` describes.
pub fn train(config: TrainConfig) -> anyhow::Result<TrainSummary> {
    if checkpoint::exists(&config.output) {
        bail!(
            "{} already holds a training run; use --resume to continue it or choose another --output",
            config.output.display()
        );
    }
    run(config, false)
}

/// Continues the run in `output` from its last checkpoint with the run's saved configuration;
/// `epochs` extends (or shortens) it.
pub fn resume(output: &Path, epochs: Option<usize>) -> anyhow::Result<TrainSummary> {
    let saved = TrainConfig::from_toml_file(&output.join("config.toml"))
        .context("--resume needs the --output directory of an earlier `train` run (config.toml)")?;
    let config = TrainConfig {
        epochs: epochs.unwrap_or(saved.epochs),
        output: output.to_path_buf(),
        ..saved
    };
    run(config, true)
}

fn run(config: TrainConfig, resume: bool) -> anyhow::Result<TrainSummary> {
    let output = config.output.clone();
    config.check()?;
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    std::fs::write(output.join("config.toml"), config.to_toml())?;
    if config.threads > 0 {
        tch::set_num_threads(config.threads as i32);
    }
    let device = parse_device(&config.device)?;
    tch::manual_seed(config.seed as i64);

    let samples = load_samples(&config)?;

    let frozen: &[&str] = if config.freeze_backbone {
        &crate::model::BackboneKind::all_var_prefixes()
    } else {
        &[]
    };
    let mut sgd = Sgd::new(config.momentum, config.weight_decay).freeze(frozen);
    let (net, start) = if resume {
        checkpoint::load(&output, device, &mut sgd)?
    } else {
        (
            initial_network(&config, device)?,
            Position {
                iteration: 0,
                epoch: 0,
                batch: 0,
            },
        )
    };
    let mut net = net;
    net.freeze_backbone = config.freeze_backbone;
    let contract = Arc::new(net.config.contract.clone());
    let freeze_bn = config.freeze_batch_norm;
    let loader = config.loader(device);
    let per_epoch = batches_per_epoch(samples.len(), config.batch_size);
    let size = config.image_size as i64;
    if net.config.folded_batch_norm {
        // Imported weights: real BatchNorm statistics from (up to) 64 training images first.
        let batches = CALIBRATION_IMAGES
            .div_ceil(config.batch_size)
            .min(per_epoch);
        let inputs = epoch_batches(samples.clone(), contract.clone(), &loader, 0, 0)
            .take(batches)
            .filter(|b| b.batch_size > 0)
            .map(|b| DeviceBatch::images(&b, size, &contract, device));
        calibrate_batch_norm(&mut net, inputs)?;
    }
    let total = per_epoch * config.epochs;

    let metrics_path = output.join("metrics.csv");
    let mut rows: Vec<MetricsRow> = read_metrics(&metrics_path)?
        .into_iter()
        .filter(|r| r.iteration < start.iteration)
        .collect();
    let mut metrics = metrics_writer(&metrics_path, &rows)?;

    let bar = ProgressBar::new(total as u64).with_position(start.iteration as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut criterion = Criterion::new(
        config.loss(),
        &contract.priors,
        config.image_size as usize,
        device,
    );
    if config.distill > 0.0 {
        // The starting model, loaded afresh and never updated: the teacher. (Checked: `init`
        // is set.) BatchNorm statistics of imported models are exact as imported.
        let init = config.init.as_ref().context("distill needs init")?;
        let teacher = RetinaFace::load_any(init, device)?;
        if net.config.head == crate::model::HeadKind::Srn
            || teacher.config.head == crate::model::HeadKind::Srn
        {
            bail!(
                "distill does not support the srn head: its box offsets are relative to anchors \
                 its first stage moves, so teacher and student offsets are not comparable prior \
                 by prior (drop distill)"
            );
        }
        if teacher.config.contract.priors != contract.priors {
            bail!(
                "distill: the student's priors (steps {:?}, min sizes {:?}) differ from the \
                 teacher's {} (steps {:?}, min sizes {:?}); distillation compares them prior by \
                 prior, so the pyramids must match (drop distill, or init_partial)",
                contract.priors.steps,
                contract.priors.min_sizes,
                init.display(),
                teacher.config.contract.priors.steps,
                teacher.config.contract.priors.min_sizes
            );
        }
        criterion = criterion.with_teacher(teacher, config.distill);
    }
    let mut iteration = start.iteration;
    let mut last_step = Instant::now();
    for epoch in start.epoch..config.epochs {
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, config.epochs));
        let first = if epoch == start.epoch { start.batch } else { 0 };
        let batches = epoch_batches(samples.clone(), contract.clone(), &loader, epoch, first);
        for input in on_device(batches, size, (*contract).clone(), device) {
            let lr = config.learning_rate(iteration, per_epoch);
            let loss = step(&net, &mut sgd, &input, lr, !freeze_bn, &criterion);
            let value = loss.total.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "loss became {value} at iteration {iteration}; lower the learning rate (lr = {lr}) or check the labels"
                );
            }
            iteration += 1;
            let row = MetricsRow {
                iteration: iteration - 1,
                epoch,
                lr,
                loss: value,
                loss_box: loss.boxes.double_value(&[]),
                loss_class: loss.classes.double_value(&[]),
                loss_landmark: loss.landmarks.double_value(&[]),
                // Wall time since the previous step: loading waits included.
                images_per_s: input.images_count as f64 / last_step.elapsed().as_secs_f64(),
                faces: input.faces,
                skipped_images: input.skipped,
            };
            metrics.serialize(&row)?;
            metrics.flush()?;
            bar.set_message(format!(
                "loss {:.3} (box {:.3} cls {:.3} lmk {:.3}) {:.1} img/s",
                row.loss, row.loss_box, row.loss_class, row.loss_landmark, row.images_per_s
            ));
            bar.inc(1);
            rows.push(row);
            last_step = Instant::now();
            let next = Position {
                iteration,
                epoch,
                batch: input.index + 1,
            };
            if config.checkpoint_every > 0
                && iteration % config.checkpoint_every == 0
                && next.batch < per_epoch
            {
                checkpoint::save(&output, &net, &sgd, next)?;
            }
        }
        checkpoint::save(
            &output,
            &net,
            &sgd,
            Position {
                iteration,
                epoch: epoch + 1,
                batch: 0,
            },
        )?;
    }
    bar.finish();
    let model = output.join("model.safetensors");
    net.save(&model)?;
    write_loss_plot(&output.join("loss.png"), &rows)?;
    let _ = std::io::stderr().flush();
    Ok(TrainSummary {
        model,
        iterations: iteration,
        rows,
    })
}

/// The loss terms per iteration as a PNG.
pub fn write_loss_plot(path: &Path, rows: &[MetricsRow]) -> anyhow::Result<()> {
    let series = |f: fn(&MetricsRow) -> f64| {
        rows.iter()
            .map(|r| (r.iteration as f64, f(r)))
            .collect::<Vec<_>>()
    };
    crate::plot::line_chart(
        path,
        "RetinaFace training loss",
        "iteration",
        "loss",
        &[
            ("total", series(|r| r.loss)),
            ("box", series(|r| r.loss_box)),
            ("class", series(|r| r.loss_class)),
            ("landmark", series(|r| r.loss_landmark)),
        ],
    )
}
