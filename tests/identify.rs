//! `retinafaceidentify` in the chains users build (detect → track → identify → …), on the
//! sample clips, with libraries made from frames of *other* clips: the man of
//! `single_face.mp4` and `face_noface.mov` (one person, two clips) and the woman of
//! `WolfgangLanger_Pexels.mp4`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use gst::prelude::*;
use retinaface_testkit::clips::{frames, save_png};
use retinaface_testkit::{FaceRecord, facemeta, init, media, play, run};

/// A library folder with the man from two frames of `single_face.mp4`, and the woman from one
/// frame of her clip when `with_woman`.
fn library(with_woman: bool) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rf-identify-element")
        .tempdir()
        .unwrap();
    for (i, f) in frames("single_face.mp4", 1, 0.0, 10.0, 2)
        .iter()
        .enumerate()
    {
        save_png(f, &dir.path().join(format!("Man/{i}.png")));
    }
    if with_woman {
        add_woman(dir.path(), "Woman");
    }
    dir
}

/// Adds the woman (one frame of her clip) to the library in `dir` as `name`.
fn add_woman(dir: &Path, name: &str) {
    let frame = &frames("WolfgangLanger_Pexels.mp4", 1, 2.0, 30.0, 1)[0];
    save_png(frame, &dir.join(format!("{name}/1.png")));
}

/// `clip` decoded, through `chain`, into `appsink name=sink`: the faces of every frame with the
/// frame's time in seconds.
fn faces_of(clip: &str, chain: &str) -> Vec<(f64, Vec<FaceRecord>)> {
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! {chain} ! appsink name=sink",
        media(clip)
    );
    let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
    run.samples
        .iter()
        .map(|s| {
            let b = s.buffer().unwrap();
            (b.pts().unwrap().seconds_f64(), facemeta::read(b))
        })
        .collect()
}

/// Among the tracked faces of `frames` from one second after each track's first frame on: how
/// many there are, and how many are named `name`.
fn named_after_first_second(frames: &[(f64, Vec<FaceRecord>)], name: &str) -> (usize, usize) {
    let mut first_seen = std::collections::HashMap::new();
    let (mut total, mut named) = (0, 0);
    for (t, faces) in frames {
        for f in faces {
            let Some(id) = f.id else { continue };
            let start = *first_seen.entry(id).or_insert(*t);
            if *t >= start + 1.0 {
                total += 1;
                named += usize::from(f.name.as_deref() == Some(name));
            }
        }
    }
    (total, named)
}

fn chain(props: &str) -> String {
    format!("retinafacedetect ! retinafacetrack ! retinafaceidentify {props}")
}

#[test]
fn the_man_of_one_clip_is_named_on_every_tracked_frame_of_the_other_after_its_first_second() {
    let lib = library(true);
    let frames = faces_of(
        "face_noface.mov",
        &chain(&format!("library={}", lib.path().display())),
    );
    let (total, named) = named_after_first_second(&frames, "Man");
    println!(
        "face_noface.mov: the man named on {named} of {total} tracked frames after their track's first second"
    );
    assert!(total >= 30, "the man is tracked on {total} frames only");
    assert!(
        named as f64 >= 0.99 * total as f64,
        "named on {named} of {total} tracked frames"
    );
    let others: Vec<_> = frames
        .iter()
        .flat_map(|(_, f)| f)
        .filter_map(|f| f.name.as_deref())
        .filter(|n| *n != "Man")
        .collect();
    assert!(others.is_empty(), "someone else named: {others:?}");
    // Every named face says how similar it is, at or above the default threshold.
    for f in frames
        .iter()
        .flat_map(|(_, f)| f)
        .filter(|f| f.name.is_some())
    {
        let s = f.similarity.unwrap();
        assert!((0.5..=1.0).contains(&s), "similarity {s}");
    }
}

#[test]
fn a_person_not_in_the_library_is_never_named_and_is_reported_unknown() {
    let lib = library(false);
    let frames = faces_of(
        "WolfgangLanger_Pexels.mp4",
        &chain(&format!("library={}", lib.path().display())),
    );
    let faces: Vec<_> = frames.iter().flat_map(|(_, f)| f).collect();
    assert!(faces.len() >= 30, "{} faces", faces.len());
    let named: Vec<_> = faces.iter().filter_map(|f| f.name.as_deref()).collect();
    let highest = faces
        .iter()
        .filter_map(|f| f.similarity)
        .fold(f64::NEG_INFINITY, f64::max);
    println!(
        "WolfgangLanger_Pexels.mp4 (not in the library): named on {} of {} faces; highest similarity {highest:.3}",
        named.len(),
        faces.len()
    );
    assert!(named.is_empty(), "a stranger named: {named:?}");
    // Tracked faces were looked at: unknown, with how far from the man they are.
    let unknown = faces
        .iter()
        .filter(|f| f.id.is_some() && f.similarity.is_some())
        .count();
    assert!(
        unknown as f64 >= 0.9 * faces.iter().filter(|f| f.id.is_some()).count() as f64,
        "{unknown} tracked faces identified as unknown"
    );
}

