//! `retinafacetrack`: track IDs across frames, boxes that move on frames the detector skipped,
//! resets on seek and flush, and the IDs in JSON, labels and after `videoscale`.

use facemeta::Provenance;
use gst::prelude::*;
use gst_video::prelude::*;
use retinaface::{Face, TrackerConfig};
use retinaface_testkit::*;

/// Decodes `video`, runs `chain` (e.g. `retinafacedetect ! retinafacetrack`) and collects every
/// frame.
fn run_video(video: &str, chain: &str) -> Run {
    let description = format!(
        "filesrc location={} ! decodebin ! video/x-raw ! {chain} ! appsink name=sink",
        media(video)
    );
    run(&description).unwrap_or_else(|e| panic!("{description}: {e}"))
}

/// The distinct track IDs in `frames`, in order of appearance (faces not confirmed yet have
/// none).
fn ids(frames: &[Vec<FaceRecord>]) -> Vec<u64> {
    let mut seen = Vec::new();
    for id in frames.iter().flatten().filter_map(|f| f.id) {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    seen
}

#[test]
fn one_id_across_the_clip_and_boxes_move_on_skipped_frames() {
    let every = run_video("single_face.mp4", "retinafacedetect").faces();
    let carried = run_video("single_face.mp4", "retinafacedetect interval=3").faces();
    let tracked_run = run_video(
        "single_face.mp4",
        "retinafacedetect interval=3 ! retinafacetrack",
    );
    let tracked = tracked_run.faces();
    let n = tracked.len();
    assert!(
        n > 50 && every.len() == n && carried.len() == n,
        "{n} frames"
    );
    // The analysed flag: frames 0, 3, 6, … (the detector's interval).
    for (i, s) in tracked_run.samples.iter().enumerate() {
        assert_eq!(
            facemeta::analysed(s.buffer().unwrap()),
            Some(i % 3 == 0),
            "frame {i}"
        );
    }
    assert_eq!(ids(&tracked), [1], "one face, one ID");
    // Confirmation takes two analysed frames (0 and 3): from frame 3 on, one face everywhere
    // the per-frame detector sees one.
    let one = tracked.iter().filter(|f| f.len() == 1).count();
    assert!(one * 10 >= n * 9, "{one} of {n} frames with the face");
    // Frames 0–2: the face is there from the first detection (a blur downstream covers it),
    // without an ID until its track is confirmed.
    assert!(
        tracked[..3]
            .iter()
            .all(|f| f.len() == 1 && f[0].id.is_none()),
        "shown, not yet confirmed: {:?}",
        &tracked[..3]
    );

    // Skipped frames: the tracker's box against the per-frame detection of that frame, and the
    // detector's carried (frozen) box likewise.
    let (mut tracked_iou, mut carried_iou, mut moved, mut skipped) = (0.0, 0.0, 0, 0);
    for i in (3..n).filter(|i| i % 3 != 0) {
        let (Some(t), Some(e), Some(c)) =
            (tracked[i].first(), every[i].first(), carried[i].first())
        else {
            continue;
        };
        tracked_iou += iou(t, e);
        carried_iou += iou(c, e);
        skipped += 1;
        let last = &tracked[i - 1][0];
        if (t.x, t.y, t.width, t.height) != (last.x, last.y, last.width, last.height) {
            moved += 1;
        }
    }
    let (tracked_iou, carried_iou) = (tracked_iou / skipped as f64, carried_iou / skipped as f64);
    println!(
        "{skipped} skipped frames: mean IoU with per-frame detection: tracked {tracked_iou:.3}, carried {carried_iou:.3}; moved on {moved}"
    );
    assert!(
        skipped * 10 >= (n - 3) * 2 / 3 * 9,
        "{skipped} skipped frames compared"
    );
    assert!(tracked_iou >= 0.8, "mean IoU {tracked_iou:.3}");
    // The face in this clip moves slowly (the frozen box is almost as good, IoU ≈ 0.98): many
    // predicted steps are below half a pixel and round to the same ROI rectangle.
    assert!(
        moved * 4 >= skipped,
        "boxes move on skipped frames: {moved} of {skipped}"
    );
    assert!(
        tracked_iou + 0.02 >= carried_iou,
        "prediction no worse than a frozen box"
    );
}

#[test]
fn face_noface_video_one_id_for_the_appearance() {
    for interval in [1, 3] {
        let detected = run_video(
            "face_noface.mov",
            &format!("retinafacedetect interval={interval}"),
        )
        .faces();
        let tracked = run_video(
            "face_noface.mov",
            &format!("retinafacedetect interval={interval} ! retinafacetrack"),
        )
        .faces();
        assert_eq!(ids(&tracked), [1], "interval {interval}");
        // The face is shown while the detector sees it (after confirmation), and gone once it
        // has left: no track coasts on into the empty part (output-missed 0).
        let seen: Vec<bool> = tracked.iter().map(|f| !f.is_empty()).collect();
        let first = seen.iter().position(|s| *s).unwrap();
        let last = seen.iter().rposition(|s| *s).unwrap();
        assert!(
            first <= interval,
            "interval {interval}: first shown at {first}"
        );
        assert!(
            seen[first..=last].iter().all(|s| *s),
            "one appearance: {seen:?}"
        );
        let detected_last = detected.iter().rposition(|f| !f.is_empty()).unwrap();
        assert!(
            last <= detected_last + interval && last + interval >= detected_last,
            "interval {interval}: tracked until {last}, detected until {detected_last}"
        );
    }
}

/// The faces of each sample.
fn faces_of(samples: &[gst::Sample]) -> Vec<Vec<FaceRecord>> {
    samples
        .iter()
        .map(|s| facemeta::read(s.buffer().unwrap()))
        .collect()
}

#[test]
fn a_seek_ends_every_track_and_ids_keep_counting() {
    let seeker = Seeker::new("retinafacedetect interval=2 ! retinafacetrack");
    let before = ids(&faces_of(&seeker.pull(10, 0)));
    assert_eq!(before, [1]);
    // Still the same face on screen, a few frames later: a tracker that survived the seek
    // would keep ID 1.
    seeker.seek(1_000);
    let after = faces_of(&seeker.pull(10, 1_000));
    assert_eq!(ids(&after), [2], "a new track after the seek");
    assert!(
        after[0].iter().all(|f| f.id.is_none()),
        "the first frame after the seek is not confirmed yet: {:?}",
        after[0]
    );
    seeker.seek(200);
    assert_eq!(
        ids(&faces_of(&seeker.pull(10, 200))),
        [3],
        "and again, backwards"
    );
}

#[test]
fn json_lines_carry_ids_and_the_analysed_flag() {
    let dir = std::env::temp_dir().join(format!("retinaface-track-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tracked, plain) = (dir.join("tracked.jsonl"), dir.join("plain.jsonl"));
    let description = format!(
        "filesrc location={} ! decodebin ! video/x-raw ! retinafacedetect interval=2 ! tee name=t \
         t. ! queue ! retinafacetrack ! retinafacejson location={} ! fakesink \
         t. ! queue ! retinafacejson location={} ! fakesink",
        media("single_face.mp4"),
        tracked.display(),
        plain.display()
    );
    run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
    let lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (tracked, plain) = (lines(&tracked), lines(&plain));
    assert!(tracked.len() > 50 && tracked.len() == plain.len());
    let mut with_id = 0;
    for (i, (t, p)) in tracked.iter().zip(&plain).enumerate() {
        assert_eq!(t["analysed"].as_bool(), Some(i % 2 == 0), "line {i}: {t}");
        assert_eq!(p["analysed"], t["analysed"]);
        for face in t["faces"].as_array().unwrap() {
            // Before the track is confirmed (the first analysed frames) the face has no ID.
            if i >= 2 {
                assert_eq!(face["id"].as_u64(), Some(1), "line {i}: {face}");
            } else {
                assert!(face["id"].is_null(), "line {i}: {face}");
            }
            with_id += face["id"].is_u64() as usize;
        }
        for face in p["faces"].as_array().unwrap() {
            assert!(face["id"].is_null(), "no tracker, no ID: {face}");
        }
    }
    assert!(with_id * 10 >= tracked.len() * 9, "{with_id} tracked faces");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn track_ids_survive_videoscale_through_the_backup_meta() {
    let run = run_video(
        "single_face.mp4",
        "retinafacedetect interval=3 ! retinafacetrack ! videoscale ! video/x-raw,width=320,height=180",
    );
    assert_eq!(run.size(), (320.0, 180.0));
    let faces = run.faces();
    assert_eq!(ids(&faces), [1]);
    let with_face = faces.iter().filter(|f| f.len() == 1).count();
    assert!(
        with_face * 10 >= faces.len() * 9,
        "{with_face} of {}",
        faces.len()
    );
    for (i, s) in run.samples.iter().enumerate() {
        let buffer = s.buffer().unwrap();
        assert_eq!(facemeta::analysed(buffer), Some(i % 3 == 0), "frame {i}");
        // GStreamer 1.22's videoscale drops ROI params: the IDs above came from the backup meta.
        for m in buffer.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
            assert!(
                m.param(facemeta::OBJECT_ID).is_none(),
                "params kept: fallback untested"
            );
        }
    }
}

#[test]
fn labels_show_the_track_id() {
    // One photo, three faces; confirm-hits=1 gives IDs on the first (only) frame.
    let render = |chain: &str| {
        let description = format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! retinafacedetect ! {chain} ! appsink name=sink",
            media("sample1.jpg")
        );
        let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
        (run.faces().remove(0), run.samples[0].clone())
    };
    let (faces, with_ids) = render(
        "retinafacetrack confirm-hits=1 ! retinafaceoverlay draw-labels=true draw-landmarks=false",
    );
    let (_, scores_only) = render("retinafaceoverlay draw-labels=true draw-landmarks=false");
    assert!(faces.len() >= 2, "{faces:?}");
    let mut ids: Vec<u64> = faces.iter().map(|f| f.id.unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=faces.len() as u64).collect::<Vec<_>>());
    // The bar is the box colour (green) and as wide as its text: "#1 0.99" is wider than
    // "0.99". Measured on the row just above each box (the bar's bottom padding).
    let bar_width = |sample: &gst::Sample, f: &FaceRecord| {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                .unwrap();
        let (stride, data) = (
            frame.plane_stride()[0] as usize,
            frame.plane_data(0).unwrap(),
        );
        let y = f.y as usize - 1;
        (f.x as usize..info.width() as usize)
            .take_while(|x| data[y * stride + x * 3..y * stride + x * 3 + 3] == [0, 255, 0])
            .count()
    };
    for f in &faces {
        let (with, without) = (bar_width(&with_ids, f), bar_width(&scores_only, f));
        assert!(
            without > 20 && with > without + 15,
            "face {f:?}: bar {with} px with the ID, {without} px without"
        );
    }
}

/// A buffer of the harness's caps carrying `faces` as the detector writes them: found on this
/// frame when `analysed`, else carried from the frame before.
fn detector_buffer(faces: &[Face], analysed: bool, pts_ms: u64) -> gst::Buffer {
    let provenance = if analysed {
        Provenance::analysed(Some(gst::ClockTime::from_mseconds(pts_ms)))
    } else {
        Provenance {
            analysed: false,
            new_result: false,
            detected_pts: Some(gst::ClockTime::from_mseconds(pts_ms.saturating_sub(33))),
            result_age: Some(1),
        }
    };
    buffer_with(faces, provenance, pts_ms)
}

/// A buffer of the harness's caps carrying `faces` with `provenance`.
fn buffer_with(faces: &[Face], provenance: Provenance, pts_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size(640 * 480 * 3).unwrap();
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        facemeta::attach_detections(b, faces, provenance, 640, 480);
    }
    buffer
}

