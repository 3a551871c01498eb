//! `retinafaceoverlay` on real photos: pixel-level checks in packed RGB and YUV 4:2:0.

use gst_video::prelude::*;
use retinaface_testkit::*;

/// Decodes `photo` to `format`, detects, optionally overlays with `overlay` properties, and
/// returns the output frame and the faces found.
fn render(photo: &str, format: &str, overlay: Option<&str>) -> (gst::Sample, Vec<FaceRecord>) {
    let overlay = overlay
        .map(|p| format!("! retinafaceoverlay {p}"))
        .unwrap_or_default();
    let description = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format={format} ! retinafacedetect {overlay} ! appsink name=sink",
        media(photo)
    );
    let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
    let faces = run.faces().remove(0);
    (run.samples.into_iter().next().unwrap(), faces)
}

/// (subsampling, bytes per sample) of each plane.
fn planes(format: &str) -> Vec<(usize, usize)> {
    match format {
        "I420" => vec![(1, 1), (2, 1), (2, 1)],
        "NV12" => vec![(1, 1), (2, 2)],
        "RGB" | "BGR" => vec![(1, 3)],
        _ => vec![(1, 4)],
    }
}

/// Counts the samples that differ between `a` and `b`, split into those inside `keep_out`
/// rectangles (luma pixels, `[x0, y0, x1, y1)`) and those outside.
fn diff(format: &str, a: &gst::Sample, b: &gst::Sample, keep_out: &[[i64; 4]]) -> (usize, usize) {
    let info = gst_video::VideoInfo::from_caps(a.caps().unwrap()).unwrap();
    let fa =
        gst_video::VideoFrameRef::from_buffer_ref_readable(a.buffer().unwrap(), &info).unwrap();
    let fb =
        gst_video::VideoFrameRef::from_buffer_ref_readable(b.buffer().unwrap(), &info).unwrap();
    let (mut inside, mut outside) = (0, 0);
    for (p, (sub, n)) in planes(format).into_iter().enumerate() {
        let stride = fa.plane_stride()[p] as usize;
        let (da, db) = (
            fa.plane_data(p as u32).unwrap(),
            fb.plane_data(p as u32).unwrap(),
        );
        let (w, h) = (
            (info.width() as usize).div_ceil(sub),
            (info.height() as usize).div_ceil(sub),
        );
        for y in 0..h {
            for x in 0..w {
                let i = y * stride + x * n;
                if da[i..i + n] == db[i..i + n] {
                    continue;
                }
                let (lx, ly) = ((x * sub) as i64, (y * sub) as i64);
                let hit = keep_out.iter().any(|r| {
                    lx + sub as i64 > r[0] && lx < r[2] && ly + sub as i64 > r[1] && ly < r[3]
                });
                if hit { inside += 1 } else { outside += 1 }
            }
        }
    }
    (inside, outside)
}

fn face_rects(faces: &[FaceRecord], grow: f64) -> Vec<[i64; 4]> {
    faces
        .iter()
        .map(|f| {
            let g = grow * f.width.max(f.height) + 2.0;
            [
                (f.x - g).floor() as i64,
                (f.y - g).floor() as i64,
                (f.x + f.width + g).ceil() as i64,
                (f.y + f.height + g).ceil() as i64,
            ]
        })
        .collect()
}

const FORMATS: [&str; 4] = ["RGB", "BGRx", "I420", "NV12"];

#[test]
fn draw_mode_outlines_faces_in_the_box_colour_and_touches_nothing_else() {
    for format in FORMATS {
        let (plain, faces) = render("sample1.jpg", format, None);
        let (drawn, _) = render(
            "sample1.jpg",
            format,
            Some("mode=draw box-color=0xff00ff00 thickness=4 landmark-radius=3"),
        );
        assert_eq!(faces.len(), 3);
        // Everything drawn stays within the boxes (+ the dots, which sit inside the faces).
        let (inside, outside) = diff(format, &plain, &drawn, &face_rects(&faces, 0.0));
        assert!(
            inside > 0 && outside == 0,
            "{format}: {inside} changed inside, {outside} outside"
        );
        // The outline has the box colour: convert the drawn frame to RGB and look at the middle
        // of each box's left edge, inside the 4-px line.
        let rgb = {
            let info = gst_video::VideoInfo::from_caps(drawn.caps().unwrap()).unwrap();
            let appsrc_caps = info.to_caps().unwrap();
            let pipeline = format!(
                "appsrc name=src caps=\"{appsrc_caps}\" ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink"
            );
            convert_one(&pipeline, drawn.buffer().unwrap().copy())
        };
        let info = gst_video::VideoInfo::from_caps(rgb.caps().unwrap()).unwrap();
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(rgb.buffer().unwrap(), &info)
                .unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).unwrap();
        for f in &faces {
            let (x, y) = (
                (f.x.floor() as usize + 1) & !1,
                (f.y + f.height / 2.0) as usize,
            );
            let px = &data[y * stride + x * 3..][..3];
            assert!(
                px[1] > 200 && px[0] < 60 && px[2] < 60,
                "{format}: edge pixel {px:?} of {f:?} is not green"
            );
        }
    }
}

fn convert_one(description: &str, buffer: gst::Buffer) -> gst::Sample {
    init();
    first_sample(description, Some(buffer))
}

