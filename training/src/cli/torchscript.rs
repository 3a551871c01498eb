//! `retinaface-train torchscript`: a model (e.g. the published ONNX mv0.25, through `import`)
//! as TorchScript for the plugin's libtorch backend (`backend=torch`).

use std::path::PathBuf;

use clap::Args;
use tch::Device;

use crate::onnx_io::load_any;
use crate::torchscript::export_torchscript;

#[derive(Args, Debug)]
pub struct TorchScriptArgs {
    /// Trained model (.safetensors with its .json beside it) or an ONNX model
    #[arg(long)]
    pub model: PathBuf,
    /// Output TorchScript file (.pt; an .onnx name writes the .pt beside it); its contract goes
    /// to <output>.json
    #[arg(long)]
    pub output: PathBuf,
}

/// Runs `torchscript`.
pub fn run(args: TorchScriptArgs) -> anyhow::Result<()> {
    let net = load_any(&args.model, Device::Cpu)?;
    let (archive, side) = export_torchscript(&net, &args.output)?;
    println!(
        "exported {} ({} backbone) to {} (contract in {}), checked against the network at \
         other sizes and batches",
        args.model.display(),
        net.config.backbone.name(),
        archive.display(),
        side.display()
    );
    Ok(())
}
