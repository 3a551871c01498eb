use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use retinaface::detector::{MAX_FACES, Pending};
use retinaface::engine::{ClientOptions, EngineKey, ORT_MAX_BATCH, Registry};
use retinaface::tiling::{Rect, clip_regions, parse_regions};
use retinaface::{DetectParams, Detector, Face, Frame, PixelLayout, Plane, SessionConfig};

use super::latency::ProcessingLatency;
use super::{
    ExecutionProvider, MESSAGE_NAME, ScalingMethod, Tiling, default_model_path,
    default_tensorrt_cache,
};
use crate::{facemeta, videoformat};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacedetect",
        gst::DebugColorFlags::empty(),
        Some("RetinaFace face detector"),
    )
});

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

#[derive(Debug, Clone)]
struct Settings {
    model: String,
    /// Counts `model` changes, so that a running element sees a new model without comparing
    /// paths every frame.
    model_serial: u64,
    confidence_threshold: f32,
    nms_threshold: f32,
    max_faces: u32,
    min_face_size: u32,
    inference_size: u32,
    scaling_method: ScalingMethod,
    interval: u32,
    threads: u32,
    execution_provider: ExecutionProvider,
    post_messages: bool,
    tiling: Tiling,
    tile_scale: f32,
    /// `regions` as the user wrote it, and parsed.
    regions_text: String,
    regions: Vec<Rect>,
    batch_size: u32,
    /// µs.
    batch_timeout: u64,
    async_: bool,
    shared: bool,
    /// roi_type of upstream ROI metas to look inside (empty = ignore them).
    roi_type: String,
    device_id: u32,
    tensorrt_fp16: bool,
    /// Empty: no cache.
    tensorrt_cache_dir: String,
}

impl Default for Settings {
    fn default() -> Self {
        let params = DetectParams::default();
        Self {
            model: default_model_path(),
            model_serial: 0,
            confidence_threshold: params.confidence_threshold,
            nms_threshold: params.nms_threshold,
            max_faces: params.max_faces as u32,
            min_face_size: params.min_face_size as u32,
            inference_size: params.inference_size as u32,
            scaling_method: match params.scale_filter {
                retinaface::ScaleFilter::Nearest => ScalingMethod::Nearest,
                retinaface::ScaleFilter::Bilinear => ScalingMethod::Bilinear,
            },
            interval: 1,
            threads: 0,
            execution_provider: ExecutionProvider::default(),
            post_messages: false,
            tiling: match params.tiling {
                retinaface::Tiling::Off => Tiling::Off,
                retinaface::Tiling::Auto => Tiling::Auto,
            },
            tile_scale: params.tile_scale,
            regions_text: String::new(),
            regions: params.regions,
            batch_size: ClientOptions::default().batch_size as u32,
            batch_timeout: ClientOptions::default().batch_timeout.as_micros() as u64,
            async_: false,
            shared: true,
            roi_type: String::new(),
            device_id: 0,
            tensorrt_fp16: true,
            tensorrt_cache_dir: default_tensorrt_cache(),
        }
    }
}

impl Settings {
    fn detect_params(&self) -> DetectParams {
        DetectParams {
            confidence_threshold: self.confidence_threshold,
            nms_threshold: self.nms_threshold,
            max_faces: self.max_faces as usize,
            min_face_size: self.min_face_size as f32,
            inference_size: self.inference_size as usize,
            scale_filter: self.scaling_method.into(),
            tiling: self.tiling.into(),
            tile_scale: self.tile_scale,
            regions: self.regions.clone(),
        }
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            threads: self.threads as usize,
            provider: self.execution_provider.into(),
            device_id: self.device_id as i32,
            tensorrt_fp16: self.tensorrt_fp16,
            tensorrt_cache: (!self.tensorrt_cache_dir.is_empty())
                .then(|| self.tensorrt_cache_dir.clone().into()),
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            batch_size: self.batch_size as usize,
            batch_timeout: Duration::from_micros(self.batch_timeout),
        }
    }
}