fn face_at(x: f32) -> Face {
    let y = 100.0;
    Face {
        bbox: [x, y, x + 80.0, y + 80.0],
        score: 0.9,
        landmarks: [[x + 20.0, y + 30.0]; 5],
    }
}

/// The element alone, with metadata written by hand: predict on carried frames, IDs kept
/// across a gap shorter than `max-missed`, a flush ends every track, properties default to
/// `TrackerConfig::default()`.
#[test]
fn harness_predicts_carried_frames_and_flush_resets() {
    init();
    let mut h = gst_check::Harness::new("retinafacetrack");
    let element = h.element().unwrap();
    let d = TrackerConfig::default();
    assert_eq!(element.property::<f32>("match-iou"), d.match_iou);
    assert_eq!(element.property::<f32>("low-score"), d.low_score);
    assert_eq!(element.property::<u32>("confirm-hits"), d.confirm_hits);
    assert_eq!(element.property::<u32>("max-missed"), d.max_missed);
    // The caps say 640×480 (the writer normalises by them); the payload is never read.
    h.set_src_caps_str("video/x-raw,format=RGB,width=640,height=480,framerate=30/1");
    // `pull` waits at most 60 s (the harness's own timeout).
    let step = |h: &mut gst_check::Harness, faces: &[Face], analysed: bool, ms: u64| {
        h.push(detector_buffer(faces, analysed, ms)).unwrap();
        let out = h.pull().expect("a buffer within 60 s");
        assert_eq!(facemeta::analysed(&out), Some(analysed));
        facemeta::read(&out)
    };
    // A face moving 10 px per frame, analysed every other frame; the detector repeats the last
    // faces on the frames in between.
    let mut ms = 0;
    let mut last_x = 0.0;
    for k in 0..10 {
        let x = 100.0 + 10.0 * k as f32;
        let analysed = k % 2 == 0;
        let carried_x = if analysed { x } else { x - 10.0 };
        let out = step(&mut h, &[face_at(carried_x)], analysed, ms);
        ms += 33;
        if k < 2 {
            assert_eq!(out.len(), 1, "frame {k}: shown");
            assert_eq!(out[0].id, None, "frame {k}: not confirmed yet");
            continue;
        }
        assert_eq!(out.len(), 1, "frame {k}");
        assert_eq!(out[0].id, Some(1));
        if !analysed && k >= 5 {
            // Moved on by the filter's velocity, not left where the detector carried it.
            assert!(
                (out[0].x - x as f64).abs() <= 3.0,
                "frame {k}: {} vs {x}",
                out[0].x
            );
        }
        last_x = out[0].x;
    }
    assert!(last_x > 180.0);
    // A short gap (3 analysed frames without the face) keeps the ID.
    for _ in 0..3 {
        assert!(step(&mut h, &[], true, ms).is_empty());
        ms += 33;
    }
    assert_eq!(step(&mut h, &[face_at(230.0)], true, ms)[0].id, Some(1));
    ms += 33;
    // A flush ends the track: the same face gets a new ID, after confirmation.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let out = step(&mut h, &[face_at(240.0)], true, ms);
    assert!(out.len() == 1 && out[0].id.is_none(), "{out:?}");
    assert_eq!(
        step(&mut h, &[face_at(240.0)], true, ms + 33)[0].id,
        Some(2)
    );
    // Properties apply while running: output-missed shows a lost track at its prediction.
    element.set_property("output-missed", 2u32);
    let out = step(&mut h, &[], true, ms + 66);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, Some(2));
}

