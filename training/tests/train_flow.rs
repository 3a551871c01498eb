//! The trainer end to end on a tiny labelled set built from the sample photos: training lowers
//! the loss, fine-tuning the published model keeps its AP, the export runs in `retinafacedetect`
//! with the same faces, and a killed run resumes exactly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use retinaface::geometry::iou;
use retinaface_training::infer::{InferParams, detect};
use retinaface_training::model::RetinaFace;
use tch::{Device, Tensor};

/// Runs the trainer CLI; panics with its output when it fails. Returns stdout.
fn run_trainer(args: &[&str]) -> String {
    let out = output_within(trainer().args(args));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "retinaface-train {args:?} failed:\n{text}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `train` from the CLI on `labels` into `run`: 256-px crops, batch 3, one epoch (two
/// iterations on the six photos), one worker, CPU, plus `extra` flags.
fn quick_train(labels: &Path, run: &Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--labels",
        path(labels),
        "--output",
        path(run),
        "--image-size",
        "256",
        "--batch-size",
        "3",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let out = run_trainer(&args);
    assert!(out.contains("trained 2 iterations"), "{out}");
}

/// Exports the model a `train` run wrote to `run` as `onnx`; returns what the trainer printed.
fn export_run(run: &Path, onnx: &Path) -> String {
    let model = run.join("model.safetensors");
    run_trainer(&["export", "--model", path(&model), "--output", path(onnx)])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `AP x` value `eval` prints.
fn printed_ap(stdout: &str) -> f64 {
    let word = stdout
        .split_whitespace()
        .skip_while(|w| *w != "AP")
        .nth(1)
        .unwrap_or_else(|| panic!("no AP in {stdout}"));
    word.parse().unwrap()
}

fn loss_column(metrics: &Path) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(metrics).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "loss").unwrap();
    reader
        .records()
        .map(|r| r.unwrap()[col].parse().unwrap())
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Trains from scratch on the six sample images (4 epochs of 2 batches at 320 px) with `extra`
/// flags; checks that the loss falls and the run directory is complete. Returns the run dir.
fn train_from_scratch(dir: &Path, extra: &[&str]) -> PathBuf {
    let labels = make_dataset(&dir.join("set"), 480);
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--labels",
        path(&labels),
        "--output",
        path(&run),
        "--image-size",
        "320",
        "--batch-size",
        "3",
        "--epochs",
        "4",
        "--lr",
        "0.01",
        "--workers",
        "2",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    run_trainer(&args);
    let loss = loss_column(&run.join("metrics.csv"));
    assert_eq!(loss.len(), 8, "6 images / batch 3 × 4 epochs");
    let (first, last) = (mean(&loss[..2]), mean(&loss[loss.len() - 2..]));
    assert!(
        last < 0.85 * first,
        "{extra:?}: loss did not fall: first {first:.3}, last {last:.3}\n{}",
        std::fs::read_to_string(run.join("metrics.csv")).unwrap()
    );
    for f in [
        "model.safetensors",
        "model.json",
        "loss.png",
        "config.toml",
        "checkpoints/last.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing from the run directory");
    }
    run
}

