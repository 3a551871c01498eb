//! Benchmark of `retinafacedetect` (plugin linked statically), in two parts:
//!
//! (a) Element overhead: per-frame time inside `retinafacedetect` on a 1920×1080 frame made from
//!     a sample photo (RGBx and I420), against a bare ONNX Runtime run of the same model with
//!     the same session options on a `[1,3,360,640]` tensor, the size the element feeds the
//!     model for 1080p at the default inference-size 640.
//! (b) Throughput: frames/s of `filesrc ! decodebin ! retinafacedetect ! fakesink sync=false`
//!     on a 1080p H.264 clip, and of the same pipeline without the detector.
//!
//! The measurements are interleaved in rounds (the block order flips every round) so that
//! machine noise hits all of them alike; the results are medians.
//!
//! ```text
//! cargo run --release --example bench -- [--rounds N] [--frames N] [--clip PATH] [--image PATH]
//! ```
//! `scripts/bench.sh` makes the clip and runs this. `RETINAFACE_MODEL` picks another model for
//! both the element and the bare run.

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use retinaface::preprocess::{Frame, InputGeometry, PixelLayout, Plane, Preprocessor, YuvMatrix};
use retinaface::runtime::{self, SessionConfig};
use retinaface::{DetectParams, ModelContract};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
/// The element's default `inference-size`.
const INFERENCE_SIZE: usize = 640;
/// Unrecorded runs of each measurement before the first round (ORT's first runs are slow).
const WARMUP: usize = 3;

struct Args {
    rounds: usize,
    frames: usize,
    clip: PathBuf,
    image: PathBuf,
}

const USAGE: &str = "usage: bench [--rounds N (5)] [--frames N (50)] \
    [--clip PATH (target/bench/faces-1080p.mp4)] \
    [--image PATH (/usr/local/share/retinaface/media/sample1.jpg)]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rounds: 5,
        frames: 50,
        clip: "target/bench/faces-1080p.mp4".into(),
        image: retinaface_testkit::data_dir().join("media/sample1.jpg"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let count = || -> Result<usize> {
            match value.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{flag} wants a positive number, got '{value}'").into()),
            }
        };
        match flag.as_str() {
            "--rounds" => args.rounds = count()?,
            "--frames" => args.frames = count()?,
            "--clip" => args.clip = value.into(),
            "--image" => args.image = value.into(),
            _ => return Err(format!("unknown argument '{flag}'\n{USAGE}").into()),
        }
    }
    Ok(args)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Decodes `image` into one 1920×1080 `format` buffer (cropped to 16:9, square pixels).
fn decode_frame(image: &std::path::Path, format: &str) -> Result<(gst::Caps, gst::Buffer)> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=src ! jpegdec ! aspectratiocrop aspect-ratio=16/9 ! videoscale ! \
         videoconvert ! video/x-raw,format={format},width={WIDTH},height={HEIGHT},\
         pixel-aspect-ratio=1/1 ! appsink name=sink"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let by_name = |name| pipeline.by_name(name).ok_or("element missing");
    by_name("src")?.set_property("location", image);
    let sink = by_name("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let sample = sink.pull_sample();
    pipeline.set_state(gst::State::Null)?;
    let sample = sample.map_err(|_| format!("could not decode {}", image.display()))?;
    let caps = sample.caps_owned().ok_or("sample without caps")?;
    let buffer = sample.buffer_owned().ok_or("sample without buffer")?;
    Ok((caps, buffer))
}

/// `retinafacedetect` in a harness; pad probes on the element time each buffer from its sink
/// pad to its src pad, i.e. exactly the element's work (BaseTransform included).
struct ElementBench {
    harness: gst_check::Harness,
    buffer: gst::Buffer,
    times: Arc<Mutex<Vec<Duration>>>,
    faces: usize,
}

impl ElementBench {
    fn new(caps: gst::Caps, buffer: gst::Buffer) -> Result<Self> {
        let mut harness = gst_check::Harness::new("retinafacedetect");
        harness.set_src_caps(caps);
        harness.play();
        let element = harness.element().ok_or("harness without element")?;
        let pad = |name| element.static_pad(name).ok_or("element pad missing");
        let entered = Arc::new(Mutex::new(None::<Instant>));
        let times = Arc::new(Mutex::new(Vec::new()));
        let e = entered.clone();
        pad("sink")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *e.lock().unwrap() = Some(Instant::now());
            gst::PadProbeReturn::Ok
        });
        let (e, t) = (entered, times.clone());
        pad("src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(start) = e.lock().unwrap().take() {
                t.lock().unwrap().push(start.elapsed());
            }
            gst::PadProbeReturn::Ok
        });
        Ok(Self {
            harness,
            buffer,
            times,
            faces: 0,
        })
    }

    /// Pushes the frame `n` times; returns the per-frame times in ms.
    fn run(&mut self, n: usize) -> Result<Vec<f64>> {
        self.times.lock().unwrap().clear();
        for _ in 0..n {
            // A shallow copy (pixels shared, not copied) is writable, so the in-place element
            // attaches its metadata without copying the buffer, as in a normal pipeline.
            self.harness.push(self.buffer.copy())?;
            let out = self.harness.pull()?;
            self.faces = out
                .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                .count();
        }
        Ok(self.times.lock().unwrap().iter().map(|&d| ms(d)).collect())
    }
}

