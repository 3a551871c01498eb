//! WIDER FACE data: label files, augmentation, the per-prior training targets and the batch
//! loader.

pub mod augment;
pub mod labels;
pub mod loader;
pub mod targets;

pub use augment::{Augmented, augment, to_network_input};
pub use labels::{FaceAnnotation, LabelSet, Sample, read_label_file, write_label_file};
pub use loader::{Batch, EpochBatches, LoaderConfig, batches_per_epoch, epoch_batches};
