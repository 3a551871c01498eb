//! `retinaface-train rebatch` on the real embedding model (`fr_feature.onnx`, fixed batch of 1,
//! installed by scripts/setup.sh): the copy runs 8 aligned faces of the sample photos in one
//! ONNX Runtime run through the plugin's embedder and gives each the embedding the original
//! gives it alone; a model it cannot rebatch is refused and nothing is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use retinaface::embedding::Embedder;
use retinaface::engine::{ClientOptions, EngineKey, Registry};
use retinaface::{DetectParams, Detector, Frame, PixelLayout, Plane, SessionConfig, YuvMatrix};

/// Faces compared: one full batch of the identify element's client.
const FACES: usize = 8;

fn rebatch(model: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retinaface-train"))
        .arg("rebatch")
        .arg("--model")
        .arg(model)
        .arg("--output")
        .arg(output)
        .output()
        .expect("retinaface-train runs")
}

fn embedding_model() -> PathBuf {
    installed_model("fr_feature.onnx")
}

/// A client of `model`'s engine in `registry` that joins batches of up to 8 (as the identify
/// element connects).
fn embedder(registry: &Registry, model: &Path) -> Embedder {
    let options = ClientOptions {
        batch_size: FACES,
        ..ClientOptions::default()
    };
    let key = EngineKey::new(model, &SessionConfig::default());
    Embedder::connect(registry, key, &[], options).expect("embedding model loads")
}

#[test]
fn the_batched_copy_embeds_eight_faces_in_one_run_as_the_original_does_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("fr_feature-batch.onnx");
    let out = rebatch(&embedding_model(), &copy);
    assert!(
        out.status.success(),
        "rebatch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("checked"), "{said}");

    let mut detector =
        Detector::load(&published_model(), &SessionConfig::default(), &[]).expect("detector loads");
    let registry = Registry::new();
    let original = embedder(&registry, &embedding_model());
    let batched = embedder(&registry, &copy);
    assert_eq!(
        original.client().engine().max_batch(),
        1,
        "the original runs one face per run"
    );
    assert!(batched.client().engine().max_batch() >= FACES);

    // 8 different faces (≥ 40 px wide) of the group photos, aligned on their landmarks.
    let mut crops = Vec::new();
    for name in [
        "sample1.jpg",
        "sample2.jpg",
        "sample4.jpg",
        "sample6.jpg",
        "test.jpg",
    ] {
        let img = photo(name, 960);
        let planes = [Plane {
            data: img.as_raw(),
            stride: img.width() as usize * 3,
        }];
        let frame = Frame {
            layout: PixelLayout::Rgb,
            width: img.width() as usize,
            height: img.height() as usize,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        let faces = detector
            .detect(&frame, &DetectParams::default())
            .expect("detection runs");
        for face in faces.iter().filter(|f| f.width() >= 40.0) {
            crops.push((
                original.prepare(&frame, &face.landmarks).unwrap(),
                batched.prepare(&frame, &face.landmarks).unwrap(),
            ));
        }
    }
    assert!(
        crops.len() >= FACES,
        "only {} faces on the sample photos",
        crops.len()
    );
    crops.truncate(FACES);

    // The original, one face per run; the copy, all 8 queued at once.
    let alone: Vec<_> = crops
        .iter()
        .map(|(c, _)| {
            let done = original
                .submit(vec![c.clone()])
                .remove(0)
                .wait(original.timeout)
                .unwrap();
            original.read(&done).unwrap()
        })
        .collect();
    let before = batched.client().engine().stats();
    let together: Vec<_> = batched
        .submit(crops.iter().map(|(_, c)| c.clone()).collect())
        .iter()
        .map(|t| batched.read(&t.wait(batched.timeout).unwrap()).unwrap())
        .collect();
    let after = batched.client().engine().stats();
    assert_eq!(
        (after.batches - before.batches, after.largest_batch),
        (1, FACES as u64),
        "the 8 faces ran in one run of the copy"
    );

    for (k, (a, b)) in alone.iter().zip(&together).enumerate() {
        let diff = a
            .values()
            .iter()
            .zip(b.values())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let cos = a.cosine(b);
        println!("face {k}: max |difference| {diff:.2e}, cosine {cos:.7}");
        assert!(
            diff < 1e-4 && cos > 0.9999,
            "face {k}: max |difference| {diff}, cosine {cos}"
        );
    }
    // The faces are different people, so the comparison is not vacuous.
    assert!(
        alone[0].cosine(&alone[1]) < 0.9,
        "faces 0 and 1 are different people"
    );
}

#[test]
fn a_model_with_a_batch_dimension_already_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("detector-batch.onnx");
    let out = rebatch(&published_model(), &out_path);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cannot give this model a batch dimension")
            && said.contains("already has a symbolic first dimension"),
        "{said}"
    );
    assert!(!out_path.exists());
}
