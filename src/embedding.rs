//! Face embeddings: an ArcFace-style recognition model run through the shared
//! [`engine`](crate::engine) (one session per model file and session options per process,
//! requests of every stream batched where the model allows), on faces aligned by
//! [`crate::align`].
//!
//! What the model expects is its [`EmbeddingContract`]: input and output names, input size,
//! colour order, mean and std, read from ONNX metadata properties ([`keys`]) with the defaults
//! of the default model (`fr_feature.onnx` of the npm package
//! `faceplugin-face-recognition-js@0.0.1`: input `input` `[1,3,112,112]` RGB, (x − 127) / 128,
//! output `output` `[1,512]`), so MobileFaceNet or insightface models drop in by adding their
//! metadata (or by already matching the defaults). A model whose tensors do not fit is refused
//! at load with a message that says what was expected and what was found.
//!
//! Embeddings are L2-normalised ([`Embedding`]), so their cosine similarity is a dot product.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::align::{AlignError, warp_into};
use crate::contract::{ColorOrder, ContractError, bad, three_floats};
use crate::engine::{
    Client, ClientOptions, Done, EngineError, EngineKey, LoadError, Loader, ModelInfo, Registry,
    Tensor, TensorInfo, Ticket, open_backend,
};
use crate::preprocess::{Frame, Normalisation, color_of_channel};
use crate::runtime::RuntimeError;

/// ONNX metadata property keys an embedding model may set to describe itself.
pub mod keys {
    /// Name of the image input, `[N,3,H,W]` float32 (H and W fixed: they are the crop size).
    pub const INPUT: &str = "embedding.input";
    /// Name of the embedding output, `[N,D]` float32.
    pub const OUTPUT: &str = "embedding.output";
    /// `rgb` or `bgr`.
    pub const COLOR_ORDER: &str = "embedding.color_order";
    /// Per-channel mean subtracted from 0..255 values, in the network's channel order.
    pub const MEAN: &str = "embedding.mean";
    /// Per-channel divisor applied after the mean.
    pub const STD: &str = "embedding.std";
}

/// The name [`LoadError::Unfit`] gives this contract.
pub const CONTRACT: &str = "face embedding";

/// Longest one embedding waits for the engine: far above a run (≈ 10 ms on 2 cores).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to feed an embedding model and read its output.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingContract {
    pub input: String,
    pub output: String,
    pub color_order: ColorOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Aligned crop size, from the input's shape.
    pub width: usize,
    pub height: usize,
    /// Length of an embedding, from the output's shape.
    pub dim: usize,
}

impl Default for EmbeddingContract {
    fn default() -> Self {
        Self {
            input: "input".into(),
            output: "output".into(),
            color_order: ColorOrder::Rgb,
            mean: [127.0; 3],
            std: [128.0; 3],
            width: 112,
            height: 112,
            dim: 512,
        }
    }
}

