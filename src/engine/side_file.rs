//! The side file of a TorchScript model: what ONNX keeps inside the model file (input and
//! output names and shapes, the `retinaface.*` metadata) but a TorchScript archive has no place
//! for. The trainer writes it (`retinaface-train torchscript`), the libtorch backend
//! (`torch.rs`) reads it; both through this one type, so writer and reader cannot drift.
//! Compiled without the `torch` feature too: the trainer writes it without linking the backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `format` of the side files this build reads and writes.
pub const TORCHSCRIPT_FORMAT: &str = "retinaface-torchscript-1";

/// One input or output of the traced function: its name and shape (`-1` = any size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideTensor {
    pub name: String,
    pub shape: Vec<i64>,
}

/// Contents of `<model>.pt.json`, beside the TorchScript archive `<model>.pt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorchScriptSideFile {
    /// [`TORCHSCRIPT_FORMAT`]; another value is a file this build does not understand.
    pub format: String,
    /// The traced function's tensor arguments, in order (all f32, or f16 when run in FP16).
    pub inputs: Vec<SideTensor>,
    /// The model's outputs, in order: the tensors of the tuple the module returns, or, with
    /// `packed_outputs`, the parts of the one tensor it returns.
    pub outputs: Vec<SideTensor>,
    /// The module returns one tensor: the outputs concatenated along their last axis, in order,
    /// each as wide as its shape's last dimension. (A traced TorchScript method returns one
    /// value, and libtorch's tracing API as `tch` exposes it cannot make that a tuple.)
    #[serde(default)]
    pub packed_outputs: bool,
    /// The model's key/value properties, as ONNX `metadata_props` would hold them.
    pub metadata: BTreeMap<String, String>,
}

/// The TorchScript archive and its side file for a model path: `m.pt` → (`m.pt`, `m.pt.json`);
/// an ONNX path `m.onnx` names the TorchScript export beside it (`m.pt`), so the `model`
/// setting need not change when only the backend does.
pub fn torchscript_paths(model: &Path) -> (PathBuf, PathBuf) {
    let archive = if model.extension().is_some_and(|e| e == "onnx") {
        model.with_extension("pt")
    } else {
        model.to_path_buf()
    };
    let mut side = archive.clone().into_os_string();
    side.push(".json");
    (archive, PathBuf::from(side))
}

impl TorchScriptSideFile {
    /// With [`packed_outputs`](Self::packed_outputs): each output's width in the last axis of
    /// the one tensor, or why the side file does not say.
    pub fn packed_widths(&self) -> Result<Vec<i64>, String> {
        self.outputs
            .iter()
            .map(|o| match o.shape.last() {
                Some(&w) if w > 0 => Ok(w),
                _ => Err(format!(
                    "packed output '{}' has no fixed last dimension ({:?})",
                    o.name, o.shape
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_onnx_path_names_the_torchscript_export_beside_it() {
        let (pt, json) = torchscript_paths(Path::new("/m/retinaface-mv025.onnx"));
        assert_eq!(pt, Path::new("/m/retinaface-mv025.pt"));
        assert_eq!(json, Path::new("/m/retinaface-mv025.pt.json"));
        let (pt, json) = torchscript_paths(Path::new("model.torchscript"));
        assert_eq!(pt, Path::new("model.torchscript"));
        assert_eq!(json, Path::new("model.torchscript.json"));
    }
}
