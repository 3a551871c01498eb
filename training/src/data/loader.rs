//! Multi-threaded batch loader: worker threads decode, augment and match whole batches ahead of
//! the training loop, so the GPU does not wait for JPEG decoding.
//!
//! Everything random is derived from `(seed, epoch)` for the sample order and from
//! `(seed, epoch, sample)` for each sample's augmentation, never from which thread did the work
//! or when. A batch is therefore the same bytes with 1 worker or 16, and an epoch can be resumed
//! at any batch (`--resume`) with exactly the batches the interrupted run would have seen.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use retinaface::ModelContract;
use retinaface::priors::{self, Prior};

use super::augment::{append_planar, augment_deferring};
use super::labels::Sample;
use super::targets::match_priors;

/// One training batch, flat and ready for `Tensor::from_slice(..).view(..)`.
///
/// Regression targets travel only for the face priors (a few hundred of the batch's 16,800 ×
/// `batch_size`): every other prior's target is zero and the loss never reads it, so sending them
/// dense would triple the bytes each batch copies to the training device for nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Position of the batch in its epoch (0-based).
    pub index: usize,
    /// `batch_size × 3 × S × S` images, u8 planes in the network's channel order (normalised on
    /// the training device: a quarter of the bytes to copy there).
    pub images: Vec<u8>,
    /// Priors per image (`P`).
    pub priors: usize,
    /// `batch_size × P` labels (0 background, 1 face, −1 face without landmarks).
    pub labels: Vec<i8>,
    /// Flat indices (`image × P + prior`) of the priors with a non-zero label, ascending.
    pub positives: Vec<i64>,
    /// `positives × 4` box targets.
    pub loc: Vec<f32>,
    /// `positives × 10` landmark targets (zero for faces without landmarks).
    pub landmarks: Vec<f32>,
    /// Images actually in the batch; smaller than configured for the last batch of an epoch or
    /// when images were skipped, and 0 when every image of the batch was unreadable.
    pub batch_size: usize,
    /// Images of this batch that could not be read or decoded (a warning went to stderr).
    pub skipped: usize,
    /// Faces in the batch after augmentation (positives need not be this many).
    pub faces: usize,
    /// `batch_size × 5` photometric distortions left for the training device
    /// ([`super::augment::Photometric::row`]); empty when the workers applied them.
    pub photometric: Vec<f32>,
}

#[cfg(test)]
impl Batch {
    /// Box and landmark targets for every prior of the batch (`batch_size × P × 4` and
    /// `× 10`), zero where the prior is background.
    pub fn dense_targets(&self) -> (Vec<f32>, Vec<f32>) {
        let mut loc = vec![0.0; self.labels.len() * 4];
        let mut landmarks = vec![0.0; self.labels.len() * 10];
        for (i, &p) in self.positives.iter().enumerate() {
            let p = p as usize;
            loc[p * 4..p * 4 + 4].copy_from_slice(&self.loc[i * 4..i * 4 + 4]);
            landmarks[p * 10..p * 10 + 10].copy_from_slice(&self.landmarks[i * 10..i * 10 + 10]);
        }
        (loc, landmarks)
    }
}

/// How batches are made.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Side of the square network input.
    pub image_size: u32,
    /// Worker threads (at least one is used).
    pub workers: usize,
    /// Base of all randomness: sample order and augmentation.
    pub seed: u64,
    /// Priors overlapping a face less than this are background.
    pub iou_threshold: f32,
    /// Finished batches that may wait for the consumer beyond one per worker; bounds memory.
    pub prefetch: usize,
    /// Leave the photometric distortion to the training device (same draws, see
    /// [`super::augment::photometric_on_device`]).
    pub photometric_on_device: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            image_size: 640,
            workers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            seed: 0,
            iou_threshold: 0.35,
            prefetch: 4,
            photometric_on_device: false,
        }
    }
}

/// Batches in an epoch of `samples` samples, the last partial batch included.
pub fn batches_per_epoch(samples: usize, batch_size: usize) -> usize {
    if batch_size == 0 {
        0
    } else {
        samples.div_ceil(batch_size)
    }
}

/// Distinguishes the RNG streams drawn from the same seed.
const SHUFFLE_STREAM: u64 = 0x5348_5546; // "SHUF"
const AUGMENT_STREAM: u64 = 0x4155_474d; // "AUGM"

