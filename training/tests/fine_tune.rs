//! `--freeze-backbone`: a fine-tune leaves every backbone variable (weights and BatchNorm
//! statistics) exactly as it was, while the neck and heads learn.

mod common;

use common::*;
use retinaface_training::model::RetinaFace;
use tch::Device;

fn train(labels: &std::path::Path, output: &std::path::Path, extra: &[&str]) {
    let out = output_within(
        trainer()
            .args(["train", "--labels"])
            .arg(labels)
            .arg("--output")
            .arg(output)
            .args([
                "--image-size",
                "320",
                "--batch-size",
                "3",
                "--epochs",
                "1",
                "--workers",
                "2",
                "--device",
                "cpu",
            ])
            .args(extra),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn frozen_backbone_stays_bit_identical_and_the_heads_learn() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 320);
    let start = dir.path().join("start");
    train(&labels, &start, &[]);
    let init = start.join("model.safetensors");
    let tuned = dir.path().join("tuned");
    train(
        &labels,
        &tuned,
        &[
            "--init",
            init.to_str().unwrap(),
            "--freeze-backbone",
            "--lr",
            "0.01",
        ],
    );
    let before = RetinaFace::load(&init, Device::Cpu).unwrap();
    let after = RetinaFace::load(&tuned.join("model.safetensors"), Device::Cpu).unwrap();
    let prefix = before.config.backbone.var_prefix();
    let (mut backbone, mut changed_elsewhere) = (0, 0);
    let after_vars = after.vs.variables();
    for (name, b) in before.vs.variables() {
        let a = &after_vars[&name];
        let same = a.equal(&b);
        if name.starts_with(prefix) {
            backbone += 1;
            assert!(same, "backbone variable {name} changed");
        } else if !same {
            changed_elsewhere += 1;
        }
    }
    assert!(
        backbone > 10,
        "{backbone} backbone variables under '{prefix}'"
    );
    assert!(
        changed_elsewhere > 0,
        "nothing outside the backbone learned"
    );
}

/// Before a fine-tune, the imported (folded) model gets real BatchNorm statistics: the network
/// must compute what it computed before (`model::calibrate`).
#[test]
fn batch_norm_calibration_keeps_what_the_imported_model_computes() {
    use retinaface_training::infer::{input_tensor, to_vec};
    use retinaface_training::model::calibrate::calibrate_batch_norm;
    use retinaface_training::onnx_io::import::import_onnx;

    tch::set_num_threads(1);
    let mut net = import_onnx(&published_model(), Device::Cpu).unwrap();
    assert!(net.config.folded_batch_norm);
    let images: Vec<_> = ["sample1.jpg", "sample2.jpg", "test.jpg"]
        .iter()
        .map(|name| {
            let img = photo(name, 320);
            image::imageops::resize(&img, 320, 224, image::imageops::FilterType::Triangle)
        })
        .collect();
    let inputs: Vec<_> = images
        .iter()
        .map(|img| input_tensor(&net, img, Device::Cpu))
        .collect();
    let before: Vec<_> = inputs.iter().map(|x| net.infer(x)).collect();
    calibrate_batch_norm(&mut net, inputs.iter().map(|x| x.shallow_clone())).unwrap();
    assert!(!net.config.folded_batch_norm);
    for (x, was) in inputs.iter().zip(&before) {
        let now = net.infer(x);
        for (a, b) in [
            (&now.loc, &was.loc),
            (&now.conf, &was.conf),
            (&now.landmarks, &was.landmarks),
        ] {
            let d = max_abs_diff(&to_vec(a), &to_vec(b));
            assert!(d < 1e-3, "calibration changed an output by {d}");
        }
    }
}
