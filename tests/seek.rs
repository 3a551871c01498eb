//! Seeking and flushing: nothing the detector carries over (`interval`) may survive a seek, so a
//! blurred recording never shows a face that the blur should have covered.

use gst_video::prelude::*;
use retinaface_testkit::*;
use std::time::Duration;

/// `face_noface.mov` (960×540, 24 fps) shows one face until ≈ 2.4 s, then none.
const FACE_AT: u64 = 1_000; // ms
const NO_FACE_AT: u64 = 4_000; // ms
const NO_FACE_LATE: u64 = 5_500; // ms

#[test]
fn no_face_from_before_a_seek_is_carried_after_it() {
    // interval=1000: only the first frame of a segment is analysed; everything else is carried.
    let seeker = Seeker::new("retinafacedetect interval=1000");
    let before = seeker.pull(5, 0);
    assert!(
        before
            .iter()
            .all(|s| facemeta::read(s.buffer().unwrap()).len() == 1),
        "the clip starts with one face"
    );
    seeker.seek(NO_FACE_LATE);
    let after = seeker.pull(15, NO_FACE_LATE);
    for sample in &after {
        let faces = facemeta::read(sample.buffer().unwrap());
        assert!(
            faces.is_empty(),
            "frame at {} after the seek carries {} face(s) from before it",
            sample.buffer().unwrap().pts().unwrap(),
            faces.len()
        );
    }
}

/// Mean absolute difference of the luma plane of two I420 samples inside `[x0, x1) × [y0, y1)`.
fn luma_diff(a: &gst::Sample, b: &gst::Sample, x0: usize, y0: usize, x1: usize, y1: usize) -> f64 {
    let info = gst_video::VideoInfo::from_caps(a.caps().unwrap()).unwrap();
    let fa =
        gst_video::VideoFrameRef::from_buffer_ref_readable(a.buffer().unwrap(), &info).unwrap();
    let fb =
        gst_video::VideoFrameRef::from_buffer_ref_readable(b.buffer().unwrap(), &info).unwrap();
    let stride = fa.plane_stride()[0] as usize;
    let (pa, pb) = (fa.plane_data(0).unwrap(), fb.plane_data(0).unwrap());
    let mut sum = 0u64;
    for y in y0..y1 {
        for x in x0..x1 {
            sum += pa[y * stride + x].abs_diff(pb[y * stride + x]) as u64;
        }
    }
    sum as f64 / ((x1 - x0) * (y1 - y0)) as f64
}

#[test]
fn blur_follows_the_face_right_after_a_seek() {
    // Reference: every frame analysed, nothing drawn.
    let reference = run(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=I420 ! retinafacedetect ! appsink name=sink",
        media("face_noface.mov")
    ))
    .unwrap();
    let by_pts = |pts: gst::ClockTime| {
        reference
            .samples
            .iter()
            .find(|s| s.buffer().unwrap().pts() == Some(pts))
            .unwrap_or_else(|| panic!("no reference frame at {pts}"))
    };

    // Play a stretch without faces (so the detector carries "no faces"), then seek into the face.
    // interval=1000: without a reset on seek, "no faces" would be carried for the whole check.
    // motion-margin=0: the blur stays on the box, so "far from the face" is checked exactly (the
    // area's growth with the result's age is tested in tests/async_track.rs).
    let seeker = Seeker::new(
        "retinafacedetect interval=1000 ! tee name=t t. ! queue ! appsink name=raw sync=false \
         t. ! queue ! retinafaceoverlay mode=blur motion-margin=0",
    );
    seeker.seek(NO_FACE_AT);
    seeker.pull(3, NO_FACE_AT);
    seeker.seek(FACE_AT);
    let after = seeker.pull(12, FACE_AT);

    for sample in &after {
        let pts = sample.buffer().unwrap().pts().unwrap();
        let expected = by_pts(pts);
        let faces = facemeta::read(expected.buffer().unwrap());
        assert_eq!(faces.len(), 1, "reference frame at {pts} has one face");
        let f = &faces[0];
        // The face's core (the box shrunk by 15 % on each side) must be blurred: far from the
        // decoded pixels. Well away from the box (left quarter of the frame), nothing changes.
        let (x0, y0) = (
            (f.x + 0.15 * f.width) as usize,
            (f.y + 0.15 * f.height) as usize,
        );
        let (x1, y1) = (
            (f.x + 0.85 * f.width) as usize,
            (f.y + 0.85 * f.height) as usize,
        );
        let inside = luma_diff(sample, expected, x0, y0, x1, y1);
        assert!(
            inside > 3.0,
            "frame at {pts}: the face at {:.0},{:.0} {:.0}×{:.0} is not blurred (mean luma change {inside:.2})",
            f.x,
            f.y,
            f.width,
            f.height
        );
        let left = (f.x * 0.5) as usize;
        assert!(left > 16, "the face leaves room on its left");
        let outside = luma_diff(sample, expected, 0, 0, left, 540);
        assert!(
            outside < 0.01,
            "frame at {pts}: pixels far from the face changed (mean {outside:.3})"
        );
        // The metadata on the blurred frame is the face of this segment, not an older one.
        let carried = facemeta::read(sample.buffer().unwrap());
        assert_eq!(carried.len(), 1, "frame at {pts}");
        assert!(iou(&carried[0], f) > 0.7, "frame at {pts}: stale box");
    }
    // And back out of the face: from the first frame after the seek, no blur is left behind
    // where the face was (the frames equal the decoded ones bit for bit).
    seeker.seek(NO_FACE_LATE);
    for (sample, raw) in seeker.pull_pairs(12, NO_FACE_LATE) {
        let pts = sample.buffer().unwrap().pts().unwrap();
        let changed = luma_diff(&sample, &raw.unwrap(), 0, 0, 960, 540);
        assert!(
            changed == 0.0,
            "frame at {pts}: a blur from before the seek is still drawn (mean luma change {changed:.3})"
        );
    }
    drop(seeker);
    assert!(
        Duration::from_nanos(
            after
                .last()
                .unwrap()
                .buffer()
                .unwrap()
                .pts()
                .unwrap()
                .nseconds()
        ) < Duration::from_millis(2_400),
        "the checked frames all show the face"
    );
}
