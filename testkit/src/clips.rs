//! Frames of the sample clips as RGB images, and saving one as a photo (face library tests
//! build their libraries from frames of one clip and play another).

use std::path::Path;

use gst::prelude::*;

use crate::media;
use crate::wall::Rgb;

/// Up to `max` frames of sample clip `name`, `fps` per second, from `from_s` to `to_s` seconds
/// (each pull waits at most 30 s, so a stalled decoder ends the list instead of hanging).
pub fn frames(name: &str, fps: u32, from_s: f64, to_s: f64, max: usize) -> Vec<Rgb> {
    gst::init().unwrap();
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! videorate ! video/x-raw,format=RGB,framerate={fps}/1 ! appsink name=sink sync=false",
        media(name)
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while out.len() < max {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
            break; // end of stream (or a stall: the caller's count check fails then)
        };
        let t = sample.buffer().unwrap().pts().unwrap().seconds_f64();
        if t < from_s {
            continue;
        }
        if t > to_s {
            break;
        }
        out.push(Rgb::of_sample(&sample));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!out.is_empty(), "{name}: no frames");
    out
}

/// Saves `img` as a PNG at `path`, creating its folder.
pub fn save_png(img: &Rgb, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::save_buffer(
        path,
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
}
