//! WIDER FACE data: label files, augmentation and the batch loader.

pub mod augment;
pub mod labels;
pub mod loader;

pub use augment::{Augmented, augment, to_network_input};
pub use labels::{FaceAnnotation, LabelSet, Sample, read_label_file, write_label_file};
pub use loader::{Batch, EpochBatches, LoaderConfig, batches_per_epoch, epoch_batches};
