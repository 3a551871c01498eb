//! The `retinaface-train` command line: one module per subcommand, each with its flags and what
//! it runs; [`main`] parses the command line and dispatches. The libraries they use: `train`,
//! `eval`, `onnx_io`, `infer`, `model`.

pub mod bench;
pub mod describe;
pub mod detect;
pub mod evaluate;
pub mod export;
pub mod import;
pub mod rebatch;
pub mod torchscript;
pub mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "retinaface-train",
    version,
    about = "Train, evaluate and export RetinaFace models for the retinafacedetect GStreamer element"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train on a WIDER FACE-style label.txt (or continue a run with --resume).
    Train(train::TrainArgs),
    /// Training throughput: data loader alone, training step alone, and both (images/s, JSON).
    Bench(bench::BenchArgs),
    /// Average precision of a model: WIDER FACE easy/medium/hard, or every face of a label.txt.
    Eval(evaluate::EvalArgs),
    /// Write a model as ONNX for retinafacedetect (BatchNorm folded, contract in the metadata).
    Export(export::ExportArgs),
    /// Size and cost of a network (JSON): parameters, convolution multiply-accumulates and priors
    /// at a square input; of a model, or of the network a training config builds.
    Describe(describe::DescribeArgs),
    /// Load a RetinaFace ONNX model (e.g. the published mv0.25) into a trainable checkpoint.
    Import(import::ImportArgs),
    /// Detect faces on images: writes `<name>.json` and an annotated `<name>.png` per image.
    Detect(detect::DetectArgs),
    /// Write a model as TorchScript for retinafacedetect backend=torch (contract in <output>.json).
    #[command(name = "torchscript")]
    TorchScript(torchscript::TorchScriptArgs),
    /// Copy an ONNX model made for batch 1 (e.g. fr_feature.onnx) with a symbolic batch
    /// dimension, so the shared engine runs several faces in one run (checked in ONNX Runtime).
    Rebatch(rebatch::RebatchArgs),
}

/// The command line, with the defaults of `train` and `bench` in their help.
pub fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("train", train::with_defaults)
        .mut_subcommand("bench", train::with_defaults)
}

/// Parses the process's arguments and runs the subcommand.
pub fn main() -> anyhow::Result<()> {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => evaluate::run(args),
        Command::Export(args) => export::run(args),
        Command::Describe(args) => describe::run(args),
        Command::Import(args) => import::run(args),
        Command::Detect(args) => detect::run(args),
        Command::TorchScript(args) => torchscript::run(args),
        Command::Rebatch(args) => rebatch::run(args),
    }
}
