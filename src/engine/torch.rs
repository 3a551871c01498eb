//! The libtorch backend: a TorchScript export of a model (`retinaface-train torchscript` writes
//! one, with its side file, [`side_file`](super::side_file)) run by libtorch through `tch`, on
//! the CPU or on CUDA `device_id`, with the requests of a batch side by side along the first
//! dimension like [`OrtBackend`](super::OrtBackend), in FP16 where asked.
//!
//! Inputs arrive as the engine's f32 tensors (the client has scaled and normalised the frame);
//! the batch is copied to the device once per run. FP16 casts the input on the device; the
//! export casts its weights to the input's type (`type_as`), so one archive serves both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use tch::{CModule, Device, IValue, Kind, Tensor as TchTensor};

use super::backend::{Backend, LoadError, ModelInfo, Tensor, TensorInfo, check_batch};
use super::key::EngineKey;
use super::side_file::{TORCHSCRIPT_FORMAT, TorchScriptSideFile, torchscript_paths};
use crate::runtime::{ExecutionProvider, SessionConfig};

/// Requests per libtorch run at most, whatever the clients' `batch_size`: a run's working
/// memory grows with its batch.
pub const TORCH_MAX_BATCH: usize = 32;

/// How to make the TorchScript file; appended to a missing-file error.
const CONVERT_HINT: &str = "convert the ONNX model with `retinaface-train torchscript --model \
     MODEL.onnx --output MODEL.pt` (README, \"GPU with libtorch\"); it writes MODEL.pt and \
     MODEL.pt.json beside it";

/// libtorch backend: a TorchScript module on its device.
pub struct TorchBackend {
    module: CModule,
    device: Device,
    /// `Half` for FP16 runs on CUDA, else `Float`.
    kind: Kind,
    model: ModelInfo,
    /// Per input, the batch's values side by side (reused from run to run).
    staging: Vec<Vec<f32>>,
    /// The module returns one tensor holding the outputs side by side along its last axis,
    /// each this wide ([`TorchScriptSideFile::packed_outputs`]).
    packed: Option<Vec<i64>>,
    warnings: Vec<String>,
}

impl TorchBackend {
    /// Loads the TorchScript model of `key` (`key.model`, or the `.pt` beside an `.onnx`; see
    /// [`torchscript_paths`]) with its side file on the device the session options ask for. An
    /// unavailable GPU falls back to the CPU with a warning, as ONNX Runtime's providers do.
    pub fn open(key: &EngineKey) -> Result<Self, LoadError> {
        let (archive, side) = torchscript_paths(&key.model);
        let side = read_side_file(&archive, &side)?;
        let mut warnings = Vec::new();
        let device = choose_device(&key.session, &mut warnings);
        let kind = if key.session.torch_fp16 && device.is_cuda() {
            Kind::Half
        } else {
            if key.session.torch_fp16 {
                warnings.push("torch FP16 runs on CUDA only; running in FP32 on the CPU".into());
            }
            Kind::Float
        };
        if key.session.threads > 0 {
            // libtorch's intra-op pool is per process: the last engine opened sets it.
            tch::set_num_threads(key.session.threads.min(i32::MAX as usize) as i32);
        }
        let mut module = CModule::load_on_device(&archive, device).map_err(|e| {
            LoadError::Other(format!(
                "'{}' is not a TorchScript model libtorch can load ({e}); {CONVERT_HINT}",
                archive.display()
            ))
        })?;
        module.set_eval();
        if device.is_cuda() {
            // Input sizes are fixed per stream: let cuDNN pick its fastest kernels per size.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let describe = |t: &[super::side_file::SideTensor]| -> Vec<TensorInfo> {
            t.iter()
                .map(|t| TensorInfo {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    is_f32: true,
                })
                .collect()
        };
        let packed = if side.packed_outputs {
            Some(side.packed_widths().map_err(|why| {
                LoadError::Other(format!(
                    "TorchScript side file of '{}': {why}",
                    archive.display()
                ))
            })?)
        } else {
            None
        };
        let model = ModelInfo {
            inputs: describe(&side.inputs),
            outputs: describe(&side.outputs),
            metadata: side.metadata.into_iter().collect::<HashMap<_, _>>(),
        };
        Ok(Self {
            module,
            device,
            kind,
            model,
            staging: Vec::new(),
            packed,
            warnings,
        })
    }

