//! The libtorch backend (`--features torch`) against ONNX Runtime on the CPU: the TorchScript
//! conversion of the published model finds the same faces on every sample photo, unbatched and
//! batched (a 1080p frame's tiles share runs), and its raw outputs batched equal its single
//! runs. The TorchScript file comes from `retinaface-train torchscript` (scripts/torch-test.sh
//! makes it; `RETINAFACE_TORCH_MODEL` names another).
#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};

use retinaface::engine::{Backend, EngineKey, Tensor, TorchBackend};
use retinaface::runtime::BackendKind;
use retinaface::{DetectParams, Detector, Face, SessionConfig, Tiling};
use retinaface_testkit::wall;
use retinaface_testkit::{PHOTOS, data_dir, media};

/// Faces at least this sure are compared (the confidence threshold is 0.6: a face just above it
/// on one backend may fall just below on the other).
const SURE: f32 = 0.7;
/// Lowest IoU between a face's box on the two backends.
const MIN_IOU: f32 = 0.95;
/// Largest score difference between the two backends for one face.
const SCORE_TOLERANCE: f32 = 0.02;

fn torch_model() -> PathBuf {
    let path = std::env::var_os("RETINAFACE_TORCH_MODEL").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/torch/models/retinaface-mv025.pt"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} missing: run scripts/torch-test.sh, or `retinaface-train torchscript --model \
         {}/models/retinaface-mv025.onnx --output {}`",
        path.display(),
        data_dir().display(),
        path.display()
    );
    path
}

fn onnx_detector() -> Detector {
    let model = data_dir().join("models/retinaface-mv025.onnx");
    Detector::load(&model, &SessionConfig::default(), &[]).expect("the ONNX model loads")
}

fn torch_config() -> SessionConfig {
    SessionConfig {
        backend: BackendKind::Torch,
        ..SessionConfig::default()
    }
}

fn torch_detector() -> Detector {
    Detector::load(&torch_model(), &torch_config(), &[]).expect("the TorchScript model loads")
}

/// Every sure face of `a` has one on `b` with the same box (IoU) and score, and the other way;
/// returns how many sure faces `a` has.
fn assert_same_faces(what: &str, a: &[Face], b: &[Face]) -> usize {
    for (from, to, dir) in [(a, b, "onnx→torch"), (b, a, "torch→onnx")] {
        for f in from.iter().filter(|f| f.score >= SURE) {
            let best = to
                .iter()
                .max_by(|x, y| f.iou(x).total_cmp(&f.iou(y)))
                .unwrap_or_else(|| panic!("{what} {dir}: no face for {f:?}"));
            let iou = f.iou(best);
            assert!(
                iou >= MIN_IOU,
                "{what} {dir}: IoU {iou} for {f:?} vs {best:?}"
            );
            let diff = (f.score - best.score).abs();
            assert!(
                diff <= SCORE_TOLERANCE,
                "{what} {dir}: score {} vs {}",
                f.score,
                best.score
            );
        }
    }
    a.iter().filter(|f| f.score >= SURE).count()
}

#[test]
fn torch_finds_the_faces_onnx_runtime_finds_on_every_sample_photo() {
    let (mut onnx, mut torch) = (onnx_detector(), torch_detector());
    let params = DetectParams::default();
    let mut compared = 0;
    for photo in PHOTOS {
        let image = wall::decode(Path::new(&media(photo)), None);
        let expected = image.detect(&mut onnx, &params);
        let actual = image.detect(&mut torch, &params);
        compared += assert_same_faces(photo, &expected, &actual);
    }
    // Not vacuous: the photos hold dozens of sure faces (most of them in the group photos).
    assert!(compared >= 20, "only {compared} sure faces compared");
}

/// Tiling runs a 1080p frame's tiles in batches of up to 4 on each backend.
#[test]
fn torch_batched_tiles_find_the_faces_onnx_runtime_finds() {
    let (mut onnx, mut torch) = (onnx_detector(), torch_detector());
    let params = DetectParams {
        tiling: Tiling::Auto,
        ..Default::default()
    };
    for photo in ["sample1.jpg", "test.jpg"] {
        let image = wall::decode(Path::new(&media(photo)), Some((1920, 1080)));
        let expected = image.detect(&mut onnx, &params);
        let actual = image.detect(&mut torch, &params);
        let compared = assert_same_faces(&format!("{photo} tiled"), &expected, &actual);
        assert!(compared > 0, "{photo}: no sure face to compare");
    }
}

