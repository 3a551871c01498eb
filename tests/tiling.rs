//! Tiled detection and regions of interest: same faces as one pass on ordinary frames, a face on
//! a tile border reported once and whole, regions in frame pixels, odd sizes, caps changes, all
//! formats, and the wall evaluation's AP.

use std::time::Duration;

use gst::prelude::*;
use retinaface::tiling::{self, PassScale, Tiling};
use retinaface::{DetectParams, Detector, Face, SessionConfig};
use retinaface_testkit::wall;
use retinaface_testkit::*;

const FULL_HD: &str = "video/x-raw,format=RGB,width=1920,height=1080";

fn faces_of(photo: &str, caps: &str, props: &str) -> Vec<FaceRecord> {
    detect_image(photo, caps, props).faces().remove(0)
}

fn assert_same_faces(what: &str, expected: &[FaceRecord], actual: &[FaceRecord], min_iou: f64) {
    assert!(!expected.is_empty(), "{what}: no reference faces");
    assert_eq!(
        expected.len(),
        actual.len(),
        "{what}: {actual:?} vs {expected:?}"
    );
    let worst = worst_match(expected, actual);
    assert!(worst >= min_iou, "{what}: worst IoU {worst}");
}

/// On ordinary frames (faces ≥ 40 px) tiles find what one pass finds, at 640 and at native size
/// (the parity of tiles with the native pass on real photos).
#[test]
fn tiles_find_the_same_faces_as_one_pass_on_real_photos() {
    for photo in ["sample1.jpg", "test.jpg", "sample4.jpg"] {
        let tiled = faces_of(photo, FULL_HD, "tiling=auto");
        let scaled = faces_of(photo, FULL_HD, "");
        let native = faces_of(photo, FULL_HD, "inference-size=0");
        assert_same_faces(&format!("{photo} vs 640"), &scaled, &tiled, 0.7);
        // Faces larger than a tile keeps come from the whole pass at 640, whose boxes differ from
        // native-scale ones by a few pixels (IoU 0.78 on test.jpg's largest face).
        assert_same_faces(&format!("{photo} vs native"), &native, &tiled, 0.75);
    }
}

fn detector() -> Detector {
    let model = data_dir().join("models/retinaface-mv025.onnx");
    Detector::load(&model, &SessionConfig::default(), &[]).expect("model loads")
}

/// A face exactly on the corner of four tiles (cut by three of them) is reported once, with
/// the box a native pass gives it.
#[test]
fn face_on_a_tile_border_is_reported_once_and_whole() {
    let (w, h) = (1920, 1080);
    let photo = wall::decode(
        std::path::Path::new(&media("sample1.jpg")),
        Some((480, 320)),
    );
    let mut det = detector();
    let native = DetectParams {
        inference_size: 0,
        ..Default::default()
    };
    let alone = photo.detect(&mut det, &native);
    let target = alone[0];
    let tiles = tiling::plan(w, h, &[], 640, Tiling::Auto, 1.0);
    let first = tiles[0];
    assert_eq!(first.scale, PassScale::Factor(1.0));
    assert!(
        target.width() <= first.keep.max_side,
        "the test face must be one tiles keep"
    );
    // Place the photo so the face centre is on tile 0's bottom-right corner.
    let (cx, cy) = (
        (target.bbox[0] + target.bbox[2]) / 2.0,
        (target.bbox[1] + target.bbox[3]) / 2.0,
    );
    let corner = (first.crop.w as f32, first.crop.h as f32);
    let (x, y) = ((corner.0 - cx) as usize, (corner.1 - cy) as usize);
    let mut frame = wall::Rgb::new(w, h, 128);
    frame.paste(&photo, x, y);
    let expected = frame.detect(&mut det, &native);
    let tiled = frame.detect(
        &mut det,
        &DetectParams {
            tiling: Tiling::Auto,
            ..Default::default()
        },
    );
    let on_corner: Vec<&Face> = expected
        .iter()
        .filter(|f| f.bbox[0] < corner.0 && f.bbox[2] > corner.0)
        .collect();
    assert_eq!(
        on_corner.len(),
        1,
        "the face must straddle the border: {expected:?}"
    );
    let hits: Vec<&Face> = tiled.iter().filter(|f| f.iou(on_corner[0]) > 0.1).collect();
    assert_eq!(hits.len(), 1, "reported {} times: {hits:?}", hits.len());
    let iou = hits[0].iou(on_corner[0]);
    assert!(
        iou >= 0.8,
        "box {:?} vs native {:?}",
        hits[0].bbox,
        on_corner[0].bbox
    );
    assert_eq!(tiled.len(), expected.len(), "{tiled:?} vs {expected:?}");
}