#[test]
fn training_from_scratch_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_from_scratch(dir.path(), &[]);
    let png = std::fs::read(run.join("loss.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "loss.png is not a PNG");
}

/// Overfits one batch of the sample set for `steps` SGD steps with `loss`; returns the loss terms
/// (box, class) of the first and the last step.
fn overfit_one_batch(
    dir: &Path,
    base: retinaface_training::config::TrainConfig,
    steps: usize,
) -> [(f64, f64); 2] {
    use retinaface_training::data::epoch_batches;
    use retinaface_training::device_batch::DeviceBatch;
    use retinaface_training::loss::Criterion;
    use retinaface_training::sgd::Sgd;
    use retinaface_training::train::{initial_network, load_samples, step};
    tch::manual_seed(11);
    let config = retinaface_training::config::TrainConfig {
        labels: make_dataset(&dir.join("set"), 480),
        image_size: 256,
        batch_size: 2,
        workers: 1,
        ..base
    };
    let loss = config.loss();
    let net = initial_network(&config, Device::Cpu).unwrap();
    let contract = std::sync::Arc::new(net.config.contract.clone());
    let batch = epoch_batches(
        load_samples(&config).unwrap(),
        contract.clone(),
        &config.loader(Device::Cpu),
        0,
        0,
    )
    .next()
    .unwrap();
    let input = DeviceBatch::new(&batch, 256, &contract, Device::Cpu);
    assert!(input.faces > 0, "the batch has faces");
    let criterion = Criterion::new(loss, &contract.priors, 256, Device::Cpu);
    let mut sgd = Sgd::new(0.9, 0.0);
    let terms = (0..steps)
        .map(|_| {
            let l = step(&net, &mut sgd, &input, 0.01, true, &criterion);
            (l.boxes.double_value(&[]), l.classes.double_value(&[]))
        })
        .collect::<Vec<_>>();
    [terms[0], terms[steps - 1]]
}

#[test]
fn focal_and_giou_losses_and_the_retinanet_head_are_minimised() {
    use retinaface_training::config::TrainConfig;
    use retinaface_training::loss::{BoxLoss, ClsLoss};
    use retinaface_training::model::HeadKind;
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    // The RetinaNet head (one sigmoid logit, 3 sizes × 3 aspect ratios per cell) with focal loss.
    let retinanet = TrainConfig {
        head: HeadKind::RetinaNet,
        aspect_ratios: vec![0.5, 1.0, 2.0],
        min_sizes: vec![
            vec![16.0, 20.0, 25.0],
            vec![32.0, 40.0, 50.0],
            vec![64.0, 80.0, 101.0],
        ],
        cls_loss: ClsLoss::Focal,
        box_loss: BoxLoss::Giou,
        ..Default::default()
    };
    // Steps on the same batch after which both terms must have come down well, not drifted.
    // The RetinaNet subnets start with near-zero outputs (the prior), so they take longer.
    for (base, steps) in [
        (
            TrainConfig {
                cls_loss: ClsLoss::Focal,
                box_loss: BoxLoss::Giou,
                ..Default::default()
            },
            40,
        ),
        (
            TrainConfig {
                cls_loss: ClsLoss::CeOhem,
                box_loss: BoxLoss::Iou,
                ..Default::default()
            },
            40,
        ),
        (retinanet, 80),
    ] {
        let (cls, boxes, head) = (base.cls_loss, base.box_loss, base.head);
        let [(box0, cls0), (box1, cls1)] = overfit_one_batch(dir.path(), base, steps);
        eprintln!(
            "{head:?} {cls:?}/{boxes:?}: box {box0:.4} → {box1:.4}, class {cls0:.4} → {cls1:.4}"
        );
        assert!(
            box1 < 0.75 * box0,
            "{head:?} {boxes:?}: box term {box0:.4} → {box1:.4}"
        );
        assert!(
            cls1 < 0.75 * cls0,
            "{head:?} {cls:?}: class term {cls0:.4} → {cls1:.4}"
        );
    }
}

#[test]
fn loss_choices_reach_the_run_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let run = dir.path().join("run");
    quick_train(
        &labels,
        &run,
        &[
            "--cls-loss",
            "focal",
            "--box-loss",
            "giou",
            "--focal-alpha",
            "0.3",
        ],
    );
    // Recorded for --resume.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for line in [
        "cls_loss = \"focal\"",
        "box_loss = \"giou\"",
        "focal_alpha = 0.3",
    ] {
        assert!(config.contains(line), "{line} missing from\n{config}");
    }
    // Focal starts from the face prior 0.01: its class term is small from the first step
    // (ce-ohem starts near ln 2 per used prior × 8 priors per positive ≈ 5).
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let first = reader.records().next().unwrap().unwrap();
    let class: f64 = first[5].parse().unwrap();
    assert!(class < 3.0, "focal class term at step 0: {class}");
}

