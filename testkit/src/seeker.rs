//! A pipeline to seek in, pulled frame by frame (tests/seek.rs, tests/track.rs).

use gst::prelude::*;

use crate::{init, media};

/// A playing pipeline on `face_noface.mov` (one face until ≈ 2.4 s, then none), decoded to I420
/// and run through `tail`, whose `appsink name=sink` is pulled by hand, with seeks in between.
pub struct Seeker {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// `appsink name=raw`, if the description has one: the same frames before drawing.
    raw: Option<gst_app::AppSink>,
}

impl Seeker {
    pub fn new(tail: &str) -> Self {
        init();
        let description = format!(
            "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=I420 ! {tail} ! appsink name=sink sync=false",
            media("face_noface.mov")
        );
        let pipeline = gst::parse::launch(&description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let appsink = |name| {
            let sink = pipeline
                .by_name(name)?
                .downcast::<gst_app::AppSink>()
                .unwrap();
            // A small queue in the sink so that few decoded frames are in flight when we seek.
            sink.set_max_buffers(2);
            Some(sink)
        };
        let (sink, raw) = (appsink("sink").unwrap(), appsink("raw"));
        pipeline.set_state(gst::State::Playing).unwrap();
        let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
        result.expect("pipeline reaches PLAYING within 30 s");
        Self {
            pipeline,
            sink,
            raw,
        }
    }

    pub fn seek(&self, ms: u64) {
        self.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::from_mseconds(ms),
            )
            .expect("seek accepted");
    }

    /// The next `n` frames at or after `from_ms` (frames still in flight from before a seek are
    /// skipped by their timestamps).
    pub fn pull(&self, n: usize, from_ms: u64) -> Vec<gst::Sample> {
        self.pull_pairs(n, from_ms)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// Like [`Self::pull`], each frame with the same frame from `appsink name=raw` (if any).
    pub fn pull_pairs(&self, n: usize, from_ms: u64) -> Vec<(gst::Sample, Option<gst::Sample>)> {
        let from = gst::ClockTime::from_mseconds(from_ms);
        let next = |sink: &gst_app::AppSink| loop {
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(30))
                .unwrap_or_else(|| panic!("no frame from {} within 30 s", sink.name()));
            if sample.buffer().unwrap().pts().unwrap() + gst::ClockTime::from_mseconds(1) >= from {
                break sample;
            }
        };
        (0..n)
            .map(|_| {
                let sample = next(&self.sink);
                let raw = self.raw.as_ref().map(|raw| {
                    let pts = sample.buffer().unwrap().pts();
                    loop {
                        let r = next(raw);
                        if r.buffer().unwrap().pts() == pts {
                            break r;
                        }
                    }
                });
                (sample, raw)
            })
            .collect()
    }
}

impl Drop for Seeker {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
