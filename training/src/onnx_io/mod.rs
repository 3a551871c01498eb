//! Reading and writing RetinaFace ONNX models through the prost types in [`crate::onnx`], and
//! [`load_any`]: a model from either file form the trainer reads.

pub mod export;
pub mod import;
pub mod metadata;
pub mod proto;
pub mod rebatch;

use std::path::Path;

use tch::Device;

use crate::model::RetinaFace;
pub use proto::{read_model, tensor_f32};

/// A model as it is, whatever its form: a `.onnx` export (imported, [`import::import_onnx`]) or a
/// `.safetensors` checkpoint of this trainer with its `.json` beside it ([`RetinaFace::load`]).
pub fn load_any(path: &Path, device: Device) -> anyhow::Result<RetinaFace> {
    if path.extension().is_some_and(|e| e == "onnx") {
        import::import_onnx(path, device)
    } else {
        RetinaFace::load(path, device)
    }
}
