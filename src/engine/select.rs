//! Which backend a key's session options ask for ([`SessionConfig::backend`]), opened.
//!
//! [`SessionConfig::backend`]: crate::runtime::SessionConfig::backend

use std::path::PathBuf;

use super::backend::{Backend, LoadError};
use super::key::EngineKey;
use super::ort::OrtBackend;
use crate::runtime::BackendKind;

/// Opens the backend of `key`: ONNX Runtime (searching `ort_dirs`, see
/// [`OrtBackend::open`]) or libtorch ([`TorchBackend::open`](super::TorchBackend), in builds
/// with the `torch` feature; without it the load fails and says how to get it).
pub fn open_backend(key: &EngineKey, ort_dirs: &[PathBuf]) -> Result<Box<dyn Backend>, LoadError> {
    match key.session.backend {
        BackendKind::OnnxRuntime => Ok(Box::new(OrtBackend::open(key, ort_dirs)?)),
        BackendKind::Torch => open_torch(key),
    }
}

#[cfg(feature = "torch")]
fn open_torch(key: &EngineKey) -> Result<Box<dyn Backend>, LoadError> {
    Ok(Box::new(super::torch::TorchBackend::open(key)?))
}

#[cfg(not(feature = "torch"))]
fn open_torch(_key: &EngineKey) -> Result<Box<dyn Backend>, LoadError> {
    Err(LoadError::Other(
        "this build has no libtorch backend: build the plugin with `cargo build --release -p \
         gst-plugin-retinaface --features torch` (needs libtorch 2.11, README \"GPU with \
         libtorch\"), or use backend=onnxruntime"
            .into(),
    ))
}
