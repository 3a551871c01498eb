//! `retinafacedetect`'s settings: the core's own parameter structs (one source of each default),
//! the property specs that expose them, and the per-frame snapshot the streaming thread takes.

use std::path::PathBuf;
use std::time::Duration;

use gst::prelude::*;
use retinaface::detector::MAX_FACES;
use retinaface::engine::{ClientOptions, ORT_MAX_BATCH};
use retinaface::runtime::BackendKind;
use retinaface::tiling::{Rect, parse_regions};
use retinaface::{DetectParams, SessionConfig};

use super::{
    ExecutionProvider, MESSAGE_NAME, ScalingMethod, Tiling, default_model_path,
    default_tensorrt_cache,
};

/// Which runtime runs the model (`backend`); the core's [`retinaface::runtime::BackendKind`].
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFaceBackend")]
pub enum Backend {
    #[default]
    #[enum_value(name = "ONNX Runtime", nick = "onnxruntime")]
    OnnxRuntime = 0,
    #[enum_value(
        name = "libtorch (TorchScript; plugin built with --features torch)",
        nick = "torch"
    )]
    Torch = 1,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::OnnxRuntime => Self::OnnxRuntime,
            Backend::Torch => Self::Torch,
        }
    }
}

impl From<BackendKind> for Backend {
    fn from(b: BackendKind) -> Self {
        match b {
            BackendKind::OnnxRuntime => Self::OnnxRuntime,
            BackendKind::Torch => Self::Torch,
        }
    }
}

/// Largest `inference-size`: a 4K frame at native scale. Larger inputs cost gigabytes and seconds
/// per frame on a CPU (README lists the figures); `inference-size=0` on larger frames remains
/// possible and documented.
const MAX_INFERENCE_SIZE: u32 = 4096;
/// Largest `threads`: more intra-op threads than this only add memory and contention.
const MAX_THREADS: u32 = 64;
/// Largest `device-id`: GPUs of one machine.
const MAX_DEVICE_ID: u32 = 63;
/// Range of `tile-scale`: below 0.25 tiles see less than the whole-frame pass; above 4 a 16-px
/// anchor covers 4 source pixels, below what a face can be recognised from.
const TILE_SCALE_RANGE: (f32, f32) = (0.25, 4.0);
/// Largest `batch-timeout` in µs: waiting longer for other streams than a second stalls every
/// stream sharing the batch more than batching could ever win back.
const MAX_BATCH_TIMEOUT_US: u64 = 1_000_000;
/// Largest `frames-in-flight`: each held frame is a decoded buffer kept from its pool (a 1080p
/// I420 frame is 3 MiB) and a frame's worth of latency; past a few, the model is busy anyway.
const MAX_FRAMES_IN_FLIGHT: u32 = 16;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub model: String,
    /// Counts `model` changes, so that a running element sees a new model without comparing
    /// paths every frame.
    pub model_serial: u64,
    /// What each frame is detected with (thresholds, sizes, tiling, regions).
    pub params: DetectParams,
    /// `regions` as the user wrote it (`params.regions` holds them parsed).
    pub regions_text: String,
    /// Options of the engine session (the engine key): applied at start.
    pub session: SessionConfig,
    /// How this stream's requests batch with other streams'.
    pub client: ClientOptions,
    pub interval: u32,
    pub post_messages: bool,
    pub async_: bool,
    /// Sync mode: frames handed to the model before the oldest leaves (1 = wait for each).
    pub frames_in_flight: u32,
    pub shared: bool,
    /// roi_type of upstream ROI metas to look inside (empty = ignore them).
    pub roi_type: String,
    /// With `roi_type`: motion gating's frames between two looks at the whole frame (0 = no
    /// gating: the upstream regions are all that is looked at).
    pub refresh_interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let cache = default_tensorrt_cache();
        Self {
            model: default_model_path(),
            model_serial: 0,
            params: DetectParams::default(),
            regions_text: String::new(),
            session: SessionConfig {
                tensorrt_fp16: true,
                tensorrt_cache: (!cache.is_empty()).then(|| PathBuf::from(cache)),
                ..SessionConfig::default()
            },
            client: ClientOptions::default(),
            interval: 1,
            post_messages: false,
            async_: false,
            frames_in_flight: 1,
            shared: true,
            roi_type: String::new(),
            refresh_interval: 0,
        }
    }
}

