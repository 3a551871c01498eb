//! `retinafacedetect`: finds faces with a RetinaFace ONNX model and attaches them to each buffer
//! as region-of-interest metadata (see [`crate::facemeta`] for the schema). Pixels are never
//! changed.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
//!     retinafacedetect confidence-threshold=0.6 ! retinafacejson location=faces.jsonl ! fakesink
//! ```

use gst::prelude::*;

mod imp;
mod job;
mod latency;
mod roi;
mod settings;

/// Where the model runs; an unavailable GPU provider falls back to CPU with a warning.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFaceExecutionProvider")]
pub enum ExecutionProvider {
    #[default]
    #[enum_value(name = "CPU (ONNX Runtime default provider)", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "CUDA (needs onnxruntime-gpu)", nick = "cuda")]
    Cuda = 1,
    #[enum_value(
        name = "TensorRT, with CUDA fallback (needs onnxruntime-gpu)",
        nick = "tensorrt"
    )]
    Tensorrt = 2,
}

impl From<ExecutionProvider> for retinaface::ExecutionProvider {
    fn from(p: ExecutionProvider) -> Self {
        match p {
            ExecutionProvider::Cpu => Self::Cpu,
            ExecutionProvider::Cuda => Self::Cuda,
            ExecutionProvider::Tensorrt => Self::TensorRt,
        }
    }
}

impl From<retinaface::ExecutionProvider> for ExecutionProvider {
    fn from(p: retinaface::ExecutionProvider) -> Self {
        match p {
            retinaface::ExecutionProvider::Cpu => Self::Cpu,
            retinaface::ExecutionProvider::Cuda => Self::Cuda,
            retinaface::ExecutionProvider::TensorRt => Self::Tensorrt,
        }
    }
}

/// How frames are scaled to the inference size.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFaceScalingMethod")]
pub enum ScalingMethod {
    #[default]
    #[enum_value(name = "Nearest neighbour (fastest)", nick = "nearest")]
    Nearest = 0,
    #[enum_value(
        name = "Bilinear (smoother, ~1 ms more per 1080p frame)",
        nick = "bilinear"
    )]
    Bilinear = 1,
}

impl From<ScalingMethod> for retinaface::ScaleFilter {
    fn from(m: ScalingMethod) -> Self {
        match m {
            ScalingMethod::Nearest => Self::Nearest,
            ScalingMethod::Bilinear => Self::Bilinear,
        }
    }
}

impl From<retinaface::ScaleFilter> for ScalingMethod {
    fn from(m: retinaface::ScaleFilter) -> Self {
        match m {
            retinaface::ScaleFilter::Nearest => Self::Nearest,
            retinaface::ScaleFilter::Bilinear => Self::Bilinear,
        }
    }
}

/// Whether wide frames are covered by overlapping native-scale tiles (small faces).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFaceTiling")]
pub enum Tiling {
    #[default]
    #[enum_value(name = "Off: each region scaled to inference-size", nick = "off")]
    Off = 0,
    #[enum_value(
        name = "Auto: overlapping tiles at tile-scale plus one whole pass, when larger than a tile",
        nick = "auto"
    )]
    Auto = 1,
}

impl From<Tiling> for retinaface::Tiling {
    fn from(t: Tiling) -> Self {
        match t {
            Tiling::Off => Self::Off,
            Tiling::Auto => Self::Auto,
        }
    }
}

impl From<retinaface::Tiling> for Tiling {
    fn from(t: retinaface::Tiling) -> Self {
        match t {
            retinaface::Tiling::Off => Self::Off,
            retinaface::Tiling::Auto => Self::Auto,
        }
    }
}

glib::wrapper! {
    pub struct RetinaFaceDetect(ObjectSubclass<imp::RetinaFaceDetect>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    ScalingMethod::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    Tiling::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "retinafacedetect",
        gst::Rank::NONE,
        RetinaFaceDetect::static_type(),
    )
}

/// Name of the element message posted per processed frame when `post-messages` is set.
pub const MESSAGE_NAME: &str = "retinaface";

/// Default model path: `$RETINAFACE_MODEL`, else where scripts/setup.sh installs it.
pub fn default_model_path() -> String {
    std::env::var("RETINAFACE_MODEL")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/local/share/retinaface/models/retinaface-mv025.onnx".into())
}

/// Default TensorRT engine cache: `$XDG_CACHE_HOME/retinaface/tensorrt`, else
/// `$HOME/.cache/retinaface/tensorrt`; empty (no cache) when neither is set.
pub fn default_tensorrt_cache() -> String {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|home| std::path::Path::new(&home).join(".cache")))
        .map(|base| base.join("retinaface/tensorrt").display().to_string())
        .unwrap_or_default()
}
