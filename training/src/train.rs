//! `train`: the training loop (data loader → forward → MultiBoxLoss → SGD), with metrics,
//! progress, checkpoints and exact resume.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use retinaface::ModelContract;
use tch::Device;

use crate::checkpoint::{self, Position};
use crate::config::{TrainConfig, parse_device};
use crate::data::{LoaderConfig, Sample, batches_per_epoch, epoch_batches, read_label_file};
use crate::device_batch::{DeviceBatch, on_device};
use crate::loss::{ClsLoss, Criterion, LossTerms};
use crate::model::RetinaFace;
use crate::model::calibrate::calibrate_batch_norm;
use crate::sgd::Sgd;

/// Images used to estimate BatchNorm statistics of an imported (folded) model.
const CALIBRATION_IMAGES: usize = 64;
/// Face probability an untrained network starts from when trained with the focal loss
/// (RetinaNet's π).
const FOCAL_FACE_PRIOR: f64 = 0.01;

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

/// The network a new run starts from: built from scratch, `init` as it is, or grown from `init`
/// (`init_partial`).
pub fn initial_network(config: &TrainConfig, device: Device) -> anyhow::Result<RetinaFace> {
    let Some(init) = &config.init else {
        return scratch_network(config, device);
    };
    let source = crate::onnx_io::load_any(init, device)?;
    if config.init_partial {
        return grown_network(config, &source, init, device);
    }
    note_init_architecture(config, &source, init);
    Ok(source)
}

/// The configured network with fresh weights.
fn scratch_network(config: &TrainConfig, device: Device) -> anyhow::Result<RetinaFace> {
    let mut net = RetinaFace::new(config.model_config(), device)?;
    // The focal loss, and the RetinaNet head designed with it, start from face prior π.
    if config.cls_loss == ClsLoss::Focal || config.head == crate::model::HeadKind::RetinaNet {
        net.set_face_prior(FOCAL_FACE_PRIOR);
    }
    Ok(net)
}

/// The configured network with every weight of `source` (loaded from `init`) that fits it.
fn grown_network(
    config: &TrainConfig,
    source: &RetinaFace,
    init: &Path,
    device: Device,
) -> anyhow::Result<RetinaFace> {
    let mut net = scratch_network(config, device)?;
    let report = crate::model::grow::copy_matching(source, &mut net)?;
    eprintln!(
        "note: {} weights of {} taken from {} ({} of its weights have no place in the \
         configured network); the others start from scratch",
        report.copied,
        report.copied + report.fresh.len(),
        init.display(),
        report.unused.len()
    );
    Ok(net)
}

/// Says on stderr where `net`, loaded from `init` and trained as it is, differs from the
/// configured architecture.
fn note_init_architecture(config: &TrainConfig, net: &RetinaFace, init: &Path) {
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
    let device = prepare_run(&config)?;
    let samples = load_samples(&config)?;
    let mut sgd = optimizer(&config);
    let (mut net, start) = starting_point(&config, resume, device, &mut sgd)?;
    net.freeze_backbone = config.freeze_backbone;
    let contract = Arc::new(net.config.contract.clone());
    let loader = config.loader(device);
    let per_epoch = batches_per_epoch(samples.len(), config.batch_size);
    if net.config.folded_batch_norm {
        calibrate_imported(&mut net, &config, &samples, &loader, device)?;
    }
    let mut log = RunLog::open(&config.output, start.iteration, per_epoch * config.epochs)?;
    let criterion = criterion(&config, &net, device)?;
    let mut run = Run {
        config: &config,
        net,
        sgd,
        criterion,
        samples,
        contract,
        loader,
        device,
        per_epoch,
    };
    let iterations = run.train_epochs(start, &mut log)?;
    finish(&config.output, &run.net, log, iterations)
}

/// Checks the configuration, creates the run directory with its `config.toml`, and sets up
/// libtorch (threads, seed); returns the training device.
fn prepare_run(config: &TrainConfig) -> anyhow::Result<Device> {
    let output = &config.output;
    config.check()?;
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    std::fs::write(output.join("config.toml"), config.to_toml())?;
    if config.threads > 0 {
        tch::set_num_threads(config.threads as i32);
    }
    let device = parse_device(&config.device)?;
    tch::manual_seed(config.seed as i64);
    Ok(device)
}

/// SGD as configured, leaving the backbone's variables alone with `freeze_backbone`.
fn optimizer(config: &TrainConfig) -> Sgd {
    let frozen: &[&str] = if config.freeze_backbone {
        &crate::model::BackboneKind::all_var_prefixes()
    } else {
        &[]
    };
    Sgd::new(config.momentum, config.weight_decay).freeze(frozen)
}