/// An async detector's result, attached to a buffer some frames after the one it was found on:
/// the element finds that frame by its pts (not by the detector's count, which frames dropped
/// in between would make wrong), matches there, and moves the track to the current frame. A
/// face walking 20 px a frame is 80 px (two face widths) from a 4-frame-old detection: matched
/// at the current frame, it would start a second track.
#[test]
fn harness_takes_a_late_result_as_a_detection_of_its_own_frame() {
    init();
    let mut h = gst_check::Harness::new("retinafacetrack");
    h.set_src_caps_str("video/x-raw,format=RGB,width=640,height=480,framerate=30/1");
    let face = |k: u64| {
        let x = 20.0 + 20.0 * k as f32;
        Face {
            bbox: [x, 100.0, x + 40.0, 140.0],
            score: 0.9,
            landmarks: [[x + 20.0, 120.0]; 5],
        }
    };
    let ms = |k: u64| 33 * k;
    let push = |h: &mut gst_check::Harness, buffer: gst::Buffer| {
        h.push(buffer).unwrap();
        let out = h.pull().expect("a buffer within 60 s");
        (facemeta::read(&out), facemeta::provenance(&out))
    };
    // Every frame analysed for 6 frames: confirmed, velocity known.
    for k in 0..6 {
        push(&mut h, detector_buffer(&[face(k)], true, ms(k)));
    }
    // Then results come late: found on frame j − 4, attached to frame j (10, 14, 18, …); the
    // frames in between carry the last result.
    for j in 6..30u64 {
        if j >= 10 && (j - 10) % 4 == 0 {
            let found = j - 4;
            let late = Provenance {
                analysed: false,
                new_result: true,
                detected_pts: Some(gst::ClockTime::from_mseconds(ms(found))),
                // Wrong on purpose (as if frames had been dropped before the tracker): the
                // pts decides.
                result_age: Some(9),
            };
            let (out, provenance) = push(&mut h, buffer_with(&[face(found)], late, ms(j)));
            assert_eq!(provenance, Some(late), "passed on as the detector wrote it");
            assert_eq!(out.len(), 1, "frame {j}: {out:?}");
            assert_eq!(out[0].id, Some(1), "frame {j}: the same track");
            assert_eq!(out[0].since_detection, Some(4), "found 4 frames before");
            // Moved on to where the face is now (80 px on), within the filter's velocity
            // error, not left where it was found.
            let (then, now) = (face(found).bbox[0] as f64, face(j).bbox[0] as f64);
            let moved = (out[0].x - then) / (now - then);
            assert!(
                (0.75..=1.25).contains(&moved),
                "frame {j}: x {} (found at {then}, now at {now})",
                out[0].x
            );
        } else {
            let last = if j < 10 { 5 } else { j - (j - 10) % 4 - 4 };
            let carried = Provenance {
                analysed: false,
                new_result: false,
                detected_pts: Some(gst::ClockTime::from_mseconds(ms(last))),
                result_age: Some(j - last),
            };
            let (out, _) = push(&mut h, buffer_with(&[face(last)], carried, ms(j)));
            assert_eq!(out.len(), 1, "frame {j}: {out:?}");
            assert_eq!(out[0].id, Some(1), "frame {j}");
        }
    }
}

