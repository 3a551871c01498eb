//! Many streams in one process (README "Many streams"; run through `scripts/streams-bench.sh`).
//!
//! ```text
//! streams_bench throughput --streams N --branch 'SRC ! … ! retinafacedetect …'
//!     N copies of the branch, each ending in its own fakesink, played as fast as they go:
//!     frames/s over all streams, frames analysed, peak and steady RSS of the process.
//! streams_bench live --branch 'LIVE SRC ! … ! retinafacedetect …' [--seconds S]
//!     one live branch into a synchronised sink: how late buffers reach the sink against their
//!     capture time (running time), frames captured / rendered / analysed.
//! ```
//! Each prints one line of `key=value` pairs. In a branch, `{i}` is replaced by the stream number
//! and `{p}` by 1 + the stream number modulo 6 (one of the six sample photos).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstretinaface::facemeta;
use retinaface_testkit::process::{mib, status_kib};

/// Longest one run may take before it is abandoned as hung.
const DEADLINE: Duration = Duration::from_secs(900);

/// The branch of stream `i` (see the module comment).
fn expand(branch: &str, i: usize) -> String {
    branch
        .replace("{i}", &i.to_string())
        .replace("{p}", &(1 + i % 6).to_string())
}

#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    analysed: AtomicU64,
}

