//! `eval` on label files a user may really have: a byte that is not UTF-8 skips that line (with
//! file:line) instead of stopping the run; a set with no face reports AP 0 and no chart instead
//! of failing in the plot step.

mod common;

use std::path::Path;

use common::*;

/// Runs `eval` of the published model on `label_text` (one copy of sample1.jpg as `a.jpg`);
/// returns (success, stdout, stderr).
fn eval(dir: &Path, label_text: &[u8]) -> (bool, String, String) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    photo("sample1.jpg", 480)
        .save(dir.join("images/a.jpg"))
        .unwrap();
    let labels = dir.join("label.txt");
    std::fs::write(&labels, label_text).unwrap();
    let out = output_within(
        trainer()
            .args(["eval", "--model"])
            .arg(published_model())
            .arg("--labels")
            .arg(&labels)
            .arg("--output")
            .arg(dir.join("eval"))
            .args(["--device", "cpu"]),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_line_that_is_not_utf8_is_skipped_and_eval_finishes() {
    let dir = tempfile::tempdir().unwrap();
    // The faces of sample1.jpg at 480 px are not known here; one made-up face is enough for
    // eval to run through, and the broken line must only cost itself.
    let (ok, stdout, stderr) = eval(dir.path(), b"# a.jpg\n100 100 80 80\n120 \xff 80 80\n");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("over 1 faces"), "{stdout}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("label.txt:3: not valid UTF-8; line skipped"),
        "{all}"
    );
}

#[test]
fn a_set_without_faces_reports_ap_0_and_no_chart() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = eval(dir.path(), b"# a.jpg\n");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("AP 0.0000 over 0 faces"), "{stdout}");
    assert!(stdout.contains("the labels hold no face"), "{stdout}");
    assert!(!dir.path().join("eval/pr.png").exists());
}
