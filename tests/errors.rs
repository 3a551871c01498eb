//! Bad input ends in an ERROR message that says what is wrong: no panic, no hang.

use std::process::{Command, Stdio};
use std::time::Duration;

use retinaface_testkit::*;

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
fn directory_as_model() {
    let dir = data_dir().join("models");
    let e = error_for(&format!("model={}", dir.display()));
    assert!(e.contains("is a directory, not a file"), "{e}");
    assert!(!e.contains("does not exist"), "{e}");
}

/// `threads` and `execution-provider` apply at start only: changing them while running is
/// refused with a WARNING, and the value stays what it was. `model` is accepted (a live swap,
/// tests/engine.rs); one that does not load gives a WARNING naming it, and the old one stays.
#[test]
fn start_only_properties_refuse_changes_while_playing() {
    use gst::prelude::*;
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=48 ! retinafacedetect name=d threads=1 ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    result.expect("PLAYING within 30 s");
    let detect = pipeline.by_name("d").unwrap();
    let model_before: String = detect.property("model");
    detect.set_property("model", "/tmp/other.onnx");
    detect.set_property("threads", 2u32);
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    // The threads refusal comes at once, the model's when the next frame tries to swap.
    while warnings.len() < 2 {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Warning],
            )
            .expect("a WARNING within 10 s");
        if let gst::MessageView::Warning(w) = msg.view() {
            warnings.push(w.error().to_string());
        }
    }
    assert_eq!(detect.property::<String>("model"), model_before);
    assert_eq!(detect.property::<u32>("threads"), 1);
    let about = |what: &str| warnings.iter().find(|w| w.contains(what)).cloned();
    let model_warning = about("/tmp/other.onnx").unwrap_or_else(|| panic!("{warnings:?}"));
    assert!(model_warning.contains("does not exist"), "{warnings:?}");
    assert!(
        about("'threads' cannot change while the element is running").is_some(),
        "{warnings:?}"
    );
    // Back in READY the change is accepted.
    pipeline.set_state(gst::State::Ready).unwrap();
    detect.set_property("threads", 2u32);
    assert_eq!(detect.property::<u32>("threads"), 2);
    pipeline.set_state(gst::State::Null).unwrap();
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

/// Plays `pipeline` to EOS (panics on ERROR, or when EOS does not come within two minutes),
/// calling `on_playing` once when it reaches PLAYING; then sets it to NULL.
fn play_to_eos(pipeline: &gst::Element, mut on_playing: impl FnMut()) -> Played {
    use gst::prelude::*;
    let played = play(pipeline, std::time::Duration::from_secs(120), |msg| {
        if let gst::MessageView::StateChanged(s) = msg.view()
            && s.current() == gst::State::Playing
            && msg.src() == Some(pipeline.upcast_ref())
        {
            on_playing()
        }
    });
    pipeline.set_state(gst::State::Null).unwrap();
    played.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cuda_provider_runs_or_falls_back_to_cpu_with_a_warning() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! retinafacedetect execution-provider=cuda ! fakesink",
        media("sample2.jpg")
    ))
    .unwrap();
    let warning = play_to_eos(&pipeline, || {}).warnings.pop();
    // A CPU-only ONNX Runtime (the one setup installs): a warning, then CPU inference. A GPU
    // build on a machine with a GPU: no warning, the model ran on CUDA.
    match warning {
        Some(warning) => assert!(
            warning.contains("running on CPU") && warning.contains("CUDA"),
            "{warning}"
        ),
        None => assert!(
            retinaface::runtime::provider_built_in(retinaface::ExecutionProvider::Cuda),
            "no warning, yet this ONNX Runtime has no CUDA: the fallback to CPU was silent"
        ),
    }
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

/// `execution-provider=tensorrt`: an INFO message says before the wait that the first start
/// builds the engine and where it is cached; without TensorRT the model runs on CPU after a
/// WARNING. The GPU options cannot change while running.
#[test]
fn tensorrt_announces_the_engine_build_and_its_cache() {
    use gst::prelude::*;
    init();
    let cache = std::env::temp_dir().join(format!("retinaface-trt-{}", std::process::id()));
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! imagefreeze num-buffers=20 ! retinafacedetect name=d execution-provider=tensorrt device-id=0 tensorrt-cache-dir={} ! fakesink sync=true",
        media("sample2.jpg"),
        cache.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let detect = pipeline.by_name("d").unwrap();
    let Played {
        warnings, infos, ..
    } = play_to_eos(pipeline.upcast_ref(), || {
        detect.set_property("device-id", 1u32);
        detect.set_property("tensorrt-fp16", false);
    });
    let info = infos
        .into_iter()
        .next()
        .expect("an INFO message before the engine is built");
    assert!(
        info.contains("TensorRT") && info.contains(&cache.display().to_string()),
        "{info}"
    );
    assert_eq!(detect.property::<u32>("device-id"), 0);
    assert!(detect.property::<bool>("tensorrt-fp16"));
    for p in ["device-id", "tensorrt-fp16"] {
        let refusal = format!("'{p}' cannot change while the element is running");
        assert!(
            warnings.iter().any(|w| w.contains(&refusal)),
            "{warnings:?}"
        );
    }
    if !retinaface::runtime::provider_built_in(retinaface::ExecutionProvider::TensorRt) {
        assert!(
            warnings.iter().any(|w| w.contains("running on CPU")),
            "{warnings:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}
