//! `retinafaceidentify`: says who each face is, by matching its embedding against a face library
//! (a folder with one sub-folder of photos per person, see [`retinaface::library`]). Pixels are
//! never changed.
//!
//! Place it after `retinafacetrack`: a face is then embedded per **track**, never per frame
//! (an embedding costs about as much as a detection): on the track's first analysed frames and
//! whenever a clearly better shot comes (the best-shot quality of [`retinaface::quality`], the
//! one `retinafacepublish` uses), at most a few times per track. The track's estimate (the
//! quality-weighted mean of its embeddings) is matched against the library after each shot and
//! when the library changes; the track is named while the best cosine similarity to a person's
//! photo is at least `threshold`, and is unknown otherwise. Every face of a track carries the
//! track's identity on every frame. Faces without a track ID (no tracker before it) are
//! embedded on every frame they are measured on: correct, but it costs an embedding per face per
//! analysed frame. Once faces with track IDs have come by, a face without one is a track the
//! tracker has not confirmed yet: it is named when it becomes a track.
//!
//! Only faces whose landmarks were measured on this very frame, or at most
//! [`MAX_SHOT_AGE`] frames before (an `async` detector's results arrive a few frames late), are
//! embedded: the crop is aligned on the landmarks, and old landmarks on a moved face give a
//! poor crop.
//!
//! Output: an `identity` param on each face's ROI meta (`label` = the name when named,
//! `confidence` = the similarity; see [`crate::facemeta`]), which `retinafacejson` writes as
//! `"name"`/`"similarity"`, `retinafaceoverlay draw-labels=true` draws, and `retinafacepublish`
//! puts on its events.
//!
//! **The library** is loaded when the element starts (photos → largest face → aligned →
//! embedded; a cache `.retinaface-embeddings` inside the folder, mode 0600, keyed by each
//! photo's content, makes the next start fast). Setting `library` while playing loads the new
//! folder in the background and switches to it when ready; with `watch-library` (default) the
//! folder is checked every 2 s and loaded again when a person or photo was added, removed or
//! replaced, so adding a person works without a restart. Each photo that gives no usable face is named in a WARNING and skipped.
//! With `unknown-folder` set, the best aligned crop of each track nobody matched is written
//! there as a JPEG when the track ends: move it into a person's folder to enrol them.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
//!     retinafacedetect ! retinafacetrack ! retinafaceidentify library=/srv/faces ! \
//!     retinafaceoverlay draw-labels=true ! videoconvert ! autovideosink
//! ```

use gst::prelude::*;

mod imp;
mod loading;

glib::wrapper! {
    pub struct RetinaFaceIdentify(ObjectSubclass<imp::RetinaFaceIdentify>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Name of the element message posted per frame when `post-messages` is set.
pub const MESSAGE_NAME: &str = "retinaface-identify";

/// Frames since a face's landmarks were measured, at most, for it to be embedded.
pub const MAX_SHOT_AGE: u64 = 2;

/// The embedding model used when `model` is not set: `RETINAFACE_EMBEDDING_MODEL`, else where
/// scripts/setup.sh installs `fr_feature.onnx`.
pub fn default_model_path() -> String {
    std::env::var("RETINAFACE_EMBEDDING_MODEL")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/local/share/retinaface/models/fr_feature.onnx".into())
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "retinafaceidentify",
        gst::Rank::NONE,
        RetinaFaceIdentify::static_type(),
    )
}
