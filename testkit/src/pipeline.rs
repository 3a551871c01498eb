//! Running pipelines to their end, always with a deadline: a hang is a bug, and it must fail the
//! test that meets it rather than block CI.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstretinaface::facemeta::{self, FaceRecord};

use crate::media::media;

/// Initialises GStreamer and registers the plugin statically, once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstretinaface::plugin_register_static().expect("plugin registers");
    });
}

/// What a pipeline said on its way to its end.
#[derive(Debug, Default)]
pub struct Played {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Element messages' structures (e.g. `retinaface` with the faces of a frame).
    pub elements: Vec<gst::Structure>,
}

/// Sets `pipeline` to PLAYING and pops its bus until end of stream, collecting WARNING and INFO
/// texts and element messages, and handing every message to `each` (e.g. to act once it is
/// PLAYING). An ERROR ends it: `Err` with its text and debug information. Panics naming the
/// pipeline when neither comes within `deadline`. The pipeline is left as it is: the caller sets
/// it to NULL.
pub fn play(
    pipeline: &gst::Element,
    deadline: Duration,
    mut each: impl FnMut(&gst::Message),
) -> Result<Played, String> {
    let start = Instant::now();
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut played = Played::default();
    if pipeline.set_state(gst::State::Playing).is_err() {
        let error = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
            .and_then(|m| error_text(&m))
            .unwrap_or_else(|| "state change failed without an error message".into());
        return Err(error);
    }
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else {
            panic!(
                "{}: no end of stream or error within {deadline:?} (hung)",
                pipeline.name()
            );
        };
        each(&msg);
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(played),
            gst::MessageView::Error(_) => return Err(error_text(&msg).unwrap_or_default()),
            gst::MessageView::Warning(w) => played.warnings.push(w.error().to_string()),
            gst::MessageView::Info(i) => played.infos.push(i.error().to_string()),
            gst::MessageView::Element(e) => {
                played.elements.extend(e.structure().map(|s| s.to_owned()))
            }
            _ => {}
        }
    }
}

fn error_text(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
        _ => None,
    }
}

/// What a pipeline produced: every buffer (with caps) reaching `appsink name=sink`, and the
/// element messages posted on the bus.
pub struct Run {
    pub samples: Vec<gst::Sample>,
    pub messages: Vec<gst::Structure>,
}

impl Run {
    /// Faces on each buffer, in order.
    pub fn faces(&self) -> Vec<Vec<FaceRecord>> {
        self.samples
            .iter()
            .map(|s| facemeta::read(s.buffer().unwrap()))
            .collect()
    }

    /// Width and height of the first buffer's caps.
    pub fn size(&self) -> (f64, f64) {
        let caps = self.samples[0].caps().unwrap();
        let info = gst_video::VideoInfo::from_caps(caps).unwrap();
        (info.width() as f64, info.height() as f64)
    }
}

/// Runs a gst-launch description to EOS; `Err` carries the ERROR message's text and debug info.
/// Panics if the pipeline neither ends nor fails within two minutes (a hang is a bug).
pub fn run(description: &str) -> Result<Run, String> {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("bad pipeline '{description}': {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    if let Some(sink) = pipeline.by_name("sink") {
        let sink = sink.downcast::<gst_app::AppSink>().unwrap();
        sink.set_sync(false);
        let samples = samples.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    samples
                        .lock()
                        .unwrap()
                        .push(s.pull_sample().map_err(|_| gst::FlowError::Eos)?);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let played = play(pipeline.upcast_ref(), Duration::from_secs(120), |_| {});
    pipeline.set_state(gst::State::Null).unwrap();
    let messages = played?.elements;
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Ok(Run { samples, messages })
}

/// Decodes a sample photo, scaled and converted as `caps` asks (e.g. `video/x-raw,format=RGB`),
/// and runs `retinafacedetect` with `props` on it.
pub fn detect_image(name: &str, caps: &str, props: &str) -> Run {
    let description = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! {caps} ! retinafacedetect {props} ! appsink name=sink",
        media(name)
    );
    run(&description).unwrap_or_else(|e| panic!("{description}: {e}"))
}

/// Waits for a child process, killing it after `timeout`.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
