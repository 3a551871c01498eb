//! What the tests and the measurement programs (`examples/`) share, once: where the models and
//! sample media are, running a pipeline to its end (or first frame) with a deadline so that a
//! hang fails instead of blocking CI, comparing faces, a pipeline to seek in, synthetic tracking
//! scenes with CLEAR-MOT/IDF1 ([`track_eval`]) and NVR walls with VOC AP ([`wall`]).
//!
//! ```ignore
//! use retinaface_testkit::*;
//! let run = run("filesrc location=… ! decodebin ! retinafacedetect ! appsink name=sink").unwrap();
//! let faces = run.faces();
//! ```

pub mod broker;
pub mod clips;
mod faces;
mod first_sample;
mod media;
mod pipeline;
pub mod process;
mod seeker;
pub mod track_eval;
pub mod wall;

pub use faces::{iou, worst_match};
pub use first_sample::first_sample;
pub use gstretinaface::facemeta::{self, FaceRecord};
pub use media::{PHOTOS, data_dir, media, model, plugin_dir};
pub use pipeline::{Played, Run, detect_image, init, play, run, wait_with_timeout};
pub use seeker::Seeker;
