//! Tests on MAT-files written by `scipy.io.savemat`, in the structure of the official WIDER FACE
//! ground truth, and a hand-computed end-to-end WIDER FACE evaluation on them.
//!
//! scipy and numpy come from `scripts/setup.sh` (into `$RETINAFACE_PREFIX/lib/retinaface-py`,
//! default prefix `/usr/local`); without them these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::matfile::{MatValue, NumericClass, read_all_variables, read_mat_bytes, read_mat_file};
use super::*;

/// Runs a Python snippet with the project's numpy/scipy; `argv[1]` is `dir`.
fn python_scipy(script: &str, dir: &Path, extra: &[&str]) {
    let prefix = std::env::var("RETINAFACE_PREFIX").unwrap_or_else(|_| "/usr/local".into());
    let py_dir = PathBuf::from(prefix).join("lib/retinaface-py");
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .args(extra)
        .env("PYTHONPATH", &py_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "python3 with scipy from {} failed; run scripts/setup.sh to install numpy and scipy \
         there.\n{}",
        py_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The four WIDER FACE ground-truth files for a tiny set:
///
/// | event / image | faces (x, y, w, h) | easy | medium | hard |
/// |---|---|---|---|---|
/// | 0--Parade / img_a | G1 (10,10,20,20), G2 (100,100,20,20) | 1 | 1 | 1, 2 |
/// | 1--Handshaking / img_b | G3 (50,50,30,30) | – | 1 | 1 |
/// | 1--Handshaking / img_c | none | – | – | – |
/// | 1--Handshaking / img_d | G4 (200,200,40,40) | – | 1 | 1 |
///
/// Index lists use a different dtype per setting (uint8, int32, double), as J×1 columns.
const WIDER_GT_PY: &str = r#"
import sys, numpy as np, scipy.io as sio
out, compress = sys.argv[1], sys.argv[2] == "1"
def cell(items):
    c = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        c[i, 0] = x
    return c
boxes = [
    [np.array([[10, 10, 20, 20], [100, 100, 20, 20]], dtype=np.float64)],
    [np.array([[50, 50, 30, 30]], dtype=np.float64), np.zeros((0, 4)),
     np.array([[200, 200, 40, 40]], dtype=np.float64)],
]
sio.savemat(out + "/wider_face_val.mat", {
    "event_list": cell(["0--Parade", "1--Handshaking"]),
    "file_list": cell([cell(["img_a"]), cell(["img_b", "img_c", "img_d"])]),
    "face_bbx_list": cell([cell(b) for b in boxes]),
    "blur_label_list": cell([cell([np.zeros((2, 1))]), cell([np.zeros((1, 1))] * 3)]),
}, do_compression=compress)
def keep(lists, dtype):
    return cell([cell([np.array(k, dtype=dtype).reshape(-1, 1) for k in ev]) for ev in lists])
sio.savemat(out + "/wider_easy_val.mat",
            {"gt_list": keep([[[1]], [[], [], []]], np.uint8)}, do_compression=compress)
sio.savemat(out + "/wider_medium_val.mat",
            {"gt_list": keep([[[1]], [[1], [], [1]]], np.int32)}, do_compression=compress)
sio.savemat(out + "/wider_hard_val.mat",
            {"gt_list": keep([[[1, 2]], [[1], [], [1]]], np.float64)}, do_compression=compress)
"#;

fn write_wider_gt(dir: &Path, compress: bool) {
    python_scipy(WIDER_GT_PY, dir, &[if compress { "1" } else { "0" }]);
}

#[test]
fn reads_scipy_ground_truth_structure() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_wider_gt(dir.path(), compress);
        let gt = widerface::load_ground_truth(dir.path()).unwrap();
        assert_eq!(gt.len(), 2);
        assert_eq!(gt[0].name, "0--Parade");
        assert_eq!(gt[1].name, "1--Handshaking");
        let a = &gt[0].images[0];
        assert_eq!(a.name, "img_a");
        assert_eq!(
            a.boxes,
            vec![[10.0, 10.0, 20.0, 20.0], [100.0, 100.0, 20.0, 20.0]]
        );
        assert_eq!(a.keep, [vec![1], vec![1], vec![1, 2]]);
        let names: Vec<&str> = gt[1].images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["img_b", "img_c", "img_d"]);
        assert!(gt[1].images[1].boxes.is_empty());
        assert_eq!(gt[1].images[2].boxes, vec![[200.0, 200.0, 40.0, 40.0]]);
        assert_eq!(gt[1].images[0].keep, [vec![], vec![1], vec![1]]);
    }
}