impl EmbeddingContract {
    /// The contract of a loaded model: the defaults overridden by its metadata, the crop size
    /// and embedding length read from its tensors, which must fit.
    pub fn of_model(model: &ModelInfo) -> Result<Self, ContractError> {
        let lookup = |k: &str| model.metadata.get(k).map(|v| v.trim().to_string());
        let mut c = Self::default();
        if let Some(v) = lookup(keys::INPUT) {
            c.input = v;
        }
        if let Some(v) = lookup(keys::OUTPUT) {
            c.output = v;
        }
        if let Some(v) = lookup(keys::COLOR_ORDER) {
            c.color_order = match v.to_ascii_lowercase().as_str() {
                "rgb" => ColorOrder::Rgb,
                "bgr" => ColorOrder::Bgr,
                _ => return Err(bad(keys::COLOR_ORDER, &v, "rgb or bgr")),
            };
        }
        if let Some(v) = lookup(keys::MEAN) {
            c.mean = three_floats(&v).ok_or_else(|| bad(keys::MEAN, &v, "three numbers"))?;
        }
        if let Some(v) = lookup(keys::STD) {
            c.std = three_floats(&v)
                .filter(|s| s.iter().all(|x| *x > 0.0))
                .ok_or_else(|| bad(keys::STD, &v, "three positive numbers"))?;
        }
        let expected = format!(
            "expected one float32 input '{}' shaped [N,3,H,W] with fixed H, W and a float32 output '{}' shaped [N,D] with a fixed D (set the {} / {} metadata properties if the names differ)",
            c.input,
            c.output,
            keys::INPUT,
            keys::OUTPUT
        );
        let list = |t: &[TensorInfo]| {
            t.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fail = |what: &str| {
            ContractError(format!(
                "{what}: {expected}; found inputs {} and outputs {}",
                list(&model.inputs),
                list(&model.outputs)
            ))
        };
        let [input] = &model.inputs[..] else {
            return Err(fail(&format!("model has {} inputs", model.inputs.len())));
        };
        let fixed = |d: i64| usize::try_from(d).ok().filter(|&d| d > 0);
        match input.shape[..] {
            [_, 3, h, w] if input.name == c.input && input.is_f32 => {
                (c.height, c.width) = fixed(h)
                    .zip(fixed(w))
                    .ok_or_else(|| fail("the input's height and width are not fixed"))?;
            }
            _ => return Err(fail("model input does not fit")),
        }
        let Some(output) = model.outputs.iter().find(|o| o.name == c.output) else {
            return Err(fail(&format!("model has no output '{}'", c.output)));
        };
        match output.shape[..] {
            [_, d] if output.is_f32 => {
                c.dim = fixed(d).ok_or_else(|| fail("the output's length is not fixed"))?;
            }
            _ => return Err(fail(&format!("model output '{}' does not fit", c.output))),
        }
        Ok(c)
    }

    /// Colour order, mean and std as the warp applies them.
    pub fn normalisation(&self) -> Normalisation {
        Normalisation {
            color_of_channel: color_of_channel(self.color_order),
            mean: self.mean,
            inv_std: self.std.map(|s| 1.0 / s),
        }
    }
}

/// An L2-normalised embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// `values` scaled to unit length; `None` if they are all zero or not finite (no direction).
    pub fn new(mut values: Vec<f32>) -> Option<Self> {
        let norm = values
            .iter()
            .map(|v| (*v as f64) * (*v as f64))
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() || norm <= 1e-12 {
            return None;
        }
        for v in &mut values {
            *v = (*v as f64 / norm) as f32;
        }
        Some(Self(values))
    }

    pub fn values(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity, in −1..1 (a dot product: both are unit length). Embeddings of
    /// different lengths (two models) are not comparable: 0.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        let dot: f64 = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        dot.clamp(-1.0, 1.0) as f32
    }

    /// The normalised weighted mean of several embeddings (a per-track or per-person
    /// estimate); `None` when there are none or they cancel out.
    pub fn mean<'a>(items: impl IntoIterator<Item = (&'a Embedding, f32)>) -> Option<Self> {
        let mut sum: Vec<f32> = Vec::new();
        for (e, w) in items {
            if sum.is_empty() {
                sum = vec![0.0; e.0.len()];
            }
            if e.0.len() != sum.len() {
                continue;
            }
            for (s, v) in sum.iter_mut().zip(&e.0) {
                *s += w * v;
            }
        }
        Self::new(sum)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model '{path}' does not fit the face embedding contract: {reason}")]
    Contract { path: PathBuf, reason: String },
    #[error(transparent)]
    Align(#[from] AlignError),
    #[error(transparent)]
    Engine(EngineError),
    #[error("the embedding model gave no usable output: {0}")]
    Output(String),
}

/// Load failures come back as what they are (missing runtime or file, a model that does not
/// fit), other engine errors as [`EmbedError::Engine`].
impl From<EngineError> for EmbedError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Load {
                source: LoadError::Runtime(e),
                ..
            } => Self::Runtime(e),
            EngineError::Load {
                path,
                source: LoadError::Unfit { reason, .. },
            } => Self::Contract { path, reason },
            other => Self::Engine(other),
        }
    }
}

