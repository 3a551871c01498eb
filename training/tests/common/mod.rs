//! Shared helpers for the trainer's integration tests: sample data, the published model, and
//! ONNX Runtime sessions to compare against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

/// Where scripts/setup.sh installs models and media.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RETINAFACE_DATA").map_or_else(
        || PathBuf::from("/usr/local/share/retinaface"),
        PathBuf::from,
    )
}

/// The published RetinaFace mv0.25 (the plugin's default model).
pub fn published_model() -> PathBuf {
    installed_model("retinaface-mv025.onnx")
}

/// A model installed by scripts/setup.sh (e.g. `fr_feature.onnx`, the face embedding model).
pub fn installed_model(name: &str) -> PathBuf {
    let path = data_dir().join("models").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

pub fn media(name: &str) -> PathBuf {
    let path = data_dir().join("media").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// A sample photo, scaled down so that its longer side is at most `max_side` (keeps CPU tests fast).
pub fn photo(name: &str, max_side: u32) -> RgbImage {
    let img = image::open(media(name)).expect("sample decodes").to_rgb8();
    let (w, h) = img.dimensions();
    if w.max(h) <= max_side {
        return img;
    }
    let s = max_side as f32 / w.max(h) as f32;
    image::imageops::resize(
        &img,
        ((w as f32 * s).round() as u32).max(1),
        ((h as f32 * s).round() as u32).max(1),
        image::imageops::FilterType::Triangle,
    )
}

pub fn ort_session(model: &Path) -> Session {
    let env = retinaface::runtime::environment(&[]).expect("ONNX Runtime loads (scripts/setup.sh)");
    retinaface::runtime::load_session(
        env,
        model,
        &retinaface::SessionConfig {
            threads: 1,
            ..Default::default()
        },
    )
    .expect("model loads in ONNX Runtime")
    .session
}

/// Runs `session` on an NCHW input; returns `loc`, `conf`, `landmarks` flattened.
pub fn ort_run(session: &mut Session, input: &[f32], shape: [usize; 4]) -> [Vec<f32>; 3] {
    let tensor = TensorRef::from_array_view((shape, input)).unwrap();
    let outputs = session.run(ort::inputs!["input" => tensor]).unwrap();
    ["loc", "conf", "landmarks"].map(|name| {
        let (_, data) = outputs[name].try_extract_tensor::<f32>().unwrap();
        data.to_vec()
    })
}

/// For each network output (`loc`, `conf`, `landmarks`): its name, the largest |tch − ORT|
/// against `expected` (from [`ort_run`]), and the largest |value| ORT gave.
pub fn output_diffs(
    out: &retinaface_training::model::Outputs<tch::Tensor>,
    expected: &[Vec<f32>; 3],
) -> [(&'static str, f32, f32); 3] {
    use retinaface_training::infer::to_vec;
    let got = [
        ("loc", &out.loc),
        ("conf", &out.conf),
        ("landmarks", &out.landmarks),
    ];
    std::array::from_fn(|i| {
        let (name, tensor) = got[i];
        let want = &expected[i];
        let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        (name, max_abs_diff(&to_vec(tensor), want), largest)
    })
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Photos of the tiny labelled set the training tests build.
pub const DATASET_PHOTOS: [&str; 6] = [
    "sample1.jpg",
    "sample2.jpg",
    "sample3.jpg",
    "sample4.jpg",
    "test2.jpg",
    "test4.jpg",
];

/// Builds a WIDER FACE-style set (`<dir>/label.txt`, `<dir>/images/*.jpg`) from the sample photos,
/// scaled to at most `max_side` pixels, labelled with boxes and landmarks by the published model
/// (confidence ≥ 0.7). Returns the label file.
pub fn make_dataset(dir: &Path, max_side: u32) -> PathBuf {
    use retinaface_training::data::{FaceAnnotation, Sample, write_label_file};
    use retinaface_training::infer::{InferParams, detect};
    let net =
        retinaface_training::onnx_io::import::import_onnx(&published_model(), tch::Device::Cpu)
            .unwrap();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let params = InferParams {
        confidence_threshold: 0.7,
        ..Default::default()
    };
    let samples: Vec<Sample> = DATASET_PHOTOS
        .iter()
        .map(|name| {
            let img = photo(name, max_side);
            let path = images.join(name);
            img.save(&path).unwrap();
            let faces = detect(&net, &img, &params)
                .iter()
                .map(|f| FaceAnnotation {
                    bbox: f.bbox,
                    landmarks: Some(f.landmarks),
                })
                .collect();
            Sample { image: path, faces }
        })
        .collect();
    assert!(
        samples.iter().map(|s| s.faces.len()).sum::<usize>() >= 10,
        "too few faces to train on"
    );
    let labels = dir.join("label.txt");
    write_label_file(&labels, &images, &samples).unwrap();
    labels
}

/// How long one trainer or gst-launch-1.0 run in a test may take: under nextest's own kill
/// (300 s), so a hung process fails with a message naming it.
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(240);

/// Runs `command` to the end and returns its output (stdout and stderr captured); kills it and
/// fails after [`RUN_LIMIT`], so a hung process fails the test instead of stalling it.
pub fn output_within(command: &mut std::process::Command) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    // Drained while it runs: a full pipe would otherwise stall the process.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The trainer binary.
pub fn trainer() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_retinaface-train"))
}