/// The network and position a run starts from: the last checkpoint of `config.output` (with the
/// optimizer state, into `sgd`) when resuming, else [`initial_network`] at iteration 0.
fn starting_point(
    config: &TrainConfig,
    resume: bool,
    device: Device,
    sgd: &mut Sgd,
) -> anyhow::Result<(RetinaFace, Position)> {
    if resume {
        return checkpoint::load(&config.output, device, sgd);
    }
    let start = Position {
        iteration: 0,
        epoch: 0,
        batch: 0,
    };
    Ok((initial_network(config, device)?, start))
}

/// Imported weights (BatchNorm folded): real BatchNorm statistics from (up to)
/// [`CALIBRATION_IMAGES`] training images first.
fn calibrate_imported(
    net: &mut RetinaFace,
    config: &TrainConfig,
    samples: &Arc<Vec<Sample>>,
    loader: &LoaderConfig,
    device: Device,
) -> anyhow::Result<()> {
    let contract = Arc::new(net.config.contract.clone());
    let per_epoch = batches_per_epoch(samples.len(), config.batch_size);
    let batches = CALIBRATION_IMAGES
        .div_ceil(config.batch_size)
        .min(per_epoch);
    let size = config.image_size as i64;
    let inputs = epoch_batches(samples.clone(), contract.clone(), loader, 0, 0)
        .take(batches)
        .filter(|b| b.batch_size > 0)
        .map(|b| DeviceBatch::images(&b, size, &contract, device));
    calibrate_batch_norm(net, inputs)
}

/// The loss of the run, with distillation from [`load_teacher`]'s model when `distill` is set.
fn criterion(config: &TrainConfig, net: &RetinaFace, device: Device) -> anyhow::Result<Criterion> {
    let criterion = Criterion::new(
        config.loss(),
        &net.config.contract.priors,
        config.image_size as usize,
        device,
    );
    Ok(match load_teacher(config, net, device)? {
        Some(teacher) => criterion.with_teacher(teacher, config.distill),
        None => criterion,
    })
}

/// With `distill`, the starting model loaded afresh and never updated: the teacher (`init` is
/// set: checked). BatchNorm statistics of imported models are exact as imported. Refused where
/// teacher and student outputs cannot be compared prior by prior.
fn load_teacher(
    config: &TrainConfig,
    net: &RetinaFace,
    device: Device,
) -> anyhow::Result<Option<RetinaFace>> {
    if config.distill <= 0.0 {
        return Ok(None);
    }
    let init = config.init.as_ref().context("distill needs init")?;
    let teacher = crate::onnx_io::load_any(init, device)?;
    if net.config.head == crate::model::HeadKind::Srn
        || teacher.config.head == crate::model::HeadKind::Srn
    {
        bail!(
            "distill does not support the srn head: its box offsets are relative to anchors \
             its first stage moves, so teacher and student offsets are not comparable prior \
             by prior (drop distill)"
        );
    }
    let priors = &net.config.contract.priors;
    if teacher.config.contract.priors != *priors {
        bail!(
            "distill: the student's priors (steps {:?}, min sizes {:?}) differ from the \
             teacher's {} (steps {:?}, min sizes {:?}); distillation compares them prior by \
             prior, so the pyramids must match (drop distill, or init_partial)",
            priors.steps,
            priors.min_sizes,
            init.display(),
            teacher.config.contract.priors.steps,
            teacher.config.contract.priors.min_sizes
        );
    }
    Ok(Some(teacher))
}

/// What a run writes as it goes: `metrics.csv` (its rows before the starting iteration kept),
/// the progress bar, and the rows for `loss.png`.
struct RunLog {
    metrics: csv::Writer<std::fs::File>,
    rows: Vec<MetricsRow>,
    bar: ProgressBar,
    /// When the previous step ended: images/s count the loading waits too.
    last_step: Instant,
}

