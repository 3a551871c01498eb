//! `retinafaceoverlay` writes colours in the frame's own YUV range and matrix: a white box is
//! Y 255 on a full-range (JPEG-style, `colorimetry=1:4:0:0`) I420 frame and Y 235 on a
//! studio-range one. Synthetic frames with a face ROI put on by hand; no model needed.

use gst_video::prelude::*;
use gst_video::{VideoColorMatrix, VideoColorRange, VideoColorimetry};
use retinaface_testkit::*;

const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// Grey background the box is drawn on.
const BACKGROUND: [u8; 3] = [100, 128, 128];
/// The face: luma pixels 16..48 × 12..36.
const FACE: [f32; 4] = [16.0, 12.0, 48.0, 36.0];

fn colorimetry(range: VideoColorRange, matrix: VideoColorMatrix) -> VideoColorimetry {
    VideoColorimetry::new(
        range,
        matrix,
        gst_video::VideoTransferFunction::Bt709,
        gst_video::VideoColorPrimaries::Bt709,
    )
}

fn i420_caps(colorimetry: &VideoColorimetry) -> gst::Caps {
    init();
    gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, WIDTH, HEIGHT)
        .fps(gst::Fraction::new(30, 1))
        .colorimetry(colorimetry)
        .build()
        .unwrap()
        .to_caps()
        .unwrap()
}

/// Reads a drawn frame's Y, U, V at a luma position.
struct Yuv {
    info: gst_video::VideoInfo,
    buffer: gst::Buffer,
}

impl Yuv {
    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(&self.buffer, &self.info).unwrap();
        let sample = |plane: u32, x: usize, y: usize| {
            frame.plane_data(plane).unwrap()[y * frame.plane_stride()[plane as usize] as usize + x]
        };
        [
            sample(0, x, y),
            sample(1, x / 2, y / 2),
            sample(2, x / 2, y / 2),
        ]
    }
}

/// Pushes one grey I420 frame with `caps` and one face through `retinafaceoverlay` drawing a
/// 4-px box in `color` (no landmarks), and returns the output frame.
fn draw(caps: gst::Caps, color: u32) -> Yuv {
    init();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
    {
        let buf = buffer.get_mut().unwrap();
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info).unwrap();
        for (plane, value) in BACKGROUND.iter().enumerate() {
            frame.plane_data_mut(plane as u32).unwrap().fill(*value);
        }
        drop(frame);
        let face = retinaface::Face {
            bbox: FACE,
            score: 0.99,
            landmarks: [[32.0, 24.0]; 5],
        };
        facemeta::attach(buf, &[face], WIDTH, HEIGHT);
    }
    let mut h = gst_check::Harness::new("retinafaceoverlay");
    {
        let overlay = h.element().unwrap();
        overlay.set_property("box-color", color);
        overlay.set_property("thickness", 4u32);
        overlay.set_property("draw-landmarks", false);
    }
    h.set_src_caps(caps);
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    Yuv { info, buffer: out }
}

/// A sample on the box's left edge (inside the 4-px line) and two that must stay untouched.
fn check(frame: &Yuv, expected: [u8; 3], what: &str) {
    assert_eq!(frame.at(17, 24), expected, "{what}: left edge of the box");
    assert_eq!(frame.at(30, 12), expected, "{what}: top edge of the box");
    assert_eq!(frame.at(32, 24), BACKGROUND, "{what}: inside the box");
    assert_eq!(frame.at(2, 2), BACKGROUND, "{what}: outside the box");
}

#[test]
fn white_box_is_full_scale_on_a_full_range_frame() {
    init();
    // colorimetry=1:4:0:0: range 0..255, BT.601 matrix (what jpegdec produces).
    let caps: gst::Caps = format!(
        "video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1,colorimetry=1:4:0:0"
    )
    .parse()
    .unwrap();
    let frame = draw(caps, 0xffffffff);
    assert_eq!(
        frame.info.colorimetry().range(),
        VideoColorRange::Range0_255
    );
    check(&frame, [255, 128, 128], "full-range white");
    // Black is 0, not 16.
    let frame = draw(
        i420_caps(&colorimetry(
            VideoColorRange::Range0_255,
            VideoColorMatrix::Bt601,
        )),
        0xff000000,
    );
    check(&frame, [0, 128, 128], "full-range black");
}

#[test]
fn white_box_is_235_on_a_studio_range_frame() {
    let frame = draw(
        i420_caps(&colorimetry(
            VideoColorRange::Range16_235,
            VideoColorMatrix::Bt601,
        )),
        0xffffffff,
    );
    let [y, u, v] = frame.at(17, 24);
    assert!(
        y.abs_diff(235) <= 1 && u.abs_diff(128) <= 1 && v.abs_diff(128) <= 1,
        "studio-range white is {:?}",
        [y, u, v]
    );
    check(&frame, [235, 128, 128], "studio-range white");
}

#[test]
fn red_follows_the_frame_matrix_and_range() {
    // Hand-computed: BT.601 full range Y = 0.299·255 = 76.2, U = 128 − 76.2/1.772 = 85.0,
    // V = 128 + 178.8/1.402 = 255.5 → 255; BT.601 studio range (81, 90, 240); BT.709 full range
    // Y = 0.2126·255 = 54.2, U = 128 − 54.2/1.8556 = 98.8, V → 255.
    for (range, matrix, expected) in [
        (
            VideoColorRange::Range0_255,
            VideoColorMatrix::Bt601,
            [76, 85, 255],
        ),
        (
            VideoColorRange::Range16_235,
            VideoColorMatrix::Bt601,
            [81, 90, 240],
        ),
        (
            VideoColorRange::Range0_255,
            VideoColorMatrix::Bt709,
            [54, 99, 255],
        ),
    ] {
        let frame = draw(i420_caps(&colorimetry(range, matrix)), 0xffff0000);
        check(&frame, expected, &format!("red, {range:?} {matrix:?}"));
    }
}
