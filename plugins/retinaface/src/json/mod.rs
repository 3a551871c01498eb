//! `retinafacejson`: writes the faces on each buffer (read from the face ROI metas, see
//! [`crate::facemeta`]) as one JSON line per buffer. Buffers pass through untouched.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! retinafacedetect ! \
//!     retinafacejson location=faces.jsonl ! fakesink
//! ```
//!
//! Line schema: `{"frame": n, "pts": ns|null, "width": w, "height": h, "faces": [{"x", "y",
//! "width", "height", "score", "landmarks": [[x, y] × 5]}]}`, all in the buffer's pixels.

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
