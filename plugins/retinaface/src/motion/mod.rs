//! `retinafacemotion`: finds where each frame moves ([`retinaface::motion`]: running
//! background, threshold, dilation, connected components) and attaches one
//! `GstVideoRegionOfInterestMeta` per moving region, roi_type `motion` (DL Streamer's
//! `gvamotiondetect` convention), for `retinafacedetect roi-type=motion` to look only there.
//! Pixels are never changed.
//!
//! ```text
//! gst-launch-1.0 filesrc location=cam.mp4 ! decodebin ! retinafacemotion ! \
//!     retinafacedetect roi-type=motion ! retinafacetrack ! retinafacejson ! fakesink
//! ```

use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct RetinaFaceMotion(ObjectSubclass<imp::RetinaFaceMotion>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// The roi_type of the regions it attaches, unless set otherwise.
pub const DEFAULT_ROI_TYPE: &str = "motion";

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "retinafacemotion",
        gst::Rank::NONE,
        RetinaFaceMotion::static_type(),
    )
}
