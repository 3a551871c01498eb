//! Why a request or a load failed.

use std::path::PathBuf;
use std::time::Duration;

use super::backend::LoadError;

/// Why a request or a load failed. Cloned to every request of a failed batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("model '{}' could not be loaded: {source}", .path.display())]
    Load { path: PathBuf, source: LoadError },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("a request gives {got} input tensor(s) to a model of {expected} input(s)")]
    InputCount { expected: usize, got: usize },
    #[error(
        "input {index} of shape {shape:?} holds {len} values, not the product of its (non-zero) dimensions"
    )]
    BadInput {
        index: usize,
        shape: Vec<usize>,
        len: usize,
    },
    /// A [`Pixels`](super::Pixels) request the engine cannot take: its backend takes f32
    /// tensors only, or the pixels are not what they say.
    #[error("pixel request refused: {0}")]
    BadPixels(String),
    #[error("no result within {0:?}")]
    Timeout(Duration),
    #[error("the engine stopped before answering (its last client went away)")]
    Stopped,
}