/// Backends of models that fit the embedding contract; one that does not fails its load.
fn embedding_loader(ort_dirs: Vec<PathBuf>) -> Arc<Loader> {
    Arc::new(move |key: &EngineKey| {
        let backend = open_backend(key, &ort_dirs)?;
        EmbeddingContract::of_model(backend.model()).map_err(|e| LoadError::Unfit {
            contract: CONTRACT,
            reason: e.0,
        })?;
        Ok(backend)
    })
}

/// One user's (stream's, library's) client of an embedding model's engine.
pub struct Embedder {
    client: Client,
    contract: Arc<EmbeddingContract>,
    /// Where the embedding is among an answer's outputs.
    output: usize,
    /// Longest [`Embedder::embed`] waits for one answer.
    pub timeout: Duration,
    /// Non-fatal problems met while loading (e.g. GPU provider fallback).
    pub warnings: Vec<String>,
}

impl Embedder {
    /// A client of the engine of `key` in `registry` ([`Registry::global`]: shared by the
    /// whole process), loaded if none is alive.
    pub fn connect(
        registry: &Registry,
        key: EngineKey,
        ort_dirs: &[PathBuf],
        options: ClientOptions,
    ) -> Result<Self, EmbedError> {
        let client = registry.client(key.clone(), embedding_loader(ort_dirs.to_vec()), options)?;
        // Checked again: another kind of client may have loaded this file with its own loader.
        let model = client.engine().model();
        let contract = EmbeddingContract::of_model(model).map_err(|e| EmbedError::Contract {
            path: key.model.clone(),
            reason: e.0,
        })?;
        let output = model
            .output(&contract.output)
            .expect("the contract found this output");
        let warnings = client.engine().warnings().to_vec();
        Ok(Self {
            client,
            contract: Arc::new(contract),
            output,
            timeout: DEFAULT_TIMEOUT,
            warnings,
        })
    }

