//! Reading ONNX files through the prost types in [`crate::onnx`]: decoding a model, and the
//! float32 values of an initializer.

use anyhow::{Context, bail};
use prost::Message;

use crate::onnx::{ModelProto, TensorProto, tensor_proto::DataType};

/// Reads and decodes an ONNX file.
pub fn read_model(path: &std::path::Path) -> anyhow::Result<ModelProto> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading ONNX model {}", path.display()))?;
    ModelProto::decode(bytes.as_slice()).with_context(|| {
        format!(
            "{} is not an ONNX model (protobuf decoding failed)",
            path.display()
        )
    })
}

/// A float32 initializer as `(dims, values)`.
pub fn tensor_f32(t: &TensorProto) -> anyhow::Result<(Vec<i64>, Vec<f32>)> {
    let name = t.name.as_deref().unwrap_or("?");
    if t.data_type != Some(DataType::Float as i32) {
        bail!(
            "initializer {name}: expected float32, found data type {:?}",
            t.data_type
        );
    }
    let count: i64 = t.dims.iter().product();
    let values = match &t.raw_data {
        Some(raw) if !raw.is_empty() => {
            if raw.len() != count as usize * 4 {
                bail!(
                    "initializer {name}: {} raw bytes for {count} floats",
                    raw.len()
                );
            }
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        _ => t.float_data.clone(),
    };
    if values.len() != count as usize {
        bail!(
            "initializer {name}: {} values for shape {:?}",
            values.len(),
            t.dims
        );
    }
    Ok((t.dims.clone(), values))
}
