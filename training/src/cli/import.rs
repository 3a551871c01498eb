//! `retinaface-train import`: an ONNX model (e.g. the published mv0.25) as a trainable checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use crate::onnx_io::import::import_onnx;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// RetinaFace ONNX model to import (BatchNorm folded, as published or exported)
    #[arg(long)]
    pub onnx: PathBuf,
    /// Output .safetensors (a .json with the architecture and contract is written beside it)
    #[arg(long)]
    pub output: PathBuf,
}

/// Runs `import`.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let net = import_onnx(&args.onnx, Device::Cpu)?;
    net.save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "imported {} ({}, {} parameters) to {}",
        args.onnx.display(),
        net.config.backbone.name(),
        net.parameter_count(),
        args.output.display()
    );
    Ok(())
}
