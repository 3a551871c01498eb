//! WIDER FACE data: label files, augmentation and the batch loader.
