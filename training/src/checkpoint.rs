//! Training checkpoints: weights, optimizer state and position, written so that a run killed at
//! any moment resumes from the last complete checkpoint with nothing lost or repeated.
//!
//! Layout in `<output>/checkpoints/`: `step-<N>.safetensors` (network variables incl. BatchNorm
//! statistics), `step-<N>.optim.safetensors` (momentum buffers) and `last.json`, which names them
//! and is replaced atomically last: until it is, the previous checkpoint stays the valid one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::fsutil::write_atomic;
use crate::model::{ModelConfig, RetinaFace};
use crate::sgd::Sgd;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Optimizer steps done so far.
    pub iteration: usize,
    /// Epoch to continue in and its first batch not yet trained on.
    pub epoch: usize,
    pub batch: usize,
}

#[derive(Serialize, Deserialize)]
struct LastCheckpoint {
    position: Position,
    weights: String,
    optimizer: String,
    model: serde_json::Value,
}

pub fn dir(output: &Path) -> PathBuf {
    output.join("checkpoints")
}

/// Writes a checkpoint at `position` and removes the previous one.
pub fn save(output: &Path, net: &RetinaFace, sgd: &Sgd, position: Position) -> anyhow::Result<()> {
    let dir = dir(output);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("step-{}", position.iteration);
    let weights = format!("{stem}.safetensors");
    let optimizer = format!("{stem}.optim.safetensors");
    let tmp = dir.join(format!("{stem}.tmp.safetensors"));
    net.vs.save(&tmp)?;
    std::fs::rename(&tmp, dir.join(&weights))?;
    let state = sgd.state();
    Tensor::write_safetensors(&state, &tmp)?;
    std::fs::rename(&tmp, dir.join(&optimizer))?;
    let previous = load_index(output).ok();
    let index = LastCheckpoint {
        position,
        weights: weights.clone(),
        optimizer: optimizer.clone(),
        model: net.config.to_json(),
    };
    write_atomic(
        &dir.join("last.json"),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    if let Some(prev) = previous {
        for f in [prev.weights, prev.optimizer] {
            if f != weights && f != optimizer {
                let _ = std::fs::remove_file(dir.join(f));
            }
        }
    }
    Ok(())
}

fn load_index(output: &Path) -> anyhow::Result<LastCheckpoint> {
    let path = dir(output).join("last.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no checkpoint to resume from: {} is missing",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a checkpoint index", path.display()))
}

/// Whether `output` holds a checkpoint.
pub fn exists(output: &Path) -> bool {
    dir(output).join("last.json").is_file()
}

/// Loads the last checkpoint of `output`: the network, the optimizer state and the position.
pub fn load(
    output: &Path,
    device: tch::Device,
    sgd: &mut Sgd,
) -> anyhow::Result<(RetinaFace, Position)> {
    let index = load_index(output)?;
    let config = ModelConfig::from_json(index.model)?;
    let mut net = RetinaFace::new(config, device)?;
    let dir = dir(output);
    net.vs
        .load(dir.join(&index.weights))
        .with_context(|| format!("loading {}", dir.join(&index.weights).display()))?;
    let state = Tensor::read_safetensors(dir.join(&index.optimizer))
        .with_context(|| format!("loading {}", dir.join(&index.optimizer).display()))?;
    sgd.load_state(state, &net.vs)?;
    Ok((net, index.position))
}
