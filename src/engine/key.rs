//! What names a shareable engine.

use std::path::{Path, PathBuf};

use crate::runtime::SessionConfig;

/// What identifies a shareable engine: clients asking for equal keys share one session. The
/// session options are kept whole (provider, device, threads, TensorRT options…), so an option
/// added to [`SessionConfig`] separates engines without a change here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineKey {
    pub model: PathBuf,
    pub session: SessionConfig,
}

impl EngineKey {
    /// The key of `model` opened with `config`. The path is made absolute (symbolic links
    /// resolved) when the file exists, so `./m.onnx` and `/abs/m.onnx` share one engine.
    pub fn new(model: &Path, config: &SessionConfig) -> Self {
        Self {
            model: std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf()),
            session: config.clone(),
        }
    }
}
