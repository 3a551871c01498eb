//! For application authors: read the faces `retinafacedetect` (and `retinafacetrack`) attach to
//! each buffer, from an `appsink`, with nothing but the GStreamer video API. The metadata is one
//! `GstVideoRegionOfInterestMeta` per face (roi_type `face`; README "Metadata schema"):
//! the rectangle in buffer pixels, a `detection` param with `confidence`, a `landmarks` param
//! with 10 numbers relative to the rectangle, and an `object_id` param with the track ID.
//!
//! ```text
//! cargo run --example read_faces -- /usr/local/share/retinaface/media/face_noface.mov
//! ```
//!
//! An application that uses the installed plugin (`GST_PLUGIN_PATH`) needs no Rust crate of
//! this project; this example registers the plugin it was built with, so it runs as is.

use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    gstretinaface::plugin_register_static()?;
    let video = std::env::args()
        .nth(1)
        .ok_or("usage: read_faces VIDEO_FILE")?;
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={video:?} ! decodebin ! videoconvert ! retinafacedetect ! \
         retinafacetrack ! appsink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .ok_or("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                for face in buffer.iter_meta::<VideoRegionOfInterestMeta>() {
                    if face.roi_type() != "face" {
                        continue;
                    }
                    print_face(buffer.pts(), &face);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    // A real application watches its bus from its main loop; a deadline keeps this one from
    // waiting forever on a stream that never ends.
    let end = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null)?;
    match end.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => Err(format!("{} ({:?})", e.error(), e.debug()).into()),
        Some(_) => Ok(()),
        None => Err("no end of stream within 10 minutes".into()),
    }
}

/// One line per face: time, track ID (once the tracker confirmed it), box, score, landmarks.
fn print_face(pts: Option<gst::ClockTime>, face: &VideoRegionOfInterestMeta) {
    let (x, y, w, h) = face.rect();
    let score = face
        .param("detection")
        .and_then(|d| d.get::<f64>("confidence").ok());
    let id = face
        .param("object_id")
        .and_then(|o| o.get::<i32>("id").ok());
    // Landmarks are relative to the rectangle, so they stay right when it is scaled.
    let landmarks: Vec<(f64, f64)> = face
        .param("landmarks")
        .and_then(|l| l.get::<gst::Array>("points").ok())
        .map(|points| {
            let v: Vec<f64> = points.iter().filter_map(|p| p.get::<f64>().ok()).collect();
            v.chunks_exact(2)
                .map(|p| (x as f64 + p[0] * w as f64, y as f64 + p[1] * h as f64))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{} id {} box {x},{y} {w}x{h} score {} landmarks {}",
        pts.map_or("-".to_string(), |t| t.to_string()),
        id.map_or("-".to_string(), |i| i.to_string()),
        score.map_or("-".to_string(), |s| format!("{s:.3}")),
        landmarks
            .iter()
            .map(|(x, y)| format!("({x:.0},{y:.0})"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