fn inside(f: &FaceRecord, r: (f64, f64, f64, f64)) -> bool {
    f.x >= r.0 && f.y >= r.1 && f.x + f.width <= r.0 + r.2 && f.y + f.height <= r.1 + r.3
}

/// Only faces inside the regions are reported, in frame pixels, with and without tiles.
#[test]
fn regions_report_only_their_faces_in_frame_pixels() {
    let all = faces_of("sample1.jpg", FULL_HD, "inference-size=0");
    assert!(all.len() >= 2, "{all:?}");
    // A region around the first face, 40 px of margin, that holds no other face's centre.
    let f = &all[0];
    let r = (
        (f.x - 40.0).max(0.0).floor(),
        (f.y - 40.0).max(0.0).floor(),
        (f.width + 80.0).ceil(),
        (f.height + 80.0).ceil(),
    );
    let centre_in = |g: &FaceRecord| {
        let (cx, cy) = (g.x + g.width / 2.0, g.y + g.height / 2.0);
        cx >= r.0 && cx <= r.0 + r.2 && cy >= r.1 && cy <= r.1 + r.3
    };
    assert_eq!(all.iter().filter(|g| centre_in(g)).count(), 1);
    let spec = format!("regions=\"{},{},{},{}\"", r.0, r.1, r.2, r.3);
    for extra in ["", "tiling=auto", "inference-size=0"] {
        let faces = faces_of("sample1.jpg", FULL_HD, &format!("{spec} {extra}"));
        assert_eq!(faces.len(), 1, "{extra}: {faces:?}");
        assert!(
            inside(&faces[0], r),
            "{extra}: {:?} outside {r:?}",
            faces[0]
        );
        assert!(iou(&faces[0], f) >= 0.8, "{extra}: {:?} vs {f:?}", faces[0]);
    }
    // Two regions: the first face and the second face.
    let g = &all[1];
    let spec = format!(
        "regions=\"{},{},{},{};{},{},{},{}\"",
        r.0,
        r.1,
        r.2,
        r.3,
        (g.x - 20.0).max(0.0) as u32,
        (g.y - 20.0).max(0.0) as u32,
        (g.width + 40.0) as u32,
        (g.height + 40.0) as u32
    );
    let faces = faces_of("sample1.jpg", FULL_HD, &spec);
    assert_eq!(faces.len(), 2, "{faces:?}");
}

/// Runs a description to EOS and returns the WARNING messages' texts; `late` properties are set
/// on the element named `d` once it is in the pipeline (so its messages reach the bus).
fn warnings_of(description: &str, late: &[(&str, &str)]) -> Vec<String> {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    for (name, value) in late {
        pipeline
            .by_name("d")
            .unwrap()
            .set_property_from_str(name, value);
    }
    let played = play(pipeline.upcast_ref(), Duration::from_secs(60), |_| {});
    pipeline.set_state(gst::State::Null).unwrap();
    played
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .warnings
}

/// Frames smaller than a tile, 1-pixel regions and regions outside the frame: no errors, and a
/// WARNING that says which region is outside, once.
#[test]
fn odd_sizes_and_regions() {
    for (w, h) in [(1, 1), (3, 5), (33, 17), (641, 7), (1283, 721)] {
        for format in ["RGB", "BGRx", "I420", "NV12"] {
            for props in ["tiling=auto", "tiling=auto regions=\"0,0,1,50;2,2,1,1\""] {
                let description = format!(
                    "videotestsrc num-buffers=2 pattern=smpte ! video/x-raw,format={format},width={w},height={h} ! \
                     retinafacedetect {props} ! appsink name=sink"
                );
                let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
                assert_eq!(run.samples.len(), 2, "{description}");
            }
        }
    }
    let warnings = warnings_of(
        "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=320,height=240 ! \
         retinafacedetect name=d tiling=auto ! fakesink",
        &[("regions", "5000,5000,10,10;300,200,100,100")],
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("5000,5000,10,10") && warnings[0].contains("outside"));
    assert!(warnings[1].contains("using 300,200,20,40"), "{warnings:?}");
    // An unparsable value is refused with a WARNING naming it.
    let warnings = warnings_of(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=64 ! \
         retinafacedetect name=d ! fakesink",
        &[("regions", "1,2,three,4")],
    );
    assert!(
        warnings.iter().any(|w| w.contains("1,2,three,4")),
        "{warnings:?}"
    );
}

/// A decoded photo as a buffer of `caps`.
fn photo_buffer(caps: &str) -> (gst::Caps, gst::Buffer) {
    let run = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! {caps} ! appsink name=sink",
        media("sample1.jpg")
    ))
    .unwrap();
    let sample = &run.samples[0];
    let mut buffer = sample.buffer().unwrap().copy();
    buffer.make_mut().set_pts(gst::ClockTime::ZERO);
    (sample.caps().unwrap().to_owned(), buffer)
}

