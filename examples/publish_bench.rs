//! What publishing costs: 8 streams (640×360, 2 tracked faces each) with per-frame messages
//! through `retinafacepublish` into a local mosquitto (started here, on a free port).
//!
//! - throughput: the streams as fast as they go, no subscriber; messages/s, and the CPU of
//!   publishing = CPU of the run − CPU of the same run with `identity` in its place;
//! - latency: the streams live at 30 fps with a subscriber in this process; publish → receive,
//!   from the `time.wall` inside each frame message (the moment the frame passed the element).
//!
//! `cargo run --release --example publish_bench [STREAMS] [FRAMES]` (scripts/setup.sh installs
//! mosquitto). No detector runs: faces are attached by a pad probe, so only publishing is timed.

use std::time::{Duration, Instant, UNIX_EPOCH};

use gst::prelude::*;
use retinaface::{Face, TrackedFace};
use retinaface_testkit::broker::{Broker, Subscriber};
use retinaface_testkit::{facemeta, init, play};

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Two faces moving across the frame, with track IDs 1 and 2.
fn attach_faces(buffer: &mut gst::BufferRef, k: u64) {
    let faces: Vec<TrackedFace> = (0..2u64)
        .map(|i| {
            let x = 40.0 + ((k * 3 + i * 200) % 480) as f32;
            let y = 100.0 + i as f32 * 60.0;
            let face = Face {
                bbox: [x, y, x + 80.0, y + 100.0],
                score: 0.95,
                landmarks: [
                    [x + 25.0, y + 40.0],
                    [x + 55.0, y + 40.0],
                    [x + 40.0, y + 55.0],
                    [x + 28.0, y + 75.0],
                    [x + 52.0, y + 75.0],
                ],
            };
            TrackedFace {
                id: i + 1,
                face,
                fresh: true,
                hits: 1,
                missed: 0,
                age: k as u32,
                since_detection: 0,
            }
        })
        .collect();
    facemeta::attach_tracked(
        buffer,
        &faces,
        facemeta::Provenance::analysed(buffer.pts()),
        true,
        640,
        360,
    );
}

/// Runs `streams` pipelines to EOS at once; wall seconds and CPU seconds.
fn run(streams: usize, frames: u32, live: bool, element: &dyn Fn(usize) -> String) -> (f64, f64) {
    let pipelines: Vec<gst::Element> = (0..streams)
        .map(|s| {
            let description = format!(
                "videotestsrc num-buffers={frames} is-live={live} pattern=ball ! \
                 video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! \
                 identity name=faces ! {} ! fakesink",
                element(s)
            );
            let pipeline = gst::parse::launch(&description).unwrap();
            let bin = pipeline.clone().downcast::<gst::Bin>().unwrap();
            let pad = bin.by_name("faces").unwrap().static_pad("src").unwrap();
            let k = std::sync::atomic::AtomicU64::new(0);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer_mut() {
                    let n = k.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    attach_faces(buffer.make_mut(), n);
                }
                gst::PadProbeReturn::Ok
            });
            pipeline
        })
        .collect();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    std::thread::scope(|scope| {
        for p in &pipelines {
            scope.spawn(move || {
                play(p, Duration::from_secs(600), |_| {}).unwrap();
            });
        }
    });
    let result = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    for p in pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    init();
    let args: Vec<String> = std::env::args().collect();
    let streams: usize = args.get(1).map_or(8, |a| a.parse().unwrap());
    let frames: u32 = args.get(2).map_or(600, |a| a.parse().unwrap());
    let broker = Broker::start();
    let url = broker.url();
    let publish = |s: usize| {
        format!(
            "retinafacepublish broker={url} camera=cam{s} frames=true max-queue=100000 drain-timeout=120000"
        )
    };
    // Throughput.
    let (base_wall, base_cpu) = run(streams, frames, false, &|_| "identity".into());
    let (wall, cpu) = run(streams, frames, false, &publish);
    let messages = streams as f64 * frames as f64;
    let publish_cpu = cpu - base_cpu;
    println!(
        "throughput: {streams} streams × {frames} frames with per-frame messages: {:.0} messages/s \
         ({wall:.2} s; without publishing {base_wall:.2} s); publishing CPU {publish_cpu:.2} s = \
         {:.1} µs/message, {:.0} % of one core at that rate, {:.1} % of one core at 30 fps × {streams}",
        messages / wall,
        publish_cpu / messages * 1e6,
        publish_cpu / wall * 100.0,
        publish_cpu / messages * 30.0 * streams as f64 * 100.0,
    );
    // Latency, live.
    let subscriber = Subscriber::connect(broker.port, "retinaface/+/frames");
    let live_frames = frames.min(300);
    run(streams, live_frames, true, &publish);
    let expected = streams * live_frames as usize;
    assert!(
        subscriber.wait_until(Duration::from_secs(60), |r| r.len() >= expected),
        "not every frame message arrived"
    );
    let mut latencies: Vec<f64> = subscriber
        .received()
        .iter()
        .map(|r| {
            let sent = r.json()["time"]["wall"].as_f64().unwrap();
            let got = r.wall.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            (got - sent) * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency (live, {streams} × 30 fps, {} messages, publish → subscriber on loopback): \
         p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.last().unwrap()
    );
}
