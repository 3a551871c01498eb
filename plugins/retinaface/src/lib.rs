//! GStreamer plugin `retinaface`: face detection with RetinaFace ONNX models.
//!
//! - `retinafacedetect` runs the model and attaches one `GstVideoRegionOfInterestMeta` per face.
//! - `retinafaceoverlay` draws those faces, or blurs / pixelates them.
//! - `retinafacetrack` gives those faces track IDs that persist across frames, and moves them
//!   along on frames the detector skipped.
//! - `retinafacejson` writes the faces it finds on each buffer as JSON lines.
//! - `retinafacemotion` attaches the regions of each frame that move (roi_type `motion`), for a
//!   motion-gated detector.
//! - `retinafacepublish` publishes new/update/end events per tracked face, with the best shot,
//!   to an MQTT broker.
//! - `retinafaceidentify` names tracked faces by matching their embeddings against a face
//!   library (a folder of photos per person).
//!
//! The metadata schema lives in [`facemeta`]; every element reads and writes it through there.

use std::path::PathBuf;
use std::sync::OnceLock;

pub mod detect;
pub mod facemeta;
pub mod identify;
pub mod json;
pub mod motion;
pub mod overlay;
pub mod publish;
pub mod track;
pub mod videoformat;

/// Directory this plugin's shared object was loaded from, when loaded from a file.
static PLUGIN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Extra directories searched for ONNX Runtime after `ORT_DYLIB_PATH`: the plugin's own.
pub(crate) fn ort_search_dirs() -> Vec<PathBuf> {
    PLUGIN_DIR.get().cloned().into_iter().collect()
}

/// Whether `event` starts the stream over for an element that carries state between frames: a
/// flush (seek), a new segment or a new stream. Such state (carried faces, tracks, a motion
/// background) belongs to the frames before it and is dropped.
pub(crate) fn starts_over(event: &gst::Event) -> bool {
    matches!(
        event.view(),
        gst::EventView::FlushStop(_) | gst::EventView::Segment(_) | gst::EventView::StreamStart(_)
    )
}

/// The always-present `src` and `sink` pad templates of an in-place filter accepting `caps`.
pub(crate) fn filter_pad_templates(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [
        ("src", gst::PadDirection::Src),
        ("sink", gst::PadDirection::Sink),
    ]
    .into_iter()
    .map(|(name, direction)| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
            .expect("valid pad template")
    })
    .collect()
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    if let Some(dir) = plugin
        .filename()
        .and_then(|f| f.parent().map(PathBuf::from))
    {
        let _ = PLUGIN_DIR.set(dir);
    }
    facemeta::register_backup_meta();
    detect::register(plugin)?;
    identify::register(plugin)?;
    json::register(plugin)?;
    motion::register(plugin)?;
    overlay::register(plugin)?;
    publish::register(plugin)?;
    track::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    retinaface,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // No public home yet: GStreamer's own default for a build without one, rather than a
    // made-up address.
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);