/// Regions change while PLAYING, and a caps change with tiling on reports faces in the new
/// frame's pixels.
#[test]
fn regions_change_while_playing_and_caps_change_with_tiles() {
    init();
    let mut h = gst_check::Harness::new("retinafacedetect");
    h.element().unwrap().set_property_from_str("tiling", "auto");
    let (caps, buffer) = photo_buffer(FULL_HD);
    h.set_src_caps(caps);
    // `pull` waits at most 60 s (the harness's own timeout).
    let pull = |h: &mut gst_check::Harness, b: &gst::Buffer| {
        h.push(b.clone()).unwrap();
        facemeta::read(h.pull().expect("a buffer within 60 s").as_ref())
    };
    let all = pull(&mut h, &buffer);
    assert!(all.len() >= 2, "{all:?}");
    let f = &all[0];
    let region = format!(
        "{},{},{},{}",
        (f.x - 30.0).max(0.0) as u32,
        (f.y - 30.0).max(0.0) as u32,
        (f.width + 60.0) as u32,
        (f.height + 60.0) as u32
    );
    h.element().unwrap().set_property("regions", &region);
    let one = pull(&mut h, &buffer);
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(iou(&one[0], f) >= 0.8);
    h.element().unwrap().set_property("regions", "");
    // Half the size: faces come back in the new frame's pixels.
    let (small_caps, small) = photo_buffer("video/x-raw,format=RGB,width=960,height=540");
    h.set_src_caps(small_caps);
    let half = pull(&mut h, &small);
    assert_eq!(half.len(), all.len(), "{half:?} vs {all:?}");
    for g in &half {
        assert!(g.x + g.width <= 960.0 && g.y + g.height <= 540.0, "{g:?}");
    }
    let mut scaled = f.clone();
    (scaled.x, scaled.y, scaled.width, scaled.height) =
        (f.x / 2.0, f.y / 2.0, f.width / 2.0, f.height / 2.0);
    assert!(half.iter().any(|g| iou(g, &scaled) >= 0.7), "{half:?}");
}

/// `roi-type`: upstream ROI metas of that type are regions (in frame pixels); a frame without
/// them (and no `regions`) is not looked at; face metas are never taken for regions.
#[test]
fn upstream_roi_metas_of_the_chosen_type_are_regions() {
    init();
    let mut h = gst_check::Harness::new("retinafacedetect");
    let (caps, buffer) = photo_buffer(FULL_HD);
    h.set_src_caps(caps);
    let pull = |h: &mut gst_check::Harness, b: gst::Buffer| {
        h.push(b).unwrap();
        facemeta::read(h.pull().expect("a buffer within 60 s").as_ref())
    };
    let all = pull(&mut h, buffer.clone());
    assert!(all.len() >= 2, "{all:?}");
    let f = &all[0];
    let with_roi = |roi_type: &str| {
        let mut b = buffer.copy();
        gst_video::VideoRegionOfInterestMeta::add(
            b.make_mut(),
            roi_type,
            (
                (f.x - 30.0).max(0.0) as u32,
                (f.y - 30.0).max(0.0) as u32,
                (f.width + 60.0) as u32,
                (f.height + 60.0) as u32,
            ),
        );
        b
    };
    h.element().unwrap().set_property("roi-type", "door");
    let one = pull(&mut h, with_roi("door"));
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(iou(&one[0], f) >= 0.8, "{:?} vs {f:?}", one[0]);
    // Another type, or none at all: nothing is looked at.
    assert_eq!(pull(&mut h, with_roi("person")), vec![]);
    assert_eq!(pull(&mut h, buffer.clone()), vec![]);
    // Faces from an earlier detector are not regions, even when asked for.
    h.element().unwrap().set_property("roi-type", "face");
    // (The upstream face meta itself passes through, without a score: it is not a detection.)
    let detected: Vec<_> = pull(&mut h, with_roi("face"))
        .into_iter()
        .filter(|g| g.score.is_some())
        .collect();
    assert_eq!(detected, vec![]);
    // Unset: upstream metas are ignored and the whole frame is looked at again.
    h.element().unwrap().set_property("roi-type", "");
    assert_eq!(pull(&mut h, with_roi("door")).len(), all.len());
}