/// A ChaCha RNG keyed by all four numbers: different keys give independent streams.
fn keyed_rng(seed: u64, stream: u64, epoch: u64, sample: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key.chunks_exact_mut(8).zip([seed, stream, epoch, sample]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// The order in which epoch `epoch` visits samples `0..samples`.
pub fn epoch_order(samples: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..samples).collect();
    order.shuffle(&mut keyed_rng(seed, SHUFFLE_STREAM, epoch as u64, 0));
    order
}

/// The augmentation RNG of sample `sample` (its index in the sample list) in epoch `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, sample: usize) -> ChaCha8Rng {
    keyed_rng(seed, AUGMENT_STREAM, epoch as u64, sample as u64)
}

/// Batches `start_batch..` of epoch `epoch`, in order. Dropping the iterator stops and joins the
/// workers.
pub fn epoch_batches(
    samples: Arc<Vec<Sample>>,
    contract: Arc<ModelContract>,
    config: &LoaderConfig,
    epoch: usize,
    start_batch: usize,
) -> EpochBatches {
    let size = config.image_size as usize;
    let end = batches_per_epoch(samples.len(), config.batch_size);
    let start = start_batch.min(end);
    let work = Arc::new(Work {
        order: epoch_order(samples.len(), config.seed, epoch),
        priors: priors::generate(&contract.priors, size, size),
        samples,
        contract,
        config: config.clone(),
        epoch,
        stop: AtomicBool::new(false),
    });
    let workers = config.workers.max(1).min((end - start).max(1));
    // At most `window` batches are requested and not yet handed out: that bounds memory, and the
    // result channel never fills, so a worker never blocks on it.
    let window = workers + config.prefetch;
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<usize>();
    let (result_tx, result_rx) = crossbeam_channel::bounded(window);
    let handles = (0..workers)
        .map(|i| {
            let (work, jobs, results) = (work.clone(), job_rx.clone(), result_tx.clone());
            std::thread::Builder::new()
                .name(format!("batch-loader-{i}"))
                .spawn(move || worker_loop(&work, &jobs, &results))
                .expect("cannot start a batch loader thread")
        })
        .collect();
    let mut batches = EpochBatches {
        next: start,
        requested: start,
        end,
        window,
        jobs: Some(job_tx),
        results: Some(result_rx),
        ready: BTreeMap::new(),
        work,
        workers: handles,
    };
    while batches.requested < end && batches.requested < start + window {
        batches.request_next();
    }
    batches
}

/// What the workers share.
struct Work {
    samples: Arc<Vec<Sample>>,
    contract: Arc<ModelContract>,
    config: LoaderConfig,
    epoch: usize,
    order: Vec<usize>,
    priors: Vec<Prior>,
    /// Set when the consumer goes away, so workers abandon the batch they are building.
    stop: AtomicBool,
}

/// A worker's result: a batch, or the message of a panic while building it.
type BatchResult = Result<Batch, String>;

fn worker_loop(work: &Work, jobs: &Receiver<usize>, results: &Sender<BatchResult>) {
    while let Ok(index) = jobs.recv() {
        if work.stop.load(Ordering::Relaxed) {
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(|| build_batch(work, index))).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into())
        });
        if results.send(result).is_err() {
            return;
        }
    }
}

/// Decodes, augments and matches the samples of batch `index`.
fn build_batch(work: &Work, index: usize) -> Batch {
    let config = &work.config;
    let size = config.image_size;
    let first = index * config.batch_size;
    let positions = first..(first + config.batch_size).min(work.order.len());
    let priors = work.priors.len();
    let mut batch = Batch {
        index,
        images: Vec::new(),
        priors,
        labels: Vec::new(),
        positives: Vec::new(),
        loc: Vec::new(),
        landmarks: Vec::new(),
        batch_size: 0,
        skipped: 0,
        faces: 0,
        photometric: Vec::new(),
    };
    for position in positions {
        if work.stop.load(Ordering::Relaxed) {
            break;
        }
        let sample_index = work.order[position];
        let sample = &work.samples[sample_index];
        let image = match load_rgb(&sample.image) {
            Ok(image) => image,
            Err(e) => {
                eprintln!("warning: skipping training image: {e:#}");
                batch.skipped += 1;
                continue;
            }
        };
        let mut rng = sample_rng(config.seed, work.epoch, sample_index);
        let augmented = augment_deferring(
            &image,
            &sample.faces,
            size,
            &work.contract,
            &mut rng,
            config.photometric_on_device,
        );
        if let Some(p) = &augmented.photometric {
            batch.photometric.extend(p.row());
        }
        let targets = match_priors(
            &augmented.faces,
            &work.priors,
            work.contract.priors.variances,
            config.iou_threshold,
        );
        append_planar(
            &augmented.image,
            work.contract.color_order,
            &mut batch.images,
        );
        let offset = batch.batch_size * priors;
        for (p, _) in targets.labels.iter().enumerate().filter(|(_, l)| **l != 0) {
            batch.positives.push((offset + p) as i64);
            batch.loc.extend_from_slice(&targets.loc[p * 4..p * 4 + 4]);
            batch
                .landmarks
                .extend_from_slice(&targets.landmarks[p * 10..p * 10 + 10]);
        }
        batch.labels.extend_from_slice(&targets.labels);
        batch.faces += augmented.faces.len();
        batch.batch_size += 1;
    }
    batch
}

