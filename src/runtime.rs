//! Loading ONNX Runtime (at run time, through `ort`'s `load-dynamic`) and building sessions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

/// ONNX Runtime release the project is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// How to get a suitable library; appended to every load failure.
pub const ORT_INSTALL_HINT: &str = "install ONNX Runtime 1.31.1 with the project's setup script \
     (scripts/setup.sh), or `pip install onnxruntime==1.31.1` and set ORT_DYLIB_PATH to its \
     onnxruntime/capi/libonnxruntime.so.1.31.1";

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

/// Which runtime runs the model. A setting of its own, beside [`ExecutionProvider`] (the
/// device), rather than one more provider: libtorch runs on the CPU as well as on CUDA (the parity
/// tests and the benchmark's dry run need it on the CPU), and ONNX Runtime's providers stay as
/// they are. `Torch` needs the crate feature `torch`; without it a load says how to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    #[default]
    OnnxRuntime,
    /// A TorchScript export of the model run by libtorch (`src/engine/torch.rs`): on CUDA
    /// `device_id` when the provider is CUDA or TensorRT, else on the CPU.
    Torch,
}

/// Options for [`load_session`]. `Eq` + `Hash` because they are part of the key of a shared
/// engine: sessions opened with other options are not shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SessionConfig {
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    pub provider: ExecutionProvider,
    /// GPU index for CUDA / TensorRT.
    pub device_id: i32,
    /// TensorRT: build the engine in FP16 where the GPU supports it.
    pub tensorrt_fp16: bool,
    /// TensorRT: directory for built engines and timing caches, so that a later start with the
    /// same model, GPU and options loads the engine instead of building it again (minutes).
    /// `None`: every start builds.
    pub tensorrt_cache: Option<PathBuf>,
    /// Which runtime runs the model; ONNX Runtime unless asked otherwise.
    pub backend: BackendKind,
    /// libtorch on CUDA: run the model in half precision (inputs and weights cast on the GPU;
    /// outputs come back as f32). Ignored, with a warning, on the CPU.
    pub torch_fp16: bool,
}

/// Why a session could not be made; the text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime could not be loaded. Tried: {tried}. To fix: {ORT_INSTALL_HINT}")]
    LibraryMissing { tried: String },
    #[error(
        "model file '{0}' does not exist: set the model property to a RetinaFace ONNX file, or run scripts/setup.sh to install the default model"
    )]
    ModelMissing(PathBuf),
    #[error(
        "model '{0}' is a directory, not a file: set the model property to the .onnx file inside it"
    )]
    ModelIsDirectory(PathBuf),
    #[error(
        "'{path}' is not a loadable ONNX model ({reason}); point the model property at a RetinaFace .onnx file"
    )]
    ModelInvalid { path: PathBuf, reason: String },
    #[error("ONNX Runtime error: {0}")]
    Ort(String),
}

fn ort_err<R>(e: ort::Error<R>) -> RuntimeError {
    RuntimeError::Ort(e.to_string())
}

static ENVIRONMENT: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns its environment.
///
/// Search order: `ORT_DYLIB_PATH` (when set, nothing else is tried); `libonnxruntime.so*` in each
/// of `extra_dirs` (the plugin passes its own directory); the system loader path.
/// The first call decides; later calls return the same result.
pub fn environment(extra_dirs: &[PathBuf]) -> Result<&'static Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| {
            keep_large_blocks_mapped();
            load_environment(extra_dirs)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Fixes glibc's mmap threshold at 1 MiB, unless the user tuned malloc already.
///
/// Every model load and unload allocates and frees blocks of several MiB (weights, prepacked
/// kernels, the arena). glibc raises its mmap threshold to the size of each mapped block freed,
/// so after the first unload such blocks land on the heaps of the threads that load models, and
/// those heaps cannot shrink around them: 1,000 pipeline restarts (one load and unload each) grew
/// RSS by 14 %; with the threshold fixed at 1 MiB by 3 % (README, "Soak"; 4 MiB is not enough).
/// 1 MiB keeps the per-frame output rows of the default input size (under 700 KiB) on the heap,
/// so no frame pays for a fresh mapping.
fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = [
            "MALLOC_MMAP_THRESHOLD_",
            "GLIBC_TUNABLES",
            "MALLOC_ARENA_MAX",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if !tuned {
            // SAFETY: mallopt only sets a glibc malloc parameter; it is thread-safe.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
            }
        }
    }
}

fn library_candidates(extra_dirs: &[PathBuf]) -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let mut candidates = Vec::new();
    for dir in extra_dirs {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            candidates.push(dir.join("libonnxruntime.so"));
        }
        candidates.extend(found);
    }
    // Bare names go through the system loader (LD_LIBRARY_PATH, ld.so.cache).
    candidates.push("libonnxruntime.so".into());
    candidates.push("libonnxruntime.so.1".into());
    candidates
}

