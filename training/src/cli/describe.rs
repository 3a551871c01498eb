//! `retinaface-train describe`: size and cost of a network as JSON.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use tch::Device;

use crate::config::TrainConfig;
use crate::model::{RetinaFace, cost};
use crate::onnx_io::load_any;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("network").required(true)))]
pub struct DescribeArgs {
    /// A model (.safetensors or .onnx); give it or --config
    #[arg(long, group = "network")]
    pub model: Option<PathBuf>,
    /// A training config (TOML): the network it builds from scratch; give it or --model
    #[arg(long, group = "network")]
    pub config: Option<PathBuf>,
    /// Side of the square input, in pixels
    #[arg(long, default_value_t = 640)]
    pub size: i64,
}

/// Runs `describe`: parameters, convolution multiply-accumulates and priors at a square input.
pub fn run(args: DescribeArgs) -> anyhow::Result<()> {
    let size = args.size;
    anyhow::ensure!(
        (32..=8192).contains(&size),
        "--size {size}: give a side between 32 and 8192 pixels"
    );
    let net = match (args.model, args.config) {
        (Some(model), _) => load_any(&model, Device::Cpu)?,
        (None, Some(config)) => RetinaFace::new(
            TrainConfig::from_toml_file(&config)?.model_config(),
            Device::Cpu,
        )?,
        (None, None) => unreachable!("clap requires one"),
    };
    let c = &net.config;
    let priors = retinaface::priors::count(&c.contract.priors, size as usize, size as usize);
    let description = serde_json::json!({
        "backbone": c.backbone.name(),
        "head": c.head.name(),
        "steps": c.contract.priors.steps,
        "level_channels": c.level_widths(),
        "parameters": net.parameter_count(),
        "macs": cost::macs(&net, size, size),
        "priors": priors,
        "size": size,
    });
    println!("{description}");
    Ok(())
}