#[test]
fn async_detection_then_track_then_identify_names_the_person() {
    // The NVR chain: the detector's results arrive a few frames late; the landmarks of those
    // results are still fit to align on.
    let lib = library(false);
    let frames = faces_of(
        "face_noface.mov",
        &format!(
            "retinafacedetect async=true ! retinafacetrack ! retinafaceidentify library={} ! retinafaceoverlay mode=blur",
            lib.path().display()
        ),
    );
    let (total, named) = named_after_first_second(&frames, "Man");
    println!("async: the man named on {named} of {total} tracked frames after their first second");
    // How many frames an async detector analyses depends on the machine's load: a few are
    // enough to see that the names reach the tracked faces.
    assert!(total >= 5, "the man is tracked on {total} frames only");
    assert!(
        named as f64 >= 0.99 * total as f64,
        "named on {named} of {total} tracked frames"
    );
}

#[test]
fn untracked_faces_are_identified_frame_by_frame_and_names_reach_json_lines_and_messages() {
    let lib = library(false);
    let json = tempfile::NamedTempFile::new().unwrap();
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! videorate ! video/x-raw,framerate=5/1 ! retinafacedetect ! retinafaceidentify library={} post-messages=true ! retinafacejson location={} ! appsink name=sink",
        media("face_noface.mov"),
        lib.path().display(),
        json.path().display()
    );
    let run = run(&description).unwrap_or_else(|e| panic!("{e}"));
    let faces: Vec<FaceRecord> = run.faces().into_iter().flatten().collect();
    assert!(faces.len() >= 5);
    assert!(
        faces
            .iter()
            .all(|f| f.id.is_none() && f.name.as_deref() == Some("Man")),
        "{faces:?}"
    );
    let text = fs::read_to_string(json.path()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<_> = lines
        .iter()
        .flat_map(|l| l["faces"].as_array().unwrap())
        .map(|f| (f["name"].clone(), f["similarity"].as_f64()))
        .collect();
    assert_eq!(names.len(), faces.len());
    for (name, similarity) in names {
        assert_eq!(name, "Man");
        assert!(similarity.is_some_and(|s| s >= 0.5));
    }
    // The element message of each frame names them too.
    let messages: Vec<_> = run
        .messages
        .iter()
        .filter(|m| m.name() == "retinaface-identify")
        .collect();
    assert_eq!(messages.len(), run.samples.len(), "one message per frame");
    let named_in_messages = messages
        .iter()
        .flat_map(|m| {
            m.get::<gst::List>("faces")
                .unwrap()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|f| {
            f.get::<gst::Structure>()
                .unwrap()
                .get::<String>("name")
                .ok()
                .as_deref()
                == Some("Man")
        })
        .count();
    assert_eq!(named_in_messages, faces.len());
}

#[test]
fn a_person_added_while_playing_is_named_without_a_restart() {
    init();
    let lib = library(false);
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! retinafacedetect ! retinafacetrack ! retinafaceidentify name=identify library={} ! appsink name=sink sync=false max-buffers=2",
        media("WolfgangLanger_Pexels.mp4"),
        lib.path().display()
    );
    let pipeline = gst::parse::launch(&description).unwrap();
    let pipeline = pipeline.downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let identify = pipeline.by_name("identify").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Per frame, the names given.
    let mut names: Vec<Vec<String>> = Vec::new();
    let (mut added_at, mut switched_at) = (None, None);
    let other = tempfile::tempdir().unwrap();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let faces = facemeta::read(sample.buffer().unwrap());
        names.push(faces.iter().filter_map(|f| f.name.clone()).collect());
        let n = names.len();
        if n == 30 {
            // She joins the watched library folder while the stream plays.
            add_woman(lib.path(), "Woman");
            added_at = Some(n);
        }
        if switched_at.is_none() && names[n - 1].iter().any(|x| x == "Woman") {
            // The library property set to another folder, where she has another name.
            add_woman(other.path(), "Wolfgang");
            identify.set_property("library", other.path().to_str().unwrap());
            switched_at = Some(n);
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let first = |name: &str, from: usize| {
        names[from..]
            .iter()
            .position(|f| f.iter().any(|x| x == name))
    };
    let added_at = added_at.expect("the clip has more than 30 frames");
    assert!(
        names[..added_at].iter().all(|f| f.is_empty()),
        "named before she was added"
    );
    let switched_at = switched_at.expect("never named after her folder was added");
    // The folder is checked every 2 s of wall time; this clip plays at ~10-30 frames/s here.
    assert!(
        switched_at - added_at <= 200,
        "named {} frames after her folder was added",
        switched_at - added_at
    );
    let renamed = first("Wolfgang", switched_at).expect("the new library never named her");
    assert!(
        renamed <= 60,
        "named from the new library {renamed} frames later"
    );
    assert!(
        names[switched_at + renamed..]
            .iter()
            .all(|f| !f.iter().any(|x| x == "Woman")),
        "the old library's name came back"
    );
}

#[test]
fn unknown_faces_leave_a_crop_that_enrols_them_and_bad_photos_are_named_in_warnings() {
    init();
    let lib = library(false);
    fs::create_dir_all(lib.path().join("Nobody")).unwrap();
    fs::copy(media("test5.jpg"), lib.path().join("Nobody/empty.jpg")).unwrap();
    let unknown = tempfile::tempdir().unwrap();
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! retinafacedetect ! retinafacetrack ! retinafaceidentify library={} unknown-folder={} ! fakesink",
        media("WolfgangLanger_Pexels.mp4"),
        lib.path().display(),
        unknown.path().display()
    );
    let pipeline = gst::parse::launch(&description).unwrap();
    let played = play(&pipeline, Duration::from_secs(180), |_| {}).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        played
            .warnings
            .iter()
            .any(|w| w.contains("Nobody/empty.jpg") && w.contains("no face")),
        "{:?}",
        played.warnings
    );
    let crops: Vec<_> = fs::read_dir(unknown.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!crops.is_empty(), "no unknown face written");
    {
        use std::os::unix::fs::PermissionsExt;
        for c in &crops {
            let mode = fs::metadata(c).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", c.display());
        }
    }
    // Enrolment: her crop moved into a folder of her own names her on the next run.
    fs::create_dir_all(lib.path().join("Enrolled")).unwrap();
    fs::rename(&crops[0], lib.path().join("Enrolled/crop.jpg")).unwrap();
    let frames = faces_of(
        "WolfgangLanger_Pexels.mp4",
        &chain(&format!("library={}", lib.path().display())),
    );
    let (total, named) = named_after_first_second(&frames, "Enrolled");
    let mut tracks = std::collections::BTreeMap::new();
    for f in frames.iter().flat_map(|(_, f)| f) {
        let e = tracks.entry(f.id).or_insert((0, 0, 1.0f64));
        e.0 += 1;
        e.1 += usize::from(f.name.is_some());
        e.2 = e.2.min(f.similarity.unwrap_or(1.0));
    }
    println!(
        "{} unknown crops; enrolled from one: named on {named} of {total} tracked frames after their first second; per track (frames, named, lowest similarity): {tracks:?}",
        crops.len()
    );
    assert!(
        named as f64 >= 0.75 * total as f64,
        "the enrolled crop names her on {named} of {total} frames"
    );
}

