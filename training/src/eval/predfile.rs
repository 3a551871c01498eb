//! Per-image prediction files in the layout of the RetinaFace WIDER FACE test scripts, so that
//! predictions written here can also be scored by the Python tools and the other way round:
//! `<pred_dir>/<event>/<image>.txt` holding
//!
//! ```text
//! <image name without extension>
//! <number of boxes>
//! <x> <y> <w> <h> <score>
//! ...
//! ```
//!
//! The reader is stricter than the reference's: the count line must match the boxes, a box line
//! needs five finite numbers (further fields are ignored, as there), and every problem is reported
//! with the file and line. Unlike the reference it does not drop box lines that start with a space.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Predictions of a whole dataset: event → image name (no extension) → `[x, y, w, h, score]`.
pub type PredictionSet = BTreeMap<String, BTreeMap<String, Vec<[f64; 5]>>>;

/// Writes `<pred_dir>/<event>/<image stem>.txt` for one image (`image_name` may carry folders and
/// an extension; both are dropped). Boxes are `[x, y, w, h, score]` in pixels and are written
/// sorted by score, highest first, which the evaluation's thresholding relies on.
pub fn write_prediction_file(
    pred_dir: &Path,
    event: &str,
    image_name: &str,
    boxes: &[[f32; 5]],
) -> Result<()> {
    ensure!(
        !event.is_empty() && !event.contains(['/', '\\']) && event != "." && event != "..",
        "invalid event name '{event}' for a prediction folder"
    );
    let stem = image_stem(image_name);
    ensure!(
        !stem.is_empty() && stem != "." && stem != "..",
        "invalid image name '{image_name}'"
    );
    if let Some(b) = boxes.iter().find(|b| b.iter().any(|v| !v.is_finite())) {
        bail!("prediction for {event}/{image_name} has a non-finite value: {b:?}");
    }
    let mut sorted = boxes.to_vec();
    sorted.sort_by(|a, b| b[4].total_cmp(&a[4]));
    // `{}` on f32 prints the shortest text that reads back to the same f32.
    let mut text = format!("{stem}\n{}\n", sorted.len());
    for [x, y, w, h, s] in sorted {
        writeln!(text, "{x} {y} {w} {h} {s}").expect("writing to a String");
    }
    let dir = pred_dir.join(event);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{stem}.txt"));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads one prediction file: the image key (the name on its first line without folders and
/// `.jpg`) and its boxes in file order.
pub fn read_prediction_file(path: &Path) -> Result<(String, Vec<[f64; 5]>)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read prediction file {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("prediction file {} is not UTF-8 text", path.display()))?;
    parse_prediction_text(&text).with_context(|| format!("prediction file {}", path.display()))
}

fn parse_prediction_text(text: &str) -> Result<(String, Vec<[f64; 5]>)> {
    let mut lines = text.lines().enumerate();
    let name = match lines.next() {
        Some((_, l)) if !l.trim().is_empty() => image_key(l.trim()).to_string(),
        _ => bail!("line 1: missing image name (the file is empty)"),
    };
    let count: usize = match lines.next() {
        Some((_, l)) => l
            .trim()
            .parse()
            .map_err(|_| anyhow!("line 2: expected the number of boxes, found '{l}'"))?,
        None => bail!("line 2: missing the number of boxes"),
    };
    let mut boxes = Vec::with_capacity(count.min(100_000));
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            fields.len() >= 5,
            "line {}: expected 'x y w h score', found '{line}'",
            i + 1
        );
        let mut b = [0.0f64; 5];
        for (v, f) in b.iter_mut().zip(&fields) {
            *v = f
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| anyhow!("line {}: '{f}' is not a finite number", i + 1))?;
        }
        boxes.push(b);
    }
    ensure!(
        boxes.len() == count,
        "line 2 announces {count} boxes but the file has {}",
        boxes.len()
    );
    Ok((name, boxes))
}

