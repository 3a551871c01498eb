//! The detector's results as the tracker and the overlay take them, in every detector mode:
//! which buffer carries a new result and how old it is (`async`), the tracker taking a late
//! result as a detection of its own frame, no mode losing a face in the tracker, and a blur
//! that covers a walking face on every frame (`async`, `interval=15`), checked pixel by pixel.
//!
//! Scenes are faces cut from the sample photos, pasted on a noisy background and moved along
//! known paths (`common/track_eval.rs`), pushed through `appsrc` as fast as the pipeline takes
//! them: the model is slower than that source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use retinaface_testkit::facemeta::{self, FaceRecord, Provenance};
use retinaface_testkit::track_eval::*;

const WIDTH: usize = 640;
const HEIGHT: usize = 360;

/// What a run produced: every output buffer, and the element messages posted on the bus.
struct Run {
    outs: Vec<Out>,
    messages: Vec<gst::Structure>,
}

/// One output buffer, with what the detector had attached to it before the tracker (when the
/// chain has an element named `trk`).
struct Out {
    buffer: gst::Buffer,
    detected: Option<(Vec<FaceRecord>, Option<Provenance>)>,
}

impl Out {
    fn faces(&self) -> Vec<FaceRecord> {
        facemeta::read(&self.buffer)
    }

    fn provenance(&self) -> Option<Provenance> {
        facemeta::provenance(&self.buffer)
    }
}