/// What the streaming thread needs of the settings for one frame, taken in one lock.
pub(super) struct FrameSettings {
    pub params: DetectParams,
    pub interval: u32,
    pub post_messages: bool,
    pub client: ClientOptions,
    pub model_serial: u64,
    pub async_: bool,
    pub frames_in_flight: u32,
    /// `roi-type`, when set.
    pub roi_type: Option<String>,
    pub refresh_interval: u32,
}

impl Settings {
    pub fn for_frame(&self) -> FrameSettings {
        FrameSettings {
            params: self.params.clone(),
            interval: self.interval,
            post_messages: self.post_messages,
            client: self.client,
            model_serial: self.model_serial,
            async_: self.async_,
            frames_in_flight: self.frames_in_flight,
            roi_type: (!self.roi_type.is_empty()).then(|| self.roi_type.clone()),
            refresh_interval: self.refresh_interval,
        }
    }

    /// Sets property `name`; `Err` says why a value was refused (the old one stays).
    pub fn set(&mut self, name: &str, value: &glib::Value) -> Result<(), String> {
        let text = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        let (p, c, s) = (&mut self.params, &mut self.client, &mut self.session);
        match name {
            "model" => {
                self.model = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(default_model_path);
                self.model_serial += 1;
            }
            "confidence-threshold" => p.confidence_threshold = value.get().unwrap(),
            "nms-threshold" => p.nms_threshold = value.get().unwrap(),
            "max-faces" => p.max_faces = value.get::<u32>().unwrap() as usize,
            "min-face-size" => p.min_face_size = value.get::<u32>().unwrap() as f32,
            "inference-size" => p.inference_size = value.get::<u32>().unwrap() as usize,
            "scaling-method" => p.scale_filter = value.get::<ScalingMethod>().unwrap().into(),
            "tiling" => p.tiling = value.get::<Tiling>().unwrap().into(),
            "tile-scale" => p.tile_scale = value.get().unwrap(),
            "regions" => {
                let text = text();
                let regions: Vec<Rect> = parse_regions(&text).map_err(|why| {
                    format!("invalid regions '{text}': {why}; the previous regions stay")
                })?;
                p.regions = regions;
                self.regions_text = text;
            }
            "threads" => s.threads = value.get::<u32>().unwrap() as usize,
            "execution-provider" => s.provider = value.get::<ExecutionProvider>().unwrap().into(),
            "device-id" => s.device_id = value.get::<u32>().unwrap() as i32,
            "tensorrt-fp16" => s.tensorrt_fp16 = value.get().unwrap(),
            "tensorrt-cache-dir" => {
                s.tensorrt_cache = Some(text()).filter(|t| !t.is_empty()).map(PathBuf::from)
            }
            "backend" => s.backend = value.get::<Backend>().unwrap().into(),
            "torch-fp16" => s.torch_fp16 = value.get().unwrap(),
            "batch-size" => c.batch_size = value.get::<u32>().unwrap() as usize,
            "batch-timeout" => c.batch_timeout = Duration::from_micros(value.get().unwrap()),
            "interval" => self.interval = value.get().unwrap(),
            "post-messages" => self.post_messages = value.get().unwrap(),
            "async" => self.async_ = value.get().unwrap(),
            "frames-in-flight" => self.frames_in_flight = value.get().unwrap(),
            "shared" => self.shared = value.get().unwrap(),
            "roi-type" => self.roi_type = text(),
            "refresh-interval" => self.refresh_interval = value.get().unwrap(),
            _ => unreachable!("no property {name}"),
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> glib::Value {
        let (p, c, s) = (&self.params, &self.client, &self.session);
        match name {
            "model" => self.model.to_value(),
            "confidence-threshold" => p.confidence_threshold.to_value(),
            "nms-threshold" => p.nms_threshold.to_value(),
            "max-faces" => (p.max_faces as u32).to_value(),
            "min-face-size" => (p.min_face_size as u32).to_value(),
            "inference-size" => (p.inference_size as u32).to_value(),
            "scaling-method" => ScalingMethod::from(p.scale_filter).to_value(),
            "tiling" => Tiling::from(p.tiling).to_value(),
            "tile-scale" => p.tile_scale.to_value(),
            "regions" => self.regions_text.to_value(),
            "threads" => (s.threads as u32).to_value(),
            "execution-provider" => ExecutionProvider::from(s.provider).to_value(),
            "device-id" => (s.device_id as u32).to_value(),
            "tensorrt-fp16" => s.tensorrt_fp16.to_value(),
            "tensorrt-cache-dir" => cache_text(s).to_value(),
            "backend" => Backend::from(s.backend).to_value(),
            "torch-fp16" => s.torch_fp16.to_value(),
            "batch-size" => (c.batch_size as u32).to_value(),
            "batch-timeout" => (c.batch_timeout.as_micros() as u64).to_value(),
            "interval" => self.interval.to_value(),
            "post-messages" => self.post_messages.to_value(),
            "async" => self.async_.to_value(),
            "frames-in-flight" => self.frames_in_flight.to_value(),
            "shared" => self.shared.to_value(),
            "roi-type" => self.roi_type.to_value(),
            "refresh-interval" => self.refresh_interval.to_value(),
            _ => unreachable!("no property {name}"),
        }
    }
}

/// The TensorRT cache directory as the property shows it: empty = no cache.
fn cache_text(session: &SessionConfig) -> String {
    session
        .tensorrt_cache
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Whether `pspec` may change while the element runs: properties made with `mutable_ready()`
/// apply at the next start only.
pub(super) fn start_only(pspec: &glib::ParamSpec) -> bool {
    !pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
}

/// The element's properties; their defaults come from [`Settings::default`].
pub(super) fn properties() -> Vec<glib::ParamSpec> {
    let d = Settings::default();
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb("Path of the RetinaFace ONNX model (default: $RETINAFACE_MODEL or the model installed by scripts/setup.sh). Set while playing, the new model loads in the background and frames switch to it between two frames; a model that does not load is reported with a WARNING and the old one stays")
            .default_value(Some(d.model.as_str()))
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("confidence-threshold")
            .nick("Confidence threshold")
            .blurb("Minimum face score (0..1)")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(d.params.confidence_threshold)
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("nms-threshold")
            .nick("NMS threshold")
            .blurb("Overlap (IoU) above which the weaker of two faces is dropped")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(d.params.nms_threshold)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("max-faces")
            .nick("Maximum faces")
            .blurb(&format!("Report at most this many faces per frame, best first (0 = the ceiling of {MAX_FACES})"))
            .maximum(MAX_FACES as u32)
            .default_value(d.params.max_faces as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("min-face-size")
            .nick("Minimum face size")
            .blurb("Ignore faces narrower or shorter than this many frame pixels")
            .default_value(d.params.min_face_size as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("inference-size")
            .nick("Inference size")
            .blurb("Long side in pixels of the frame copy the model sees, aspect kept (0 = native size). Memory and time grow with its square: see README")
            .maximum(MAX_INFERENCE_SIZE)
            .default_value(d.params.inference_size as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("scaling-method", ScalingMethod::from(d.params.scale_filter))
            .nick("Scaling method")
            .blurb("How frames are scaled to the inference size")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("interval")
            .nick("Interval")
            .blurb("Run the model on every N-th frame; frames in between carry the last faces")
            .minimum(1)
            .default_value(d.interval)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("ONNX Runtime intra-op threads (0 = one per core); threads never spin")
            .maximum(MAX_THREADS)
            .default_value(d.session.threads as u32)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("execution-provider", ExecutionProvider::from(d.session.provider))
            .nick("Execution provider")
            .blurb("Where inference runs; an unavailable GPU provider falls back to CPU with a warning")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("device-id")
            .nick("Device id")
            .blurb("GPU index for the cuda and tensorrt execution providers")
            .maximum(MAX_DEVICE_ID)
            .default_value(d.session.device_id as u32)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("tensorrt-fp16")
            .nick("TensorRT FP16")
            .blurb("tensorrt: build the engine in half precision where the GPU supports it")
            .default_value(d.session.tensorrt_fp16)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tensorrt-cache-dir")
            .nick("TensorRT cache directory")
            .blurb("tensorrt: where built engines are kept, so that later starts with the same model, GPU and options skip the build (minutes); empty = build at every start")
            .default_value(Some(cache_text(&d.session).as_str()))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("backend", Backend::from(d.session.backend))
            .nick("Backend")
            .blurb("Runtime that runs the model: onnxruntime, or torch (libtorch, a plugin built with --features torch; runs the TorchScript .pt beside the model's .onnx on the CPU, or on CUDA device-id with execution-provider=cuda)")
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("torch-fp16")
            .nick("Torch FP16")
            .blurb("backend=torch on CUDA: run the model in half precision (a warning on the CPU, where it runs in FP32)")
            .default_value(d.session.torch_fp16)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("post-messages")
            .nick("Post messages")
            .blurb(&format!("Post a '{MESSAGE_NAME}' element message with the faces of every processed frame"))
            .default_value(d.post_messages)
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("tiling", Tiling::from(d.params.tiling))
            .nick("Tiling")
            .blurb("auto: frames (or regions) larger than a tile are covered by overlapping tiles of inference-size at tile-scale, plus one whole pass at inference-size for large faces: finds small faces in wide scenes with memory bounded by the tile size (time ≈ 1.3–1.5× a native-size pass on CPU; inference-size=0 never tiles)")
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("tile-scale")
            .nick("Tile scale")
            .blurb("Scale of tiles: 1 = native frame pixels; 2 = upsampled twice (faces under 16 px, 4× the tiles)")
            .minimum(TILE_SCALE_RANGE.0)
            .maximum(TILE_SCALE_RANGE.1)
            .default_value(d.params.tile_scale)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("batch-size")
            .nick("Batch size")
            .blurb("Most inputs of one model run, counting those of other streams sharing the model (elements with the same model, provider, device and threads share one session); a frame's own tiles always share runs of up to 4")
            .minimum(1)
            .maximum(ORT_MAX_BATCH as u32)
            .default_value(d.client.batch_size as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt64::builder("batch-timeout")
            .nick("Batch timeout")
            .blurb("Longest a frame waits for other streams to fill its batch, in µs (0 = run with whatever is queued)")
            .maximum(MAX_BATCH_TIMEOUT_US)
            .default_value(d.client.batch_timeout.as_micros() as u64)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("async")
            .nick("Asynchronous")
            .blurb("Never wait for the model: a frame is handed over only if the model is free (else not analysed), and every buffer carries the latest finished faces, marked as not analysed on it. No latency is added")
            .default_value(d.async_)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("frames-in-flight")
            .nick("Frames in flight")
            .blurb("Sync mode: how many frames of this stream are handed to the model before the oldest leaves with its faces (like DL Streamer's nireq). 1 = each frame waits for its own inference; more lets decoding and preprocessing of the next frames overlap the model, for throughput, at the cost of holding that many buffers and of that much latency (reported). Faces are the same as with 1; ignored with async=true")
            .minimum(1)
            .maximum(MAX_FRAMES_IN_FLIGHT)
            .default_value(d.frames_in_flight)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("shared")
            .nick("Shared")
            .blurb("Share one model session with every other element of the process that has the same model, execution provider, device and threads (batching across streams needs it); false = a session of its own")
            .default_value(d.shared)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("refresh-interval")
            .nick("Refresh interval")
            .blurb("With roi-type, motion gating (e.g. after retinafacemotion): look at the whole frame (or the regions property) every this many frames, so a face that appeared or left without moving is caught, and in between keep the faces outside the upstream regions where they were found (they did not move). 0 = the upstream regions are all that is looked at, nothing is kept outside them")
            .default_value(d.refresh_interval)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("roi-type")
            .nick("ROI type")
            .blurb("Also detect inside the upstream region-of-interest metas of this roi_type (e.g. from gvaattachroi or the application; 'face' is never used); when set, a frame with neither such metas nor 'regions' is not analysed (empty = ignore upstream ROIs)")
            .default_value(Some(""))
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("regions")
            .nick("Regions")
            .blurb("Detect only inside these rectangles, 'x,y,w,h;x,y,w,h;…' in frame pixels (empty = whole frame); faces are reported in frame pixels")
            .default_value(Some(""))
            .mutable_playing()
            .build(),
    ]
}
