//! What an engine runs ([`Backend`]), what a backend says about its model ([`ModelInfo`]), the
//! tensors that go in and come out ([`Tensor`]), the other kind of request a backend may take
//! ([`Pixels`]: an image as bytes, which the backend scales and normalises on its device; a
//! request is [`Inputs`], one kind or the other), and how a backend is made for a key
//! ([`Loader`], failing with a [`LoadError`]).

use std::collections::HashMap;
use std::fmt;

use super::key::EngineKey;
use crate::preprocess::{InputGeometry, Normalisation, ScaleFilter};
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

/// One request's image as 8-bit pixels at its source resolution, for a model of one image
/// input whose backend makes the input itself ([`Backend::takes_pixels`]): it uploads the bytes,
/// scales them to [`Pixels::geometry`] with [`Pixels::filter`], pads and normalises on its
/// device, so the client's CPU only copies the crop (a 1080p frame: a copy, not a resize).
///
/// A kind of request beside [`Tensor`] rather than a variant inside it: the f32 tensor is the
/// contract of every model and backend (ONNX Runtime, the embedding model, the tests) and stays
/// exactly as it was; only a backend that says it takes pixels ever sees these, and only a
/// client that asks the engine ([`Engine::takes_pixels`](super::Engine::takes_pixels)) sends
/// them. What the pixels become is described with the preprocessing's own types
/// ([`InputGeometry`], [`ScaleFilter`], [`Normalisation`]): one definition of the model input
/// for the CPU path and the device path, nothing about the model's kind (no RetinaFace here).
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// `width`·`height` pixels of R, G, B bytes, row by row, rows without padding. Always R, G,
    /// B whatever the model wants: [`Pixels::normalisation`] says which colour goes to which
    /// input channel, and the backend reorders on its device.
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// The model input `[3, geometry.height, geometry.width]` and the part of it the pixels are
    /// scaled to (top-left; the rest is padding, zero after normalisation, as on the CPU path).
    pub geometry: InputGeometry,
    /// How the pixels are scaled to the content size.
    pub filter: ScaleFilter,
    /// Colour order of the input channels, mean and std.
    pub normalisation: Normalisation,
}

impl Pixels {
    /// The shape of the model input these pixels become, without the batch dimension:
    /// requests of equal shape share a run, whatever their source sizes.
    pub fn shape(&self) -> [usize; 3] {
        [3, self.geometry.height, self.geometry.width]
    }

    /// Why these pixels cannot become a model input, if they cannot: bytes that do not match
    /// the size, an empty image, content that is empty or larger than the input, a colour
    /// order that is not a permutation of R, G, B, a zero or non-finite scale.
    pub fn problem(&self) -> Option<String> {
        let (w, h) = (self.width, self.height);
        let g = self.geometry;
        let expected = w.checked_mul(h).and_then(|n| n.checked_mul(3));
        if w == 0 || h == 0 {
            return Some(format!("the image is {w}×{h}"));
        }
        if expected != Some(self.rgb.len()) {
            return Some(format!(
                "a {w}×{h} image needs 3 RGB bytes per pixel, got {} bytes",
                self.rgb.len()
            ));
        }
        if g.content_width == 0
            || g.content_height == 0
            || g.content_width > g.width
            || g.content_height > g.height
        {
            return Some(format!(
                "content {}×{} does not fit the {}×{} input",
                g.content_width, g.content_height, g.width, g.height
            ));
        }
        let n = &self.normalisation;
        let mut order = n.color_of_channel;
        order.sort_unstable();
        if order != [0, 1, 2] {
            return Some(format!(
                "channel colours {:?} are not R, G and B once each",
                n.color_of_channel
            ));
        }
        let finite = n.mean.iter().chain(&n.inv_std).all(|v| v.is_finite());
        if !finite || n.inv_std.contains(&0.0) {
            return Some(format!(
                "mean {:?} and inverse std {:?} must be finite, the inverse std non-zero",
                n.mean, n.inv_std
            ));
        }
        None
    }
}

/// What one request gives the model: f32 tensors, one per model input (every backend), or an
/// image as [`Pixels`] (a backend that [takes pixels](Backend::takes_pixels), model of one image
/// input). Requests of different kinds never share a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    Tensors(Vec<Tensor>),
    Pixels(Pixels),
}

impl From<Vec<Tensor>> for Inputs {
    fn from(tensors: Vec<Tensor>) -> Self {
        Self::Tensors(tensors)
    }
}

impl From<Pixels> for Inputs {
    fn from(pixels: Pixels) -> Self {
        Self::Pixels(pixels)
    }
}

impl Inputs {
    /// Whether two requests may share a model run: of one kind, and of equal input shapes
    /// (for pixels: equal model input size, whatever the source sizes).
    pub(super) fn batch_with(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tensors(a), Self::Tensors(b)) => same_shapes(a, b),
            (Self::Pixels(a), Self::Pixels(b)) => a.shape() == b.shape(),
            _ => false,
        }
    }
}

/// Checks a batch of pixel requests before a backend runs it: every request becomes an input
/// of the same shape. `Ok(false)`: the batch is empty (nothing to run).
// Only the libtorch backend takes pixels so far.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
pub(super) fn check_pixel_batch(batch: &[&Pixels]) -> Result<bool, String> {
    let Some(first) = batch.first() else {
        return Ok(false);
    };
    if batch.iter().any(|p| p.shape() != first.shape()) {
        return Err("pixel requests of one batch become inputs of different sizes".into());
    }
    if let Some(why) = batch.iter().find_map(|p| p.problem()) {
        return Err(why);
    }
    Ok(true)
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
    /// Whether [`Backend::run_pixels`] makes the model input of [`Pixels`] itself (a model of
    /// one image input). A backend that does not (ONNX Runtime: its runs take host tensors,
    /// and the CPU's SIMD scaler is the fast path there) is only ever given f32 tensors.
    fn takes_pixels(&self) -> bool {
        false
    }
    /// Runs `batch` — pixel requests whose inputs are of one shape — as one batch: scales,
    /// pads and normalises each to its [`Pixels::geometry`], runs the stacked input, one answer
    /// per request as [`Backend::run`] gives. Only called when [`Backend::takes_pixels`].
    fn run_pixels(&mut self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>, String> {
        let _ = batch;
        Err("this backend takes f32 tensors, not pixels".into())
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
