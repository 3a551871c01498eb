//! What an engine runs ([`Backend`]), what a backend says about its model ([`ModelInfo`]), the
//! tensors that go in and come out ([`Tensor`]), and how a backend is made for a key
//! ([`Loader`], failing with a [`LoadError`]).

use std::collections::HashMap;
use std::fmt;

use super::key::EngineKey;
use crate::runtime::RuntimeError;

/// One f32 tensor of one request: its shape **without** the batch dimension (the engine puts
/// requests side by side along it) and its values, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A zeroed tensor of `shape`.
    pub fn new(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; len],
        }
    }

    /// Whether `data` holds exactly the values `shape` calls for, and `shape` is not empty of
    /// values (a zero dimension is a caller's mistake, not an input).
    pub fn is_consistent(&self) -> bool {
        let len = self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        !self.shape.contains(&0) && len == Some(self.data.len())
    }
}

/// Whether two requests' inputs have equal shapes, so that they may share a model run.
pub(super) fn same_shapes(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.shape == y.shape)
}

/// Checks a batch before a backend runs it: every request of `batch` gives `inputs` tensors, of
/// the same shapes as the other requests'. `Ok(false)`: the batch is empty (nothing to run).
pub(super) fn check_batch(batch: &[&[Tensor]], inputs: usize) -> Result<bool, String> {
    let Some(first) = batch.first() else {
        return Ok(false);
    };
    if batch.iter().any(|r| !same_shapes(r, first)) {
        return Err("inputs of one batch differ in shape".into());
    }
    if first.len() != inputs {
        return Err(format!(
            "{} input tensor(s) for a model of {inputs} input(s)",
            first.len()
        ));
    }
    Ok(true)
}

/// Shape and element type of one model tensor as the backend reports it (`-1` = dynamic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub is_f32: bool,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| {
                if *d < 0 {
                    "?".to_string()
                } else {
                    d.to_string()
                }
            })
            .collect();
        let ty = if self.is_f32 {
            "float32"
        } else {
            "non-float32"
        };
        write!(f, "'{}' [{}] {ty}", self.name, dims.join(","))
    }
}

/// What a loaded model looks like from outside: enough for a client to check that it is the
/// kind of model it runs and to find its outputs by name. Every answer carries the
/// `ModelInfo` of the engine that produced it, so outputs are read by the model that made them
/// also across a live swap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// The model's inputs, in the order a request gives its tensors.
    pub inputs: Vec<TensorInfo>,
    /// The model's outputs, in the order an answer gives its tensors.
    pub outputs: Vec<TensorInfo>,
    /// The model's own key/value properties (ONNX `metadata_props`): where a model describes
    /// itself (e.g. RetinaFace's `retinaface.*` keys).
    pub metadata: HashMap<String, String>,
}

impl ModelInfo {
    /// Position of the output named `name` in an answer.
    pub fn output(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }
}

/// What an engine runs. Implementations need not be thread-safe: one worker thread owns it.
pub trait Backend: Send {
    /// Runs `batch` — the requests' inputs, one tensor per model input each, all requests of
    /// equal shapes — as one batch; one answer per request, in order, each one tensor per model
    /// output (in [`ModelInfo::outputs`] order).
    fn run(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String>;
    /// Most requests one [`Backend::run`] takes (1 for a model with a fixed batch dimension).
    fn max_batch(&self) -> usize;
    /// The model's inputs, outputs and metadata.
    fn model(&self) -> &ModelInfo;
    /// Non-fatal problems met while loading (e.g. a GPU provider fallback).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Makes the backend for a key. A client passes its own: it opens the model (e.g.
/// [`OrtBackend::open`](super::OrtBackend::open)) and may refuse one that is not the kind of
/// model it runs ([`LoadError::Unfit`]), so that such a file fails its load (and a swap to it
/// leaves the client on its old model) instead of failing at the first frame.
pub type Loader = dyn Fn(&EngineKey) -> Result<Box<dyn Backend>, LoadError> + Send + Sync;

/// Why a model could not be loaded. [`EngineError::Load`](super::EngineError::Load) shows it
/// after the model's path; a client gets it back typed to tell its user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// No runtime library, no such file, not a model, the runtime refused it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model loaded but is not what its client runs: its inputs, outputs or metadata do not
    /// fit `contract`, the client's name for the kind of model (e.g. "RetinaFace").
    #[error("it does not fit the {contract} contract: {reason}")]
    Unfit {
        contract: &'static str,
        reason: String,
    },
    /// Anything else (the loader panicked, no thread to load on…), as text.
    #[error("{0}")]
    Other(String),
}
