//! The libtorch backend (`--features torch`) against ONNX Runtime on the CPU: the TorchScript
//! conversion of the published model finds the same faces on every sample photo, unbatched and
//! batched (a 1080p frame's tiles share runs; two streams of different frame sizes share runs),
//! from RGB and from I420 and NV12 frames, with either scale filter, and its raw outputs batched
//! equal its single runs. The detector sends the libtorch backend 8-bit pixels that are scaled
//! and normalised on the device (`src/engine/torch.rs`), ONNX Runtime f32 tensors made on the
//! CPU: these tests compare the two paths end to end. The TorchScript file comes from
//! `retinaface-train torchscript` (scripts/torch-test.sh makes it; `RETINAFACE_TORCH_MODEL`
//! names another).
#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use retinaface::engine::{Backend, ClientOptions, EngineKey, Registry, Tensor, TorchBackend};
use retinaface::runtime::BackendKind;
use retinaface::{
    DetectParams, Detector, Face, Frame, PixelLayout, Plane, ScaleFilter, SessionConfig, Tiling,
    YuvMatrix,
};
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
    let detector =
        Detector::load(&torch_model(), &torch_config(), &[]).expect("the TorchScript model loads");
    // What these tests compare: the device-side preprocessing against the CPU's.
    assert!(
        detector.client().engine().takes_pixels(),
        "the libtorch backend takes 8-bit pixels"
    );
    detector
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
    assert_same_faces_on_every_photo(&DetectParams::default());
}

/// Both backends on every sample photo with `params`: the same sure faces.
fn assert_same_faces_on_every_photo(params: &DetectParams) {
    let (mut onnx, mut torch) = (onnx_detector(), torch_detector());
    let mut compared = 0;
    for photo in PHOTOS {
        let image = wall::decode(Path::new(&media(photo)), None);
        let expected = image.detect(&mut onnx, params);
        let actual = image.detect(&mut torch, params);
        let what = format!("{photo} ({:?})", params.scale_filter);
        compared += assert_same_faces(&what, &expected, &actual);
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

/// The image as I420 or NV12 (BT.601 studio range, chroma of each 2×2 block from its mean
/// colour), encoded with the crate's own RGB → YUV ([`YuvMatrix::to_yuv`]); returns the planes'
/// bytes and strides.
fn to_yuv(image: &wall::Rgb, layout: PixelLayout) -> Vec<(Vec<u8>, usize)> {
    let (w, h) = (image.width, image.height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let m = YuvMatrix::BT601;
    let rgb = |x: usize, y: usize| {
        let p = &image.data[(y * w + x) * 3..][..3];
        [p[0] as f32, p[1] as f32, p[2] as f32]
    };
    let luma: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| m.to_yuv(rgb(x, y))[0]))
        .collect();
    let (mut u, mut v) = (Vec::with_capacity(cw * ch), Vec::with_capacity(cw * ch));
    for by in 0..ch {
        for bx in 0..cw {
            let mut sum = [0.0f32; 3];
            let mut n = 0.0;
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (x, y) = ((2 * bx + x).min(w - 1), (2 * by + y).min(h - 1));
                let c = rgb(x, y);
                (0..3).for_each(|i| sum[i] += c[i]);
                n += 1.0;
            }
            let [_, cu, cv] = m.to_yuv(sum.map(|s| s / n));
            u.push(cu);
            v.push(cv);
        }
    }
    match layout {
        PixelLayout::I420 => vec![(luma, w), (u, cw), (v, cw)],
        PixelLayout::Nv12 => {
            let uv = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
            vec![(luma, w), (uv, 2 * cw)]
        }
        other => panic!("{other:?} is not a YUV layout"),
    }
}