struct State {
    detector: Detector,
    /// Session settings of the engine key (a new `model` keeps them).
    config: SessionConfig,
    /// Model path in use, and the `model_serial` last handed to the engine.
    model: String,
    model_serial: u64,
    /// Model path a swap is loading.
    swapping: Option<String>,
    /// Negotiated caps and the matching pixel layout.
    info: Option<(gst_video::VideoInfo, PixelLayout)>,
    /// Frames seen since the last caps, for `interval`.
    frames: u64,
    /// Faces of the last processed frame, repeated on skipped frames so nothing blinks.
    last_faces: Vec<Face>,
    /// The frame `last_faces` were found on; `None` before the first result.
    last_detected: Option<FrameStamp>,
    /// Async mode: the frame handed to the engine, until its faces are collected.
    pending: Option<(Pending, FrameStamp)>,
    /// Regions and frame size last checked against each other, so each problem is reported once.
    regions_checked: Option<(Vec<Rect>, u32, u32)>,
}

impl State {
    /// Forgets everything carried over from earlier frames, so the next frame is analysed afresh.
    /// Flush, seek (new segment), stream start and caps changes all come through here: a face
    /// from before a seek must never be shown (or left unblurred) after it.
    fn reset_carried(&mut self) {
        self.frames = 0;
        self.last_faces.clear();
        self.last_detected = None;
        // Its faces belong to the frames before the reset (dropping the tickets cancels it).
        self.pending = None;
    }
}

/// A frame the detector handled: its place in the count since the last reset, and its pts. What
/// a result's age is measured from.
#[derive(Debug, Clone, Copy)]
struct FrameStamp {
    index: u64,
    pts: Option<gst::ClockTime>,
}

/// Properties that take effect only at the next start (READY → PAUSED).
const START_ONLY: [&str; 6] = [
    "threads",
    "execution-provider",
    "shared",
    "device-id",
    "tensorrt-fp16",
    "tensorrt-cache-dir",
];