/// Reads every `<event>/<image>.txt` under `pred_dir` (other files and top-level non-folders are
/// skipped). Images are keyed by the name inside each file, as the reference does.
pub fn read_prediction_dir(pred_dir: &Path) -> Result<PredictionSet> {
    let mut set = PredictionSet::new();
    for event in sorted_entries(pred_dir)? {
        if !event.is_dir() {
            continue;
        }
        let event_name = file_name(&event)?;
        let mut images = BTreeMap::new();
        for file in sorted_entries(&event)? {
            if file.extension().is_none_or(|e| e != "txt") || !file.is_file() {
                continue;
            }
            let (name, boxes) = read_prediction_file(&file)?;
            if images.insert(name.clone(), boxes).is_some() {
                bail!(
                    "two prediction files in {} are for image '{name}' (the second is {})",
                    event.display(),
                    file.display()
                );
            }
        }
        set.insert(event_name, images);
    }
    Ok(set)
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let read = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read prediction folder {}", dir.display()))?;
    let mut entries = read
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} has no UTF-8 name", path.display()))
}

/// The key the reference uses for an image: the name after the last `/`, without `.jpg`.
/// (The reference strips with `rstrip('.jpg')`, which also eats trailing `j`, `p` and `g`
/// letters; WIDER FACE names end in digits, so only the suffix is stripped here.)
pub fn image_key(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.strip_suffix(".jpg").unwrap_or(base)
}

/// The file stem written for an image: after the last `/`, without any extension.
fn image_stem(name: &str) -> &str {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let boxes = [[1.5, 2.0, 30.0, 40.0, 0.25], [10.0, 20.0, 5.0, 6.0, 0.95]];
        write_prediction_file(dir.path(), "0--Parade", "0--Parade/0_Parade_1.jpg", &boxes).unwrap();
        let path = dir.path().join("0--Parade/0_Parade_1.txt");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text, "0_Parade_1\n2\n10 20 5 6 0.95\n1.5 2 30 40 0.25\n",
            "biubug6 layout, best first"
        );
        let set = read_prediction_dir(dir.path()).unwrap();
        let got = &set["0--Parade"]["0_Parade_1"];
        assert_eq!(got[0], [10.0, 20.0, 5.0, 6.0, 0.95]);
        assert_eq!(got[1], [1.5, 2.0, 30.0, 40.0, 0.25]);
    }

    #[test]
    fn reference_style_files_parse() {
        // Trailing space and CRLF as written by the Python test scripts; folders in the name.
        let (name, boxes) =
            parse_prediction_text("0--Parade/0_Parade_465.jpg\r\n1\r\n3 4 50 60 0.9912 \r\n")
                .unwrap();
        assert_eq!(name, "0_Parade_465");
        assert_eq!(boxes, vec![[3.0, 4.0, 50.0, 60.0, 0.9912]]);
        let (_, boxes) = parse_prediction_text("img\n0\n").unwrap();
        assert!(boxes.is_empty());
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let ev = dir.path().join("1--Handshaking");
        std::fs::create_dir_all(&ev).unwrap();
        let cases = [
            ("", "line 1"),
            ("img\n", "line 2: missing"),
            ("img\nabc\n", "line 2: expected the number"),
            ("img\n2\n1 2 3 4 0.5\n", "announces 2 boxes"),
            ("img\n1\n1 2 3 0.5\n", "line 3: expected 'x y w h score'"),
            ("img\n2\n1 2 3 4 0.5\n1 2 x 4 0.5\n", "line 4: 'x' is not"),
            ("img\n1\n1 2 3 4 nan\n", "'nan' is not a finite"),
        ];
        for (text, want) in cases {
            let path = ev.join("bad.txt");
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", read_prediction_dir(dir.path()).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("bad.txt"), "{err}");
        }
        let err = format!(
            "{:#}",
            read_prediction_dir(&dir.path().join("missing")).unwrap_err()
        );
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn writer_rejects_bad_names_and_values() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_prediction_file(dir.path(), "../x", "a.jpg", &[]).is_err());
        assert!(write_prediction_file(dir.path(), "e", "", &[]).is_err());
        let nan = [[0.0, 0.0, 1.0, 1.0, f32::NAN]];
        assert!(write_prediction_file(dir.path(), "e", "a.jpg", &nan).is_err());
    }
}
