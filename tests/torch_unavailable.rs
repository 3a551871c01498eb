//! A build without the `torch` feature (the default) asked for the libtorch backend: the load
//! fails and says how to get a build that has it.
#![cfg(not(feature = "torch"))]

use retinaface::runtime::BackendKind;
use retinaface::{Detector, SessionConfig};
use retinaface_testkit::data_dir;

#[test]
fn the_torch_backend_in_a_default_build_says_to_rebuild_with_the_feature() {
    let model = data_dir().join("models/retinaface-mv025.onnx");
    let config = SessionConfig {
        backend: BackendKind::Torch,
        ..SessionConfig::default()
    };
    let err = Detector::load(&model, &config, &[])
        .err()
        .expect("no libtorch backend in this build")
        .to_string();
    assert!(err.contains("--features torch"), "{err}");
    assert!(err.contains("backend=onnxruntime"), "{err}");
}
