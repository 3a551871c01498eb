//! `retinafacemotion`: region metas where the frame moves, and `retinafacedetect roi-type=motion`
//! looking only there.

use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use retinaface_testkit::track_eval::*;
use retinaface_testkit::*;

/// A grey RGB frame of 320×180 with white blocks `[x, y, w, h]`.
fn frame(blocks: &[[usize; 4]], pts_ms: u64) -> gst::Buffer {
    let (w, h) = (320, 180);
    let mut data = vec![90u8; w * h * 3];
    for b in blocks {
        for y in b[1]..b[1] + b[3] {
            for x in b[0]..b[0] + b[2] {
                data[(y * w + x) * 3..][..3].copy_from_slice(&[250, 250, 250]);
            }
        }
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    buffer
}

fn regions(buffer: &gst::Buffer, roi_type: &str) -> Vec<(u32, u32, u32, u32)> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == roi_type)
        .map(|m| m.rect())
        .collect()
}

#[test]
fn a_moving_block_becomes_one_motion_region_and_masks_and_flushes_are_honoured() {
    init();
    let mut h = gst_check::Harness::new("retinafacemotion");
    h.set_src_caps_str("video/x-raw,format=RGB,width=320,height=180,framerate=30/1");
    let push = |h: &mut gst_check::Harness, blocks: &[[usize; 4]], ms| {
        h.push(frame(blocks, ms)).unwrap();
        h.pull().expect("a buffer within 60 s")
    };
    assert!(
        regions(&push(&mut h, &[], 0), "motion").is_empty(),
        "first frame learns"
    );
    assert!(
        regions(&push(&mut h, &[], 33), "motion").is_empty(),
        "nothing moves"
    );
    let block = [200, 60, 40, 50];
    let out = push(&mut h, &[block], 66);
    let found = regions(&out, "motion");
    assert_eq!(found.len(), 1, "{found:?}");
    let (x, y, w, hh) = found[0];
    assert!(
        x as usize <= block[0]
            && y as usize <= block[1]
            && (x + w) as usize >= block[0] + block[2]
            && (y + hh) as usize >= block[1] + block[3],
        "{found:?} holds {block:?}"
    );
    // A masked corner does not move; the roi-type is the one asked for.
    let element = h.element().unwrap();
    element.set_property("masks", "0,0,100,100");
    element.set_property("roi-type", "door");
    push(&mut h, &[block], 100);
    let out = push(&mut h, &[block, [10, 10, 40, 40]], 133);
    assert!(regions(&out, "motion").is_empty());
    assert!(
        regions(&out, "door")
            .iter()
            .all(|r| r.0 >= 100 || r.1 >= 100),
        "{:?}",
        regions(&out, "door")
    );
    // After a flush the background is learnt again: no region on the first frame.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert!(regions(&push(&mut h, &[[150, 20, 60, 60]], 166), "door").is_empty());
}

#[test]
fn the_detector_gated_by_motion_finds_a_walking_face() {
    init();
    let sprites = face_sprites(640, 360);
    let scene = scene_lanes(&sprites, 640, 360, 60);
    let reference = run_scene(&scene, &sprites, "retinafacedetect");
    let gated = run_scene(
        &scene,
        &sprites,
        "retinafacemotion ! retinafacedetect roi-type=motion",
    );
    // From the second frame on (the first only learns the background), the faces walking
    // through are found where they move, as the whole-frame detector finds them.
    let (mut want, mut got) = (0, 0);
    for k in 1..scene.frames {
        want += reference.faces[k].len();
        got += reference.faces[k]
            .iter()
            .filter(|f| {
                gated.faces[k]
                    .iter()
                    .any(|g| retinaface_testkit::iou(f, g) > 0.5)
            })
            .count();
    }
    assert!(want > 100, "{want} faces in the reference");
    assert!(
        got as f64 >= 0.95 * want as f64,
        "{got} of {want} faces found with motion gating"
    );
}

/// A face walks in, stands still for 3 s and walks on, under motion-gated detection with the
/// tracker and a blur: it is blurred on every frame, also while it stands (no motion there, so
/// its face is kept from earlier results and looked for again every `refresh-interval` frames).
#[test]
fn a_face_that_stops_stays_blurred_under_motion_gating() {
    init();
    let sprites = face_sprites(640, 360);
    let (w, h) = (sprites[0].width as f64, sprites[0].height as f64);
    // 40 frames walking at 4 px a frame, 90 standing, 40 walking again.
    let x = |k: usize| 100.0 + 4.0 * (k.min(40) + k.saturating_sub(130)) as f64;
    let scene = Scene {
        name: "stop and stand",
        width: 640,
        height: 360,
        frames: 170,
        actors: vec![Actor {
            sprite: 0,
            path: Box::new(move |k| Some((x(k) - w / 2.0, 180.0 - h / 2.0))),
        }],
        disjoint: true,
    };
    let buffers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = buffers.clone();
    push_scene(
        &scene,
        &sprites,
        "retinafacemotion ! retinafacedetect roi-type=motion refresh-interval=15 ! \
         retinafacetrack ! retinafaceoverlay mode=blur",
        std::time::Duration::ZERO,
        |_| {},
        move |b| collected.lock().unwrap().push(b),
    );
    let buffers = std::mem::take(&mut *buffers.lock().unwrap());
    assert_eq!(buffers.len(), scene.frames);
    let (failures, _) = uncovered_frames(&scene, &sprites, &buffers, 0);
    assert!(
        failures.is_empty(),
        "{} of {} frames not covered:\n{}",
        failures.len(),
        scene.frames,
        failures.join("\n")
    );
}