/// Counts buffers (and those analysed on this very frame) reaching `pad` while `counting`.
fn count_on(pad: &gst::Pad, counts: Arc<Counts>, counting: Arc<AtomicBool>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if counting.load(Ordering::Relaxed)
            && let Some(buffer) = info.buffer()
        {
            counts.frames.fetch_add(1, Ordering::Relaxed);
            if facemeta::analysed(buffer) == Some(true) {
                counts.analysed.fetch_add(1, Ordering::Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Pops messages until EOS or `until`; panics on ERROR or at the deadline. Returns how many
/// per-frame detection messages came (`post-messages=true`: one per finished inference).
fn run_bus(pipeline: &gst::Pipeline, until: Option<Instant>) -> u64 {
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    let mut detections = 0;
    loop {
        if until.is_some_and(|t| Instant::now() >= t) {
            return detections;
        }
        assert!(start.elapsed() < DEADLINE, "no EOS within {DEADLINE:?}");
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return detections,
            gst::MessageView::Element(e)
                if e.structure().is_some_and(|s| s.name() == "retinaface") =>
            {
                detections += 1
            }
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
}

fn preroll(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
    result.expect("PAUSED within 120 s");
}

fn throughput(streams: usize, branch: &str) {
    let description = (0..streams)
        .map(|i| format!("{} ! fakesink name=sink{i} sync=false", expand(branch, i)))
        .collect::<Vec<_>>()
        .join("  ");
    let pipeline = gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("bad pipeline: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let counts = Arc::new(Counts::default());
    let counting = Arc::new(AtomicBool::new(false));
    for i in 0..streams {
        let sink = pipeline.by_name(&format!("sink{i}")).unwrap();
        count_on(
            &sink.static_pad("sink").unwrap(),
            counts.clone(),
            counting.clone(),
        );
    }
    let rss_idle = status_kib("VmRSS:");
    preroll(&pipeline);
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Steady RSS: sampled while the streams run.
    let steady = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (steady, counts) = (steady.clone(), counts.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while last < 1_000_000 {
                std::thread::sleep(Duration::from_millis(200));
                let now = counts.frames.load(Ordering::Relaxed);
                if now == last && now > 0 {
                    break;
                }
                last = now;
                steady.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
            }
        })
    };
    let _ = run_bus(&pipeline, None);
    let wall = start.elapsed().as_secs_f64();
    let _ = sampler.join();
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = counts.frames.load(Ordering::Relaxed);
    println!(
        "streams={streams} frames={frames} analysed={} seconds={wall:.2} fps={:.1} rss_before_mib={:.1} rss_running_mib={:.1} peak_rss_mib={:.1}",
        counts.analysed.load(Ordering::Relaxed),
        frames as f64 / wall,
        mib(rss_idle),
        mib(steady.load(Ordering::Relaxed)),
        mib(status_kib("VmHWM:")),
    );
}

fn live(branch: &str, seconds: u64) {
    let description = format!(
        "{} ! fakesink name=sink sync=true signal-handoffs=true",
        expand(branch, 0)
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("bad pipeline: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let detect = pipeline
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "retinafacedetect"))
        .expect("the branch has a retinafacedetect");
    let source_pad = detect.static_pad("sink").unwrap().peer().unwrap();
    let captured = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(true));
    {
        let captured = captured.clone();
        source_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            captured.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    // At the sink's pad (before it waits for its clock time): how far behind its capture time a
    // buffer arrives, in running time.
    let behind: Arc<Mutex<Vec<f64>>> = Arc::default();
    let analysed = Arc::new(Counts::default());
    {
        let (behind, pipeline_weak, analysed) =
            (behind.clone(), pipeline.downgrade(), analysed.clone());
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let (Some(buffer), Some(pipeline)) = (info.buffer(), pipeline_weak.upgrade())
                else {
                    return gst::PadProbeReturn::Ok;
                };
                if facemeta::analysed(buffer) == Some(true) {
                    analysed.analysed.fetch_add(1, Ordering::Relaxed);
                }
                let segment = pad.sticky_event::<gst::event::Segment>(0);
                let running = segment.and_then(|s| {
                    s.segment()
                        .downcast_ref::<gst::ClockTime>()
                        .and_then(|s| s.to_running_time(buffer.pts()))
                });
                if let (Some(running), Some(clock), Some(base)) =
                    (running, pipeline.clock(), pipeline.base_time())
                    && let Some(now) = clock.time().checked_sub(base)
                {
                    behind
                        .lock()
                        .unwrap()
                        .push((now.nseconds() as f64 - running.nseconds() as f64) / 1e6);
                }
                gst::PadProbeReturn::Ok
            });
    }
    let rendered = Arc::new(AtomicU64::new(0));
    {
        let rendered = rendered.clone();
        sink.connect("handoff", false, move |_| {
            rendered.fetch_add(1, Ordering::Relaxed);
            None
        });
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let inferences = run_bus(
        &pipeline,
        Some(Instant::now() + Duration::from_secs(seconds)),
    );
    counting.store(false, Ordering::Relaxed);
    let mut latency = gst::query::Latency::new();
    let reported = if pipeline.query(&mut latency) {
        latency.result().1.mseconds()
    } else {
        0
    };
    pipeline.set_state(gst::State::Null).unwrap();
    let mut behind = behind.lock().unwrap().clone();
    behind.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        behind
            .get(((behind.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "seconds={seconds} captured={} reached_sink={} rendered={} analysed={} inferences={inferences} behind_ms_median={:.1} behind_ms_p95={:.1} behind_ms_max={:.1} reported_latency_ms={reported}",
        captured.load(Ordering::Relaxed),
        behind.len(),
        rendered.load(Ordering::Relaxed),
        analysed.analysed.load(Ordering::Relaxed),
        pick(0.5),
        pick(0.95),
        pick(1.0),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    gst::init().unwrap();
    gstretinaface::plugin_register_static().expect("plugin registers");
    let branch = value("--branch").expect("--branch 'SRC ! … ! retinafacedetect …'");
    match args.first().map(String::as_str) {
        Some("throughput") => throughput(
            value("--streams").map_or(1, |s| s.parse().expect("--streams N")),
            &branch,
        ),
        Some("live") => live(
            &branch,
            value("--seconds").map_or(10, |s| s.parse().expect("--seconds S")),
        ),
        _ => {
            panic!("usage: streams_bench throughput|live --branch '…' [--streams N] [--seconds S]")
        }
    }
}