/// The model alone: one ORT session opened the way the element opens it, run on a fixed tensor.
struct BareBench {
    session: ort::session::Session,
    input: String,
    tensor: Vec<f32>,
    geometry: InputGeometry,
}

impl BareBench {
    /// `caps`/`buffer` must be RGBx; the tensor is the element's input for that frame, so the
    /// model sees the same data (and the same shape) in both measurements.
    fn new(caps: &gst::Caps, buffer: &gst::Buffer) -> Result<Self> {
        let env = runtime::environment(&[])?;
        let model = PathBuf::from(gstretinaface::detect::default_model_path());
        let session = runtime::load_session(env, &model, &SessionConfig::default())?.session;
        let input = session.inputs()[0].name().to_string();
        let info = gst_video::VideoInfo::from_caps(caps)?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info)?;
        let planes = [Plane {
            data: frame.plane_data(0)?,
            stride: frame.plane_stride()[0] as usize,
        }];
        let frame = Frame {
            layout: PixelLayout::Rgbx,
            width: WIDTH,
            height: HEIGHT,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let geometry = InputGeometry::for_frame(WIDTH, HEIGHT, INFERENCE_SIZE);
        let tensor = Preprocessor::new()
            .run(
                &frame,
                geometry,
                &ModelContract::default(),
                DetectParams::default().scale_filter,
            )?
            .to_vec();
        Ok(Self {
            session,
            input,
            tensor,
            geometry,
        })
    }

    fn shape(&self) -> [usize; 4] {
        [1, 3, self.geometry.height, self.geometry.width]
    }

    /// Runs the model `n` times; returns the per-run times in ms.
    fn run(&mut self, n: usize) -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            // Same calls as Detector::detect: borrow the tensor, run, drop the outputs.
            let input = ort::value::TensorRef::from_array_view((self.shape(), &self.tensor[..]))?;
            let outputs = self
                .session
                .run(ort::inputs![self.input.as_str() => input])?;
            drop(outputs);
            times.push(ms(start.elapsed()));
        }
        Ok(times)
    }
}

/// Plays `filesrc ! decodebin ! [retinafacedetect !] fakesink sync=false` on `clip` and returns
/// frames/s from PLAYING to EOS. The pipeline is prerolled first, so model loading and the first
/// frame are not timed; only frames reaching the sink after PLAYING are counted.
fn throughput(clip: &std::path::Path, detect: bool) -> Result<f64> {
    let detector = if detect { "retinafacedetect ! " } else { "" };
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=src ! decodebin ! {detector}fakesink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let by_name = |name| pipeline.by_name(name).ok_or("element missing");
    by_name("src")?.set_property("location", clip);
    let frames = Arc::new(AtomicU64::new(0));
    let f = frames.clone();
    by_name("sink")?
        .static_pad("sink")
        .ok_or("fakesink without sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            f.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    let bus_error = || match bus.pop_filtered(&[gst::MessageType::Error]) {
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
            _ => unreachable!(),
        },
        None => "no error message".into(),
    };
    let result = (|| -> Result<f64> {
        pipeline.set_state(gst::State::Paused)?;
        let (prerolled, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
        prerolled.map_err(|_| format!("{} did not preroll: {}", clip.display(), bus_error()))?;
        let before = frames.load(Ordering::Relaxed);
        let start = Instant::now();
        retinaface_testkit::play(pipeline.upcast_ref(), Duration::from_secs(1800), |_| {})?;
        let elapsed = start.elapsed();
        let n = frames.load(Ordering::Relaxed) - before;
        if n == 0 {
            return Err(format!("no frames decoded from {}", clip.display()).into());
        }
        Ok(n as f64 / elapsed.as_secs_f64())
    })();
    pipeline.set_state(gst::State::Null)?;
    result
}

/// A median and the `min … max` of its per-round values.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    lo: f64,
    hi: f64,
}

