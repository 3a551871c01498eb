//! The tracker on a short synthetic scene with known ground truth (faces from a sample photo
//! moving on separate lanes through `appsrc ! retinafacedetect ! retinafacetrack`): the issue 11
//! targets that must hold. The full evaluation is `examples/track_eval.rs`.

use retinaface_testkit::track_eval::*;

#[test]
fn non_overlapping_faces_keep_their_ids_and_predicted_boxes_follow() {
    let (width, height, frames) = (640, 360, 60);
    let sprites = face_sprites(width, height);
    let scene = scene_lanes(&sprites, width, height, frames);
    assert!(scene.disjoint);
    let truth: Vec<_> = (0..frames).map(|k| scene.truth(k, &sprites)).collect();
    let detect = "retinafacedetect confidence-threshold=0.1";
    let reference = run_scene(&scene, &sprites, detect);
    for interval in [1, 3] {
        let out = run_scene(
            &scene,
            &sprites,
            &format!("{detect} interval={interval} ! retinafacetrack"),
        );
        let out = tracked(&out.faces);
        let s = score(&truth, &out, 0);
        let vs = iou_vs_detection(&truth, &reference.faces, &out, interval, interval);
        println!("interval {interval}: {s:?}, IoU vs per-frame detection {vs:.3}");
        assert_eq!(s.idsw, 0, "interval {interval}: {s:?}");
        assert_eq!(s.ids, scene.actors.len(), "interval {interval}: {s:?}");
        assert!(s.idf1 >= 0.95, "interval {interval}: {s:?}");
        assert!(vs >= 0.8, "interval {interval}: IoU vs detection {vs:.3}");
    }
}