#[test]
fn tracker_posts_one_message_per_frame_with_ids() {
    let run = run_video(
        "single_face.mp4",
        "retinafacedetect interval=3 ! retinafacetrack post-messages=true",
    );
    let msgs: Vec<_> = run
        .messages
        .iter()
        .filter(|s| s.name() == gstretinaface::track::MESSAGE_NAME)
        .collect();
    assert_eq!(
        msgs.len(),
        run.samples.len(),
        "one per frame, analysed or not"
    );
    for (i, (msg, sample)) in msgs.iter().zip(&run.samples).enumerate() {
        assert_eq!(msg.get::<bool>("analysed").unwrap(), i % 3 == 0);
        assert_eq!(
            msg.get::<Option<gst::ClockTime>>("pts").unwrap(),
            sample.buffer().unwrap().pts()
        );
        let faces = msg.get::<gst::List>("faces").unwrap();
        let metas = facemeta::read(sample.buffer().unwrap());
        assert_eq!(faces.len(), metas.len(), "frame {i}");
        for (f, m) in faces.iter().zip(&metas) {
            let f = f.get::<gst::Structure>().unwrap();
            assert_eq!(f.get::<u64>("id").ok(), m.id);
            assert!((f.get::<f64>("x").unwrap() - m.x).abs() <= 0.5);
            assert_eq!(f.get::<bool>("fresh").unwrap(), i % 3 == 0);
        }
    }
}

