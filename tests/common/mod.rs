//! Shared helpers for the integration tests: plugin registration, sample media, running real
//! pipelines and reading the faces they produce.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use gst::prelude::*;
pub use gstretinaface::facemeta::{self, FaceRecord};

mod seeker;
#[allow(unused_imports)] // used by the tests that seek, not by every test binary
pub use seeker::Seeker;

/// Initialises GStreamer and registers the plugin statically, once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstretinaface::plugin_register_static().expect("plugin registers");
    });
}

/// Where scripts/setup.sh puts models and media.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RETINAFACE_DATA").map_or_else(
        || PathBuf::from("/usr/local/share/retinaface"),
        PathBuf::from,
    )
}

/// Directory of the plugin's `libgstretinaface.so` built for these tests: the target directory,
/// parent of the test binary's `deps/` folder (scripts/test.sh builds it before the tests).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstretinaface.so").is_file(),
        "no plugin in {}",
        dir.display()
    );
    dir
}

/// A sample file installed by scripts/setup.sh.
pub fn media(name: &str) -> String {
    let path = data_dir().join("media").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path.to_str().unwrap().to_string()
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
    let bus = pipeline.bus().unwrap();
    let mut messages = Vec::new();
    let result = match pipeline.set_state(gst::State::Playing) {
        Err(_) => Err(first_error(&bus)
            .unwrap_or_else(|| "state change failed without an error message".into())),
        Ok(_) => loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
                panic!("pipeline '{description}' hung: no EOS or error within 120 s");
            };
            match msg.view() {
                gst::MessageView::Eos(_) => break Ok(()),
                gst::MessageView::Error(e) => {
                    break Err(format!("{} ({:?})", e.error(), e.debug()));
                }
                gst::MessageView::Element(e) => {
                    messages.extend(e.structure().map(|s| s.to_owned()))
                }
                _ => {}
            }
        },
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result?;
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Ok(Run { samples, messages })
}

fn first_error(bus: &gst::Bus) -> Option<String> {
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
        _ => None,
    }
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

/// Plain IoU of two faces' boxes.
pub fn iou(a: &FaceRecord, b: &FaceRecord) -> f64 {
    retinaface::geometry::iou(&a.corners(), &b.corners())
}

/// Pairs every face of `expected` with its best match in `actual`; returns the worst IoU.
pub fn worst_match(expected: &[FaceRecord], actual: &[FaceRecord]) -> f64 {
    expected
        .iter()
        .map(|e| actual.iter().map(|a| iou(e, a)).fold(0.0, f64::max))
        .fold(1.0, f64::min)
}

/// Waits for a child process, killing it after `timeout`.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