#[derive(Default)]
pub struct RetinaFaceDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Outside `state`: latency queries must not wait for a frame's inference.
    latency: ProcessingLatency,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceDetect {
    const NAME: &'static str = "GstRetinaFaceDetect";
    type Type = super::RetinaFaceDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RetinaFaceDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
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
                    .default_value(d.confidence_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("nms-threshold")
                    .nick("NMS threshold")
                    .blurb("Overlap (IoU) above which the weaker of two faces is dropped")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.nms_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-faces")
                    .nick("Maximum faces")
                    .blurb(&format!("Report at most this many faces per frame, best first (0 = the ceiling of {MAX_FACES})"))
                    .maximum(MAX_FACES as u32)
                    .default_value(d.max_faces)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-face-size")
                    .nick("Minimum face size")
                    .blurb("Ignore faces narrower or shorter than this many frame pixels")
                    .default_value(d.min_face_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-size")
                    .nick("Inference size")
                    .blurb("Long side in pixels of the frame copy the model sees, aspect kept (0 = native size). Memory and time grow with its square: see README")
                    .maximum(MAX_INFERENCE_SIZE)
                    .default_value(d.inference_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("scaling-method", d.scaling_method)
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
                    .default_value(d.threads)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", d.execution_provider)
                    .nick("Execution provider")
                    .blurb("Where inference runs; an unavailable GPU provider falls back to CPU with a warning")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("device-id")
                    .nick("Device id")
                    .blurb("GPU index for the cuda and tensorrt execution providers")
                    .maximum(MAX_DEVICE_ID)
                    .default_value(d.device_id)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("tensorrt-fp16")
                    .nick("TensorRT FP16")
                    .blurb("tensorrt: build the engine in half precision where the GPU supports it")
                    .default_value(d.tensorrt_fp16)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("tensorrt-cache-dir")
                    .nick("TensorRT cache directory")
                    .blurb("tensorrt: where built engines are kept, so that later starts with the same model, GPU and options skip the build (minutes); empty = build at every start")
                    .default_value(Some(d.tensorrt_cache_dir.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(&format!("Post a '{MESSAGE_NAME}' element message with the faces of every processed frame"))
                    .default_value(d.post_messages)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("tiling", d.tiling)
                    .nick("Tiling")
                    .blurb("auto: frames (or regions) larger than a tile are covered by overlapping tiles of inference-size at tile-scale, plus one whole pass at inference-size for large faces: finds small faces in wide scenes with memory bounded by the tile size (time ≈ 1.3–1.5× a native-size pass on CPU; inference-size=0 never tiles)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("tile-scale")
                    .nick("Tile scale")
                    .blurb("Scale of tiles: 1 = native frame pixels; 2 = upsampled twice (faces under 16 px, 4× the tiles)")
                    .minimum(TILE_SCALE_RANGE.0)
                    .maximum(TILE_SCALE_RANGE.1)
                    .default_value(d.tile_scale)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most inputs of one model run, counting those of other streams sharing the model (elements with the same model, provider, device and threads share one session); a frame's own tiles always share runs of up to 4")
                    .minimum(1)
                    .maximum(ORT_MAX_BATCH as u32)
                    .default_value(d.batch_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("batch-timeout")
                    .nick("Batch timeout")
                    .blurb("Longest a frame waits for other streams to fill its batch, in µs (0 = run with whatever is queued)")
                    .maximum(MAX_BATCH_TIMEOUT_US)
                    .default_value(d.batch_timeout)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("async")
                    .nick("Asynchronous")
                    .blurb("Never wait for the model: a frame is handed over only if the model is free (else not analysed), and every buffer carries the latest finished faces, marked as not analysed on it. No latency is added")
                    .default_value(d.async_)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("shared")
                    .nick("Shared")
                    .blurb("Share one model session with every other element of the process that has the same model, execution provider, device and threads (batching across streams needs it); false = a session of its own")
                    .default_value(d.shared)
                    .mutable_ready()
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
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if START_ONLY.contains(&pspec.name()) && self.state.lock().unwrap().is_some() {
            // Silently keeping the value for the next start would make the user believe it
            // applies now.
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "'{}' cannot change while the element is running; the change is ignored. Set it in the NULL or READY state.",
                    pspec.name()
                )
            );
            return;
        }
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(default_model_path);
                s.model_serial += 1;
            }
            "batch-size" => s.batch_size = value.get().unwrap(),
            "batch-timeout" => s.batch_timeout = value.get().unwrap(),
            "async" => s.async_ = value.get().unwrap(),
            "shared" => s.shared = value.get().unwrap(),
            "roi-type" => s.roi_type = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "device-id" => s.device_id = value.get().unwrap(),
            "tensorrt-fp16" => s.tensorrt_fp16 = value.get().unwrap(),
            "tensorrt-cache-dir" => {
                s.tensorrt_cache_dir = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "confidence-threshold" => s.confidence_threshold = value.get().unwrap(),
            "nms-threshold" => s.nms_threshold = value.get().unwrap(),
            "max-faces" => s.max_faces = value.get().unwrap(),
            "min-face-size" => s.min_face_size = value.get().unwrap(),
            "inference-size" => s.inference_size = value.get().unwrap(),
            "scaling-method" => s.scaling_method = value.get().unwrap(),
            "interval" => s.interval = value.get().unwrap(),
            "threads" => s.threads = value.get().unwrap(),
            "execution-provider" => s.execution_provider = value.get().unwrap(),
            "post-messages" => s.post_messages = value.get().unwrap(),
            "tiling" => s.tiling = value.get().unwrap(),
            "tile-scale" => s.tile_scale = value.get().unwrap(),
            "regions" => {
                let text = value.get::<Option<String>>().unwrap().unwrap_or_default();
                match parse_regions(&text) {
                    Ok(regions) => {
                        s.regions = regions;
                        s.regions_text = text;
                    }
                    Err(why) => {
                        drop(s);
                        gst::element_imp_warning!(
                            self,
                            gst::LibraryError::Settings,
                            (
                                "invalid regions '{}': {}; the previous regions stay",
                                text,
                                why
                            )
                        );
                        return;
                    }
                }
            }
            _ => unreachable!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.to_value(),
            "confidence-threshold" => s.confidence_threshold.to_value(),
            "nms-threshold" => s.nms_threshold.to_value(),
            "max-faces" => s.max_faces.to_value(),
            "min-face-size" => s.min_face_size.to_value(),
            "inference-size" => s.inference_size.to_value(),
            "scaling-method" => s.scaling_method.to_value(),
            "interval" => s.interval.to_value(),
            "threads" => s.threads.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "tiling" => s.tiling.to_value(),
            "tile-scale" => s.tile_scale.to_value(),
            "regions" => s.regions_text.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "batch-timeout" => s.batch_timeout.to_value(),
            "async" => s.async_.to_value(),
            "shared" => s.shared.to_value(),
            "roi-type" => s.roi_type.to_value(),
            "device-id" => s.device_id.to_value(),
            "tensorrt-fp16" => s.tensorrt_fp16.to_value(),
            "tensorrt-cache-dir" => s.tensorrt_cache_dir.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceDetect {}

impl ElementImpl for RetinaFaceDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace face detector",
                "Filter/Analyzer/Video",
                "Detects faces with a RetinaFace ONNX model and attaches box, score and 5 landmarks as ROI metadata",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&crate::detect::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RetinaFaceDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let config = settings.session_config();
        let started = std::time::Instant::now();
        if config.provider == retinaface::ExecutionProvider::TensorRt {
            // Building an engine takes minutes: say so before the wait, not after.
            let cache = config.tensorrt_cache.as_ref().map_or_else(
                || "no cache: every start builds".to_string(),
                |dir| format!("cached in {}", dir.display()),
            );
            gst::element_imp_info!(
                self,
                gst::LibraryError::Init,
                (
                    "TensorRT: loading or building the engine of {} on GPU {} (the first start \
                     with a model and options builds it, which can take minutes; {cache})",
                    settings.model,
                    config.device_id
                )
            );
        }
        // Elements with the same model, provider, device and threads share one session
        // (Registry::global). That is safe: a session only maps an input tensor to outputs and
        // holds no per-stream state; each element keeps its own preprocessing, priors, carried
        // faces and settings, and its requests come back on their own tickets. The engine (and
        // its memory) goes when the last element using it stops. `shared=false` gets a registry,
        // hence a session, of its own.
        let key = EngineKey::new(Path::new(&settings.model), &config);
        let private;
        let registry = if settings.shared {
            Registry::global()
        } else {
            private = Registry::new();
            &private
        };
        let detector = Detector::connect(
            registry,
            key,
            &crate::ort_search_dirs(),
            settings.client_options(),
        )
        .map_err(|e| {
            use retinaface::detector::DetectorError as E;
            use retinaface::runtime::RuntimeError as R;
            match e {
                E::Runtime(R::ModelMissing(_)) => {
                    gst::error_msg!(gst::ResourceError::NotFound, ("{e}"))
                }
                E::Runtime(R::LibraryMissing { .. }) => {
                    gst::error_msg!(gst::LibraryError::Init, ("{e}"))
                }
                E::Runtime(R::ModelInvalid { .. } | R::ModelIsDirectory(_))
                | E::Contract { .. } => {
                    gst::error_msg!(gst::ResourceError::OpenRead, ("{e}"))
                }
                other => gst::error_msg!(gst::LibraryError::Failed, ("{other}")),
            }
        })?;
        for warning in &detector.warnings {
            gst::element_imp_warning!(self, gst::LibraryError::Init, ("{}", warning));
        }
        gst::info!(
            CAT,
            imp = self,
            "using {} ({:?}), ready after {:.1} s",
            settings.model,
            detector.contract(),
            started.elapsed().as_secs_f64()
        );
        *self.state.lock().unwrap() = Some(State {
            detector,
            config,
            model: settings.model,
            model_serial: settings.model_serial,
            swapping: None,
            info: None,
            frames: 0,
            last_faces: Vec::new(),
            last_detected: None,
            pending: None,
            regions_checked: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        self.latency.clear();
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if !BaseTransformImplExt::parent_query(self, direction, query) {
            return false;
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            // Sync mode: a buffer leaves up to one inference after it came (see latency.rs).
            let ours = gst::ClockTime::try_from(self.latency.published()).unwrap_or_default();
            let (live, min, max) = q.result();
            q.set(live, min + ours, max.map(|max| max + ours));
        }
        true
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let layout = videoformat::pixel_layout(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format {:?}", info.format()))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        gst::debug!(
            CAT,
            imp = self,
            "new caps {}x{} {:?}",
            info.width(),
            info.height(),
            info.format()
        );
        // Faces of the old geometry would be misplaced: start over on the next frame.
        state.info = Some((info, layout));
        state.reset_carried();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(
            event.view(),
            gst::EventView::FlushStop(_)
                | gst::EventView::Segment(_)
                | gst::EventView::StreamStart(_)
        ) && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            gst::debug!(
                CAT,
                imp = self,
                "{:?}: forgetting carried faces",
                event.type_()
            );
            state.reset_carried();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Only what a frame needs: cloning all settings would copy the model path every frame.
        let (mut params, interval, post_messages, options, model_serial, async_, roi_type) = {
            let s = self.settings.lock().unwrap();
            (
                s.detect_params(),
                s.interval,
                s.post_messages,
                s.client_options(),
                s.model_serial,
                s.async_,
                (!s.roi_type.is_empty()).then(|| s.roi_type.clone()),
            )
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        state.detector.set_options(options);
        self.follow_model(state, model_serial);
        let (info, layout) = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let detect_failed = |e: retinaface::detector::DetectorError| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("face detection failed: {e}")
            );
            gst::FlowError::Error
        };
        if !async_ {
            // Switched to sync: what is in flight would come late.
            state.pending = None;
        }
        // Whether the latency this element reports changed (told to the pipeline below).
        let mut latency_changed = async_ && self.latency.clear();
        let this = FrameStamp {
            index: state.frames,
            pts: buf.pts(),
        };
        // Whether this buffer is the first to carry its result (async: faces of an earlier
        // frame that came back since the last buffer; otherwise this frame's own).
        let mut arrived = false;
        if let Some((pending, _)) = state.pending.as_mut()
            && let Some(result) = state.detector.try_collect(pending, &params)
        {
            let (_, from) = state.pending.take().expect("collected");
            state.last_faces = result.map_err(detect_failed)?;
            state.last_detected = Some(from);
            arrived = true;
        }
        let mut run_model = state.frames % interval.max(1) as u64 == 0;
        state.frames += 1;
        if async_ && state.pending.is_some() {
            // The model is busy with an earlier frame: this one is not analysed.
            run_model = false;
        }
        // Whether the faces attached were found on this very frame.
        let mut analysed = false;
        if run_model {
            self.check_regions(state, &params.regions, info.width(), info.height());
        }
        if run_model && let Some(roi_type) = &roi_type {
            params
                .regions
                .extend(super::roi::upstream_regions(buf, roi_type));
            if params.regions.is_empty() {
                // Nothing to look at on this frame: no faces, and nothing carried into it.
                run_model = false;
                state.last_faces.clear();
                state.last_detected = Some(this);
                analysed = true;
                arrived = true;
            }
        }
        if run_model {
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "buffer too small for caps {}x{}",
                            info.width(),
                            info.height()
                        )
                    );
                    gst::FlowError::Error
                })?;
            let planes: Vec<Plane> = (0..frame.n_planes())
                .map(|i| Plane {
                    data: frame.plane_data(i).unwrap_or(&[]),
                    stride: frame.plane_stride()[i as usize] as usize,
                })
                .collect();
            let core_frame = Frame {
                layout,
                width: info.width() as usize,
                height: info.height() as usize,
                planes: &planes,
                matrix: videoformat::yuv_matrix(&info.colorimetry()),
            };
            if async_ {
                // The frame is copied into slots here, so the buffer is never held.
                let submitted = state.detector.try_submit(&core_frame, &params);
                if let Some(mut pending) = submitted.map_err(detect_failed)? {
                    match state.detector.try_collect(&mut pending, &params) {
                        // Its own faces came back in time (e.g. nothing to look at).
                        Some(result) => {
                            state.last_faces = result.map_err(detect_failed)?;
                            state.last_detected = Some(this);
                            analysed = true;
                            arrived = true;
                        }
                        None => state.pending = Some((pending, this)),
                    }
                }
            } else {
                let started = std::time::Instant::now();
                state.last_faces = state
                    .detector
                    .detect(&core_frame, &params)
                    .map_err(detect_failed)?;
                latency_changed |= self.latency.record(started.elapsed());
                state.last_detected = Some(this);
                analysed = true;
                arrived = true;
            }
        }
        let faces = state.last_faces.clone();
        let provenance = facemeta::Provenance {
            analysed,
            new_result: arrived,
            detected_pts: state.last_detected.and_then(|d| d.pts),
            result_age: state.last_detected.map(|d| this.index - d.index),
        };
        drop(guard);
        if latency_changed {
            gst::debug!(
                CAT,
                imp = self,
                "latency now {:?}",
                self.latency.published()
            );
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        // The provenance tells consumers (the tracker) whether these faces are a new result and
        // which frame they were found on. No latency is reported for the model: in sync mode
        // the frame's own processing is not latency a live source must compensate, and in
        // async mode a buffer only waits for the hand-over (a copy into slots).
        facemeta::attach_detections(buf, &faces, provenance, info.width(), info.height());
        if post_messages && arrived {
            self.post_faces(buf, &faces, provenance);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl RetinaFaceDetect {
    /// Between two frames: starts loading a `model` set while running, and moves to it once
    /// loaded. A model that does not load is reported and the old one stays (also as the
    /// property's value).
    fn follow_model(&self, state: &mut State, model_serial: u64) {
        if model_serial != state.model_serial {
            let model = self.settings.lock().unwrap().model.clone();
            state.model_serial = model_serial;
            let key = EngineKey::new(Path::new(&model), &state.config);
            gst::info!(CAT, imp = self, "loading {model}");
            state.detector.client_mut().swap_model(key);
            state.swapping = Some(model);
        }
        let Some(outcome) = state.detector.client_mut().poll_swap() else {
            return;
        };
        let model = state.swapping.take().unwrap_or_default();
        match outcome {
            Ok(_) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "now using {model} ({:?})",
                    state.detector.contract()
                );
                state.model = model;
            }
            Err(e) => {
                {
                    let mut s = self.settings.lock().unwrap();
                    if s.model_serial == state.model_serial {
                        s.model = state.model.clone();
                    }
                }
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenRead,
                    ("{}; frames go on with '{}'", e, state.model)
                );
            }
        }
    }

    /// Posts a WARNING for each region outside the frame, once per regions and frame size.
    fn check_regions(&self, state: &mut State, regions: &[Rect], width: u32, height: u32) {
        let key = (regions.to_vec(), width, height);
        if state.regions_checked.as_ref() == Some(&key) {
            return;
        }
        for warning in clip_regions(regions, width as usize, height as usize).1 {
            gst::element_imp_warning!(self, gst::StreamError::Format, ("{}", warning));
        }
        state.regions_checked = Some(key);
    }

    /// One message per new result, on the buffer that first carries it.
    fn post_faces(&self, buf: &gst::BufferRef, faces: &[Face], provenance: facemeta::Provenance) {
        facemeta::post_message(
            self.obj().upcast_ref(),
            MESSAGE_NAME,
            buf,
            provenance,
            faces.iter().map(|f| {
                let record = facemeta::FaceRecord::from_face_since(f, None, provenance.result_age);
                (record, provenance.analysed)
            }),
        );
    }
}
