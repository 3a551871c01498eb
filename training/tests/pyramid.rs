//! Configurable pyramids (P2–P6, FPN/SSH width, anchor sizes per level): the exported model
//! computes what the tch network computes, imports back as the same network, and runs in the
//! plugin's detector core with the faces the trainer finds.

mod common;

use common::*;
use retinaface::{DetectParams, Detector, SessionConfig};
use retinaface_training::infer::{InferParams, detect, input_tensor, to_vec};
use retinaface_training::model::{BackboneKind, HeadKind, ModelConfig, RetinaFace};
use retinaface_training::onnx_io::{export::export_onnx, import::import_onnx};
use tch::Device;

const TOLERANCE: f32 = 1e-4;

/// Pyramid `steps`, two anchor sizes per level (√2 apart, 2×stride first) and FPN/SSH width
/// `neck` (`None`: the backbone's reference width).
fn pyramid(backbone: BackboneKind, steps: &[u32], neck: Option<i64>) -> ModelConfig {
    let mut config = ModelConfig {
        backbone,
        neck_channels: neck,
        ..Default::default()
    };
    config.contract.priors.steps = steps.to_vec();
    config.contract.priors.min_sizes = steps
        .iter()
        .map(|&s| vec![2.0 * s as f32, 2.0 * s as f32 * std::f32::consts::SQRT_2])
        .collect();
    config
}

/// The RetinaNet head on a P3–P6 ResNet-18 (64 channels) with RetinaNet's anchors: three
/// scales (2^0, 2^⅓, 2^⅔ × 4·stride) × three aspect ratios per cell.
fn retinanet() -> ModelConfig {
    let mut config = pyramid(BackboneKind::ResNet18, &[8, 16, 32, 64], Some(64));
    config.head = HeadKind::RetinaNet;
    config.contract.priors.aspect_ratios = vec![0.5, 1.0, 2.0];
    config.contract.priors.min_sizes = config
        .contract
        .priors
        .steps
        .iter()
        .map(|&s| {
            [0.0f32, 1.0, 2.0]
                .map(|k| 4.0 * s as f32 * (k / 3.0).exp2())
                .to_vec()
        })
        .collect();
    config
}

/// The SRN head (AInnoFace's selective refinement) on the reference mv0.25 pyramid.
fn srn() -> ModelConfig {
    let mut config = pyramid(BackboneKind::MobileNet025, &[8, 16, 32], None);
    config.head = HeadKind::Srn;
    config
}

/// The small-face layout (training/configs/mobilenet0.25-p2-small-faces.toml): a 16-channel
/// stride-4 level without SSH, one anchor per cell there, below the published three.
fn small_faces() -> ModelConfig {
    let mut config = pyramid(BackboneKind::MobileNet025, &[4, 8, 16, 32], None);
    config.level_channels = Some(vec![16, 64, 64, 64]);
    config.ssh_min_stride = 8;
    config.contract.priors.min_sizes[0] = vec![10.0];
    config
}

/// The network of `config` with settled BatchNorm statistics.
fn network(config: ModelConfig) -> RetinaFace {
    let net = RetinaFace::new(config, Device::Cpu).unwrap();
    // BatchNorm statistics from a photo, as training would leave them. Fresh statistics (mean 0,
    // variance 1) let an untrained ResNet's activations grow to logits in the thousands, where
    // float rounding alone moves a softmax score by 1e-3 and no export could be checked at 1e-4.
    let image = image::imageops::resize(
        &photo("sample1.jpg", 640),
        128,
        96,
        image::imageops::FilterType::Triangle,
    );
    let input = input_tensor(&net, &image, Device::Cpu);
    tch::no_grad(|| {
        for _ in 0..30 {
            let _ = net.forward_train(&input, true);
        }
    });
    net
}

