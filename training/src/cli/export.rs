//! `retinaface-train export`: a model as ONNX for `retinafacedetect`.

use std::path::PathBuf;

use clap::Args;
use tch::Device;

use crate::onnx_io::export::export_onnx;
use crate::onnx_io::load_any;
use crate::torchscript::export_torchscript;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Trained model (.safetensors with its .json beside it) or an ONNX model
    #[arg(long)]
    pub model: PathBuf,
    /// Output .onnx file
    #[arg(long)]
    pub output: PathBuf,
    /// Also write TorchScript (for backend=torch) beside the ONNX file: <output>.pt and its
    /// contract <output>.pt.json
    #[arg(long)]
    pub torchscript: bool,
}

/// Runs `export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let net = load_any(&args.model, Device::Cpu)?;
    export_onnx(&net, &args.output)?;
    println!(
        "exported {} ({} backbone) to {}",
        args.model.display(),
        net.config.backbone.name(),
        args.output.display()
    );
    if args.torchscript {
        let (archive, side) = export_torchscript(&net, &args.output)?;
        println!(
            "and as TorchScript to {} (contract in {})",
            archive.display(),
            side.display()
        );
    }
    Ok(())
}
