//! The official WIDER FACE validation ground truth, from its four `.mat` files.
//!
//! `wider_face_val.mat` holds `event_list` (events × 1 cell of names), `file_list` (per event, a
//! cell of image names without extension) and `face_bbx_list` (per event, per image, a K × 4
//! `[x, y, w, h]` matrix). `wider_{easy,medium,hard}_val.mat` each hold `gt_list`: per event, per
//! image, the 1-based indices of the boxes that count in that setting; the others are ignored.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::matfile::{MatValue, read_mat_file};

/// One validation image.
#[derive(Debug, Clone, PartialEq)]
pub struct GtImage {
    /// Image name without extension, e.g. `0_Parade_marchingband_1_465`.
    pub name: String,
    /// Faces as `[x, y, w, h]` in pixels.
    pub boxes: Vec<[f64; 4]>,
    /// Per setting (easy, medium, hard): 1-based indices into `boxes` of the faces that count.
    pub keep: [Vec<usize>; 3],
}

/// One event folder (e.g. `0--Parade`) and its images.
#[derive(Debug, Clone, PartialEq)]
pub struct GtEvent {
    pub name: String,
    pub images: Vec<GtImage>,
}

/// Reads `wider_face_val.mat` and the easy/medium/hard keep lists from `gt_dir`.
pub fn load_ground_truth(gt_dir: &Path) -> Result<Vec<GtEvent>> {
    let mut main = read_mat_file(
        &gt_dir.join("wider_face_val.mat"),
        &["event_list", "file_list", "face_bbx_list"],
    )?;
    let boxes_var = main.pop().expect("3 variables");
    let files_var = main.pop().expect("3 variables");
    let events_var = main.pop().expect("3 variables");
    let mut keep_vars = Vec::with_capacity(3);
    for setting in ["easy", "medium", "hard"] {
        let path = gt_dir.join(format!("wider_{setting}_val.mat"));
        keep_vars.push(read_mat_file(&path, &["gt_list"])?.remove(0));
    }

    let ctx = "wider_face_val.mat";
    let events = events_var.cell_items().context("event_list")?;
    let files = files_var.cell_items().context("file_list")?;
    let boxes = boxes_var.cell_items().context("face_bbx_list")?;
    ensure!(
        files.len() == events.len() && boxes.len() == events.len(),
        "{ctx}: {} events but {} file lists and {} box lists",
        events.len(),
        files.len(),
        boxes.len()
    );
    let keep_lists = ["easy", "medium", "hard"]
        .iter()
        .zip(&keep_vars)
        .map(|(s, v)| {
            let items = v
                .cell_items()
                .with_context(|| format!("wider_{s}_val.mat: gt_list"))?;
            ensure!(
                items.len() == events.len(),
                "wider_{s}_val.mat: gt_list has {} events, wider_face_val.mat {}",
                items.len(),
                events.len()
            );
            Ok(items)
        })
        .collect::<Result<Vec<_>>>()?;

    let mut out = Vec::with_capacity(events.len());
    for (e, event) in events.iter().enumerate() {
        let name = event
            .as_str()
            .with_context(|| format!("{ctx}: event_list item {}", e + 1))?
            .to_string();
        let file_items = files[e]
            .cell_items()
            .with_context(|| format!("{ctx}: file_list of event '{name}'"))?;
        let box_items = boxes[e]
            .cell_items()
            .with_context(|| format!("{ctx}: face_bbx_list of event '{name}'"))?;
        ensure!(
            box_items.len() == file_items.len(),
            "{ctx}: event '{name}' has {} images but {} box lists",
            file_items.len(),
            box_items.len()
        );
        let keep_items = ["easy", "medium", "hard"]
            .iter()
            .zip(&keep_lists)
            .map(|(s, list)| {
                let items = list[e]
                    .cell_items()
                    .with_context(|| format!("wider_{s}_val.mat: gt_list of event '{name}'"))?;
                ensure!(
                    items.len() == file_items.len(),
                    "wider_{s}_val.mat: event '{name}' has {} keep lists for {} images",
                    items.len(),
                    file_items.len()
                );
                Ok(items)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut images = Vec::with_capacity(file_items.len());
        for (j, file) in file_items.iter().enumerate() {
            let image = file
                .as_str()
                .with_context(|| format!("{ctx}: file_list of event '{name}', item {}", j + 1))?
                .to_string();
            let where_ = || format!("event '{name}', image '{image}'");
            let b = box_matrix(&box_items[j]).with_context(|| format!("{ctx}: {}", where_()))?;
            let mut keep: [Vec<usize>; 3] = Default::default();
            for (s, setting) in ["easy", "medium", "hard"].iter().enumerate() {
                keep[s] = index_list(&keep_items[s][j], b.len())
                    .with_context(|| format!("wider_{setting}_val.mat: {}", where_()))?;
            }
            images.push(GtImage {
                name: image,
                boxes: b,
                keep,
            });
        }
        out.push(GtEvent { name, images });
    }
    Ok(out)
}

/// A K × 4 matrix (column-major) as rows; an empty array of any shape is no boxes.
fn box_matrix(v: &MatValue) -> Result<Vec<[f64; 4]>> {
    let (dims, data) = v.numeric()?;
    if data.is_empty() {
        return Ok(Vec::new());
    }
    ensure!(
        dims.len() == 2 && dims[1] == 4,
        "face boxes must be a K x 4 matrix, found {}",
        v.describe()
    );
    let k = dims[0];
    Ok((0..k)
        .map(|i| [data[i], data[i + k], data[i + 2 * k], data[i + 3 * k]])
        .collect())
}

/// A vector of 1-based indices. When the image has boxes they must point at one; the reference
/// only indexes with them when the image has boxes, so other images keep whatever they list.
fn index_list(v: &MatValue, boxes: usize) -> Result<Vec<usize>> {
    let (dims, data) = v.numeric()?;
    ensure!(
        dims.iter().filter(|&&d| d != 1).count() <= 1 || data.is_empty(),
        "keep list must be a vector, found {}",
        v.describe()
    );
    data.iter()
        .map(|&x| {
            if x.fract() != 0.0 || x < 1.0 || (boxes > 0 && x > boxes as f64) {
                bail!("keep index {x} is not a 1-based index into {boxes} boxes");
            }
            Ok(x as usize)
        })
        .collect()
}
