//! `retinaface-train bench`: training throughput, split into its parts so a bottleneck shows: the
//! data loader alone (decode + augment + match on the worker threads), the training step alone
//! (one batch kept on the device), and both together as `train` runs them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::train::TrainArgs;
use crate::config::{TrainConfig, parse_device};
use crate::data::{Batch, LoaderConfig, epoch_batches};
use crate::device_batch::{DeviceBatch, on_device};
use crate::loss::Criterion;
use crate::sgd::Sgd;
use crate::train::{initial_network, load_samples, step};

/// `bench` takes the flags of `train`, and how long to measure.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Timed batches per measurement (after 3 warm-up batches)
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
}

/// Runs `bench`: prints the [`BenchReport`] as JSON.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = benchmark(&args.train.into_config()?, args.batches)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Images per second of each part (images over wall time of the timed batches).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub batch_size: usize,
    pub image_size: u32,
    pub workers: usize,
    pub batches: usize,
    pub loader_images_per_s: f64,
    pub step_images_per_s: f64,
    pub train_images_per_s: f64,
}

/// An endless stream of batches (epoch after epoch).
fn batches(
    samples: Arc<Vec<crate::data::Sample>>,
    contract: Arc<retinaface::ModelContract>,
    loader: LoaderConfig,
) -> impl Iterator<Item = Batch> + Send + 'static {
    (0..)
        .flat_map(move |epoch| epoch_batches(samples.clone(), contract.clone(), &loader, epoch, 0))
        .filter(|b| b.batch_size > 0)
}

/// Runs `batches` timed batches of each kind after a short warm-up.
pub fn benchmark(config: &TrainConfig, timed: usize) -> anyhow::Result<BenchReport> {
    if timed == 0 {
        bail!("--batches must be at least 1");
    }
    config.check()?;
    if config.threads > 0 {
        tch::set_num_threads(config.threads as i32);
    }
    let device = parse_device(&config.device)?;
    let samples = load_samples(config)?;
    let net = initial_network(config, device)?;
    let contract = Arc::new(net.config.contract.clone());
    let loader = config.loader(device);
    let size = config.image_size as i64;
    let warmup = 3;
    let per_s = |images: usize, started: Instant| images as f64 / started.elapsed().as_secs_f64();

    // Loader alone: total throughput after a warm-up long enough to drain what the workers
    // prepared in advance (every rate below is images over wall time, not a per-batch median,
    // which prefetching would flatter).
    let mut stream = batches(samples.clone(), contract.clone(), loader.clone());
    let first = stream.next().expect("endless");
    for _ in 0..config.workers + 2 {
        stream.next();
    }
    let started = Instant::now();
    let images: usize = stream.by_ref().take(timed).map(|b| b.batch_size).sum();
    let loader_rate = per_s(images, started);
    drop(stream);

    // Step alone: one batch kept on the device.
    let mut sgd = Sgd::new(config.momentum, config.weight_decay);
    let criterion = Criterion::new(config.loss(), &contract.priors, size as usize, device);
    let input = DeviceBatch::new(&first, size, &contract, device);
    let mut run_steps = |count: usize| {
        for _ in 0..count {
            let loss = step(&net, &mut sgd, &input, config.lr, true, &criterion);
            let _ = loss.total.double_value(&[]);
        }
    };
    run_steps(warmup);
    let started = Instant::now();
    run_steps(timed);
    let step_rate = per_s(timed * input.images_count, started);

    // Both, as in `train`: batches uploaded one ahead, the loss read every step for the metrics.
    let stream = batches(samples, contract.clone(), loader);
    let mut stream = on_device(stream, size, (*contract).clone(), device);
    let mut train_steps = |count: usize| {
        let mut images = 0;
        for input in stream.by_ref().take(count) {
            let loss = step(&net, &mut sgd, &input, config.lr, true, &criterion);
            let _ = loss.total.double_value(&[]);
            images += input.images_count;
        }
        images
    };
    train_steps(config.workers + 2);
    let started = Instant::now();
    let images = train_steps(timed);
    let train_rate = per_s(images, started);
    Ok(BenchReport {
        device: format!("{device:?}"),
        batch_size: config.batch_size,
        image_size: config.image_size,
        workers: config.workers,
        batches: timed,
        loader_images_per_s: loader_rate,
        step_images_per_s: step_rate,
        train_images_per_s: train_rate,
    })
}
