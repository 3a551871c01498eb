//! Import and export parity: the tch network computes what ONNX Runtime computes, for the
//! published model (import) and for our own exports (at two input sizes, batch 2).

mod common;

use common::*;
use retinaface_training::infer::{input_tensor, to_vec};
use retinaface_training::model::RetinaFace;
use retinaface_training::onnx_io::{export::export_onnx, import::import_onnx};
use tch::{Device, Tensor};

const TOLERANCE: f32 = 1e-4;

#[test]
fn imported_published_model_matches_onnx_runtime() {
    tch::set_num_threads(1);
    let net = import_onnx(&published_model(), Device::Cpu).expect("published model imports");
    let image = photo("sample1.jpg", 480);
    let input = input_tensor(&net, &image, Device::Cpu);
    let out = net.infer(&input);
    let shape = [1, 3, image.height() as usize, image.width() as usize];
    let mut session = ort_session(&published_model());
    let expected = ort_run(&mut session, &to_vec(&input), shape);
    for (name, d, _) in output_diffs(&out, &expected) {
        assert!(d <= TOLERANCE, "{name}: max |tch − ORT| = {d}");
    }
    // The comparison is not vacuous: the image has confident faces.
    let conf = &expected[1];
    assert!(
        conf.chunks(2).any(|c| c[1] > 0.9),
        "no confident face in sample1.jpg"
    );
}

/// Two photos at the same size as one `[2, 3, h, w]` network input.
fn photo_batch(net: &RetinaFace, w: u32, h: u32) -> Tensor {
    let images: Vec<Tensor> = ["sample1.jpg", "test2.jpg"]
        .iter()
        .map(|name| {
            let img = image::imageops::resize(
                &photo(name, 640),
                w,
                h,
                image::imageops::FilterType::Triangle,
            );
            input_tensor(net, &img, Device::Cpu)
        })
        .collect();
    Tensor::cat(&images, 0)
}

#[test]
fn export_matches_tch_at_two_sizes_and_batch_two() {
    tch::set_num_threads(1);
    tch::manual_seed(7);
    // Realistic weights (the published ones) with non-trivial BatchNorm statistics and affine
    // parameters on top, so that folding is really exercised.
    let mut net = import_onnx(&published_model(), Device::Cpu).unwrap();
    tch::no_grad(|| {
        for unit in net.units_mut() {
            if let Some(bn) = unit.bn.as_mut() {
                let c = bn.running_mean.size()[0];
                let r = |lo: f64, hi: f64| Tensor::rand([c], tch::kind::FLOAT_CPU) * (hi - lo) + lo;
                bn.running_mean.copy_(&r(-0.1, 0.1));
                bn.running_var.copy_(&r(0.8, 1.25));
                if let Some(g) = bn.ws.as_mut() {
                    g.copy_(&(&*g * r(0.8, 1.25)));
                }
                if let Some(b) = bn.bs.as_mut() {
                    b.copy_(&(&*b + r(-0.05, 0.05)));
                }
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    export_onnx(&net, &path).unwrap();
    let mut session = ort_session(&path);
    for (w, h) in [(320, 240), (203, 157)] {
        let input = photo_batch(&net, w, h);
        let out = net.infer(&input);
        let expected = ort_run(
            &mut session,
            &to_vec(&input),
            [2, 3, h as usize, w as usize],
        );
        for (name, d, scale) in output_diffs(&out, &expected) {
            assert!(
                d <= TOLERANCE,
                "{name} at {w}×{h}: max |tch − ORT| = {d} (max |value| {scale})"
            );
        }
    }
    // Exported models can be imported back (fine-tuning an export) and compute the same.
    let again = import_onnx(&path, Device::Cpu).unwrap();
    let input = photo_batch(&net, 128, 96);
    for (a, b) in [
        (net.infer(&input).loc, again.infer(&input).loc),
        (net.infer(&input).conf, again.infer(&input).conf),
    ] {
        let d = max_abs_diff(&to_vec(&a), &to_vec(&b));
        assert!(d <= TOLERANCE, "re-imported export differs by {d}");
    }
}

#[test]
fn every_backbone_exports_and_matches_onnx_runtime() {
    use retinaface_training::model::{BackboneKind, ModelConfig};
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let image = image::imageops::resize(
        &photo("sample1.jpg", 640),
        96,
        64,
        image::imageops::FilterType::Triangle,
    );
    for kind in [
        BackboneKind::MobileNet05,
        BackboneKind::MobileNet10,
        BackboneKind::ResNet18,
        BackboneKind::ResNet34,
        BackboneKind::ResNet50,
        // Last, so that the random weights of the others stay those drawn before it was added.
        BackboneKind::MobileNetV2,
    ] {
        let net = RetinaFace::new(
            ModelConfig {
                backbone: kind,
                ..Default::default()
            },
            Device::Cpu,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        export_onnx(&net, &path).unwrap();
        let input = input_tensor(&net, &image, Device::Cpu);
        let out = net.infer(&input);
        let priors = retinaface::priors::count(&net.config.contract.priors, 64, 96);
        assert_eq!(out.conf.size(), [1, priors as i64, 2], "{kind:?}");
        let mut session = ort_session(&path);
        let expected = ort_run(&mut session, &to_vec(&input), [1, 3, 64, 96]);
        for (name, d, largest) in output_diffs(&out, &expected) {
            // Untrained networks reach large activations; compare relative to the output scale.
            let scale = largest.max(1.0);
            assert!(
                d <= TOLERANCE * scale,
                "{kind:?} {name}: max |tch − ORT| = {d} (scale {scale})"
            );
        }
        let again = import_onnx(&path, Device::Cpu).unwrap();
        assert_eq!(again.config.backbone, kind);
    }
}
