//! The ONNX Runtime backend: any ONNX model of f32 inputs, run with the requests of a batch
//! side by side along the first (batch) dimension.

use std::path::PathBuf;
use std::sync::Arc;

use ort::session::{Session, SessionInputValue};
use ort::value::{Outlet, TensorElementType, TensorRef};

use super::backend::{Backend, LoadError, Loader, ModelInfo, Tensor, TensorInfo, check_batch};
use super::key::EngineKey;
use crate::runtime::{self, RuntimeError};

/// Requests per ONNX Runtime run at most, whatever the clients' `batch_size`: a run's working
/// memory grows with its batch.
pub const ORT_MAX_BATCH: usize = 16;

/// ONNX Runtime backend: a session of the key's model with its session options.
pub struct OrtBackend {
    session: Session,
    model: ModelInfo,
    /// Whether every input's batch dimension is dynamic (else one run per request).
    batches: bool,
    /// Per input, the batch's values side by side (reused from run to run).
    staging: Vec<Vec<f32>>,
    warnings: Vec<String>,
}

impl OrtBackend {
    /// Loads ONNX Runtime (searching `ort_dirs`, see [`runtime::environment`]) and the model of
    /// `key`, and reads what it looks like ([`Backend::model`]). Whether it is the right kind
    /// of model is its client's question (see [`Loader`]).
    pub fn open(key: &EngineKey, ort_dirs: &[PathBuf]) -> Result<Self, LoadError> {
        let env = runtime::environment(ort_dirs)?;
        let loaded = runtime::load_session(env, &key.model, &key.session)?;
        let session = loaded.session;
        let metadata = session.metadata().map_err(ort_error)?;
        let mut properties = std::collections::HashMap::new();
        for k in metadata.custom_keys().map_err(ort_error)? {
            if let Some(v) = metadata.custom(&k) {
                properties.insert(k, v);
            }
        }
        drop(metadata);
        let model = ModelInfo {
            inputs: describe(session.inputs()),
            outputs: describe(session.outputs()),
            metadata: properties,
        };
        let batches = !model.inputs.is_empty()
            && model
                .inputs
                .iter()
                .all(|i| i.shape.first().is_some_and(|n| *n < 0));
        Ok(Self {
            session,
            model,
            batches,
            staging: Vec::new(),
            warnings: loaded.warnings,
        })
    }

    /// A loader for [`Registry::shared`](super::Registry::shared) /
    /// [`Registry::client`](super::Registry::client) making `OrtBackend`s of any model (no
    /// check of what kind of model it is).
    pub fn loader(ort_dirs: Vec<PathBuf>) -> Arc<Loader> {
        Arc::new(move |key: &EngineKey| {
            OrtBackend::open(key, &ort_dirs).map(|b| Box::new(b) as Box<dyn Backend>)
        })
    }

    /// One session run of `batch`: each input's tensors side by side behind a batch dimension,
    /// each output cut back into one tensor per request.
    fn run_batch(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        let n = batch.len();
        let first = batch[0];
        // A single request runs on its own buffers; a batch is copied side by side first.
        if n > 1 {
            self.staging.resize_with(first.len(), Vec::new);
            for (i, staged) in self.staging.iter_mut().enumerate() {
                staged.clear();
                for request in batch {
                    staged.extend_from_slice(&request[i].data);
                }
            }
        }
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(first.len());
        for (i, info) in self.model.inputs.iter().enumerate() {
            let data: &[f32] = if n == 1 {
                &first[i].data
            } else {
                &self.staging[i]
            };
            let shape: Vec<usize> = std::iter::once(n)
                .chain(first[i].shape.iter().copied())
                .collect();
            let value = TensorRef::from_array_view((shape, data)).map_err(|e| e.to_string())?;
            inputs.push((info.name.as_str(), value.into()));
        }
        let outputs = self.session.run(inputs).map_err(|e| e.to_string())?;
        let mut per_request: Vec<Vec<Tensor>> = (0..n)
            .map(|_| Vec::with_capacity(self.model.outputs.len()))
            .collect();
        for info in &self.model.outputs {
            if !info.is_f32 {
                // The engine speaks f32: such an output comes back empty (its `TensorInfo`
                // says why), rather than failing a model that has one the client does not read.
                per_request
                    .iter_mut()
                    .for_each(|o| o.push(Tensor::default()));
                continue;
            }
            let name = &info.name;
            let value = outputs
                .get(name)
                .ok_or_else(|| format!("model returned no '{name}'"))?;
            let (shape, values) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let rest = match shape.split_first() {
                Some((&d, rest)) if d == n as i64 => rest,
                // A model of a fixed batch of one may leave the batch dimension out.
                _ if n == 1 => &shape[..],
                _ => {
                    return Err(format!(
                        "output '{name}' of shape {:?} does not give one part per input of the batch of {n}",
                        &shape[..]
                    ));
                }
            };
            let rest: Vec<usize> = rest.iter().map(|&d| d as usize).collect();
            let part = values.len() / n;
            for (i, out) in per_request.iter_mut().enumerate() {
                out.push(Tensor {
                    shape: rest.clone(),
                    data: values[i * part..(i + 1) * part].to_vec(),
                });
            }
        }
        Ok(per_request)
    }
}

fn ort_error<R>(e: ort::Error<R>) -> LoadError {
    LoadError::Runtime(RuntimeError::Ort(e.to_string()))
}

/// The inputs or outputs of a session as [`TensorInfo`]s.
fn describe(outlets: &[Outlet]) -> Vec<TensorInfo> {
    outlets
        .iter()
        .map(|o| TensorInfo {
            name: o.name().to_string(),
            shape: o
                .dtype()
                .tensor_shape()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
            is_f32: o.dtype().tensor_type() == Some(TensorElementType::Float32),
        })
        .collect()
}

impl Backend for OrtBackend {
    fn run(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        if !check_batch(batch, self.model.inputs.len())? {
            return Ok(Vec::new());
        }
        if self.batches {
            self.run_batch(batch)
        } else {
            let mut outputs = Vec::with_capacity(batch.len());
            for request in batch {
                outputs.extend(self.run_batch(std::slice::from_ref(request))?);
            }
            Ok(outputs)
        }
    }

    fn max_batch(&self) -> usize {
        if self.batches { ORT_MAX_BATCH } else { 1 }
    }

    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