fn load_environment(extra_dirs: &[PathBuf]) -> Result<Environment, RuntimeError> {
    let mut tried = Vec::new();
    for candidate in library_candidates(extra_dirs) {
        match ort::init_from(&candidate) {
            Ok(builder) => return builder.with_name("retinaface").build().map_err(ort_err),
            Err(e) => tried.push(format!("{} ({e})", candidate.display())),
        }
    }
    Err(RuntimeError::LibraryMissing {
        tried: tried.join("; "),
    })
}

/// A loaded model with the warnings raised while setting it up (e.g. a GPU fallback).
pub struct LoadedSession {
    pub session: Session,
    pub warnings: Vec<String>,
}

/// Opens `model` with the requested threads and execution provider.
///
/// A provider that is unavailable falls back to CPU; the reason is in `warnings`.
pub fn load_session(
    env: &Environment,
    model: &Path,
    config: &SessionConfig,
) -> Result<LoadedSession, RuntimeError> {
    if model.is_dir() {
        return Err(RuntimeError::ModelIsDirectory(model.to_path_buf()));
    }
    if !model.is_file() {
        return Err(RuntimeError::ModelMissing(model.to_path_buf()));
    }
    let mut warnings = Vec::new();
    let mut builder = cpu_builder(env, config)?;
    if config.provider != ExecutionProvider::Cpu {
        let (b, registered) = with_gpu(builder, config);
        builder = b;
        if let Err(why) = registered {
            warnings.push(format!(
                "{:?} execution provider unavailable ({why}); running on CPU",
                config.provider
            ));
        }
    }
    let session = builder
        .commit_from_file(model)
        .map_err(|e| RuntimeError::ModelInvalid {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(LoadedSession { session, warnings })
}

fn cpu_builder(env: &Environment, config: &SessionConfig) -> Result<SessionBuilder, RuntimeError> {
    let mut b = Session::builder(env)
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_err)?
        // Spinning threads burn the cores that decoding and the rest of the pipeline need; on
        // small machines two spinning threads are slower than one.
        .with_intra_op_spinning(false)
        .map_err(ort_err)?
        .with_inter_op_spinning(false)
        .map_err(ort_err)?;
    if config.threads > 0 {
        b = b.with_intra_threads(config.threads).map_err(ort_err)?;
    }
    Ok(b)
}

/// Whether the loaded ONNX Runtime library was built with `provider` (CPU always is). Being
/// built with it does not promise a usable GPU: registration can still fail, and then
/// [`load_session`] falls back to CPU with a warning.
pub fn provider_built_in(provider: ExecutionProvider) -> bool {
    match provider {
        ExecutionProvider::Cpu => true,
        ExecutionProvider::Cuda => ep::CUDA::is_available().unwrap_or(false),
        ExecutionProvider::TensorRt => ep::TensorRT::is_available().unwrap_or(false),
    }
}

/// Registers the GPU provider(s); on failure the builder comes back unchanged with the reason.
fn with_gpu(
    builder: SessionBuilder,
    config: &SessionConfig,
) -> (SessionBuilder, Result<(), String>) {
    if !provider_built_in(ExecutionProvider::Cuda) {
        let why = "this ONNX Runtime library has no CUDA support; install onnxruntime-gpu 1.31.1 \
                   and set ORT_DYLIB_PATH to its library";
        return (builder, Err(why.into()));
    }
    let mut providers = Vec::new();
    if config.provider == ExecutionProvider::TensorRt {
        if !provider_built_in(ExecutionProvider::TensorRt) {
            return (
                builder,
                Err("this ONNX Runtime library has no TensorRT support".into()),
            );
        }
        let mut trt = ep::TensorRT::default()
            .with_device_id(config.device_id)
            .with_fp16(config.tensorrt_fp16);
        if let Some(dir) = &config.tensorrt_cache {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return (
                    builder,
                    Err(format!(
                        "cannot create the TensorRT cache directory {}: {e}; set another one or \
                         none",
                        dir.display()
                    )),
                );
            }
            let dir = dir.display().to_string();
            trt = trt
                .with_engine_cache(true)
                .with_engine_cache_path(&dir)
                .with_timing_cache(true)
                .with_timing_cache_path(&dir);
        }
        providers.push(trt.build().error_on_failure());
    }
    providers.push(
        ep::CUDA::default()
            .with_device_id(config.device_id)
            .build()
            .error_on_failure(),
    );
    match builder.with_execution_providers(providers) {
        Ok(b) => (b, Ok(())),
        Err(e) => {
            let why = e.to_string();
            (e.recover(), Err(why))
        }
    }
}
