//! `import`: loads a published RetinaFace ONNX model (BatchNorm folded into the convolutions)
//! into the tch network, so it can be fine-tuned or checked against ONNX Runtime.
//!
//! Convolutions are matched to network units by node name. Two naming schemes are understood:
//! the PyTorch exporter's module paths of the published mv0.25 model
//! (`/fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv` → `fx.stage1.1.0`,
//! `/ssh1/conv3X3/conv3X3.0/Conv` → `ssh1.conv3X3`, `/class_head/class_head.0/Conv` →
//! `class_head.0`) and the `unit/Conv` names this trainer's exporter writes. A module called twice
//! in the PyTorch graph appears twice (`…_1/Conv`); the repeat is skipped.
//!
//! Folded BatchNorm: the original statistics are gone. Each unit gets a placeholder BatchNorm that
//! reproduces the folded convolution exactly (see `ConvUnit::load_folded`), and the model is
//! marked `folded_batch_norm`. Before fine-tuning, `train` re-estimates real statistics on the
//! training images without changing what the network computes (`model::calibrate`); from there
//! BatchNorm trains as usual (batch statistics, running averages updated), unless
//! `TrainConfig::freeze_batch_norm` asks to keep the statistics fixed.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use tch::{Device, Tensor};

use super::metadata;
use super::proto::{read_model, tensor_f32};
use crate::model::{BackboneKind, ModelConfig, RetinaFace};

/// The network unit a Conv node belongs to, or `None` for a repeated call of a module.
pub fn unit_name(node_name: &str) -> Option<String> {
    let path = node_name.strip_suffix("/Conv")?;
    if !path.starts_with('/') {
        // Written by our exporter: the unit name itself.
        return Some(path.to_string());
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (first, last) = (*segments.first()?, *segments.last()?);
    if last.ends_with("_1") {
        return None;
    }
    if first.ends_with("_head") {
        // ModuleList of plain convolutions: `class_head.0` is the level's conv itself.
        return Some(last.to_string());
    }
    // Sequential(conv, bn, act): the conv is child `.0` of the unit.
    let unit = last.strip_suffix(".0")?;
    Some(if segments.len() > 1 {
        format!("{first}.{unit}")
    } else {
        unit.to_string()
    })
}

/// Loads `path` into a new network on `device`.
pub fn import_onnx(path: &Path, device: Device) -> anyhow::Result<RetinaFace> {
    let model = read_model(path)?;
    let graph = model
        .graph
        .as_ref()
        .with_context(|| format!("{}: no graph", path.display()))?;
    let meta: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .filter_map(|p| Some((p.key.as_deref()?, p.value.as_deref()?)))
        .collect();

    let initializers: HashMap<&str, &crate::onnx::TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_deref()?, t)))
        .collect();
    // The PyTorch exporter routes re-used weights through Identity nodes.
    let identities: HashMap<&str, &str> = graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Identity"))
        .filter_map(|n| Some((n.output.first()?.as_str(), n.input.first()?.as_str())))
        .collect();
    let weight = |name: &str| -> anyhow::Result<Tensor> {
        let mut name = name;
        while let Some(src) = identities.get(name) {
            name = src;
        }
        let t = initializers
            .get(name)
            .with_context(|| format!("convolution input {name} is not an initializer"))?;
        let (dims, values) = tensor_f32(t)?;
        Ok(Tensor::from_slice(&values).view(dims.as_slice()))
    };

    let mut convs: Vec<(String, Tensor, Tensor)> = Vec::new();
    for node in graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Conv"))
    {
        let node_name = node.name.as_deref().unwrap_or("");
        let Some(unit) = unit_name(node_name) else {
            continue;
        };
        if node.input.len() < 3 {
            bail!("Conv node {node_name} has no bias; expected a model with BatchNorm folded in");
        }
        convs.push((unit, weight(&node.input[1])?, weight(&node.input[2])?));
    }
    // Our exports name the backbone; the published model does not (its stem tells the width).
    let stem_width = || -> anyhow::Result<BackboneKind> {
        let first = convs
            .iter()
            .find(|(n, _, _)| n == "fx.stage1.0")
            .with_context(|| {
                format!(
                    "no backbone stem convolution (fx.stage1.0) and no {} metadata: not a \
                     RetinaFace model this trainer knows",
                    metadata::BACKBONE_KEY
                )
            })?;
        Ok(match first.1.size()[0] {
            8 => BackboneKind::MobileNet025,
            16 => BackboneKind::MobileNet05,
            32 => BackboneKind::MobileNet10,
            c => bail!("stem convolution has {c} output channels; no MobileNet width matches"),
        })
    };
    let config = ModelConfig {
        folded_batch_norm: true,
        ..metadata::from_metadata(&meta, path, stem_width)?
    };
    let backbone = config.backbone;
    let mut net = RetinaFace::new(config, device)?;
    let mut by_name: HashMap<String, (Tensor, Tensor)> =
        convs.into_iter().map(|(n, w, b)| (n, (w, b))).collect();
    for unit in net.units_mut() {
        let (w, b) = by_name.remove(&unit.name).with_context(|| {
            format!(
                "{}: no convolution for network unit {}",
                path.display(),
                unit.name
            )
        })?;
        unit.load_folded(&w.to_device(device), &b.to_device(device))
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(extra) = by_name.keys().next() {
        bail!(
            "{}: convolution {extra} has no place in the {} network",
            path.display(),
            backbone.name()
        );
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::unit_name;

    #[test]
    fn pytorch_module_paths_map_to_units() {
        let cases = [
            ("/fx/stage1/stage1.0/stage1.0.0/Conv", Some("fx.stage1.0")),
            (
                "/fx/stage2/stage2.3/stage2.3.1/stage2.3.1.0/Conv",
                Some("fx.stage2.3.1"),
            ),
            ("/fpn/output1/output1.0/Conv", Some("fpn.output1")),
            ("/fpn/merge2/merge2.0/Conv", Some("fpn.merge2")),
            ("/ssh3/conv7x7_3/conv7x7_3.0/Conv", Some("ssh3.conv7x7_3")),
            ("/ssh1/conv5X5_1/conv5X5_1.0_1/Conv", None),
            (
                "/landmark_head/landmark_head.2/Conv",
                Some("landmark_head.2"),
            ),
            ("fpn.merge1/Conv", Some("fpn.merge1")),
            ("/fx/stage1/Relu", None),
        ];
        for (node, unit) in cases {
            assert_eq!(unit_name(node).as_deref(), unit, "{node}");
        }
    }
}
