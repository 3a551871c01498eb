//! Running a pipeline for one frame, with a deadline.

use gst::prelude::*;

/// Launches `description` — which ends in an `appsink name=sink` and, when `input` is given,
/// starts with an `appsrc name=src` that gets `input` then end-of-stream — and returns its first
/// sample, stopping the pipeline. Panics, naming the pipeline, when no frame comes within 60 s.
pub fn first_sample(description: &str, input: Option<gst::Buffer>) -> gst::Sample {
    let pipeline = gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .expect("an appsink named sink")
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    if let Some(buffer) = input {
        let src = pipeline
            .by_name("src")
            .expect("an appsrc named src")
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        src.push_buffer(buffer).unwrap();
        src.end_of_stream().unwrap();
    }
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(60))
        .unwrap_or_else(|| panic!("{description}: no frame within 60 s"));
    pipeline.set_state(gst::State::Null).unwrap();
    sample
}
