//! Batches on the training device, and a thread that puts them there ahead of the step.
//!
//! Building a device batch is host work (wrapping ~40 MB in tensors, copying them to the GPU,
//! scattering the sparse targets): done on the training thread it would leave the GPU idle for
//! that long every step. [`on_device`] does it one batch ahead on a thread of its own, so the
//! training thread only launches the step.

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use retinaface::ModelContract;
use tch::{Device, Kind, Tensor};

use crate::data::Batch;
use crate::data::augment::{PHOTOMETRIC_ROW, normalise_on_device, photometric_on_device};

/// One batch on the training device, with what the metrics need to know about it.
pub struct DeviceBatch {
    /// `[N, 3, S, S]` normalised images.
    pub images: Tensor,
    /// `[N, P, 4]` box targets (zero for background priors).
    pub loc: Tensor,
    /// `[N, P, 10]` landmark targets.
    pub landmarks: Tensor,
    /// `[N, P]` int64 labels.
    pub labels: Tensor,
    /// Images in the batch (`N`).
    pub images_count: usize,
    /// Position of the batch in its epoch.
    pub index: usize,
    /// Faces in the batch after augmentation.
    pub faces: usize,
    /// Images of the batch that could not be read.
    pub skipped: usize,
}

impl DeviceBatch {
    /// Copies `batch` (images `size`×`size`) to `device`, normalising the images there.
    pub fn new(batch: &Batch, size: i64, contract: &ModelContract, device: Device) -> Self {
        let (n, p) = (batch.batch_size as i64, batch.priors as i64);
        let positives = Tensor::from_slice(&batch.positives).to_device(device);
        // Zero everywhere, the positives' targets scattered in: the dense tensors the loss reads.
        let dense = |values: &[f32], k: i64| {
            let rows = Tensor::from_slice(values)
                .view([batch.positives.len() as i64, k])
                .to_device(device);
            Tensor::zeros([n * p, k], (Kind::Float, device))
                .index_put_(&[Some(&positives)], &rows, false)
                .view([n, p, k])
        };
        Self {
            images: Self::images(batch, size, contract, device),
            loc: dense(&batch.loc, 4),
            landmarks: dense(&batch.landmarks, 10),
            labels: Tensor::from_slice(&batch.labels)
                .to_device(device)
                .to_kind(Kind::Int64)
                .view([n, p]),
            images_count: batch.batch_size,
            index: batch.index,
            faces: batch.faces,
            skipped: batch.skipped,
        }
    }

    /// Only the images of `batch`, as `[N, 3, S, S]` normalised on `device` (what BatchNorm
    /// calibration needs).
    pub fn images(batch: &Batch, size: i64, contract: &ModelContract, device: Device) -> Tensor {
        let mut images = Tensor::from_slice(&batch.images)
            .view([batch.batch_size as i64, 3, size, size])
            .to_device(device);
        if !batch.photometric.is_empty() {
            let rows = Tensor::from_slice(&batch.photometric)
                .view([batch.batch_size as i64, PHOTOMETRIC_ROW as i64])
                .to_device(device);
            images = photometric_on_device(&images, &rows, contract.color_order);
        }
        normalise_on_device(&images, contract)
    }
}

/// `batches` turned into [`DeviceBatch`]es one ahead of the consumer, on a thread of its own.
/// Empty batches (every image unreadable; the loader has warned) are left out. Dropping the
/// iterator stops the thread and the loader behind it.
pub fn on_device<I>(batches: I, size: i64, contract: ModelContract, device: Device) -> OnDevice
where
    I: Iterator<Item = Batch> + Send + 'static,
{
    // Capacity 1: one batch waits on the device while the step runs on the previous one; more
    // would only hold more device memory.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name("batch-upload".into())
        .spawn(move || {
            for batch in batches.filter(|b| b.batch_size > 0) {
                if tx
                    .send(DeviceBatch::new(&batch, size, &contract, device))
                    .is_err()
                {
                    return; // the consumer is gone
                }
            }
        })
        .expect("cannot start the batch upload thread");
    OnDevice {
        rx: Some(rx),
        thread: Some(thread),
    }
}

/// Iterator returned by [`on_device`].
pub struct OnDevice {
    rx: Option<Receiver<DeviceBatch>>,
    thread: Option<JoinHandle<()>>,
}

impl Iterator for OnDevice {
    type Item = DeviceBatch;

    fn next(&mut self) -> Option<DeviceBatch> {
        match self.rx.as_ref()?.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                // The thread ended: propagate a panic (e.g. a loader worker's) to the caller.
                self.rx = None;
                if let Some(Err(panic)) = self.thread.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }
}

impl Drop for OnDevice {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail; it then drops the loader.
        self.rx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Batch;

    fn batch(index: usize) -> Batch {
        // Two images of 2×2 pixels, 3 priors each; priors 1 (image 0) and 5 (image 1) are faces.
        Batch {
            index,
            images: (0..24).collect(),
            priors: 3,
            labels: vec![0, 1, 0, 0, 0, -1],
            positives: vec![1, 5],
            loc: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            landmarks: (0..20).map(|v| v as f32).collect(),
            batch_size: 2,
            skipped: 0,
            faces: 2,
            photometric: Vec::new(),
        }
    }

    #[test]
    fn sparse_targets_become_the_dense_ones() {
        let b = batch(0);
        let on = DeviceBatch::new(&b, 2, &ModelContract::default(), Device::Cpu);
        let (loc, landmarks) = b.dense_targets();
        assert_eq!(on.loc.size(), [2, 3, 4]);
        assert_eq!(Vec::<f32>::try_from(on.loc.flatten(0, -1)).unwrap(), loc);
        assert_eq!(
            Vec::<f32>::try_from(on.landmarks.flatten(0, -1)).unwrap(),
            landmarks
        );
        // Prior 1 of image 0 has the first box, prior 2 of image 1 the second.
        assert_eq!(loc[4..8], [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(loc[20..24], [5.0, 6.0, 7.0, 8.0]);
        assert_eq!(
            Vec::<i64>::try_from(on.labels.flatten(0, -1)).unwrap(),
            vec![0, 1, 0, 0, 0, -1]
        );
        assert_eq!(on.images.size(), [2, 3, 2, 2]);
    }

    #[test]
    fn upload_thread_keeps_order_and_leaves_out_empty_batches() {
        let mut empty = batch(1);
        empty.batch_size = 0;
        empty.skipped = 2;
        let batches = vec![batch(0), empty, batch(2)];
        let seen: Vec<usize> = on_device(
            batches.into_iter(),
            2,
            ModelContract::default(),
            Device::Cpu,
        )
        .map(|b| b.index)
        .collect();
        assert_eq!(seen, [0, 2]);
    }

    #[test]
    fn dropping_early_stops_the_thread() {
        let endless = (0..).map(batch);
        let mut on = on_device(endless, 2, ModelContract::default(), Device::Cpu);
        assert_eq!(on.next().map(|b| b.index), Some(0));
        // Dropping joins the upload thread, so it returns only if that thread stops: drop on a
        // thread of its own and give it a deadline, so a regression fails instead of hanging.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(on);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the upload thread did not stop within 30 s of the iterator's drop");
    }

    #[test]
    #[should_panic(expected = "loader failed")]
    fn a_panic_behind_the_thread_reaches_the_consumer() {
        let failing = (0..).map(|i| {
            if i < 1 {
                batch(i)
            } else {
                panic!("loader failed")
            }
        });
        let _: Vec<DeviceBatch> =
            on_device(failing, 2, ModelContract::default(), Device::Cpu).collect();
    }
}