/// Faces the plugin finds with `model` on `image` (a PNG), read back from `retinafacejson`.
fn plugin_faces(model: &Path, image: &Path, out: &Path) -> Vec<serde_json::Value> {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_retinaface-train"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        plugin_dir.join("libgstretinaface.so").is_file(),
        "{} has no libgstretinaface.so: build the plugin first (scripts/test.sh does)",
        plugin_dir.display()
    );
    let launched = output_within(
        Command::new("gst-launch-1.0")
            .env("GST_PLUGIN_PATH", &plugin_dir)
            .args([
                "-q",
                "filesrc",
                &format!("location={}", path(image)),
                "!",
                "pngdec",
                "!",
                "videoconvert",
                "!",
                "video/x-raw,format=RGB",
                "!",
                "retinafacedetect",
                &format!("model={}", path(model)),
                "inference-size=0",
                "confidence-threshold=0.6",
                "!",
                "retinafacejson",
                &format!("location={}", path(out)),
                "!",
                "fakesink",
            ]),
    );
    assert!(
        launched.status.success(),
        "the exported model failed in retinafacedetect: {}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let text = std::fs::read_to_string(out).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["faces"].as_array().unwrap().clone()
}

#[test]
fn fine_tune_eval_export_and_detect_in_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let published = published_model();
    let before = printed_ap(&run_trainer(&[
        "eval",
        "--model",
        path(&published),
        "--labels",
        path(&labels),
        "--output",
        path(&dir.path().join("eval0")),
        "--device",
        "cpu",
    ]));
    let run = dir.path().join("run");
    run_trainer(&[
        "train",
        "--labels",
        path(&labels),
        "--output",
        path(&run),
        "--init",
        path(&published),
        "--image-size",
        "320",
        "--batch-size",
        "3",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--device",
        "cpu",
    ]);
    let model = run.join("model.safetensors");
    let after = printed_ap(&run_trainer(&[
        "eval",
        "--model",
        path(&model),
        "--labels",
        path(&labels),
        "--output",
        path(&dir.path().join("eval1")),
        "--device",
        "cpu",
    ]));
    assert!(
        before > 0.9,
        "the published model should find its own labels: AP {before}"
    );
    assert!(
        after >= before - 0.01,
        "fine-tuning lost AP: {before} → {after}"
    );
    assert!(dir.path().join("eval1/pr.png").is_file());

    let onnx = dir.path().join("finetuned.onnx");
    run_trainer(&["export", "--model", path(&model), "--output", path(&onnx)]);

    // Same pixels for both: the PNG the element decodes is what tch sees.
    let net = RetinaFace::load(&model, Device::Cpu).unwrap();
    let image = photo("sample1.jpg", 480);
    let png = dir.path().join("probe.png");
    image.save(&png).unwrap();
    let want = detect(&net, &image, &InferParams::default());
    let got = plugin_faces(&onnx, &png, &dir.path().join("faces.jsonl"));
    assert!(
        want.len() >= 2,
        "the fine-tuned model finds {} faces on sample1.jpg",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "plugin {got:?} vs trainer {want:?}");
    for (g, w) in got.iter().zip(&want) {
        let v = |k: &str| g[k].as_f64().unwrap() as f32;
        let bbox = [v("x"), v("y"), v("x") + v("width"), v("y") + v("height")];
        for (a, b) in bbox.iter().zip(w.bbox) {
            assert!((a - b).abs() < 0.5, "box {bbox:?} vs {:?}", w.bbox);
        }
        assert!(
            (v("score") - w.score).abs() < 1e-3,
            "score {} vs {}",
            v("score"),
            w.score
        );
    }
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoint_iteration(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("checkpoints/last.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["position"]["iteration"].as_u64()
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(path).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_after_kill_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 320);
    let args = |run: &PathBuf| -> Vec<String> {
        [
            "train",
            "--labels",
            path(&labels),
            "--output",
            path(run),
            "--image-size",
            "160",
            "--batch-size",
            "2",
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--workers",
            "2",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--checkpoint-every",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    let straight = dir.path().join("straight");
    run_trainer(
        &args(&straight)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    // Same run, killed (SIGKILL) once it has written its second checkpoint, then resumed.
    let resumed = dir.path().join("resumed");
    let mut child = trainer()
        .args(args(&resumed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the second checkpoint", Duration::from_secs(300), || {
        checkpoint_iteration(&resumed).is_some_and(|i| i >= 2)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = checkpoint_iteration(&resumed).unwrap();
    assert!(
        killed_at < 6,
        "the run finished before it could be killed (iteration {killed_at})"
    );
    run_trainer(&["train", "--resume", "--output", path(&resumed)]);

    let (a, b) = (
        loss_column(&straight.join("metrics.csv")),
        loss_column(&resumed.join("metrics.csv")),
    );
    assert_eq!(a.len(), 6);
    assert_eq!(
        a, b,
        "the resumed run's losses differ from the uninterrupted run's"
    );
    let (wa, wb) = (
        weights(&straight.join("model.safetensors")),
        weights(&resumed.join("model.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
}

#[test]
fn bad_input_gives_clear_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 320);
    // A malformed line and an image that does not exist: skipped with warnings, training goes on.
    let mut text = std::fs::read_to_string(&labels).unwrap();
    text.push_str(
        "# missing.jpg\n10 10 20 20 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 1\n1 2 three\n",
    );
    std::fs::write(&labels, text).unwrap();
    let run = dir.path().join("run");
    let out = output_within(trainer().args([
        "train",
        "--labels",
        path(&labels),
        "--output",
        path(&run),
        "--image-size",
        "64",
        "--batch-size",
        "7",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing.jpg"),
        "no warning about the missing image: {stderr}"
    );
    assert!(
        stderr.contains("malformed") || stderr.contains("skipped"),
        "no warning about the bad line: {stderr}"
    );

    // Missing or broken models: an error that names the file, non-zero exit.
    let not_onnx = dir.path().join("broken.onnx");
    std::fs::write(&not_onnx, b"definitely not protobuf").unwrap();
    for model in [dir.path().join("nope.safetensors"), not_onnx] {
        let out = output_within(trainer().args([
            "export",
            "--model",
            path(&model),
            "--output",
            path(&dir.path().join("x.onnx")),
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(path(&model)),
            "error does not name {}: {stderr}",
            model.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn mobilenetv2_trains_and_exports_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let run = dir.path().join("run");
    quick_train(&labels, &run, &["--backbone", "mobilenetv2"]);
    let loss = loss_column(&run.join("metrics.csv"));
    assert!(loss.iter().all(|l| l.is_finite()), "{loss:?}");
    let onnx = dir.path().join("mv2.onnx");
    let said = export_run(&run, &onnx);
    assert!(said.contains("mobilenetv2 backbone"), "{said}");
    // ONNX Runtime runs it and agrees with the trained network.
    let net = RetinaFace::load(&run.join("model.safetensors"), Device::Cpu).unwrap();
    let image = photo("sample1.jpg", 160);
    let input = retinaface_training::infer::input_tensor(&net, &image, Device::Cpu);
    let shape = [1, 3, image.height() as usize, image.width() as usize];
    let expected = ort_run(
        &mut ort_session(&onnx),
        &retinaface_training::infer::to_vec(&input),
        shape,
    );
    let got = retinaface_training::infer::to_vec(&net.infer(&input).conf);
    assert!(max_abs_diff(&got, &expected[1]) <= 1e-4);
}

#[test]
fn p2_p6_pyramid_trains_and_exports_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let run = dir.path().join("run");
    quick_train(
        &labels,
        &run,
        &[
            "--backbone",
            "resnet18",
            "--steps",
            "4,8,16,32,64",
            "--min-sizes",
            "8,11;16,23;32,45;64,90;128,181",
            "--neck-channels",
            "64",
        ],
    );
    let onnx = dir.path().join("p2p6.onnx");
    export_run(&run, &onnx);
    // What the plugin reads from the metadata is the configured pyramid.
    let session = ort_session(&onnx);
    let meta = session.metadata().unwrap();
    let value = |k: &str| meta.custom(k).unwrap_or_default();
    assert_eq!(value("retinaface.steps"), "4,8,16,32,64");
    assert_eq!(
        value("retinaface.min_sizes"),
        "8,11;16,23;32,45;64,90;128,181"
    );
    assert_eq!(value("retinaface.neck_channels"), "64");
    // A pyramid the network cannot build is refused with the strides it has.
    let bad = output_within(trainer().args([
        "train",
        "--labels",
        path(&labels),
        "--output",
        path(&dir.path().join("bad")),
        "--steps",
        "8,32",
        "--min-sizes",
        "16;64",
    ]));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("[8, 32]") && err.contains("consecutive"),
        "{err}"
    );
}

/// Config files as a user runs them: train (two iterations), export, and `retinafacedetect` loads
/// the model and finishes the stream (two iterations find no faces yet; what is checked is that
/// the element accepts the layout).
#[test]
fn config_files_train_export_and_run_in_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let image = photo("sample1.jpg", 320);
    let png = dir.path().join("probe.png");
    image.save(&png).unwrap();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let published = published_model();
    // Every config file shipped (one per variant).
    let mut names: Vec<String> = std::fs::read_dir(&configs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in names.iter().map(String::as_str) {
        let run = dir.path().join(name);
        let config = configs.join(format!("{name}.toml"));
        let mut args = vec!["--config", path(&config)];
        if name.contains("small-faces") {
            // As a user grows the published model: its three levels kept, the stride-4 one new.
            args.extend(["--init", path(&published)]);
        }
        quick_train(&labels, &run, &args);
        let loss = loss_column(&run.join("metrics.csv"));
        assert!(loss.iter().all(|l| l.is_finite()), "{name}: {loss:?}");
        let onnx = dir.path().join(format!("{name}.onnx"));
        export_run(&run, &onnx);
        if name.contains("retinanet") {
            let meta = ort_session(&onnx)
                .metadata()
                .unwrap()
                .custom("retinaface.aspect_ratios");
            assert_eq!(meta.unwrap_or_default(), "0.6,0.8,1");
        }
        let faces = plugin_faces(&onnx, &png, &dir.path().join(format!("{name}.jsonl")));
        assert!(faces.len() <= 500, "{name}: {}", faces.len());
        if name.contains("small-faces") {
            // Two iterations at lr 1e-3 on the frozen published backbone leave the published
            // levels as they were: every face the published model finds is still found.
            let published_faces = plugin_faces(&published, &png, &dir.path().join("pub.jsonl"));
            assert!(!published_faces.is_empty());
            let corners = |f: &serde_json::Value| {
                let v = |k: &str| f[k].as_f64().unwrap() as f32;
                [v("x"), v("y"), v("x") + v("width"), v("y") + v("height")]
            };
            for want in &published_faces {
                let w = corners(want);
                assert!(
                    faces.iter().any(|f| iou(&corners(f), &w) > 0.7),
                    "{name}: the published model's face {w:?} is lost: {faces:?}"
                );
            }
        }
    }
}

#[test]
fn describe_reports_the_size_and_cost_of_a_config_and_a_model() {
    let describe = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["describe"];
        all.extend_from_slice(args);
        serde_json::from_str(run_trainer(&all).trim()).unwrap()
    };
    let published = published_model();
    let reference = describe(&["--model", path(&published)]);
    assert_eq!(reference["parameters"], 426_608);
    assert_eq!(reference["priors"], 16_800);
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let grown = describe(&[
        "--config",
        path(&configs.join("mobilenet0.25-p2-small-faces.toml")),
    ]);
    assert_eq!(grown["steps"], serde_json::json!([4, 8, 16, 32]));
    // 160² stride-4 cells with one anchor on top of the published 16,800 priors.
    assert_eq!(grown["priors"], 16_800 + 160 * 160);
    let (small, big) = (
        reference["macs"].as_u64().unwrap(),
        grown["macs"].as_u64().unwrap(),
    );
    assert!(big > small && big < small * 5 / 4, "{small} → {big}");
    let half = describe(&["--model", path(&published), "--size", "320"]);
    assert_eq!(half["macs"].as_u64().unwrap() * 4, small);
}

#[test]
fn photometric_distortion_can_run_on_the_training_device() {
    let dir = tempfile::tempdir().unwrap();
    let labels = make_dataset(&dir.path().join("set"), 480);
    let run = dir.path().join("run");
    quick_train(&labels, &run, &["--photometric-on-device", "true"]);
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("photometric_on_device = true"), "{saved}");
    let loss = loss_column(&run.join("metrics.csv"));
    assert!(loss.iter().all(|l| l.is_finite()), "{loss:?}");
}
