//! [`ModelConfig`] ↔ the metadata properties of a RetinaFace ONNX model: the model contract under
//! the keys the plugin reads ([`retinaface::ModelContract::to_metadata`]), and the trainer-only
//! keys below, from which `import` rebuilds the network `export` wrote. The keys are declared here
//! and nowhere else.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use clap::ValueEnum;
use retinaface::ModelContract;

use crate::model::{BackboneKind, HeadKind, ModelConfig};

/// Metadata key (trainer-only) naming the backbone. The published model has none: `import` tells
/// its MobileNet width from the stem convolution.
pub const BACKBONE_KEY: &str = "retinaface.backbone";

/// Metadata key (trainer-only) naming the head; absent: the SSH head.
pub const HEAD_KEY: &str = "retinaface.head";

/// Metadata key (trainer-only) recording a non-default FPN/SSH width
/// ([`ModelConfig::neck_channels`]).
pub const NECK_CHANNELS_KEY: &str = "retinaface.neck_channels";

/// Metadata key (trainer-only) recording per-level widths ([`ModelConfig::level_channels`]),
/// comma separated.
pub const LEVEL_CHANNELS_KEY: &str = "retinaface.level_channels";

/// Metadata key (trainer-only) recording a non-zero [`ModelConfig::ssh_min_stride`].
pub const SSH_MIN_STRIDE_KEY: &str = "retinaface.ssh_min_stride";

/// The metadata properties of a model built as `config`: its contract, then the backbone and the
/// head, then the widths and the SSH stride where they differ from the defaults.
pub fn to_metadata(config: &ModelConfig) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = config
        .contract
        .to_metadata()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut push = |key: &str, value: String| entries.push((key.to_string(), value));
    push(BACKBONE_KEY, config.backbone.name().into());
    push(HEAD_KEY, config.head.name().into());
    if let Some(width) = config.neck_channels {
        push(NECK_CHANNELS_KEY, width.to_string());
    }
    if let Some(widths) = &config.level_channels {
        let list: Vec<String> = widths.iter().map(i64::to_string).collect();
        push(LEVEL_CHANNELS_KEY, list.join(","));
    }
    if config.ssh_min_stride != 0 {
        push(SSH_MIN_STRIDE_KEY, config.ssh_min_stride.to_string());
    }
    entries
}

/// The network the metadata `meta` of the model file `source` describes (`folded_batch_norm`
/// off). Without a (known) [`BACKBONE_KEY`] the backbone is `backbone_without_key()`'s.
pub fn from_metadata(
    meta: &HashMap<&str, &str>,
    source: &Path,
    backbone_without_key: impl FnOnce() -> anyhow::Result<BackboneKind>,
) -> anyhow::Result<ModelConfig> {
    let contract = ModelContract::from_metadata(|k| meta.get(k).map(|v| v.to_string()))?;
    let named = meta
        .get(BACKBONE_KEY)
        .and_then(|name| BackboneKind::from_str(name, false).ok());
    let backbone = match named {
        Some(kind) => kind,
        None => backbone_without_key()?,
    };
    let invalid = |key: &str, v: &str, what: &str| {
        format!("{}: metadata {key}='{v}' is not {what}", source.display())
    };
    let neck_channels = match meta.get(NECK_CHANNELS_KEY) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<i64>()
                .with_context(|| invalid(NECK_CHANNELS_KEY, v, "a channel count"))?,
        ),
    };
    let level_channels = match meta.get(LEVEL_CHANNELS_KEY) {
        None => None,
        Some(v) => Some(
            v.split(',')
                .map(|w| w.trim().parse::<i64>())
                .collect::<Result<Vec<i64>, _>>()
                .with_context(|| invalid(LEVEL_CHANNELS_KEY, v, "a list of channel counts"))?,
        ),
    };
    let ssh_min_stride = match meta.get(SSH_MIN_STRIDE_KEY) {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .with_context(|| invalid(SSH_MIN_STRIDE_KEY, v, "a stride"))?,
    };
    let head = match meta.get(HEAD_KEY) {
        None => HeadKind::Ssh,
        Some(v) => HeadKind::from_str(v, false).map_err(|_| {
            anyhow::anyhow!("{}: unknown head '{v}' in the metadata", source.display())
        })?,
    };
    Ok(ModelConfig {
        backbone,
        contract,
        folded_batch_norm: false,
        neck_channels,
        level_channels,
        ssh_min_stride,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(config: &ModelConfig) -> anyhow::Result<ModelConfig> {
        let entries = to_metadata(config);
        let meta: HashMap<&str, &str> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        from_metadata(&meta, Path::new("m.onnx"), || {
            anyhow::bail!("the backbone is in the metadata")
        })
    }

    #[test]
    fn every_field_survives_the_metadata() {
        let mut config = ModelConfig {
            backbone: BackboneKind::ResNet18,
            neck_channels: Some(32),
            level_channels: Some(vec![16, 32, 32, 32]),
            ssh_min_stride: 8,
            head: HeadKind::Srn,
            ..Default::default()
        };
        config.contract.priors.steps = vec![4, 8, 16, 32];
        config.contract.priors.min_sizes = vec![vec![10.0], vec![16.0], vec![64.0], vec![256.0]];
        assert_eq!(read_back(&config).unwrap(), config);
        let reference = ModelConfig::default();
        assert_eq!(read_back(&reference).unwrap(), reference);
        let keys: Vec<String> = to_metadata(&reference)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for key in [NECK_CHANNELS_KEY, LEVEL_CHANNELS_KEY, SSH_MIN_STRIDE_KEY] {
            assert!(!keys.iter().any(|k| k == key), "{key} written for defaults");
        }
    }

    #[test]
    fn without_the_backbone_key_the_caller_tells_it_and_bad_values_are_named() {
        let entries = to_metadata(&ModelConfig::default());
        let mut meta: HashMap<&str, &str> = entries
            .iter()
            .filter(|(k, _)| k != BACKBONE_KEY)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = Path::new("published.onnx");
        let config = from_metadata(&meta, path, || Ok(BackboneKind::MobileNet05)).unwrap();
        assert_eq!(config.backbone, BackboneKind::MobileNet05);
        meta.insert(LEVEL_CHANNELS_KEY, "16,x");
        let err = from_metadata(&meta, path, || Ok(BackboneKind::MobileNet05)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "published.onnx: metadata retinaface.level_channels='16,x' is not a list of channel \
             counts"
        );
    }
}
