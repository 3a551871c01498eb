//! `retinaface-train`: train, evaluate, import and export RetinaFace models for the GStreamer
//! plugin. See the "Training" section of the top-level README.md; the subcommands are in
//! `retinaface_training::cli`.

fn main() -> anyhow::Result<()> {
    retinaface_training::cli::main()
}