#[test]
fn blur_and_pixelate_change_faces_only() {
    for format in FORMATS {
        let (plain, faces) = render("test.jpg", format, None);
        assert_eq!(faces.len(), 4);
        for mode in ["blur", "pixelate"] {
            let (anonymised, _) =
                render("test.jpg", format, Some(&format!("mode={mode} margin=0.1")));
            let (inside, outside) = diff(format, &plain, &anonymised, &face_rects(&faces, 0.1));
            assert_eq!(
                outside, 0,
                "{format} {mode}: pixels outside the faces changed"
            );
            // Most of each face region changes.
            let area: f64 = faces.iter().map(|f| f.width * f.height).sum();
            assert!(
                inside as f64 > 0.5 * area,
                "{format} {mode}: only {inside} samples changed over {area} px of faces"
            );
        }
    }
}

#[test]
fn frames_without_faces_pass_through_bit_identical() {
    for format in FORMATS {
        let (plain, faces) = render("test5.jpg", format, None);
        assert!(faces.is_empty());
        for mode in ["draw", "blur", "pixelate"] {
            let (out, _) = render("test5.jpg", format, Some(&format!("mode={mode}")));
            // Every visible sample (padding between rows and planes is not part of the picture).
            assert_eq!(
                diff(format, &plain, &out, &[]),
                (0, 0),
                "{format} {mode}: frame changed"
            );
        }
    }
}

#[test]
fn mode_none_and_faces_at_the_frame_edge() {
    // mode=none leaves faces untouched.
    let (plain, faces) = render("sample2.jpg", "I420", None);
    let (none, _) = render("sample2.jpg", "I420", Some("mode=none"));
    assert_eq!(diff("I420", &plain, &none, &[]), (0, 0));
    assert!(!faces.is_empty());
    // Odd sizes and faces cut by the frame edge: crop the photo through a face.
    let f = &faces[0];
    let crop = format!(
        "videocrop left={} top={}",
        (f.x + f.width / 2.0) as u32 | 1,
        (f.y + f.height / 3.0) as u32 | 1
    );
    for format in ["I420", "NV12", "RGB"] {
        let render_cut = |overlay: &str| {
            let description = format!(
                "filesrc location={} ! jpegdec ! videoconvert ! {crop} ! videoconvert ! video/x-raw,format={format} ! \
                 retinafacedetect confidence-threshold=0.3 {overlay} ! appsink name=sink",
                media("sample2.jpg")
            );
            let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
            assert_eq!(run.samples.len(), 1, "{description}");
            let faces = run.faces().remove(0);
            (run.samples.into_iter().next().unwrap(), faces)
        };
        let (plain, faces) = render_cut("");
        let (w, h) = {
            let info = gst_video::VideoInfo::from_caps(plain.caps().unwrap()).unwrap();
            (info.width() as f64, info.height() as f64)
        };
        // The cut face is still found, touching the left or top edge of the frame.
        let cut = faces
            .iter()
            .find(|f| f.x < 1.0 || f.y < 1.0)
            .unwrap_or_else(|| panic!("{format}: no face at the cut edge in {faces:?}"));
        assert!(cut.x + cut.width <= w && cut.y + cut.height <= h);
        // Blurred and outlined: the cut face changes, nothing away from the faces does.
        let (out, _) =
            render_cut("! retinafaceoverlay mode=blur margin=0.1 ! retinafaceoverlay mode=draw");
        let (inside, outside) = diff(format, &plain, &out, &face_rects(&faces, 0.1));
        assert_eq!(outside, 0, "{format}: pixels away from the faces changed");
        let (cut_changed, _) = diff(
            format,
            &plain,
            &out,
            &face_rects(std::slice::from_ref(cut), 0.1),
        );
        assert!(
            cut_changed as f64 > 0.5 * cut.width * cut.height,
            "{format}: the cut face ({cut:?}) is not covered: {cut_changed} samples changed"
        );
        assert!(inside >= cut_changed);
    }
}

#[test]
fn labels_draw_a_score_bar_above_each_face() {
    let (plain, faces) = render("sample1.jpg", "RGB", None);
    let (labelled, _) = render(
        "sample1.jpg",
        "RGB",
        Some("draw-labels=true font-size=16 draw-landmarks=false"),
    );
    let (unlabelled, _) = render(
        "sample1.jpg",
        "RGB",
        Some("draw-labels=false draw-landmarks=false"),
    );
    // The bar sits above each box: count changes in the 24 px band above the faces.
    let bands: Vec<[i64; 4]> = faces
        .iter()
        .map(|f| [f.x as i64, f.y as i64 - 24, f.x as i64 + 80, f.y as i64])
        .collect();
    let (with_bar, _) = diff("RGB", &plain, &labelled, &bands);
    let (without_bar, _) = diff("RGB", &plain, &unlabelled, &bands);
    assert!(
        with_bar > 3 * 200 && without_bar < with_bar / 4,
        "{with_bar} vs {without_bar}"
    );
    // Nothing beyond boxes and bars changes.
    let mut keep_out = face_rects(&faces, 0.0);
    keep_out.extend(bands);
    assert_eq!(diff("RGB", &plain, &labelled, &keep_out).1, 0);
}