/// A `[3, h, w]` input of varied values (seeded), as one request.
fn pattern(w: usize, h: usize, seed: usize) -> Vec<Tensor> {
    let mut t = Tensor::new(vec![3, h, w]);
    for (i, v) in t.data.iter_mut().enumerate() {
        *v = (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 200.0;
    }
    vec![t]
}

#[test]
fn torch_batch_of_three_equals_three_single_runs() {
    let key = EngineKey::new(&torch_model(), &torch_config());
    let mut backend = TorchBackend::open(&key).expect("the TorchScript model loads");
    assert!(backend.max_batch() >= 16);
    let inputs: Vec<Vec<Tensor>> = (0..3).map(|s| pattern(320, 240, s)).collect();
    let refs: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
    let batch = backend.run(&refs).unwrap();
    assert_eq!(batch.len(), 3);
    for (i, input) in inputs.iter().enumerate() {
        let single = backend.run(&[input]).unwrap().remove(0);
        // 320×240, steps 8/16/32, two anchors each: 3160 priors.
        let shapes: Vec<&[usize]> = single.iter().map(|t| t.shape.as_slice()).collect();
        assert_eq!(shapes, [[3160, 4], [3160, 2], [3160, 10]], "request {i}");
        for (one, many) in single.iter().zip(&batch[i]) {
            assert_eq!(one.shape, many.shape);
            let worst = one
                .data
                .iter()
                .zip(&many.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-3, "request {i}: batched differs by {worst}");
        }
    }
}

#[test]
fn fp16_on_the_cpu_is_a_warning_and_runs_in_fp32() {
    let key = EngineKey::new(
        &torch_model(),
        &SessionConfig {
            torch_fp16: true,
            ..torch_config()
        },
    );
    let backend = TorchBackend::open(&key).expect("the TorchScript model loads");
    let warnings = backend.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("FP16 runs on CUDA only")),
        "{warnings:?}"
    );
}

#[test]
fn a_missing_torchscript_file_says_how_to_make_it() {
    let dir = std::env::temp_dir().join(format!("torch-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("m.onnx");
    std::fs::copy(data_dir().join("models/retinaface-mv025.onnx"), &onnx).unwrap();
    let err = Detector::load(&onnx, &torch_config(), &[])
        .err()
        .expect("no m.pt beside m.onnx")
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("m.pt' does not exist"), "{err}");
    assert!(err.contains("retinaface-train torchscript"), "{err}");
}

/// The element: `backend=torch` finds what the default backend finds, in frame pixels.
#[test]
fn the_element_with_backend_torch_finds_the_faces_of_the_default_backend() {
    use retinaface_testkit::{detect_image, worst_match};
    let caps = "video/x-raw,format=I420,width=1280,height=720";
    let model = torch_model();
    let torch_props = format!("backend=torch model={}", model.display());
    let mut compared = 0;
    for photo in ["sample1.jpg", "sample4.jpg", "test.jpg"] {
        let onnx = detect_image(photo, caps, "").faces().remove(0);
        let torch = detect_image(photo, caps, &torch_props).faces().remove(0);
        let sure = |faces: &[retinaface_testkit::FaceRecord]| {
            let sure: Vec<_> = faces
                .iter()
                .filter(|f| f.score.is_some_and(|s| s >= f64::from(SURE)))
                .cloned()
                .collect();
            sure
        };
        let (sure_onnx, sure_torch) = (sure(&onnx), sure(&torch));
        // Each sure face of one backend has its box among the other's faces.
        for (a, b) in [(&sure_onnx, &torch), (&sure_torch, &onnx)] {
            let worst = worst_match(a, b);
            assert!(worst >= f64::from(MIN_IOU), "{photo}: worst IoU {worst}");
        }
        compared += sure_onnx.len();
    }
    assert!(compared > 0, "no sure face compared");
}
