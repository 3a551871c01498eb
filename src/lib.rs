//! Core of the RetinaFace GStreamer plugin and trainer: everything that must agree between the
//! model that is trained/exported and the element that runs it.
//!
//! - [`contract`]: what a RetinaFace ONNX model looks like (tensor names, colour order, mean,
//!   prior layout) and how ONNX metadata properties override the defaults.
//! - [`priors`]: the anchor ("prior box") grid for an input size.
//! - [`decode`]: turning `loc`/`conf`/`landmarks` rows into boxes and points.
//! - [`geometry`]: corner boxes, IoU, the centre form (once for everyone).
//! - [`nms`]: greedy non-maximum suppression.
//! - [`pixfmt`]: the pixel formats (planes, subsampling, component positions) and YUV matrices
//!   (both directions of conversion) shared by preprocessing and the plugin's overlay.
//! - [`preprocess`]: video frame (packed RGB or YUV) → model input tensor, with scaling.
//! - [`runtime`]: loading ONNX Runtime and building sessions with execution-provider fallback.
//! - [`postprocess`]: the faces of one region (batch slot) in frame pixels, and the finish step
//!   (NMS, limits) that merges a frame's regions; plugin and trainer share both.
//! - [`tiling`]: which crops of a frame the model sees (whole frame, regions, tiles).
//! - [`detector`]: the above put together, as a client of the [`engine`]: frame in, faces out;
//!   everything RetinaFace about the model (contract check, reading its outputs) is here.
//! - [`engine`] (`src/engine/`): runs *a model* (named tensors in, named tensors out, nothing
//!   RetinaFace): sessions shared per model file + session options, request queue, batching
//!   across streams, async hand-over, live model swap, the ONNX Runtime backend.
//! - [`motion`]: where something moves in a frame (regions for a motion-gated detector).
//! - [`track`]: faces across frames: Kalman motion, ByteTrack-style association, stable IDs.
//! - [`align`]: five landmarks → similarity transform onto the ArcFace template, and the warp of
//!   a face from any pixel format into an embedding model's input.
//! - [`embedding`]: face embeddings through the engine (contract from ONNX metadata, L2-normalised,
//!   cosine).
//! - [`library`]: the face library (a folder per person), its content-keyed cache, matching, and
//!   crops of unknown faces.
//! - [`quality`]: how good one picture of a face is (best shot).
//! - [`events`]: new / update / end events per track, and their JSON messages.
//! - [`publish`]: the bounded outbox between a streaming thread and a publisher thread.

pub mod align;
pub mod contract;
pub mod decode;
pub mod detector;
pub mod embedding;
pub mod engine;
pub mod events;
pub mod facerecord;
pub mod geometry;
pub mod library;
pub mod motion;
pub mod nms;
pub mod pixfmt;
pub mod postprocess;
pub mod preprocess;
pub mod priors;
pub mod publish;
pub mod quality;
pub mod runtime;
pub mod tiling;
pub mod track;

pub use contract::ModelContract;
pub use decode::Face;
pub use detector::{DetectParams, Detector};
pub use facerecord::FaceRecord;
pub use pixfmt::{PixelLayout, YuvMatrix};
pub use preprocess::{Frame, Plane, ScaleFilter};
pub use runtime::{ExecutionProvider, SessionConfig};
pub use tiling::{Rect, Tiling};
pub use track::{TrackedFace, Tracker, TrackerConfig};
