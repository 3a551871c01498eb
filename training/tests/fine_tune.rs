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