#[test]
fn a_missing_library_or_model_fails_the_start_with_what_to_do() {
    let err = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! retinafaceidentify library=/nonexistent/faces ! fakesink",
        media("sample1.jpg")
    ))
    .err()
    .expect("a missing library is an error");
    assert!(
        err.contains("/nonexistent/faces") && err.contains("sub-folder"),
        "{err}"
    );
    let err = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! retinafaceidentify model=/nonexistent.onnx ! fakesink",
        media("sample1.jpg")
    ))
    .err()
    .expect("a missing model is an error");
    assert!(err.contains("/nonexistent.onnx"), "{err}");
}

#[test]
fn names_survive_videoscale_before_and_after_identification() {
    // GStreamer 1.22's videoscale drops ROI params: identify reads the faces (and landmarks) of
    // a scaled frame from the backup meta, and its names reach past a second scaling.
    let lib = library(false);
    let frames = faces_of(
        "face_noface.mov",
        &format!(
            "retinafacedetect ! retinafacetrack ! videoscale ! video/x-raw,width=640,height=360 ! retinafaceidentify library={} ! videoscale ! video/x-raw,width=480,height=270",
            lib.path().display()
        ),
    );
    let (total, named) = named_after_first_second(&frames, "Man");
    assert!(total >= 30, "the man is tracked on {total} frames only");
    assert!(
        named as f64 >= 0.99 * total as f64,
        "named on {named} of {total} tracked frames"
    );
}
