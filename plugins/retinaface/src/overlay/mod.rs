//! `retinafaceoverlay`: draws the faces found on each buffer (face ROI metas, see
//! [`crate::facemeta`]) — box outline and landmark dots — or anonymises them by blurring or
//! pixelating the face region. Everything outside the faces is left untouched, and buffers
//! without faces pass through bit-identical.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! retinafacedetect ! \
//!     retinafaceoverlay mode=blur ! videoconvert ! autovideosink
//! ```

use gst::prelude::*;

mod anonymise;
mod canvas;
mod imp;
mod label;

/// What the overlay does with each face.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFaceOverlayMode")]
pub enum Mode {
    #[default]
    #[enum_value(name = "Draw box outline and landmarks", nick = "draw")]
    Draw = 0,
    #[enum_value(name = "Blur the face region", nick = "blur")]
    Blur = 1,
    #[enum_value(name = "Pixelate the face region", nick = "pixelate")]
    Pixelate = 2,
    #[enum_value(name = "Leave frames untouched", nick = "none")]
    None = 3,
}

glib::wrapper! {
    pub struct RetinaFaceOverlay(ObjectSubclass<imp::RetinaFaceOverlay>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "retinafaceoverlay",
        gst::Rank::NONE,
        RetinaFaceOverlay::static_type(),
    )
}