/// Predictions (score): img_a P1 = G1 (0.9), P2 = G2 (0.7), P5 = G1 shifted by 2 (0.5, IoU
/// 361/521, a duplicate); img_b P4 off every face (0.8), P3 = G3 (0.4); img_c one box (0.6, no
/// faces there, so only part of the score normalisation); img_d none.
fn write_hand_predictions(pred: &Path) {
    write_prediction_file(
        pred,
        "0--Parade",
        "img_a.jpg",
        &[
            [10.0, 10.0, 20.0, 20.0, 0.9],
            [100.0, 100.0, 20.0, 20.0, 0.7],
            [12.0, 12.0, 20.0, 20.0, 0.5],
        ],
    )
    .unwrap();
    let ev = "1--Handshaking";
    let img_b = [
        [300.0, 300.0, 10.0, 10.0, 0.8],
        [50.0, 50.0, 30.0, 30.0, 0.4],
    ];
    write_prediction_file(pred, ev, "img_b.jpg", &img_b).unwrap();
    write_prediction_file(pred, ev, "img_c.jpg", &[[5.0, 5.0, 10.0, 10.0, 0.6]]).unwrap();
    write_prediction_file(pred, ev, "img_d.jpg", &[]).unwrap();
}

/// Scores normalise over min 0.4 / max 0.9 to P1 1, P4 .8, P2 .6, P5 .2, P3 0; lowering the
/// threshold adds them in that order. Per setting, (proposals, recalled) after each step:
///
/// * easy (faces: G1 → 1): P1 (1,1) – P4 (2,1) – P2 hits ignored G2: not a proposal (2,1) –
///   P5 duplicate (3,1) – P3 hits ignored G3 (3,1). Recall is 1 from the first step: AP = 1.
/// * medium (G1, G3, G4 → 3): (1,1) (2,1) (2,1) (3,1) (4,2): precision 1, .5, .5, 1/3, .5 at
///   recall 1/3, 1/3, 1/3, 1/3, 2/3; envelope 1 then .5: AP = 1/3·1 + 1/3·.5 = 0.5.
/// * hard (all 4): (1,1) (2,1) (3,2) (4,2) (5,3): precision 1, .5, 2/3, .5, .6 at recall .25, .25,
///   .5, .5, .75; envelope 1, 2/3, .6: AP = .25 + .25·2/3 + .25·.6 = 17/30.
#[test]
fn widerface_ap_by_hand_on_scipy_files() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let gt = dir.path().join("gt");
        let pred = dir.path().join("pred");
        std::fs::create_dir_all(&gt).unwrap();
        write_wider_gt(&gt, compress);
        write_hand_predictions(&pred);
        let r = evaluate_widerface(&pred, &gt).unwrap();
        assert!((r.easy - 1.0).abs() < 1e-12, "easy {}", r.easy);
        assert!((r.medium - 0.5).abs() < 1e-12, "medium {}", r.medium);
        assert!((r.hard - 17.0 / 30.0).abs() < 1e-12, "hard {}", r.hard);
        let hard = &r.curves[2];
        assert!((hard.precision[999] - 0.6).abs() < 1e-12);
        assert!((hard.recall[999] - 0.75).abs() < 1e-12);

        let png = dir.path().join("pr.png");
        let named = [
            ("easy", &r.curves[0], r.easy),
            ("medium", &r.curves[1], r.medium),
            ("hard", &r.curves[2], r.hard),
        ];
        plot_pr_curves(&png, &named).unwrap();
        assert_eq!(
            &std::fs::read(&png).unwrap()[..8],
            b"\x89PNG\r\n\x1a\n",
            "PR curves written as PNG"
        );
    }
}

#[test]
fn missing_prediction_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt");
    let pred = dir.path().join("pred");
    std::fs::create_dir_all(&gt).unwrap();
    write_wider_gt(&gt, true);
    write_hand_predictions(&pred);
    std::fs::remove_file(pred.join("1--Handshaking/img_d.txt")).unwrap();
    let err = format!("{:#}", evaluate_widerface(&pred, &gt).unwrap_err());
    assert!(
        err.contains("img_d") && err.contains("1--Handshaking"),
        "{err}"
    );
    std::fs::remove_dir_all(pred.join("0--Parade")).unwrap();
    let err = format!("{:#}", evaluate_widerface(&pred, &gt).unwrap_err());
    assert!(
        err.contains("no predictions for event '0--Parade'"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        evaluate_widerface(&pred, &dir.path().join("nowhere")).unwrap_err()
    );
    assert!(err.contains("wider_face_val.mat"), "{err}");
}

