//! Video files: faces over time, `interval`, and resolution changes mid-stream.

use retinaface_testkit::*;

fn detect_video(name: &str, props: &str) -> Run {
    let description = format!(
        "filesrc location={} ! decodebin ! video/x-raw ! retinafacedetect {props} ! appsink name=sink",
        media(name)
    );
    run(&description).unwrap_or_else(|e| panic!("{description}: {e}"))
}

fn with_faces(run: &Run) -> Vec<bool> {
    run.faces().iter().map(|f| !f.is_empty()).collect()
}

#[test]
fn single_face_video_has_one_face_on_most_frames() {
    let run = detect_video("single_face.mp4", "");
    let faces = run.faces();
    assert!(faces.len() > 50, "{} frames", faces.len());
    let one = faces.iter().filter(|f| f.len() == 1).count();
    assert!(
        one * 10 >= faces.len() * 9,
        "{one} of {} frames with exactly one face",
        faces.len()
    );
}

#[test]
fn no_face_video_has_no_faces() {
    let run = detect_video("no_face.mp4", "");
    assert!(run.samples.len() > 50);
    let faces: usize = run.faces().iter().map(Vec::len).sum();
    assert_eq!(faces, 0);
}

#[test]
fn face_noface_video_shows_faces_appear_and_disappear() {
    let run = detect_video("face_noface.mov", "");
    let seen = with_faces(&run);
    let (with, without) = (
        seen.iter().filter(|s| **s).count(),
        seen.iter().filter(|s| !**s).count(),
    );
    assert!(
        with >= 20 && without >= 20,
        "{with} frames with faces, {without} without"
    );
    // A long run of face frames followed by a long run of empty frames: a real transition,
    // not flicker.
    let transitions = seen.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(transitions <= 4, "{transitions} transitions: {seen:?}");
}

#[test]
fn interval_carries_faces_between_model_runs() {
    let every = detect_video("single_face.mp4", "post-messages=true");
    let fifth = detect_video("single_face.mp4", "interval=5 post-messages=true");
    let n = fifth.samples.len();
    assert_eq!(n, every.samples.len());
    // The model ran on frames 0, 5, 10, …: one message each.
    assert_eq!(fifth.messages.len(), n.div_ceil(5));
    assert_eq!(every.messages.len(), n);
    // Skipped frames carry exactly the faces of the last processed frame: nothing blinks. Each
    // says how many frames ago it was found.
    let faces = fifth.faces();
    for (i, frame) in faces.iter().enumerate() {
        let analysed = &faces[i - i % 5];
        assert_eq!(frame.len(), analysed.len(), "frame {i}");
        for (f, a) in frame.iter().zip(analysed) {
            assert_eq!(f.since_detection, Some((i % 5) as u64), "frame {i}");
            let found_then = FaceRecord {
                since_detection: a.since_detection.map(|_| (i % 5) as u64),
                ..a.clone()
            };
            assert_eq!(f, &found_then, "frame {i}");
        }
    }
    assert_eq!(
        with_faces(&fifth),
        with_faces(&every)
            .iter()
            .enumerate()
            .map(|(i, _)| with_faces(&every)[i - i % 5])
            .collect::<Vec<_>>()
    );
}

/// Caps change mid-stream (resolution and format): faces follow without a restart.
#[test]
fn resolution_change_mid_stream() {
    init();
    let decode = |caps: &str| -> gst::Sample {
        let run = run(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! {caps} ! appsink name=sink",
            media("sample1.jpg")
        ))
        .unwrap();
        run.samples.into_iter().next().unwrap()
    };
    let big = decode("video/x-raw,format=RGB,width=1920,height=1280");
    let small = decode("video/x-raw,format=NV12,width=640,height=426");
    let mut h = gst_check::Harness::new("retinafacedetect");
    let mut results = Vec::new();
    for sample in [&big, &small, &big] {
        h.set_src_caps(sample.caps().unwrap().to_owned());
        h.push(sample.buffer().unwrap().copy()).unwrap();
        let out = h.pull().unwrap();
        results.push(facemeta::read(&out));
    }
    assert!(results.iter().all(|f| f.len() == 3), "{results:?}");
    let scale = 640.0 / 1920.0;
    let expected: Vec<FaceRecord> = results[0]
        .iter()
        .map(|f| FaceRecord {
            x: f.x * scale,
            y: f.y * scale,
            width: f.width * scale,
            height: f.height * scale,
            ..f.clone()
        })
        .collect();
    let worst = worst_match(&expected, &results[1]);
    assert!(worst >= 0.8, "worst IoU {worst}");
    assert!(worst_match(&results[0], &results[2]) >= 0.99);
}