/// Renders `scene` into `appsrc ! {chain} ! appsink` and returns every output buffer in order.
/// At most 330 frames/s: faster than the model (≥ 8 ms a frame on a 2-core CPU), so async
/// results are several frames old, yet paced, so that a loaded machine still gets a result
/// every few frames. A probe on the sink pad of the element named `trk` (if any) records the
/// detector's faces and provenance on each buffer, before the tracker rewrites them.
fn run_chain(scene: &Scene, sprites: &[Sprite], chain: &str) -> Run {
    type Detected = (Vec<FaceRecord>, Option<Provenance>);
    let detected: Arc<Mutex<HashMap<u64, Detected>>> = Arc::default();
    let messages: Arc<Mutex<Vec<gst::Structure>>> = Arc::default();
    let buffers = Arc::new(Mutex::new(Vec::new()));
    let prepare = |pipeline: &gst::Pipeline| {
        if let Some(trk) = pipeline.by_name("trk") {
            let detected = detected.clone();
            trk.static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(b) = info.buffer() {
                        let pts = b.pts().expect("timestamped").nseconds();
                        let seen = (facemeta::read(b), facemeta::provenance(b));
                        detected.lock().unwrap().insert(pts, seen);
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        let messages = messages.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            if let gst::MessageView::Element(e) = msg.view() {
                messages
                    .lock()
                    .unwrap()
                    .extend(e.structure().map(|s| s.to_owned()));
            }
            gst::BusSyncReply::Pass
        });
    };
    let collected = buffers.clone();
    push_scene(
        scene,
        sprites,
        chain,
        Duration::from_millis(3),
        prepare,
        move |buffer| collected.lock().unwrap().push(buffer),
    );
    let buffers = std::mem::take(&mut *buffers.lock().unwrap());
    assert_eq!(buffers.len(), scene.frames, "{chain}: one output per frame");
    let mut detected = std::mem::take(&mut *detected.lock().unwrap());
    let outs = buffers
        .into_iter()
        .map(|buffer| {
            let pts = buffer.pts().unwrap().nseconds();
            Out {
                detected: detected.remove(&pts),
                buffer,
            }
        })
        .collect();
    let messages = std::mem::take(&mut *messages.lock().unwrap());
    Run { outs, messages }
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("retinaface-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sprites of faces 60 px high that the detector finds reliably in a 640×360 frame.
fn sprites() -> Vec<Sprite> {
    face_sprites(WIDTH, HEIGHT)
}

/// One face walking left to right across the middle at `speed` px per frame.
fn walker(sprites: &[Sprite], speed: f64, frames: usize) -> Scene {
    let s = &sprites[0];
    let (w, h) = (s.width as f64, s.height as f64);
    Scene {
        name: "walker",
        width: WIDTH,
        height: HEIGHT,
        frames,
        actors: vec![Actor {
            sprite: 0,
            path: Box::new(move |k| Some((40.0 + speed * k as f64 - w / 2.0, 180.0 - h / 2.0))),
        }],
        disjoint: true,
    }
}

fn buffers(outs: &[Out]) -> Vec<gst::Buffer> {
    outs.iter().map(|o| o.buffer.clone()).collect()
}

/// Index of the first buffer that carries a new result.
fn first_result(outs: &[Out]) -> usize {
    outs.iter()
        .position(|o| o.provenance().is_some_and(|p| p.new_result))
        .expect("a result comes back")
}

#[test]
fn async_buffers_say_which_carries_a_new_result_and_which_frame_it_is_from() {
    let sprites = sprites();
    let scene = walker(&sprites, 3.0, 90);
    let dir = temp_dir("async-provenance");
    let json = dir.join("faces.jsonl");
    let run = run_chain(
        &scene,
        &sprites,
        &format!(
            "retinafacedetect async=true post-messages=true ! retinafacejson location={}",
            json.display()
        ),
    );
    let outs = &run.outs;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), outs.len());
    let first = first_result(outs);
    // (the result's frame, the buffer it arrived with, its age there)
    let mut arrived: Option<(gst::ClockTime, usize, u64)> = None;
    let mut new_results = Vec::new();
    for (k, (out, line)) in outs.iter().zip(&lines).enumerate() {
        let p = out
            .provenance()
            .expect("the detector writes it on every buffer");
        assert!(
            !p.analysed,
            "frame {k}: async results never arrive on their own frame"
        );
        if k < first {
            assert_eq!((p.result_age, p.detected_pts), (None, None), "frame {k}");
            assert!(out.faces().is_empty());
            assert!(line["result_age"].is_null() && line["new_result"] == false);
            continue;
        }
        let detected = p.detected_pts.expect("the result's frame");
        let age = p.result_age.expect("its age");
        // The frame the result was found on is this one minus its age, by pts.
        assert!(age as usize <= k, "frame {k}: {p:?}");
        assert_eq!(scene_pts(k - age as usize), detected, "frame {k}: {p:?}");
        if p.new_result {
            assert!(age >= 1, "frame {k}: found on an earlier frame");
            if let Some((previous, _, _)) = arrived {
                assert!(detected > previous, "frame {k}: results come in order");
            }
            arrived = Some((detected, k, age));
            new_results.push(out);
        } else {
            let (previous, at, age_then) = arrived.expect("carried after a new result");
            assert_eq!(detected, previous, "frame {k}: the same result carried");
            assert_eq!(
                age,
                age_then + (k - at) as u64,
                "frame {k}: one frame older each"
            );
        }
        for f in out.faces() {
            assert_eq!(
                f.since_detection,
                Some(age),
                "frame {k}: faces as old as the result"
            );
        }
        // The same in the JSON line.
        assert_eq!(line["analysed"], false, "line {k}");
        assert_eq!(line["new_result"], p.new_result, "line {k}");
        assert_eq!(line["detected_pts"].as_u64(), Some(detected.nseconds()));
        assert_eq!(line["result_age"].as_u64(), Some(age));
        for f in line["faces"].as_array().unwrap() {
            assert_eq!(f["since_detection"].as_u64(), Some(age), "line {k}: {f}");
        }
    }
    assert!(new_results.len() >= 2, "{} results", new_results.len());
    assert!(
        new_results.len() * 2 <= outs.len() - first,
        "the model is slower than this source: {} results over {} frames",
        new_results.len(),
        outs.len() - first
    );
    // One element message per new result, about the buffer that carries it.
    let messages: Vec<_> = run
        .messages
        .iter()
        .filter(|m| m.name() == gstretinaface::detect::MESSAGE_NAME)
        .collect();
    assert_eq!(
        messages.len(),
        new_results.len(),
        "one message per new result"
    );
    for (m, o) in messages.iter().zip(&new_results) {
        let p = o.provenance().unwrap();
        assert!(m.get::<bool>("new-result").unwrap());
        assert!(!m.get::<bool>("analysed").unwrap());
        assert_eq!(
            m.get::<Option<gst::ClockTime>>("pts").unwrap(),
            o.buffer.pts()
        );
        assert_eq!(
            m.get::<gst::ClockTime>("detected-pts").unwrap(),
            p.detected_pts.unwrap()
        );
        assert_eq!(m.get::<u64>("result-age").unwrap(), p.result_age.unwrap());
        let faces = m.get::<gst::List>("faces").unwrap();
        assert_eq!(faces.len(), o.faces().len());
        for f in faces.iter() {
            let f = f.get::<gst::Structure>().unwrap();
            assert_eq!(
                f.get::<u64>("since-detection").unwrap(),
                p.result_age.unwrap()
            );
            assert!(!f.get::<bool>("fresh").unwrap(), "not found on this frame");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn async_track_blur_covers_a_walking_face_on_every_frame_after_the_first_result() {
    let sprites = sprites();
    let scene = walker(&sprites, 4.0, 120);
    let run = run_chain(
        &scene,
        &sprites,
        "retinafacedetect async=true ! retinafacetrack name=trk ! retinafaceoverlay mode=blur",
    );
    let outs = &run.outs;
    let first = first_result(outs);
    let results = outs
        .iter()
        .filter(|o| o.provenance().unwrap().new_result)
        .count();
    let ages: Vec<u64> = outs
        .iter()
        .filter_map(|o| o.provenance().filter(|p| p.new_result)?.result_age)
        .collect();
    println!(
        "{results} results over {} frames, ages {ages:?}",
        outs.len() - first
    );
    assert!(
        results * 2 <= outs.len() - first,
        "the model is slower than this source: {results} results over {} frames",
        outs.len() - first
    );
    // The tracker takes every result: from the first on, a face on every frame, with an ID
    // once confirmed.
    for (k, out) in outs.iter().enumerate().skip(first) {
        assert_eq!(out.faces().len(), 1, "frame {k}");
    }
    assert!(outs.last().unwrap().faces()[0].id.is_some(), "confirmed");
    let (failures, centres) = uncovered_frames(&scene, &sprites, &buffers(outs), first);
    assert!(
        failures.is_empty(),
        "{} of {} frames not covered:\n{}",
        failures.len(),
        outs.len() - first,
        failures.join("\n")
    );
    // The blur walks with the face: its centre moves as far as the face does, within a face
    // size.
    let travel = 4.0 * (outs.len() - 1 - first) as f64;
    let moved = centres.last().unwrap() - centres[0];
    assert!(
        (moved - travel).abs() < 60.0,
        "the blur moved {moved:.0} px, the face {travel:.0} px"
    );
}

#[test]
fn a_face_walking_5_px_a_frame_stays_blurred_at_interval_15_with_or_without_the_tracker() {
    let sprites = sprites();
    let scene = walker(&sprites, 5.0, 100);
    for chain in [
        "retinafacedetect interval=15 ! retinafaceoverlay mode=blur",
        "retinafacedetect interval=15 ! retinafacetrack name=trk ! retinafaceoverlay mode=blur",
        "retinafacedetect interval=15 ! retinafaceoverlay mode=pixelate",
    ] {
        let run = run_chain(&scene, &sprites, chain);
        assert_eq!(
            first_result(&run.outs),
            0,
            "{chain}: the first frame is analysed"
        );
        let (failures, _) = uncovered_frames(&scene, &sprites, &buffers(&run.outs), 0);
        assert!(
            failures.is_empty(),
            "{chain}: {} of {} frames not covered:\n{}",
            failures.len(),
            run.outs.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn no_detector_mode_loses_faces_in_the_tracker() {
    let sprites = sprites();
    // 90 frames: the faces cross 60 % of the frame at ≈ 4 px a frame.
    let scene = scene_lanes(&sprites, WIDTH, HEIGHT, 90);
    for mode in [
        "",
        "interval=3",
        "async=true",
        "async=true interval=2",
        "tiling=auto inference-size=320",
        "regions=0,0,640,240",
        "batch-size=4",
        "shared=false",
    ] {
        let run = run_chain(
            &scene,
            &sprites,
            &format!("retinafacedetect {mode} ! retinafacetrack name=trk"),
        );
        let first = first_result(&run.outs);
        let mut with_faces = 0;
        for (k, out) in run.outs.iter().enumerate().skip(first) {
            let (detected, _) = out.detected.as_ref().expect("seen before the tracker");
            let tracked = out.faces();
            with_faces += !detected.is_empty() as usize;
            // Every face the detector attached comes out of the tracker (confirmed with an ID,
            // or not yet, without), and nothing else.
            assert_eq!(
                tracked.len(),
                detected.len(),
                "{mode}: frame {k}: {} faces from the detector, {} after the tracker",
                detected.len(),
                tracked.len()
            );
        }
        assert!(
            with_faces * 4 >= (run.outs.len() - first) * 3,
            "{mode}: faces on {with_faces} frames only"
        );
    }
}
