//! The same faces whatever the raw format, and odd frame sizes that must not break anything.

use retinaface_testkit::*;

/// Every format finds the RGB reference's faces (IoU ≥ 0.9), on two photos.
#[test]
fn same_faces_in_rgb_bgrx_rgba_i420_nv12() {
    for photo in ["sample1.jpg", "test.jpg"] {
        let reference = detect_image(photo, "video/x-raw,format=RGB", "")
            .faces()
            .remove(0);
        assert!(!reference.is_empty());
        for format in ["BGRx", "RGBA", "I420", "NV12", "BGR", "xRGB", "ABGR"] {
            let faces = detect_image(photo, &format!("video/x-raw,format={format}"), "")
                .faces()
                .remove(0);
            assert_eq!(
                faces.len(),
                reference.len(),
                "{photo} {format}: {faces:?} vs {reference:?}"
            );
            let worst = worst_match(&reference, &faces);
            assert!(worst >= 0.9, "{photo} {format}: worst IoU {worst}");
        }
    }
}

/// Both scaling methods find the same faces.
#[test]
fn bilinear_scaling_finds_the_same_faces() {
    for photo in ["sample4.jpg", "test3.jpg"] {
        let nearest = detect_image(photo, "video/x-raw,format=I420", "scaling-method=nearest")
            .faces()
            .remove(0);
        let bilinear = detect_image(photo, "video/x-raw,format=I420", "scaling-method=bilinear")
            .faces()
            .remove(0);
        assert_eq!(nearest.len(), bilinear.len(), "{photo}");
        let worst = worst_match(&nearest, &bilinear);
        // Small faces move by a pixel or two between the two samplings.
        assert!(worst >= 0.8, "{photo}: worst IoU {worst}");
    }
}

/// Odd sizes, including chroma planes of odd size, produce buffers and no errors.
#[test]
fn tiny_and_odd_frame_sizes_work() {
    for (w, h) in [(1, 1), (3, 5), (2, 2), (33, 17)] {
        for format in ["RGB", "BGRx", "I420", "NV12"] {
            for size in [0, 640] {
                let description = format!(
                    "videotestsrc num-buffers=2 pattern=smpte ! video/x-raw,format={format},width={w},height={h} ! \
                     retinafacedetect inference-size={size} ! appsink name=sink"
                );
                let run = run(&description).unwrap_or_else(|e| panic!("{description}: {e}"));
                assert_eq!(run.samples.len(), 2, "{description}");
            }
        }
    }
}

/// Boxes stay inside odd-sized frames. A photo squeezed to odd sizes with a
/// threshold near 0 gives many candidates, half of them cut by the frame edge: each must be
/// clamped to the frame (and there must be some, or the check proves nothing).
#[test]
fn faces_stay_inside_odd_sized_frames() {
    for (w, h) in [(97, 61), (161, 99), (33, 17)] {
        for format in ["RGB", "BGRx", "I420", "NV12"] {
            for size in [0, 640] {
                let run = detect_image(
                    "sample1.jpg",
                    &format!("video/x-raw,format={format},width={w},height={h}"),
                    &format!("inference-size={size} confidence-threshold=0.02 nms-threshold=0.9"),
                );
                let faces = run.faces().remove(0);
                if (w, h) != (33, 17) {
                    assert!(!faces.is_empty(), "{w}x{h} {format} {size}: no candidates");
                }
                for f in faces {
                    assert!(
                        f.x >= 0.0
                            && f.y >= 0.0
                            && f.width > 0.0
                            && f.height > 0.0
                            && f.x + f.width <= w as f64 + 1e-3
                            && f.y + f.height <= h as f64 + 1e-3,
                        "{w}x{h} {format} inference-size={size}: box outside the frame: {f:?}"
                    );
                }
            }
        }
    }
}

/// A 4000×3000 frame is scaled down for the model and the faces come back in its pixels.
#[test]
fn large_frames_report_faces_in_frame_pixels() {
    let small = detect_image(
        "sample1.jpg",
        "video/x-raw,format=I420,width=960,height=640",
        "",
    )
    .faces()
    .remove(0);
    let large = detect_image(
        "sample1.jpg",
        "video/x-raw,format=I420,width=4000,height=3000",
        "",
    );
    assert_eq!(large.size(), (4000.0, 3000.0));
    let large = large.faces().remove(0);
    assert_eq!(large.len(), 3);
    // Same photo, so the large boxes are the small ones scaled by 4000/960 and 3000/640.
    let scaled: Vec<FaceRecord> = small
        .iter()
        .map(|f| FaceRecord {
            x: f.x * 4000.0 / 960.0,
            y: f.y * 3000.0 / 640.0,
            width: f.width * 4000.0 / 960.0,
            height: f.height * 3000.0 / 640.0,
            ..f.clone()
        })
        .collect();
    let worst = worst_match(&scaled, &large);
    assert!(worst >= 0.85, "worst IoU {worst}: {scaled:?} vs {large:?}");
}