    pub fn contract(&self) -> &EmbeddingContract {
        &self.contract
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The model input of the face with `landmarks` (frame pixels): the aligned crop.
    pub fn prepare(&self, frame: &Frame, landmarks: &[[f32; 2]; 5]) -> Result<Tensor, EmbedError> {
        let c = &*self.contract;
        let mut t = Tensor::new(vec![3, c.height, c.width]);
        warp_into(
            frame,
            landmarks,
            c.width,
            c.height,
            &c.normalisation(),
            &mut t.data,
        )?;
        Ok(t)
    }

    /// Queues prepared crops at once (those of one frame, or of several tracks), so that they
    /// share runs where the model batches. One ticket per crop, in order.
    pub fn submit(&self, crops: Vec<Tensor>) -> Vec<Ticket> {
        self.client
            .submit_all(crops.into_iter().map(|t| vec![t]).collect())
    }

    /// The embedding in an answer.
    pub fn read(&self, done: &Done) -> Result<Embedding, EmbedError> {
        // Found by name in the answer's own model (also right after a live swap).
        let at = done
            .model
            .output(&self.contract.output)
            .unwrap_or(self.output);
        let out = done
            .outputs
            .get(at)
            .ok_or_else(|| EmbedError::Output("the output is missing".into()))?;
        Embedding::new(out.data.clone())
            .ok_or_else(|| EmbedError::Output("the embedding is zero or not finite".into()))
    }

    /// Embeddings of the faces with these landmarks on `frame`, in order (waits, at most
    /// [`Embedder::timeout`] per face).
    pub fn embed(
        &self,
        frame: &Frame,
        faces: &[[[f32; 2]; 5]],
    ) -> Result<Vec<Embedding>, EmbedError> {
        let crops = faces
            .iter()
            .map(|l| self.prepare(frame, l))
            .collect::<Result<Vec<_>, _>>()?;
        self.submit(crops)
            .iter()
            .map(|t| self.read(&t.wait(self.timeout)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn info(name: &str, shape: &[i64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            is_f32: true,
        }
    }

    fn model(
        inputs: Vec<TensorInfo>,
        outputs: Vec<TensorInfo>,
        meta: &[(&str, &str)],
    ) -> ModelInfo {
        ModelInfo {
            inputs,
            outputs,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn the_default_model_layout_gives_the_issue_defaults() {
        let m = model(
            vec![info("input", &[1, 3, 112, 112])],
            vec![info("output", &[1, 512])],
            &[],
        );
        let c = EmbeddingContract::of_model(&m).unwrap();
        assert_eq!(c, EmbeddingContract::default());
        let n = c.normalisation();
        assert_eq!(n.color_of_channel, [0, 1, 2]);
        assert_eq!(n.mean, [127.0; 3]);
        assert_eq!(n.inv_std, [1.0 / 128.0; 3]);
    }

    #[test]
    fn metadata_describes_another_model() {
        // An insightface-style model: BGR, (x − 127.5) / 127.5, other names, 128-d, batched.
        let m = model(
            vec![info("data", &[-1, 3, 112, 112])],
            vec![info("fc1", &[-1, 128]), info("extra", &[-1, 2])],
            &[
                (keys::INPUT, "data"),
                (keys::OUTPUT, "fc1"),
                (keys::COLOR_ORDER, "BGR"),
                (keys::MEAN, "127.5,127.5,127.5"),
                (keys::STD, "127.5, 127.5, 127.5"),
            ],
        );
        let c = EmbeddingContract::of_model(&m).unwrap();
        assert_eq!((c.input.as_str(), c.output.as_str()), ("data", "fc1"));
        assert_eq!((c.color_order, c.dim), (ColorOrder::Bgr, 128));
        assert_eq!((c.mean, c.std), ([127.5; 3], [127.5; 3]));
    }

    #[test]
    fn a_model_that_does_not_fit_is_refused_with_what_was_expected_and_found() {
        let detector_like = model(
            vec![info("input", &[-1, 3, -1, -1])],
            vec![info("loc", &[-1, -1, 4])],
            &[],
        );
        let err = EmbeddingContract::of_model(&detector_like).unwrap_err().0;
        assert!(err.contains("height and width are not fixed"), "{err}");
        assert!(err.contains("'loc' [?,?,4]"), "{err}");
        let no_output = model(
            vec![info("input", &[1, 3, 112, 112])],
            vec![info("embedding", &[1, 512])],
            &[],
        );
        let err = EmbeddingContract::of_model(&no_output).unwrap_err().0;
        assert!(
            err.contains("no output 'output'") && err.contains(keys::OUTPUT),
            "{err}"
        );
        let bad_std = model(
            vec![info("input", &[1, 3, 112, 112])],
            vec![info("output", &[1, 512])],
            &[(keys::STD, "1,0,1")],
        );
        let err = EmbeddingContract::of_model(&bad_std).unwrap_err().0;
        assert!(err.contains("embedding.std"), "{err}");
    }

    #[test]
    fn embeddings_are_unit_length_and_cosine_is_their_angle() {
        let a = Embedding::new(vec![3.0, 4.0]).unwrap();
        assert_eq!(a.values(), [0.6, 0.8]);
        let b = Embedding::new(vec![-4.0, 3.0]).unwrap();
        assert!(a.cosine(&b).abs() < 1e-7, "perpendicular");
        assert!((a.cosine(&a) - 1.0).abs() < 1e-7);
        let c = Embedding::new(vec![1.0, 1.0]).unwrap();
        assert!((a.cosine(&c) - 1.4 / 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(Embedding::new(vec![0.0, 0.0]), None);
        assert_eq!(Embedding::new(vec![f32::NAN, 1.0]), None);
        assert_eq!(a.cosine(&Embedding::new(vec![1.0, 0.0, 0.0]).unwrap()), 0.0);
        // The mean of (1, 0) weighted 3 and (0, 1) weighted 1 points at (3, 1).
        let x = Embedding::new(vec![1.0, 0.0]).unwrap();
        let y = Embedding::new(vec![0.0, 1.0]).unwrap();
        let m = Embedding::mean([(&x, 3.0), (&y, 1.0)]).unwrap();
        let want = Embedding::new(vec![3.0, 1.0]).unwrap();
        assert!((m.cosine(&want) - 1.0).abs() < 1e-6);
        assert_eq!(Embedding::mean([]), None);
    }
}
