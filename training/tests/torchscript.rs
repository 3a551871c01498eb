//! TorchScript export for the plugin's libtorch backend: the published ONNX model converted
//! through `retinaface-train torchscript` computes what ONNX Runtime computes on a photo at a
//! size it was not traced at, batched, with the ONNX export's contract in its side file; an SRN
//! model is refused with a reason.

mod common;

use std::collections::BTreeMap;

use common::*;
use retinaface::engine::{TORCHSCRIPT_FORMAT, TorchScriptSideFile};
use retinaface_training::infer::{input_tensor, to_vec};
use retinaface_training::model::{HeadKind, ModelConfig, RetinaFace};
use retinaface_training::onnx_io::import::import_onnx;
use retinaface_training::onnx_io::metadata;
use retinaface_training::torchscript::export_torchscript;
use tch::{CModule, Device, IValue, Tensor};

const TOLERANCE: f32 = 1e-4;

#[test]
fn converted_published_model_matches_onnx_runtime_batched_with_the_contract_beside_it() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("mv025.onnx");
    let run = output_within(
        trainer()
            .arg("torchscript")
            .arg("--model")
            .arg(published_model())
            .arg("--output")
            .arg(&output),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let archive = dir.path().join("mv025.pt");
    let side_path = dir.path().join("mv025.pt.json");
    assert!(archive.is_file() && side_path.is_file());
    assert!(!dir.path().join("mv025.pt.partial").exists());

    let side: TorchScriptSideFile =
        serde_json::from_str(&std::fs::read_to_string(&side_path).unwrap()).unwrap();
    let net = import_onnx(&published_model(), Device::Cpu).unwrap();
    let expected_meta: BTreeMap<String, String> =
        metadata::to_metadata(&net.config).into_iter().collect();
    assert_eq!(side.format, TORCHSCRIPT_FORMAT);
    assert_eq!(side.metadata, expected_meta);
    assert!(side.packed_outputs);
    let names: Vec<&str> = side.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["loc", "conf", "landmarks"]);
    assert_eq!(side.inputs[0].name, "input");

    // Two copies of a photo at a size the export was not traced at, as one batch.
    let image = photo("sample1.jpg", 480);
    let one = input_tensor(&net, &image, Device::Cpu);
    let input = Tensor::cat(&[&one, &one], 0);
    let module = CModule::load_on_device(&archive, Device::Cpu).unwrap();
    let IValue::Tensor(packed) =
        tch::no_grad(|| module.forward_is(&[IValue::Tensor(input)])).expect("the archive runs")
    else {
        panic!("the archive returns one tensor");
    };
    let parts = packed.split_with_sizes([4, 2, 10], -1);
    let shape = [1, 3, image.height() as usize, image.width() as usize];
    let mut session = ort_session(&published_model());
    let expected = ort_run(&mut session, &to_vec(&one), shape);
    for ((name, part), want) in ["loc", "conf", "landmarks"]
        .iter()
        .zip(&parts)
        .zip(&expected)
    {
        for slot in 0..2 {
            let got = to_vec(&part.get(slot));
            let d = max_abs_diff(&got, want);
            assert!(
                d <= TOLERANCE,
                "{name} slot {slot}: max |torchscript − ORT| = {d}"
            );
        }
    }
    assert!(
        expected[1].chunks(2).any(|c| c[1] > 0.9),
        "no confident face in sample1.jpg"
    );
}

#[test]
fn an_srn_model_is_refused_with_the_reason() {
    let config = ModelConfig {
        head: HeadKind::Srn,
        ..Default::default()
    };
    let net = RetinaFace::new(config, Device::Cpu).expect("an SRN network builds");
    let dir = tempfile::tempdir().unwrap();
    let err = export_torchscript(&net, &dir.path().join("srn.pt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SRN head"), "{err}");
    assert!(!dir.path().join("srn.pt").exists());
}

/// FP16 (the backend's `torch-fp16`): the archive casts its weights to the input's type, so a
/// half input runs in half and gives the FP32 outputs within half precision's error. Run on the
/// CPU here; on CUDA the backend does the same.
#[test]
fn the_archive_runs_a_half_input_in_half_precision() {
    tch::set_num_threads(1);
    let net = import_onnx(&published_model(), Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = export_torchscript(&net, &dir.path().join("m.pt")).unwrap();
    let module = CModule::load_on_device(&archive, Device::Cpu).unwrap();
    let image = photo("sample1.jpg", 320);
    let input = input_tensor(&net, &image, Device::Cpu);
    let run = |x: Tensor| match tch::no_grad(|| module.forward_is(&[IValue::Tensor(x)])) {
        Ok(IValue::Tensor(t)) => t,
        other => panic!("the archive returns one tensor: {other:?}"),
    };
    let full = run(input.shallow_clone());
    let half = run(input.to_kind(tch::Kind::Half));
    let conf = |t: &Tensor| to_vec(&t.narrow(-1, 4, 2).to_kind(tch::Kind::Float));
    let d = max_abs_diff(&conf(&full), &conf(&half));
    assert!(d <= 0.02, "face probabilities differ by {d} in FP16");
    assert!(
        conf(&full).chunks(2).any(|c| c[1] > 0.9),
        "no confident face"
    );
}
