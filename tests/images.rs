//! The published model on the sample photos: counts, geometry, and the JSON / message outputs.

use retinaface_testkit::*;

const VLADMANDIC: [(&str, usize); 6] = [
    ("sample1.jpg", 3),
    ("sample2.jpg", 3),
    ("sample3.jpg", 3),
    ("sample4.jpg", 4),
    ("sample5.jpg", 5),
    ("sample6.jpg", 4),
];
const FACETORCH: [(&str, usize); 5] = [
    ("test.jpg", 4),
    ("test2.jpg", 1),
    ("test3.jpg", 25),
    ("test4.jpg", 2),
    ("test5.jpg", 0),
];

/// Counts match the known number of faces; every face is inside the frame with plausible
/// landmarks and a score above the threshold.
fn check_counts(images: &[(&str, usize)]) {
    for &(name, expected) in images {
        let run = detect_image(
            name,
            "video/x-raw,format=RGB",
            "inference-size=640 confidence-threshold=0.6",
        );
        let (w, h) = run.size();
        let faces = run.faces().remove(0);
        assert_eq!(faces.len(), expected, "{name}: {faces:#?}");
        for f in &faces {
            assert!(
                f.x >= 0.0 && f.y >= 0.0 && f.x + f.width <= w && f.y + f.height <= h,
                "{name}: box outside {w}x{h}: {f:?}"
            );
            assert!(
                f.width >= 4.0 && f.height >= 4.0,
                "{name}: degenerate box {f:?}"
            );
            assert!(f.score.unwrap() >= 0.6, "{name}: {f:?}");
            assert_eq!(f.landmarks.len(), 5, "{name}: {f:?}");
            // Landmarks sit on the face: inside the box grown by a quarter of its size.
            let (mx, my) = (f.width / 4.0, f.height / 4.0);
            for [x, y] in &f.landmarks {
                assert!(
                    *x >= f.x - mx
                        && *x <= f.x + f.width + mx
                        && *y >= f.y - my
                        && *y <= f.y + f.height + my,
                    "{name}: landmark ({x},{y}) far from {f:?}"
                );
            }
            // Eyes and mouth are apart (whatever the head's rotation): not a collapsed set of points.
            let mid = |a: [f64; 2], b: [f64; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
            let (eyes, mouth) = (
                mid(f.landmarks[0], f.landmarks[1]),
                mid(f.landmarks[3], f.landmarks[4]),
            );
            let apart = (eyes[0] - mouth[0]).hypot(eyes[1] - mouth[1]);
            assert!(
                apart > 0.15 * f.width.max(f.height),
                "{name}: eyes on the mouth {f:?}"
            );
        }
    }
}

#[test]
fn vladmandic_group_photos_have_3_3_3_4_5_4_faces() {
    check_counts(&VLADMANDIC);
}

#[test]
fn facetorch_photos_have_4_1_25_2_0_faces() {
    check_counts(&FACETORCH);
}

#[test]
fn thresholds_and_limits_filter_faces() {
    let all = detect_image("test3.jpg", "video/x-raw,format=RGB", "")
        .faces()
        .remove(0);
    let limited = detect_image("test3.jpg", "video/x-raw,format=RGB", "max-faces=5")
        .faces()
        .remove(0);
    assert_eq!(limited.len(), 5);
    // max-faces keeps the best ones.
    let mut scores: Vec<f64> = all.iter().map(|f| f.score.unwrap()).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let kept: Vec<f64> = limited.iter().map(|f| f.score.unwrap()).collect();
    assert_eq!(kept, scores[..5].to_vec());
    let strict = detect_image(
        "test3.jpg",
        "video/x-raw,format=RGB",
        "confidence-threshold=0.99",
    )
    .faces()
    .remove(0);
    assert!(strict.len() < all.len() && strict.iter().all(|f| f.score.unwrap() >= 0.99));
    // A minimum size at the median face drops roughly half of them.
    let mut sizes: Vec<f64> = all.iter().map(|f| f.width.min(f.height)).collect();
    sizes.sort_by(f64::total_cmp);
    let min_size = sizes[sizes.len() / 2];
    let big = detect_image(
        "test3.jpg",
        "video/x-raw,format=RGB",
        &format!("min-face-size={min_size}"),
    )
    .faces()
    .remove(0);
    assert!(
        big.len() < all.len() - 5,
        "{} of {} kept",
        big.len(),
        all.len()
    );
    // ROI rectangles are rounded to whole pixels, hence the 1 px slack.
    assert!(
        big.iter().all(|f| f.width.min(f.height) >= min_size - 1.0),
        "{big:?}"
    );
}

#[test]
fn json_lines_match_the_metadata_and_follow_videoscale() {
    let dir = std::env::temp_dir().join(format!("retinaface-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (full, half) = (dir.join("full.jsonl"), dir.join("half.jsonl"));
    let description = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! retinafacedetect ! tee name=t \
         t. ! queue ! retinafacejson location={} ! appsink name=sink \
         t. ! queue ! videoscale ! video/x-raw,width=960,height=640 ! retinafacejson location={} ! fakesink",
        media("sample1.jpg"),
        full.display(),
        half.display()
    );
    let run = run(&description).unwrap();
    let metas = run.faces().remove(0);
    let read = |p: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "one line per buffer: {text}");
        serde_json::from_str(lines[0]).unwrap()
    };
    let (full, half) = (read(&full), read(&half));
    assert_eq!(
        (full["width"].as_u64(), full["height"].as_u64()),
        (Some(1920), Some(1280))
    );
    assert_eq!(
        (half["width"].as_u64(), half["height"].as_u64()),
        (Some(960), Some(640))
    );
    assert_eq!(full["pts"].as_u64(), Some(0));
    let faces = full["faces"].as_array().unwrap();
    assert_eq!(faces.len(), metas.len());
    for (json, meta) in faces.iter().zip(&metas) {
        assert_eq!(json["x"].as_f64(), Some(meta.x));
        // JSON prints the shortest decimal that round-trips f64; allow for the last digit.
        assert!((json["score"].as_f64().unwrap() - meta.score.unwrap()).abs() < 1e-12);
        assert_eq!(json["landmarks"].as_array().unwrap().len(), 5);
    }
    // After videoscale the boxes and landmarks are in the scaled frame's pixels.
    let scaled = half["faces"].as_array().unwrap();
    assert_eq!(scaled.len(), faces.len());
    for (s, f) in scaled.iter().zip(faces) {
        for key in ["x", "y", "width", "height"] {
            let (s, f) = (s[key].as_f64().unwrap(), f[key].as_f64().unwrap());
            assert!((s - f / 2.0).abs() <= 1.5, "{key}: {s} vs {f}/2");
        }
        let (sl, fl) = (&s["landmarks"][2], &f["landmarks"][2]);
        assert!(
            (sl[0].as_f64().unwrap() - fl[0].as_f64().unwrap() / 2.0).abs() <= 1.5,
            "{sl} vs {fl}/2"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn post_messages_carry_the_faces() {
    let run = detect_image(
        "sample5.jpg",
        "video/x-raw,format=RGB",
        "post-messages=true",
    );
    let metas = run.faces().remove(0);
    let msgs: Vec<_> = run
        .messages
        .iter()
        .filter(|s| s.name() == gstretinaface::detect::MESSAGE_NAME)
        .collect();
    assert_eq!(msgs.len(), 1);
    let msg = msgs[0];
    assert_eq!(
        msg.get::<Option<gst::ClockTime>>("pts").unwrap(),
        Some(gst::ClockTime::ZERO)
    );
    assert!(
        msg.get::<Option<gst::ClockTime>>("running-time")
            .unwrap()
            .is_some()
    );
    let faces = msg.get::<gst::List>("faces").unwrap();
    assert_eq!(faces.len(), metas.len());
    for (v, meta) in faces.iter().zip(&metas) {
        let s = v.get::<gst::Structure>().unwrap();
        assert!((s.get::<f64>("x").unwrap() - meta.x).abs() <= 1.0);
        assert_eq!(s.get::<f64>("score").ok(), meta.score);
        assert_eq!(s.get::<gst::Array>("landmarks").unwrap().len(), 10);
    }
    // Without the property, no messages.
    let quiet = detect_image("sample5.jpg", "video/x-raw,format=RGB", "");
    assert!(
        quiet
            .messages
            .iter()
            .all(|s| s.name() != gstretinaface::detect::MESSAGE_NAME)
    );
}