/// Reads and decodes an image by its content (a mislabelled extension does not matter).
fn load_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    let image = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| format!("cannot decode {}", path.display()))?;
    Ok(image.to_rgb8())
}

/// Iterator over the batches of one epoch, in index order; see [`epoch_batches`].
pub struct EpochBatches {
    /// Next batch to hand out.
    next: usize,
    /// Next batch to ask the workers for.
    requested: usize,
    /// One past the last batch of the epoch.
    end: usize,
    window: usize,
    /// `None` once every batch is requested, so idle workers exit.
    jobs: Option<Sender<usize>>,
    results: Option<Receiver<BatchResult>>,
    /// Batches finished ahead of `next`.
    ready: BTreeMap<usize, Batch>,
    work: Arc<Work>,
    workers: Vec<JoinHandle<()>>,
}

impl EpochBatches {
    fn request_next(&mut self) {
        if let Some(jobs) = &self.jobs {
            // Workers only stop listening when this iterator is dropped.
            let _ = jobs.send(self.requested);
        }
        self.requested += 1;
        if self.requested >= self.end {
            self.jobs = None;
        }
    }
}

impl Iterator for EpochBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        let results = self.results.as_ref().expect("receiver lives until drop");
        let batch = loop {
            if let Some(batch) = self.ready.remove(&self.next) {
                break batch;
            }
            match results.recv() {
                Ok(Ok(batch)) => {
                    self.ready.insert(batch.index, batch);
                }
                Ok(Err(panic)) => panic!("batch loader worker panicked: {panic}"),
                Err(_) => panic!("batch loader workers exited before batch {}", self.next),
            }
        };
        self.next += 1;
        if self.requested < self.end && self.requested < self.next + self.window {
            self.request_next();
        }
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches {}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        self.work.stop.store(true, Ordering::Relaxed);
        // Closing both channels wakes workers blocked on either side.
        self.jobs = None;
        self.results = None;
        for handle in self.workers.drain(..) {
            // A worker that panicked has already reported it through its result.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::FaceAnnotation;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    const MEDIA: &str = "/usr/local/share/retinaface/media";

    fn sample(name: &str) -> Sample {
        Sample {
            image: PathBuf::from(MEDIA).join(name),
            faces: vec![
                FaceAnnotation {
                    bbox: [600.0, 300.0, 900.0, 700.0],
                    landmarks: Some([
                        [680.0, 450.0],
                        [820.0, 450.0],
                        [750.0, 520.0],
                        [690.0, 600.0],
                        [810.0, 600.0],
                    ]),
                },
                FaceAnnotation {
                    bbox: [100.0, 100.0, 180.0, 200.0],
                    landmarks: None,
                },
            ],
        }
    }

    fn dataset() -> Arc<Vec<Sample>> {
        Arc::new(
            [
                "sample1.jpg",
                "sample2.jpg",
                "test.jpg",
                "test4.jpg",
                "sample3.jpg",
            ]
            .map(sample)
            .into(),
        )
    }

    fn config(workers: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: 2,
            image_size: 96,
            workers,
            seed: 42,
            iou_threshold: 0.35,
            prefetch: 1,
            photometric_on_device: false,
        }
    }

    fn run(workers: usize, epoch: usize, start: usize) -> Vec<Batch> {
        let contract = Arc::new(ModelContract::default());
        epoch_batches(dataset(), contract, &config(workers), epoch, start).collect()
    }

    #[test]
    fn batch_count_includes_the_last_partial_batch() {
        assert_eq!(batches_per_epoch(5, 2), 3);
        assert_eq!(batches_per_epoch(4, 2), 2);
        assert_eq!(batches_per_epoch(0, 2), 0);
        assert_eq!(batches_per_epoch(3, 0), 0);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 7, 3);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 7, 3));
        assert_ne!(a, epoch_order(100, 7, 4), "epochs differ");
        assert_ne!(a, epoch_order(100, 8, 3), "seeds differ");
    }

    #[test]
    fn same_seed_same_batches_whatever_the_worker_count() {
        let one = run(1, 0, 0);
        let three = run(3, 0, 0);
        assert_eq!(one.len(), 3);
        assert_eq!(
            one.iter().map(|b| b.batch_size).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let priors = priors::count(&Default::default(), 96, 96);
        for (i, b) in one.iter().enumerate() {
            assert_eq!(b.index, i);
            assert_eq!(b.images.len(), b.batch_size * 3 * 96 * 96);
            assert_eq!(b.labels.len(), b.batch_size * priors);
            let faces = b.labels.iter().filter(|l| **l != 0).count();
            assert_eq!(b.positives.len(), faces);
            assert_eq!((b.loc.len(), b.landmarks.len()), (faces * 4, faces * 10));
            // Dense again: full size, positives strictly ascending and labelled, not all zero.
            let (loc, landmarks) = b.dense_targets();
            assert_eq!(
                (loc.len(), landmarks.len()),
                (b.labels.len() * 4, b.labels.len() * 10)
            );
            assert!(b.positives.windows(2).all(|w| w[0] < w[1]));
            for &p in &b.positives {
                assert_ne!(b.labels[p as usize], 0);
            }
            assert!(loc.iter().any(|v| *v != 0.0));
            assert_eq!(b.skipped, 0);
        }
        assert!(one.iter().map(|b| b.faces).sum::<usize>() > 0);
        assert!(one.iter().flat_map(|b| &b.labels).any(|l| *l != 0));
        assert!(one == three, "batches differ between 1 and 3 workers");
        // A different epoch reshuffles and re-augments.
        assert!(run(3, 1, 0) != one);
    }

    #[test]
    fn starting_at_batch_k_matches_the_full_run() {
        let full = run(2, 5, 0);
        let resumed = run(2, 5, 1);
        assert_eq!(resumed.len(), 2);
        assert!(resumed[..] == full[1..]);
        assert_eq!(
            run(2, 5, 3).len(),
            0,
            "starting past the end yields nothing"
        );
    }

    #[test]
    fn missing_image_is_skipped_and_counted() {
        let mut samples = (*dataset()).clone();
        samples.truncate(2);
        samples.push(Sample {
            image: PathBuf::from("/nonexistent/missing.jpg"),
            faces: vec![],
        });
        let cfg = LoaderConfig {
            batch_size: 3,
            ..config(2)
        };
        let contract = Arc::new(ModelContract::default());
        let batches: Vec<Batch> = epoch_batches(Arc::new(samples), contract, &cfg, 0, 0).collect();
        assert_eq!(batches.len(), 1);
        assert_eq!((batches[0].batch_size, batches[0].skipped), (2, 1));
        assert_eq!(batches[0].images.len(), 2 * 3 * 96 * 96);
    }

    #[test]
    fn corrupt_image_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("corrupt.jpg");
        std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let samples = Arc::new(vec![Sample {
            image: bad,
            faces: vec![],
        }]);
        let contract = Arc::new(ModelContract::default());
        let batches: Vec<Batch> = epoch_batches(samples, contract, &config(1), 0, 0).collect();
        assert_eq!((batches[0].batch_size, batches[0].skipped), (0, 1));
        assert!(batches[0].images.is_empty());
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let many: Vec<Sample> = (0..40).map(|i| dataset()[i % 5].clone()).collect();
        let contract = Arc::new(ModelContract::default());
        let cfg = LoaderConfig {
            batch_size: 1,
            ..config(3)
        };
        let t0 = Instant::now();
        let mut batches = epoch_batches(Arc::new(many), contract, &cfg, 0, 0);
        assert_eq!(batches.len(), 40);
        assert_eq!(batches.next().unwrap().index, 0);
        drop(batches); // joins the workers: returns only if they exit
        assert!(t0.elapsed() < Duration::from_secs(60));
    }
}
