//! `retinafacetrack`: gives each face a track ID that stays the same from frame to frame, and
//! moves faces along on frames the detector did not analyse (`interval` > 1) instead of
//! repeating them where they were. Pixels are never changed.
//!
//! Per buffer it reads the faces and which result they are ([`crate::facemeta::Provenance`]); on
//! a buffer carrying a new result the tracker ([`retinaface::Tracker`]: Kalman filter +
//! ByteTrack's two-stage IoU matching) is updated with the detections as of the frame they were
//! found on (an `async` result arrives some frames later), on a carried frame it only predicts. The
//! buffer's face metas are then replaced by the tracked faces, each with its ID in an
//! `object_id` param. Only confirmed tracks are output (`confirm-hits`), so a face shows up from
//! its second analysed frame by default.
//!
//! **Anonymising**: a face that is not (yet) confirmed is passed on without an ID, so
//! `retinafaceoverlay mode=blur` after the tracker covers it from its first detection.
//!
//! A flush (seek), a new segment, a new stream or new caps end every track: no ID survives a
//! seek. IDs keep increasing for the life of the element between start and stop; never reused.
//!
//! ByteTrack's low-score stage (`low-score` ≤ score < `high-score` keeps a track alive) only
//! matters if such detections arrive: lower the detector's `confidence-threshold` to
//! `low-score`; new tracks still need `high-score`.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! \
//!     retinafacedetect interval=3 confidence-threshold=0.1 ! retinafacetrack ! \
//!     retinafaceoverlay draw-labels=true ! videoconvert ! autovideosink
//! ```

use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct RetinaFaceTrack(ObjectSubclass<imp::RetinaFaceTrack>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Name of the element message posted per frame when `post-messages` is set.
pub const MESSAGE_NAME: &str = "retinaface-track";

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "retinafacetrack",
        gst::Rank::NONE,
        RetinaFaceTrack::static_type(),
    )
}