    /// The device the module runs on (`cuda:N` or the CPU after a fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// One forward run of `batch` (all of equal shapes): each input's tensors side by side
    /// behind a batch dimension, each output cut back into one tensor per request.
    fn run_batch(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        let _no_grad = tch::no_grad_guard();
        let n = batch.len();
        let first = batch[0];
        self.staging.resize_with(first.len(), Vec::new);
        let mut args = Vec::with_capacity(first.len());
        for (i, staged) in self.staging.iter_mut().enumerate() {
            let host = if n == 1 {
                TchTensor::from_slice(&first[i].data)
            } else {
                staged.clear();
                for request in batch {
                    staged.extend_from_slice(&request[i].data);
                }
                TchTensor::from_slice(staged)
            };
            let shape: Vec<i64> = std::iter::once(n as i64)
                .chain(first[i].shape.iter().map(|&d| d as i64))
                .collect();
            let input = host
                .f_view(shape.as_slice())
                .and_then(|t| t.f_to_device(self.device))
                .and_then(|t| t.f_to_kind(self.kind))
                .map_err(|e| e.to_string())?;
            args.push(IValue::Tensor(input));
        }
        let out = self.module.forward_is(&args).map_err(|e| e.to_string())?;
        let mut tensors = output_tensors(out)?;
        if let (Some(widths), [one]) = (&self.packed, tensors.as_slice()) {
            tensors = one.f_split_with_sizes(widths.as_slice(), -1).map_err(|e| {
                format!("the packed output does not split as its side file says: {e}")
            })?;
        }
        if tensors.len() != self.model.outputs.len() {
            return Err(format!(
                "the TorchScript model returned {} tensor(s); its side file names {}",
                tensors.len(),
                self.model.outputs.len()
            ));
        }
        let mut per_request: Vec<Vec<Tensor>> =
            (0..n).map(|_| Vec::with_capacity(tensors.len())).collect();
        for (info, t) in self.model.outputs.iter().zip(tensors) {
            let t = t
                .f_to_kind(Kind::Float)
                .and_then(|t| t.f_to_device(Device::Cpu))
                .and_then(|t| t.f_contiguous())
                .map_err(|e| e.to_string())?;
            let size = t.size();
            let rest: Vec<usize> = match size.split_first() {
                Some((&d, rest)) if d == n as i64 => rest.iter().map(|&d| d as usize).collect(),
                _ => {
                    return Err(format!(
                        "output '{}' of shape {size:?} does not give one part per input of the \
                         batch of {n}",
                        info.name
                    ));
                }
            };
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| e.to_string())?;
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

/// The tensors of what a traced function returns: a tuple (or list) of tensors, or one tensor.
fn output_tensors(out: IValue) -> Result<Vec<TchTensor>, String> {
    let items = match out {
        IValue::Tensor(t) => return Ok(vec![t]),
        IValue::TensorList(v) => return Ok(v),
        IValue::Tuple(v) | IValue::GenericList(v) => v,
        _ => return Err("the TorchScript model returned neither tensors nor a tuple".into()),
    };
    items
        .into_iter()
        .map(|v| match v {
            IValue::Tensor(t) => Ok(t),
            _ => Err("the TorchScript model returned a tuple holding a non-tensor".into()),
        })
        .collect()
}

/// Reads and checks the side file of `archive`.
fn read_side_file(archive: &Path, side: &Path) -> Result<TorchScriptSideFile, LoadError> {
    let other = |what: String| LoadError::Other(what);
    if archive.is_dir() {
        return Err(other(format!(
            "TorchScript model '{}' is a directory; set the model property to the .pt file (or \
             the .onnx file it was converted from)",
            archive.display()
        )));
    }
    if !archive.is_file() {
        return Err(other(format!(
            "TorchScript model '{}' does not exist: {CONVERT_HINT}",
            archive.display()
        )));
    }
    let text = std::fs::read_to_string(side).map_err(|e| {
        other(format!(
            "the side file '{}' of TorchScript model '{}' cannot be read ({e}): it holds the \
             model's inputs, outputs and metadata; {CONVERT_HINT}",
            side.display(),
            archive.display()
        ))
    })?;
    let parsed: TorchScriptSideFile = serde_json::from_str(&text).map_err(|e| {
        other(format!(
            "the side file '{}' is not valid ({e}); {CONVERT_HINT}",
            side.display()
        ))
    })?;
    if parsed.format != TORCHSCRIPT_FORMAT {
        return Err(other(format!(
            "the side file '{}' is of format '{}', this build reads '{TORCHSCRIPT_FORMAT}'; {CONVERT_HINT}",
            side.display(),
            parsed.format
        )));
    }
    Ok(parsed)
}

/// `cuda:device_id` for the CUDA and TensorRT providers when libtorch has that GPU, else the
/// CPU; a GPU asked for and not found is a warning that says why.
fn choose_device(config: &SessionConfig, warnings: &mut Vec<String>) -> Device {
    if config.provider == ExecutionProvider::Cpu {
        return Device::Cpu;
    }
    if config.provider == ExecutionProvider::TensorRt {
        warnings.push(
            "tensorrt is an ONNX Runtime provider; the torch backend runs on CUDA instead".into(),
        );
    }
    let fallback = |why: String| format!("torch backend: {why}; running on CPU");
    if let Err(why) = load_cuda_backend() {
        warnings.push(fallback(why));
        return Device::Cpu;
    }
    let count = tch::Cuda::device_count();
    if count == 0 {
        warnings.push(fallback("libtorch sees no CUDA GPU".into()));
        return Device::Cpu;
    }
    if config.device_id < 0 || i64::from(config.device_id) >= count {
        warnings.push(fallback(format!(
            "device-id {} does not exist (libtorch sees {count} GPU(s))",
            config.device_id
        )));
        return Device::Cpu;
    }
    Device::Cuda(config.device_id as usize)
}

/// Loads libtorch's CUDA backend (`libtorch_cuda.so`) once: it registers itself when loaded,
/// but nothing of it is referenced, so the linker leaves it out; and it must stay optional, as
/// it cannot load on a machine without the CUDA libraries.
fn load_cuda_backend() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            let mut candidates = vec![std::path::PathBuf::from("libtorch_cuda.so")];
            if let Some(dir) = std::env::var_os("LIBTORCH") {
                candidates.push(Path::new(&dir).join("lib/libtorch_cuda.so"));
            }
            let mut tried = Vec::new();
            for candidate in candidates {
                // SAFETY: libtorch's own CUDA library, of the libtorch this process links; its
                // initialisers only register the CUDA backend.
                match unsafe { Library::open(Some(&candidate), RTLD_NOW | RTLD_GLOBAL) } {
                    Ok(lib) => {
                        // Stays loaded for the life of the process.
                        std::mem::forget(lib);
                        return Ok(());
                    }
                    Err(e) => tried.push(format!("{} ({e})", candidate.display())),
                }
            }
            Err(format!(
                "libtorch's CUDA backend could not be loaded: {}; put the torch/lib folder of a \
                 CUDA build of PyTorch 2.11 on LD_LIBRARY_PATH",
                tried.join("; ")
            ))
        })
        .clone()
}

impl Backend for TorchBackend {
    fn run(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        if !check_batch(batch, self.model.inputs.len())? {
            return Ok(Vec::new());
        }
        self.run_batch(batch)
    }

    fn max_batch(&self) -> usize {
        TORCH_MAX_BATCH
    }

    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
