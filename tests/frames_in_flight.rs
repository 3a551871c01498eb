//! `retinafacedetect frames-in-flight=N` (sync mode): a stream keeps up to N frames handed to the
//! model, so decoding and preprocessing of the next frames overlap the inference. Buffers leave
//! in order, each with the faces it gets with `frames-in-flight=1`; held buffers come out at
//! EOS and before caps or segment changes, and a flush drops them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use retinaface_testkit::facemeta::{self, FaceRecord, Provenance};
use retinaface_testkit::track_eval::*;
use retinaface_testkit::{init, iou};

const WIDTH: usize = 640;
const HEIGHT: usize = 360;

/// Faces and provenance of every output buffer, with its pts.
type Seen = Vec<(gst::ClockTime, Vec<FaceRecord>, Option<Provenance>)>;

fn run(scene: &Scene, sprites: &[Sprite], chain: &str) -> Seen {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let collected = seen.clone();
    push_scene(
        scene,
        sprites,
        chain,
        Duration::ZERO,
        |_| {},
        move |b| {
            let entry = (
                b.pts().unwrap(),
                facemeta::read(&b),
                facemeta::provenance(&b),
            );
            collected.lock().unwrap().push(entry);
        },
    );
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), scene.frames, "{chain}: one output per frame");
    seen
}

/// Asserts that two runs gave every frame the same faces (the same model runs on the same
/// pixels; frames in flight may share a batch, so scores may differ in the last digits).
fn assert_same(what: &str, one: &Seen, many: &Seen) {
    for (k, ((pts1, faces1, prov1), (pts_n, faces_n, prov_n))) in one.iter().zip(many).enumerate() {
        assert_eq!(pts1, pts_n, "{what}: frame {k} out of order");
        assert_eq!(prov1, prov_n, "{what}: frame {k}: provenance");
        assert_eq!(
            faces1.len(),
            faces_n.len(),
            "{what}: frame {k}: {} faces with 1 frame in flight, {} with more",
            faces1.len(),
            faces_n.len()
        );
        for (a, b) in faces1.iter().zip(faces_n) {
            let overlap = iou(a, b);
            assert!(
                overlap > 0.99
                    && (a.score.unwrap_or(0.0) - b.score.unwrap_or(0.0)).abs() < 1e-3
                    && a.id == b.id,
                "{what}: frame {k}: {a:?} against {b:?} (IoU {overlap:.4})"
            );
        }
    }
}

#[test]
fn frames_in_flight_give_every_frame_the_faces_it_gets_when_each_frame_waits() {
    init();
    let sprites = face_sprites(WIDTH, HEIGHT);
    let scene = scene_lanes(&sprites, WIDTH, HEIGHT, 45);
    for chain in [
        "retinafacedetect frames-in-flight={n}",
        "retinafacedetect interval=3 frames-in-flight={n} ! retinafacetrack",
        "retinafacedetect tiling=auto inference-size=320 frames-in-flight={n}",
        // Named: the refresh phase follows the name (staggered across cameras).
        "retinafacemotion ! retinafacedetect name=d roi-type=motion refresh-interval=8 frames-in-flight={n} ! retinafacetrack",
    ] {
        let one = run(&scene, &sprites, &chain.replace("{n}", "1"));
        let with_faces = one.iter().filter(|(_, f, _)| !f.is_empty()).count();
        assert!(
            with_faces * 4 >= scene.frames * 3,
            "{chain}: faces on {with_faces} of {} frames only",
            scene.frames
        );
        for n in ["2", "5"] {
            let many = run(&scene, &sprites, &chain.replace("{n}", n));
            assert_same(&chain.replace("{n}", n), &one, &many);
        }
    }
}

/// A 320×180 I420 frame with pts `k` × 40 ms.
fn frame(k: u64) -> gst::Buffer {
    let mut b = gst::Buffer::with_size(320 * 180 * 3 / 2).unwrap();
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * k));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.map_writable().unwrap().fill(((k * 37) % 200) as u8 + 16);
    }
    b
}

fn harness(n: u32) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new("retinafacedetect");
    h.element().unwrap().set_property("frames-in-flight", n);
    h.set_src_caps_str("video/x-raw,format=I420,width=320,height=180,framerate=25/1");
    h
}

/// The pts of every buffer that has left the element so far, in order.
fn pulled(h: &mut gst_check::Harness) -> Vec<u64> {
    std::iter::from_fn(|| h.try_pull())
        .map(|b| {
            assert!(
                facemeta::provenance(&b).is_some_and(|p| p.analysed),
                "every frame is analysed on itself"
            );
            b.pts().unwrap().mseconds() / 40
        })
        .collect()
}

#[test]
fn a_frame_leaves_once_n_frames_are_in_flight_and_the_rest_leave_at_eos_in_order() {
    let mut h = harness(3);
    for k in 0..2 {
        h.push(frame(k)).unwrap();
    }
    assert_eq!(
        pulled(&mut h),
        Vec::<u64>::new(),
        "two frames held of three"
    );
    h.push(frame(2)).unwrap();
    assert_eq!(
        pulled(&mut h),
        vec![0],
        "the third frame sends the first on"
    );
    for k in 3..6 {
        h.push(frame(k)).unwrap();
    }
    assert_eq!(pulled(&mut h), vec![1, 2, 3]);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(
        pulled(&mut h),
        vec![4, 5],
        "EOS sends the held frames first"
    );
    let events: Vec<gst::EventType> = std::iter::from_fn(|| h.try_pull_event())
        .map(|e| e.type_())
        .collect();
    assert_eq!(events.last(), Some(&gst::EventType::Eos));
}

#[test]
fn held_frames_leave_before_a_caps_change_and_a_flush_drops_them() {
    let mut h = harness(4);
    for k in 0..3 {
        h.push(frame(k)).unwrap();
    }
    assert!(pulled(&mut h).is_empty());
    // New caps: the held frames of the old size go first, with their own faces.
    h.set_src_caps_str("video/x-raw,format=I420,width=320,height=180,framerate=30/1");
    h.push(frame(3)).unwrap();
    assert_eq!(pulled(&mut h), vec![0, 1, 2]);
    h.push(frame(4)).unwrap();
    assert!(pulled(&mut h).is_empty(), "frames 3 and 4 held");
    // A flush (seek) drops what is held: those frames belong to before it.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    for k in 10..14 {
        h.push(frame(k)).unwrap();
    }
    assert_eq!(pulled(&mut h), vec![10], "nothing from before the flush");
}

#[test]
fn fewer_frames_in_flight_while_playing_send_the_extra_ones_on() {
    let mut h = harness(5);
    for k in 0..4 {
        h.push(frame(k)).unwrap();
    }
    assert!(pulled(&mut h).is_empty());
    h.element().unwrap().set_property("frames-in-flight", 1u32);
    h.push(frame(4)).unwrap();
    assert_eq!(pulled(&mut h), vec![0, 1, 2, 3, 4]);
}