/// A frame or region smaller than a tile is seen as without tiling (scaled up to
/// inference-size), never at a smaller scale: on photos scaled to 480×320 and on small regions
/// of a full-HD frame, `tiling=auto` finds every face `tiling=off` finds, with the same boxes
/// (before, a region inside one tile was seen at tile scale: the regions below came out with
/// other boxes).
#[test]
fn small_frames_and_regions_are_seen_as_without_tiling() {
    for photo in ["sample1.jpg", "test.jpg", "sample4.jpg"] {
        let caps = "video/x-raw,format=RGB,width=480,height=320";
        let off = faces_of(photo, caps, "tiling=off");
        let auto = faces_of(photo, caps, "tiling=auto");
        assert!(!off.is_empty(), "{photo}: faces at a third of the size");
        assert!(auto.len() >= off.len(), "{photo}: {auto:?} vs {off:?}");
        assert!(
            worst_match(&off, &auto) >= 0.95,
            "{photo}: {auto:?} vs {off:?}"
        );
    }
    // Regions of a full-HD frame, each well under a tile (640 px), around its faces.
    let all = faces_of("sample1.jpg", FULL_HD, "inference-size=0");
    let spec: Vec<String> = all
        .iter()
        .take(3)
        .map(|f| {
            let (x, y) = ((f.x - 20.0).max(0.0) as u32, (f.y - 20.0).max(0.0) as u32);
            format!(
                "{x},{y},{},{}",
                (f.width + 40.0) as u32,
                (f.height + 40.0) as u32
            )
        })
        .collect();
    let regions = format!("regions=\"{}\"", spec.join(";"));
    let off = faces_of("sample1.jpg", FULL_HD, &format!("{regions} tiling=off"));
    let auto = faces_of("sample1.jpg", FULL_HD, &format!("{regions} tiling=auto"));
    assert!(!off.is_empty());
    assert!(auto.len() >= off.len(), "{auto:?} vs {off:?}");
    assert!(worst_match(&off, &auto) >= 0.95, "{auto:?} vs {off:?}");
}

/// Every format finds the RGB reference's faces with tiles on.
#[test]
fn tiles_work_in_every_format() {
    let reference = faces_of("sample1.jpg", FULL_HD, "tiling=auto");
    for format in [
        "BGR", "RGBx", "BGRx", "xRGB", "xBGR", "RGBA", "BGRA", "ARGB", "ABGR", "I420", "NV12",
    ] {
        let caps = format!("video/x-raw,format={format},width=1920,height=1080");
        let faces = faces_of("sample1.jpg", &caps, "tiling=auto");
        assert_same_faces(format, &reference, &faces, 0.85);
    }
}

/// The AP tool on a hand-computed case: 2 faces; hits at 0.9 and 0.7, a false alarm at 0.8:
/// AP = 0.5 · 1 + 0.5 · 2/3.
#[test]
fn voc_average_precision_by_hand() {
    let truth = [
        wall::Truth {
            bbox: [0.0, 0.0, 10.0, 10.0],
            difficult: false,
        },
        wall::Truth {
            bbox: [100.0, 0.0, 110.0, 10.0],
            difficult: false,
        },
        wall::Truth {
            bbox: [199.0, 0.0, 208.0, 9.0],
            difficult: true,
        },
    ];
    let f = |x: f32, s: f32| Face {
        bbox: [x, 0.0, x + 10.0, 10.0],
        score: s,
        landmarks: [[0.0; 2]; 5],
    };
    let faces = [f(0.0, 0.9), f(50.0, 0.8), f(100.0, 0.7), f(199.0, 0.95)];
    let ap = wall::average_precision(&truth, &faces, 0.5);
    assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-9, "{ap}");
    // A duplicate of a found face is a false alarm.
    let ap = wall::average_precision(&truth, &[f(0.0, 0.9), f(0.5, 0.85)], 0.5);
    assert!((ap - 0.5).abs() < 1e-9, "{ap}");
}

/// `pipelines/wide-scene.sh` with a region: JSON lines for every frame, faces only inside it.
#[test]
fn wide_scene_script_runs_with_tiles_and_regions() {
    let dir = std::env::temp_dir().join(format!("retinaface-wide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mp4, json) = (dir.join("out.mp4"), dir.join("out.jsonl"));
    let source = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,width=1920,height=1080 ! imagefreeze num-buffers=3",
        media("sample1.jpg")
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/wide-scene.sh");
    let mut child = std::process::Command::new(&script)
        .args([
            &source,
            mp4.to_str().unwrap(),
            json.to_str().unwrap(),
            "0,0,700,1080",
        ])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, std::time::Duration::from_secs(180))
        .expect("wide-scene.sh ends within 180 s");
    assert!(status.success(), "{status}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let faces = line["faces"].as_array().unwrap();
        assert!(!faces.is_empty(), "{line}");
        for f in faces {
            let right = f["x"].as_f64().unwrap() + f["width"].as_f64().unwrap();
            assert!(right <= 700.0, "{f}");
        }
    }
    assert!(std::fs::metadata(&mp4).unwrap().len() > 1000);
    let _ = std::fs::remove_dir_all(&dir);
}
