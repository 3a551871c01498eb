//! Bad input ends in an ERROR message that says what is wrong: no panic, no hang.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn error_for(props: &str) -> String {
    let description =
        format!("videotestsrc num-buffers=3 ! retinafacedetect {props} ! appsink name=sink");
    match run(&description) {
        Ok(_) => panic!("{description} should fail"),
        Err(e) => e,
    }
}

#[test]
fn missing_model_file() {
    let e = error_for("model=/nonexistent/retinaface.onnx");
    assert!(
        e.contains("'/nonexistent/retinaface.onnx' does not exist"),
        "{e}"
    );
    assert!(
        e.contains("scripts/setup.sh"),
        "says how to get the default model: {e}"
    );
}

#[test]
fn file_that_is_not_onnx() {
    let e = error_for(&format!("model={}", media("sample1.jpg")));
    assert!(e.contains("is not a loadable ONNX model"), "{e}");
}

#[test]
fn onnx_model_with_other_inputs() {
    let model = data_dir().join("models/testdata/sigmoid.onnx");
    assert!(
        model.is_file(),
        "{} missing: run scripts/setup.sh",
        model.display()
    );
    let e = error_for(&format!("model={}", model.display()));
    assert!(e.contains("does not fit the RetinaFace contract"), "{e}");
    assert!(
        e.contains("expected one float32 input 'input' shaped [N,3,H,W]"),
        "{e}"
    );
}

#[test]
fn unavailable_gpu_provider_falls_back_to_cpu_with_a_warning() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! retinafacedetect execution-provider=cuda ! fakesink",
        media("sample2.jpg")
    ))
    .unwrap();
    use gst::prelude::*;
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warning = None;
    let mut eos = false;
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Warning(w) => warning = Some(w.error().to_string()),
            gst::MessageView::Eos(_) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(eos, "pipeline did not finish");
    // The CPU-only ONNX Runtime installed here has no CUDA: a warning, then CPU inference.
    let warning = warning.expect("a warning about the fallback");
    assert!(
        warning.contains("running on CPU") && warning.contains("CUDA"),
        "{warning}"
    );
}

/// Without ONNX Runtime, gst-launch stops with an error naming what was tried and how to fix it.
#[test]
fn missing_onnx_runtime_library() {
    let plugin_dir = plugin_dir();
    let mut child = Command::new("gst-launch-1.0")
        .args([
            "videotestsrc",
            "num-buffers=2",
            "!",
            "retinafacedetect",
            "!",
            "fakesink",
        ])
        .env("GST_PLUGIN_PATH", &plugin_dir)
        .env("GST_REGISTRY", plugin_dir.join("test-registry.bin"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 runs");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(60)).expect("gst-launch-1.0 hung");
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "{text}");
    assert!(text.contains("ONNX Runtime could not be loaded"), "{text}");
    assert!(
        text.contains("/nonexistent/libonnxruntime.so"),
        "names what it tried: {text}"
    );
    assert!(
        text.contains("pip install onnxruntime==1.31.1"),
        "says how to fix: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
