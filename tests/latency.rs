//! The latency `retinafacedetect` reports to a live pipeline: in sync mode a bound of its own
//! processing time (a buffer leaves that much after it came; with frames in flight, also the
//! frames it waits behind), in async mode nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use retinaface_testkit::*;

/// Longest a pipeline here may take to pass the frames it is asked for.
const DEADLINE: Duration = Duration::from_secs(60);
/// Frames that pass the detector before the latency is queried.
const FRAMES: usize = 25;

struct Measured {
    live: bool,
    /// What the detector adds to the latency of what is upstream of it.
    added: Duration,
    /// Time each buffer spent between the detector's sink and source pads.
    processing: Vec<Duration>,
    /// LATENCY messages the detector posted.
    latency_messages: usize,
}

fn measure(detect_properties: &str) -> Measured {
    init();
    let description = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
         ! retinafacedetect name=d {detect_properties} ! fakesink sync=true"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let detect = pipeline.by_name("d").unwrap();
    let (sink_pad, src_pad) = (
        detect.static_pad("sink").unwrap(),
        detect.static_pad("src").unwrap(),
    );
    let entered: Arc<Mutex<HashMap<Option<gst::ClockTime>, Instant>>> = Arc::default();
    let processing: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let entered_in = entered.clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            entered_in
                .lock()
                .unwrap()
                .insert(buffer.pts(), Instant::now());
        }
        gst::PadProbeReturn::Ok
    });
    let processing_out = processing.clone();
    src_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer()
            && let Some(came) = entered.lock().unwrap().remove(&buffer.pts())
        {
            processing_out.lock().unwrap().push(came.elapsed());
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    let mut latency_messages = 0;
    while processing.lock().unwrap().len() < FRAMES {
        assert!(
            start.elapsed() < DEADLINE,
            "{FRAMES} frames did not pass within {DEADLINE:?}"
        );
        while let Some(msg) = bus.pop() {
            match msg.view() {
                gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
                gst::MessageView::Latency(_) if msg.src() == Some(detect.upcast_ref()) => {
                    latency_messages += 1
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut upstream = gst::query::Latency::new();
    assert!(sink_pad.peer_query(&mut upstream), "upstream answers");
    let mut ours = gst::query::Latency::new();
    assert!(src_pad.query(&mut ours), "the detector answers");
    pipeline.set_state(gst::State::Null).unwrap();
    let (_, upstream_min, upstream_max) = upstream.result();
    let (live, min, max) = ours.result();
    let added = Duration::from_nanos(min.nseconds() - upstream_min.nseconds());
    if let (Some(max), Some(upstream_max)) = (max, upstream_max) {
        assert_eq!(
            max.nseconds() - upstream_max.nseconds(),
            added.as_nanos() as u64,
            "min and max grow alike"
        );
    }
    let processing = processing.lock().unwrap().clone();
    Measured {
        live,
        added,
        processing,
        latency_messages,
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn sync_mode_reports_its_processing_time() {
    let m = measure("");
    assert!(m.live, "a live source stays live through the detector");
    let (median, max) = (
        median(m.processing.clone()),
        *m.processing.iter().max().unwrap(),
    );
    eprintln!(
        "processing median {median:?}, max {max:?}; latency added {:?}; {} LATENCY messages",
        m.added, m.latency_messages
    );
    assert!(
        m.added >= median / 2,
        "reports {:?}, less than half the median processing time {median:?}",
        m.added
    );
    assert!(
        m.added <= max * 2 + Duration::from_millis(1),
        "reports {:?}, more than twice the slowest frame {max:?}",
        m.added
    );
    assert!(
        m.latency_messages >= 1,
        "the pipeline is told when the latency changes"
    );
}

#[test]
fn async_mode_adds_nothing() {
    let m = measure("async=true");
    assert!(m.live);
    assert_eq!(m.added, Duration::ZERO);
    assert_eq!(m.latency_messages, 0);
}

#[test]
fn frames_in_flight_report_the_time_a_buffer_is_held() {
    // Three frames in flight at 30 fps: a buffer leaves once two more have come, ≥ 66 ms.
    let m = measure("frames-in-flight=3");
    assert!(m.live);
    let median = median(m.processing.clone());
    eprintln!("held median {median:?}; latency added {:?}", m.added);
    assert!(
        median >= Duration::from_millis(60),
        "buffers held {median:?} at the median, less than two frame intervals"
    );
    assert!(
        m.added >= median / 2,
        "reports {:?} for buffers held {median:?}",
        m.added
    );
}
