//! Soak test: many frames through detect → overlay → JSON in one pipeline, then many
//! NULL ↔ PLAYING cycles of a pipeline in the same process. Prints resident memory (RSS) and the
//! thread count at the start and the end of each part, so leaks of memory or threads show.
//!
//! ```text
//! scripts/soak.sh [--frames 100000] [--cycles 1000] [--size 320x240] [--interval 3]
//! ```
//!
//! The detector runs at the frame's native size (`inference-size=0`), so the frame size sets the
//! cost per analysed frame.

use std::time::{Duration, Instant};

use gst::prelude::*;

struct Args {
    frames: u64,
    cycles: u32,
    width: u32,
    height: u32,
    interval: u32,
    image: String,
    /// Elements between the source and the sink in each cycle.
    cycle_elements: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        frames: 100_000,
        cycles: 1_000,
        width: 320,
        height: 240,
        interval: 3,
        cycle_elements: "retinafacedetect inference-size=0 ! retinafaceoverlay mode=blur ! retinafacejson location=JSON".into(),
        image: retinaface_testkit::data_dir()
            .join("media/sample1.jpg")
            .display()
            .to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--frames" => args.frames = value().parse().expect("--frames N"),
            "--cycles" => args.cycles = value().parse().expect("--cycles N"),
            "--interval" => args.interval = value().parse().expect("--interval N"),
            "--image" => args.image = value(),
            "--cycle-elements" => args.cycle_elements = value(),
            "--size" => {
                let v = value();
                let (w, h) = v.split_once('x').expect("--size WxH");
                (args.width, args.height) = (w.parse().unwrap(), h.parse().unwrap());
            }
            other => panic!("unknown option {other}"),
        }
    }
    args
}

/// (RSS in KiB, threads) of this process, from /proc/self/status.
fn rss_and_threads() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

fn report(label: &str, at: (u64, u64)) {
    println!(
        "{label:<34} RSS {:>8.1} MiB   threads {:>3}",
        at.0 as f64 / 1024.0,
        at.1
    );
}

fn growth(label: &str, start: (u64, u64), end: (u64, u64)) {
    println!(
        "{label}: RSS {:+.1} % ({:+.1} MiB), threads {} -> {}",
        (end.0 as f64 / start.0 as f64 - 1.0) * 100.0,
        (end.0 as f64 - start.0 as f64) / 1024.0,
        start.1,
        end.1
    );
}

/// Waits for EOS or an error on `pipeline`'s bus; panics on an error or after `timeout`.
fn wait_eos(pipeline: &gst::Pipeline, timeout: Duration) {
    if let Err(e) = retinaface_testkit::play(pipeline.upcast_ref(), timeout, |_| {}) {
        panic!("pipeline error: {e}");
    }
}

fn main() {
    let args = parse_args();
    retinaface_testkit::init();
    let json = std::env::temp_dir().join(format!("soak-{}.jsonl", std::process::id()));
    let source = |frames: u64| {
        format!(
            "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! \
             video/x-raw,format=I420,width={},height={} ! imagefreeze num-buffers={frames} ! \
             video/x-raw,framerate=1000/1",
            args.image, args.width, args.height
        )
    };

    // Part 1: a long stream. Memory is taken after a warm-up (model loaded, pools filled), then
    // at the end of the stream, before the pipeline is torn down.
    let description = format!(
        "{} ! retinafacedetect inference-size=0 interval={} ! identity name=probe ! retinafaceoverlay mode=blur ! \
         retinafacejson location={} ! fakesink sync=false",
        source(args.frames),
        args.interval,
        json.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let warm = std::sync::Arc::new(std::sync::Mutex::new(None));
    let end = std::sync::Arc::new(std::sync::Mutex::new(None));
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (warm, end, counted) = (warm.clone(), end.clone(), counted.clone());
        let frames = args.frames;
        pipeline
            .by_name("probe")
            .unwrap()
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n == 1_000.min(frames) {
                    *warm.lock().unwrap() = Some(rss_and_threads());
                }
                if n == frames {
                    *end.lock().unwrap() = Some(rss_and_threads());
                }
                gst::PadProbeReturn::Ok
            });
    }
    let (before, _) = (rss_and_threads(), ());
    report("process start", before);
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    wait_eos(&pipeline, Duration::from_secs(6 * 3600));
    let seconds = started.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null).unwrap();
    drop(pipeline);
    let frames = counted.load(std::sync::atomic::Ordering::Relaxed);
    let lines = std::fs::read_to_string(&json).unwrap().lines().count() as u64;
    let _ = std::fs::remove_file(&json);
    assert_eq!(frames, args.frames, "frames through the detector");
    assert_eq!(lines, args.frames, "JSON lines written");
    let warm = warm.lock().unwrap().expect("warm-up reached");
    let end = end.lock().unwrap().expect("end reached");
    println!(
        "stream: {frames} frames {}x{} (interval={}, blur, JSON) in {seconds:.0} s ({:.0} frames/s)",
        args.width,
        args.height,
        args.interval,
        frames as f64 / seconds
    );
    report(&format!("after {} frames", 1_000.min(frames)), warm);
    report(&format!("after {frames} frames"), end);
    growth("stream", warm, end);

    // Part 2: one pipeline taken NULL -> PLAYING -> EOS -> NULL many times (the detector loads
    // its model at every start).
    let description = format!(
        "{} ! {} ! fakesink sync=false",
        source(3),
        args.cycle_elements
            .replace("JSON", &json.display().to_string())
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let cycle = |i: u32| {
        pipeline.set_state(gst::State::Playing).unwrap();
        wait_eos(&pipeline, Duration::from_secs(60));
        pipeline
            .set_state(gst::State::Null)
            .unwrap_or_else(|e| panic!("cycle {i}: NULL not reached: {e}"));
    };
    let warm_cycles = 50.min(args.cycles);
    for i in 0..warm_cycles {
        cycle(i);
    }
    let start = rss_and_threads();
    let started = Instant::now();
    for i in warm_cycles..args.cycles {
        cycle(i);
        if (i + 1) % 250 == 0 {
            report(&format!("  after {} cycles", i + 1), rss_and_threads());
        }
    }
    let end = rss_and_threads();
    let _ = std::fs::remove_file(&json);
    println!(
        "cycles: {} NULL -> PLAYING -> EOS -> NULL cycles (3 frames each) in {:.0} s",
        args.cycles,
        started.elapsed().as_secs_f64()
    );
    report(&format!("after {warm_cycles} cycles"), start);
    report(&format!("after {} cycles", args.cycles), end);
    growth("cycles", start, end);
}