fn detect_yuv(
    detector: &mut Detector,
    image: &wall::Rgb,
    layout: PixelLayout,
    params: &DetectParams,
) -> Vec<Face> {
    let planes = to_yuv(image, layout);
    let planes: Vec<Plane> = planes
        .iter()
        .map(|(data, stride)| Plane {
            data,
            stride: *stride,
        })
        .collect();
    let frame = Frame {
        layout,
        width: image.width,
        height: image.height,
        planes: &planes,
        matrix: YuvMatrix::BT601,
    };
    detector.detect(&frame, params).expect("detection runs")
}

/// I420 and NV12 frames: both backends get them preprocessed on the CPU (converting a YUV
/// frame to RGB bytes at full size for the device would cost the CPU more than scaling it;
/// `uploads_by_copy` in src/detector.rs). Same faces all the same.
#[test]
fn torch_finds_the_faces_onnx_runtime_finds_in_yuv_frames() {
    let (mut onnx, mut torch) = (onnx_detector(), torch_detector());
    let params = DetectParams::default();
    let mut compared = 0;
    for photo in ["sample1.jpg", "sample4.jpg", "test.jpg"] {
        // Odd sizes: the last chroma sample covers one column / row.
        let image = wall::decode(Path::new(&media(photo)), Some((1279, 719)));
        for layout in [PixelLayout::I420, PixelLayout::Nv12] {
            let expected = detect_yuv(&mut onnx, &image, layout, &params);
            let actual = detect_yuv(&mut torch, &image, layout, &params);
            compared += assert_same_faces(&format!("{photo} {layout:?}"), &expected, &actual);
        }
    }
    assert!(compared >= 10, "only {compared} sure faces compared");
}

/// The other scale filter: bilinear on the device against bilinear on the CPU.
#[test]
fn torch_with_the_bilinear_filter_finds_the_faces_onnx_runtime_finds() {
    assert_same_faces_on_every_photo(&DetectParams {
        scale_filter: ScaleFilter::Bilinear,
        ..Default::default()
    });
}

/// Two streams on one engine, frames of different sizes (1080p and 720p) that both become
/// 640×360 inputs: their pixel requests share runs, and each stream gets its own faces.
#[test]
fn streams_of_different_frame_sizes_share_torch_runs_and_keep_their_own_faces() {
    let registry = Registry::new();
    let key = EngineKey::new(&torch_model(), &torch_config());
    let options = ClientOptions {
        batch_size: 8,
        batch_timeout: Duration::from_millis(500),
    };
    let mut streams: Vec<Detector> = (0..2)
        .map(|_| Detector::connect(&registry, key.clone(), &[], options).unwrap())
        .collect();
    let mut onnx = onnx_detector();
    let params = DetectParams::default();
    let photos = [("sample1.jpg", (1920, 1080)), ("test.jpg", (1280, 720))];
    let images: Vec<wall::Rgb> = photos
        .iter()
        .map(|(photo, size)| wall::decode(Path::new(&media(photo)), Some(*size)))
        .collect();
    let frames: Vec<_> = images.iter().map(|i| (i, i.frame())).collect();
    let pending: Vec<_> = streams
        .iter_mut()
        .zip(&frames)
        .map(|(stream, (image, (layout, planes)))| {
            let frame = Frame {
                layout: *layout,
                width: image.width,
                height: image.height,
                planes,
                matrix: YuvMatrix::BT601,
            };
            stream.submit(&frame, &params).unwrap()
        })
        .collect();
    for ((stream, pending), ((photo, _), image)) in streams
        .iter_mut()
        .zip(pending)
        .zip(photos.iter().zip(&images))
    {
        let faces = stream.collect(pending, &params).unwrap();
        let expected = image.detect(&mut onnx, &params);
        let compared = assert_same_faces(&format!("{photo} shared"), &expected, &faces);
        assert!(compared > 0, "{photo}: no sure face to compare");
    }
    let stats = streams[0].client().engine().stats();
    assert_eq!(
        (stats.requests, stats.largest_batch),
        (2, 2),
        "the two frames share one run: {stats:?}"
    );
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
