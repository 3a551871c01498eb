//! `retinafacejson`: writes the faces on each buffer (read from the face ROI metas, see
//! [`crate::facemeta`]) as one JSON line per buffer. Buffers pass through untouched.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! retinafacedetect ! \
//!     retinafacejson location=faces.jsonl ! fakesink
//! ```
//!
//! Line schema: `{"frame": n, "pts": ns|null, "width": w, "height": h, "analysed": bool|null,
//! "faces": [{"x", "y", "width", "height", "score", "id", "landmarks": [[x, y] × 5]}]}`, all in
//! the buffer's pixels. `analysed`: the detector ran on this frame (false: faces carried from an
//! earlier one; null: the producer does not say). `id`: the track ID from `retinafacetrack`,
//! null without a tracker.
//!
//! Each line is written whole, unbuffered, as its buffer passes: a killed process leaves only
//! complete lines. A failed open or write (full disk, reader gone, standard output closed) posts
//! one ERROR naming the file or "standard output" and the OS error, fails the flow, and still
//! lets the pipeline stop and reach NULL.

use glib::prelude::*;

mod imp;

glib::wrapper! {
    pub struct RetinaFaceJson(ObjectSubclass<imp::RetinaFaceJson>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "retinafacejson",
        gst::Rank::NONE,
        RetinaFaceJson::static_type(),
    )
}