impl RunLog {
    /// Opens the log of a run in `output` that starts at iteration `start` of `total`.
    fn open(output: &Path, start: usize, total: usize) -> anyhow::Result<Self> {
        let metrics_path = output.join("metrics.csv");
        let rows: Vec<MetricsRow> = read_metrics(&metrics_path)?
            .into_iter()
            .filter(|r| r.iteration < start)
            .collect();
        let metrics = metrics_writer(&metrics_path, &rows)?;
        let bar = ProgressBar::new(total as u64).with_position(start as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Ok(Self {
            metrics,
            rows,
            bar,
            last_step: Instant::now(),
        })
    }

    /// Writes the row of the step that just ended and shows it on the progress bar.
    fn record(&mut self, row: MetricsRow) -> anyhow::Result<()> {
        self.metrics.serialize(&row)?;
        self.metrics.flush()?;
        self.bar.set_message(format!(
            "loss {:.3} (box {:.3} cls {:.3} lmk {:.3}) {:.1} img/s",
            row.loss, row.loss_box, row.loss_class, row.loss_landmark, row.images_per_s
        ));
        self.bar.inc(1);
        self.rows.push(row);
        self.last_step = Instant::now();
        Ok(())
    }
}

/// The parts of a run that the training loop uses.
struct Run<'a> {
    config: &'a TrainConfig,
    net: RetinaFace,
    sgd: Sgd,
    criterion: Criterion,
    samples: Arc<Vec<Sample>>,
    contract: Arc<ModelContract>,
    loader: LoaderConfig,
    device: Device,
    per_epoch: usize,
}

impl Run<'_> {
    /// Trains from `start` to the last epoch, with a checkpoint at the end of each; returns the
    /// number of iterations done (those before `start` included).
    fn train_epochs(&mut self, start: Position, log: &mut RunLog) -> anyhow::Result<usize> {
        let mut iteration = start.iteration;
        log.last_step = Instant::now();
        for epoch in start.epoch..self.config.epochs {
            log.bar
                .set_prefix(format!("epoch {}/{}", epoch + 1, self.config.epochs));
            let first = if epoch == start.epoch { start.batch } else { 0 };
            iteration = self.train_epoch(epoch, first, iteration, log)?;
            let next = Position {
                iteration,
                epoch: epoch + 1,
                batch: 0,
            };
            checkpoint::save(&self.config.output, &self.net, &self.sgd, next)?;
        }
        Ok(iteration)
    }

    /// One epoch from its batch `first`, iterations counted on from `iteration`; returns the
    /// count after it. Checkpoints every `checkpoint_every` iterations within the epoch.
    fn train_epoch(
        &mut self,
        epoch: usize,
        first: usize,
        mut iteration: usize,
        log: &mut RunLog,
    ) -> anyhow::Result<usize> {
        let config = self.config;
        let batches = epoch_batches(
            self.samples.clone(),
            self.contract.clone(),
            &self.loader,
            epoch,
            first,
        );
        let size = config.image_size as i64;
        for input in on_device(batches, size, (*self.contract).clone(), self.device) {
            let lr = config.learning_rate(iteration, self.per_epoch);
            let train_batch_norm = !config.freeze_batch_norm;
            let loss = step(
                &self.net,
                &mut self.sgd,
                &input,
                lr,
                train_batch_norm,
                &self.criterion,
            );
            let elapsed = log.last_step.elapsed().as_secs_f64();
            log.record(metrics_row(iteration, epoch, lr, &loss, &input, elapsed)?)?;
            iteration += 1;
            let next = Position {
                iteration,
                epoch,
                batch: input.index + 1,
            };
            if config.checkpoint_every > 0
                && iteration.is_multiple_of(config.checkpoint_every)
                && next.batch < self.per_epoch
            {
                checkpoint::save(&config.output, &self.net, &self.sgd, next)?;
            }
        }
        Ok(iteration)
    }
}

/// The metrics of the step at `iteration` that took `elapsed` seconds since the previous one
/// (loading waits included); an error when its loss is not finite.
fn metrics_row(
    iteration: usize,
    epoch: usize,
    lr: f64,
    loss: &LossTerms,
    input: &DeviceBatch,
    elapsed: f64,
) -> anyhow::Result<MetricsRow> {
    let value = loss.total.double_value(&[]);
    if !value.is_finite() {
        bail!(
            "loss became {value} at iteration {iteration}; lower the learning rate (lr = {lr}) or check the labels"
        );
    }
    Ok(MetricsRow {
        iteration,
        epoch,
        lr,
        loss: value,
        loss_box: loss.boxes.double_value(&[]),
        loss_class: loss.classes.double_value(&[]),
        loss_landmark: loss.landmarks.double_value(&[]),
        images_per_s: input.images_count as f64 / elapsed,
        faces: input.faces,
        skipped_images: input.skipped,
    })
}

/// Ends the run: the final model, `loss.png`, and the summary.
fn finish(
    output: &Path,
    net: &RetinaFace,
    log: RunLog,
    iterations: usize,
) -> anyhow::Result<TrainSummary> {
    log.bar.finish();
    let model = output.join("model.safetensors");
    net.save(&model)?;
    write_loss_plot(&output.join("loss.png"), &log.rows)?;
    let _ = std::io::stderr().flush();
    Ok(TrainSummary {
        model,
        iterations,
        rows: log.rows,
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