#[test]
fn count_faces_script_prints_the_unique_ids() {
    let dir = std::env::temp_dir().join(format!("retinaface-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("faces.jsonl");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/count-faces.sh");
    let mut child = std::process::Command::new(&script)
        .args([&media("face_noface.mov"), json.to_str().unwrap(), "3"])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, std::time::Duration::from_secs(180))
        .expect("count-faces.sh finishes within 180 s");
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("169 frames, 1 unique face(s) (ids 1)"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Evaluation table: the detector every N-th frame, alone (faces carried) and with the tracker,
/// against per-frame detection on the same frames. Mean box IoU = per reference face, the best
/// IoU among the output faces of that frame (0 when none), averaged over the frames from the
/// first analysed frame the tracker can confirm on (so both variants skip the same start).
/// `cargo build --release -p gst-plugin-retinaface && cargo nextest run --release -p retinaface
/// --test track --run-ignored only --no-capture evaluation_table`.
#[test]
#[ignore = "measurement; run on demand"]
fn evaluation_table() {
    let video =
        std::env::var("TRACK_EVAL_VIDEO").unwrap_or_else(|_| "WolfgangLanger_Pexels.mp4".into());
    let timed = |chain: &str| {
        let start = std::time::Instant::now();
        let run = run_video(&video, chain);
        let fps = run.samples.len() as f64 / start.elapsed().as_secs_f64();
        (run.faces(), fps)
    };
    let (reference, fps1) = timed("retinafacedetect");
    let score = |out: &[Vec<FaceRecord>], from: usize| {
        let (mut sum, mut n) = (0.0, 0);
        for (r, o) in reference.iter().zip(out).skip(from) {
            for face in r {
                sum += o.iter().map(|f| iou(face, f)).fold(0.0, f64::max);
                n += 1;
            }
        }
        sum / n.max(1) as f64
    };
    println!("{video}: {} frames", reference.len());
    println!("| interval | carried: mean IoU | fps | tracked: mean IoU | fps | IDs |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for interval in [1usize, 2, 3, 5] {
        let (carried, fps_c) = if interval == 1 {
            (reference.clone(), fps1)
        } else {
            timed(&format!("retinafacedetect interval={interval}"))
        };
        let (tracked, fps_t) = timed(&format!(
            "retinafacedetect interval={interval} ! retinafacetrack"
        ));
        // Tracks are confirmed on the second analysed frame.
        let from = interval;
        println!(
            "| {interval} | {:.3} | {fps_c:.1} | {:.3} | {fps_t:.1} | {} |",
            score(&carried, from),
            score(&tracked, from),
            ids(&tracked).len()
        );
    }
}