fn stat(median: f64, per_round: &[f64]) -> Stat {
    Stat {
        median,
        lo: per_round.iter().copied().fold(f64::INFINITY, f64::min),
        hi: per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !args.clip.is_file() {
        return Err(format!(
            "clip {} is missing; scripts/bench.sh makes it",
            args.clip.display()
        )
        .into());
    }
    gst::init()?;
    gstretinaface::plugin_register_static()?;

    eprintln!("decoding {}", args.image.display());
    let (rgbx_caps, rgbx) = decode_frame(&args.image, "RGBx")?;
    let (i420_caps, i420) = decode_frame(&args.image, "I420")?;
    let mut bare = BareBench::new(&rgbx_caps, &rgbx)?;
    let mut elem_rgbx = ElementBench::new(rgbx_caps, rgbx)?;
    let mut elem_i420 = ElementBench::new(i420_caps, i420)?;
    elem_rgbx.run(WARMUP)?;
    elem_i420.run(WARMUP)?;
    bare.run(WARMUP)?;

    // (a) Element vs bare ORT. Index 0 = element RGBx, 1 = element I420, 2 = bare ORT; per
    // round one block of `frames` runs each, in the order 0-1-2, then 2-1-0, and so on.
    let mut pooled: [Vec<f64>; 3] = Default::default();
    let mut round_ms: [Vec<f64>; 3] = Default::default();
    let mut round_overhead: [Vec<f64>; 2] = Default::default();
    for round in 0..args.rounds {
        for block in 0..3 {
            let k = if round % 2 == 0 { block } else { 2 - block };
            let times = match k {
                0 => elem_rgbx.run(args.frames)?,
                1 => elem_i420.run(args.frames)?,
                _ => bare.run(args.frames)?,
            };
            round_ms[k].push(median(&times));
            pooled[k].extend(times);
        }
        let [r, i, b] = round_ms.each_ref().map(|v| v[round]);
        round_overhead[0].push((r - b) / b * 100.0);
        round_overhead[1].push((i - b) / b * 100.0);
        eprintln!(
            "round {}/{}: element RGBx {r:.2} ms, I420 {i:.2} ms, bare ORT {b:.2} ms",
            round + 1,
            args.rounds
        );
    }
    let shape = bare.shape();
    let faces = [elem_rgbx.faces, elem_i420.faces];
    // Free the three sessions before the throughput part.
    drop((bare, elem_rgbx, elem_i420));

    // (b) Throughput, interleaved the same way: index 0 = decode + detect, 1 = decode only.
    let mut fps: [Vec<f64>; 2] = Default::default();
    for round in 0..args.rounds {
        for detect in [round % 2 == 0, round % 2 != 0] {
            fps[usize::from(!detect)].push(throughput(&args.clip, detect)?);
        }
        eprintln!(
            "round {}/{}: decode + retinafacedetect {:.1} fps, decode only {:.1} fps",
            round + 1,
            args.rounds,
            fps[0][round],
            fps[1][round]
        );
    }

    // ms/frame: median of all frames of all rounds; overhead: from those medians.
    let [rgbx, i420, bare] = [0, 1, 2].map(|k| stat(median(&pooled[k]), &round_ms[k]));
    let overhead = |e: Stat, k: usize| {
        stat(
            (e.median - bare.median) / bare.median * 100.0,
            &round_overhead[k],
        )
    };
    let [detect, decode] = [0, 1].map(|k| stat(median(&fps[k]), &fps[k]));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "{} rounds × {} frames (element vs bare) and {} × the clip (throughput), interleaved; \
         model {}, inference-size {INFERENCE_SIZE}, ONNX Runtime {}, default session options.",
        args.rounds,
        args.frames,
        args.rounds,
        gstretinaface::detect::default_model_path(),
        runtime::ORT_VERSION,
    );
    println!("Machine: {}, nproc = {cores}.", cpu_model());
    println!();
    println!("| Measurement | Median | Per-round range |");
    println!("|---|---:|---:|");
    let rows = [
        (
            format!("`retinafacedetect`, 1920×1080 RGBx ({} faces)", faces[0]),
            rgbx,
            "ms/frame",
        ),
        (
            format!("`retinafacedetect`, 1920×1080 I420 ({} faces)", faces[1]),
            i420,
            "ms/frame",
        ),
        (
            format!("bare ORT `Session::run`, {shape:?} tensor"),
            bare,
            "ms/frame",
        ),
        ("Element overhead, RGBx".into(), overhead(rgbx, 0), "%"),
        ("Element overhead, I420".into(), overhead(i420, 1), "%"),
        (
            "1080p H.264: `decodebin ! retinafacedetect ! fakesink`".into(),
            detect,
            "fps",
        ),
        (
            "1080p H.264: `decodebin ! fakesink` (decode only)".into(),
            decode,
            "fps",
        ),
    ];
    for (name, s, unit) in rows {
        let v = |x: f64| match unit {
            "%" => format!("{x:+.1}"),
            "fps" => format!("{x:.1}"),
            _ => format!("{x:.2}"),
        };
        println!(
            "| {name} | {} {unit} | {} … {} |",
            v(s.median),
            v(s.lo),
            v(s.hi)
        );
    }
    Ok(())
}
