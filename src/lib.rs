//! Core of the RetinaFace GStreamer plugin and trainer: everything that must agree between the
//! model that is trained/exported and the element that runs it.
//!
//! - [`contract`]: what a RetinaFace ONNX model looks like (tensor names, colour order, mean,
//!   prior layout) and how ONNX metadata properties override the defaults.
//! - [`priors`]: the anchor ("prior box") grid for an input size.
//! - [`decode`]: turning `loc`/`conf`/`landmarks` rows into boxes and points.
//! - [`nms`]: greedy non-maximum suppression.
//! - [`preprocess`]: video frame (packed RGB or YUV) → model input tensor, with scaling.
//! - [`runtime`]: loading ONNX Runtime and building sessions with execution-provider fallback.
//! - [`detector`]: the above put together: frame in, faces out.

pub mod contract;
pub mod decode;
pub mod detector;
pub mod nms;
pub mod preprocess;
pub mod priors;
pub mod runtime;

pub use contract::ModelContract;
pub use decode::Face;
pub use detector::{DetectParams, Detector};
pub use preprocess::{Frame, PixelLayout, Plane, ScaleFilter, YuvMatrix};
pub use runtime::{ExecutionProvider, SessionConfig};