const TYPES_PY: &str = r#"
import sys, numpy as np, scipy.io as sio
out, compress = sys.argv[1], sys.argv[2] == "1"
inner = np.empty((1, 2), dtype=object)
inner[0, 0] = "x"
inner[0, 1] = np.array([[7]], dtype=np.int64)
outer = np.empty((2, 1), dtype=object)
outer[0, 0] = inner
outer[1, 0] = np.array([], dtype=np.float64)
sio.savemat(out + "/types.mat", {
    "d": np.array([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]),
    "s": np.array([[0.25, -1.0]], dtype=np.float32),
    "i8": np.array([[-128, 127]], dtype=np.int8), "u8": np.array([[0, 255]], dtype=np.uint8),
    "i16": np.array([[-32768]], dtype=np.int16), "u16": np.array([[65535]], dtype=np.uint16),
    "i32": np.array([[-2**31]], dtype=np.int32), "u32": np.array([[2**32 - 1]], dtype=np.uint32),
    "i64": np.array([[-2**40]], dtype=np.int64), "u64": np.array([[2**40]], dtype=np.uint64),
    "b": np.array([[True, False]]),
    "txt": "0--Pärade", "empty_txt": "",
    "c": outer, "empty_cell": np.empty((0, 0), dtype=object),
}, do_compression=compress)
sio.savemat(out + "/struct.mat", {"st": {"a": 1.0}, "z": np.array([1 + 2j])},
            do_compression=compress)
"#;

#[test]
fn reads_every_supported_scipy_type() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        python_scipy(TYPES_PY, dir.path(), &[if compress { "1" } else { "0" }]);
        let bytes = std::fs::read(dir.path().join("types.mat")).unwrap();
        let vars = read_all_variables(&bytes).unwrap();
        let get = |n: &str| &vars.iter().find(|(name, _)| name == n).unwrap().1;
        let num = |n: &str| get(n).numeric().unwrap().1.to_vec();
        // 2×3 matrix, column-major.
        assert_eq!(
            get("d"),
            &MatValue::Numeric {
                class: NumericClass::Double,
                dims: vec![2, 3],
                data: vec![1.5, 4.5, 2.5, 5.5, 3.5, 6.5]
            }
        );
        assert_eq!(num("s"), [0.25, -1.0]);
        assert_eq!(num("i8"), [-128.0, 127.0]);
        assert_eq!(num("u8"), [0.0, 255.0]);
        assert_eq!(num("i16"), [-32768.0]);
        assert_eq!(num("u16"), [65535.0]);
        assert_eq!(num("i32"), [-2147483648.0]);
        assert_eq!(num("u32"), [4294967295.0]);
        assert_eq!(num("i64"), [-(2f64.powi(40))]);
        assert_eq!(num("u64"), [2f64.powi(40)]);
        assert_eq!(num("b"), [1.0, 0.0]);
        assert_eq!(get("txt").as_str().unwrap(), "0--Pärade");
        assert_eq!(get("empty_txt").as_str().unwrap(), "");
        let c = get("c").cell_items().unwrap();
        assert_eq!(c.len(), 2);
        let inner = c[0].cell_items().unwrap();
        assert_eq!(inner[0].as_str().unwrap(), "x");
        assert_eq!(inner[1].numeric().unwrap().1, &[7.0]);
        assert!(c[1].numeric().unwrap().1.is_empty());
        assert!(get("empty_cell").cell_items().unwrap().is_empty());

        let path = dir.path().join("struct.mat");
        let err = format!("{:#}", read_mat_file(&path, &["st"]).unwrap_err());
        assert!(
            err.contains("struct") && err.contains("struct.mat"),
            "{err}"
        );
        let err = format!("{:#}", read_mat_file(&path, &["z"]).unwrap_err());
        assert!(err.contains("complex"), "{err}");
    }
}

#[test]
fn truncated_and_corrupted_scipy_files_are_errors() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_wider_gt(dir.path(), compress);
        let bytes = std::fs::read(dir.path().join("wider_face_val.mat")).unwrap();
        let names = [
            "event_list",
            "file_list",
            "face_bbx_list",
            "blur_label_list",
        ];
        assert!(read_mat_bytes(&bytes, &names).is_ok());
        for len in 0..bytes.len() {
            assert!(
                read_mat_bytes(&bytes[..len], &names).is_err(),
                "truncated to {len} of {} bytes (compressed: {compress})",
                bytes.len()
            );
        }
        for i in (128..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = read_all_variables(&b); // error or not, never a panic
        }
    }
}