#[test]
fn pyramid_variants_export_and_match_onnx_runtime() {
    tch::set_num_threads(1);
    let photo = photo("sample1.jpg", 640);
    for config in [
        pyramid(BackboneKind::ResNet18, &[4, 8, 16, 32, 64], Some(64)),
        pyramid(BackboneKind::MobileNet025, &[4, 8, 16, 32, 64], None),
        pyramid(BackboneKind::MobileNetV2, &[4, 8, 16, 32], Some(32)),
        pyramid(BackboneKind::ResNet18, &[16, 32, 64], Some(128)),
        retinanet(),
        srn(),
        small_faces(),
    ] {
        tch::manual_seed(5);
        let (backbone, steps) = (config.backbone, config.contract.priors.steps.clone());
        let net = network(config);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        export_onnx(&net, &path).unwrap();
        let mut session = ort_session(&path);
        // 160×96 divides by 64; 131×77 does not, so every level rounds its size up.
        for (w, h) in [(160, 96), (131, 77)] {
            let image =
                image::imageops::resize(&photo, w, h, image::imageops::FilterType::Triangle);
            let input = input_tensor(&net, &image, Device::Cpu);
            let out = net.infer(&input);
            let priors =
                retinaface::priors::count(&net.config.contract.priors, h as usize, w as usize);
            assert_eq!(
                out.conf.size(),
                [1, priors as i64, 2],
                "{backbone:?} {steps:?}"
            );
            let expected = ort_run(
                &mut session,
                &to_vec(&input),
                [1, 3, h as usize, w as usize],
            );
            for (name, d, largest) in output_diffs(&out, &expected) {
                // Untrained networks reach large activations; relative to the output scale.
                let scale = largest.max(1.0);
                assert!(
                    d <= TOLERANCE * scale,
                    "{backbone:?} {steps:?} {name} at {w}×{h}: max |tch − ORT| = {d} (scale {scale})"
                );
            }
        }
        // The export carries the pyramid and the width: importing it rebuilds the same network.
        let again = import_onnx(&path, Device::Cpu).unwrap();
        assert_eq!(again.config.contract.priors, net.config.contract.priors);
        assert_eq!(again.config.neck_width(), net.config.neck_width());
        assert_eq!(again.config.level_widths(), net.config.level_widths());
        assert_eq!(again.config.ssh_min_stride, net.config.ssh_min_stride);
        assert_eq!(again.config.backbone, backbone);
        assert_eq!(again.config.head, net.config.head);
        assert_eq!(again.parameter_count(), net.parameter_count());
    }
}

#[test]
fn p2_p6_model_runs_in_the_plugin_detector() {
    tch::manual_seed(9);
    let net = network(pyramid(
        BackboneKind::ResNet18,
        &[4, 8, 16, 32, 64],
        Some(64),
    ));
    plugin_finds_what_the_trainer_finds(&net);
}

#[test]
fn retinanet_head_runs_in_the_plugin_detector() {
    tch::manual_seed(9);
    let mut net = network(retinanet());
    // Away from the 0.01 prior, so that scores spread and the 20 best are well apart.
    net.set_face_prior(0.5);
    plugin_finds_what_the_trainer_finds(&net);
}

#[test]
fn srn_head_runs_in_the_plugin_detector() {
    tch::manual_seed(9);
    plugin_finds_what_the_trainer_finds(&network(srn()));
}

#[test]
fn small_face_layout_runs_in_the_plugin_detector() {
    tch::manual_seed(9);
    plugin_finds_what_the_trainer_finds(&network(small_faces()));
}

/// Exports `net` and runs it through the plugin's detector core on a photo at native size: the
/// 20 best boxes must be the trainer's own decoding of the same outputs.
fn plugin_finds_what_the_trainer_finds(net: &RetinaFace) {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    export_onnx(net, &path).unwrap();
    let image = photo("sample1.jpg", 200);
    let (w, h) = (image.width() as usize, image.height() as usize);

    let mut detector =
        Detector::load(&path, &SessionConfig::default(), &[]).expect("the plugin loads the model");
    let plane = [retinaface::Plane {
        data: image.as_raw(),
        stride: 3 * w,
    }];
    let frame = retinaface::Frame {
        layout: retinaface::PixelLayout::Rgb,
        width: w,
        height: h,
        planes: &plane,
        // Unused for RGB frames.
        matrix: retinaface::YuvMatrix::BT601,
    };
    // An untrained network scores many boxes around 0.5: the threshold is set just below the
    // 20th best, so that a score-ordered list of about 20 boxes (not the 500-face cap) is compared.
    let trainer = |threshold: f32| {
        detect(
            net,
            &image,
            &InferParams {
                confidence_threshold: threshold,
                ..Default::default()
            },
        )
    };
    let threshold = trainer(0.05)
        .get(19)
        .expect("20 boxes from an untrained network")
        .score
        - 1e-4;
    let want = trainer(threshold);
    let got = detector
        .detect(
            &frame,
            &DetectParams {
                inference_size: 0,
                confidence_threshold: threshold,
                ..Default::default()
            },
        )
        .expect("detection runs");
    assert!(
        (20..100).contains(&want.len()),
        "{} boxes above {threshold}",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "plugin {got:?}\nvs trainer {want:?}");
    for (g, t) in got.iter().zip(&want) {
        assert!((g.score - t.score).abs() < 1e-3, "{g:?} vs {t:?}");
        for (a, b) in g.bbox.iter().zip(t.bbox) {
            assert!(a.is_finite() && (a - b).abs() < 0.5, "{g:?} vs {t:?}");
        }
    }
    // The plugin knows the layout from the metadata.
    assert_eq!(detector.contract().priors, net.config.contract.priors);
}
