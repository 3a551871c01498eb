//! `retinaface-train rebatch`: a copy of an ONNX model with a fixed batch of 1 (e.g. the face
//! embedding model `fr_feature.onnx`) whose first dimension is symbolic, so that the plugin's
//! shared engine runs several requests in one ONNX Runtime run. The graph rewrite and what it
//! refuses are in [`crate::onnx_io::rebatch`]; before keeping the copy, this command runs both
//! models on the same random inputs in ONNX Runtime (one at a time through the original, all
//! at once through the copy) and removes the copy if they disagree.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use prost::Message;
use rand::{Rng, SeedableRng};
use retinaface::SessionConfig;
use retinaface::engine::{Backend, EngineKey, OrtBackend, Tensor};

use crate::fsutil::write_atomic;
use crate::onnx_io::proto::read_model;
use crate::onnx_io::rebatch::rebatch;

/// Requests the check runs through the copy in one run.
const CHECK_BATCH: usize = 3;

#[derive(Args, Debug)]
pub struct RebatchArgs {
    /// ONNX model with a first dimension of 1 on its inputs and outputs
    #[arg(long)]
    pub model: PathBuf,
    /// Output .onnx file (the same model with a symbolic first dimension, "batch")
    #[arg(long)]
    pub output: PathBuf,
    /// Skip the ONNX Runtime comparison of the copy with the original (needed for a model
    /// whose inputs are not float32 or have other symbolic dimensions)
    #[arg(long)]
    pub no_check: bool,
}

/// Runs `rebatch`.
pub fn run(args: RebatchArgs) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .zip(std::fs::canonicalize(b).ok())
            .is_some_and(|(a, b)| a == b)
    };
    if same(&args.model, &args.output) {
        bail!(
            "--output must not be the model itself ({})",
            args.model.display()
        );
    }
    let mut model = read_model(&args.model)?;
    let done = rebatch(&mut model).with_context(|| {
        format!(
            "{}: cannot give this model a batch dimension",
            args.model.display()
        )
    })?;
    write_atomic(&args.output, &model.encode_to_vec())?;
    if !args.no_check
        && let Err(e) = check(&args.model, &args.output)
    {
        let _ = std::fs::remove_file(&args.output);
        return Err(e.context(format!(
            "{} was rebatched but does not compute what the original does: not written",
            args.output.display()
        )));
    }
    println!(
        "wrote {} from {}: first dimension of {} symbolic ('{}'){}{}",
        args.output.display(),
        args.model.display(),
        done.tensors.join(", "),
        crate::onnx_io::rebatch::BATCH_DIM,
        if done.reshapes.is_empty() {
            String::new()
        } else {
            format!("; Reshape kept the batch: {}", done.reshapes.join(", "))
        },
        if args.no_check {
            "; not checked".to_string()
        } else {
            format!("; checked: {CHECK_BATCH} random inputs in one run give the original's outputs")
        }
    );
    Ok(())
}

/// Runs [`CHECK_BATCH`] random inputs through `original` one at a time and through `copy` in one
/// run; every output must agree.
fn check(original: &Path, copy: &Path) -> anyhow::Result<()> {
    let open = |path: &Path| {
        OrtBackend::open(&EngineKey::new(path, &SessionConfig::default()), &[])
            .with_context(|| format!("loading {} in ONNX Runtime", path.display()))
    };
    let mut one = open(original)?;
    let mut many = open(copy)?;
    if many.max_batch() < CHECK_BATCH {
        bail!("ONNX Runtime does not see a batch dimension in the copy");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut requests = Vec::new();
    for _ in 0..CHECK_BATCH {
        let mut request = Vec::new();
        for input in &one.model().inputs {
            let shape: Vec<usize> = input.shape[1..]
                .iter()
                .map(|d| usize::try_from(*d).ok().filter(|d| *d > 0))
                .collect::<Option<_>>()
                .with_context(|| {
                    format!("cannot check input {input}: only float32 inputs with fixed dimensions after the first (--no-check skips the check)")
                })?;
            if !input.is_f32 {
                bail!("cannot check input {input}: it is not float32 (--no-check skips the check)");
            }
            let mut t = Tensor::new(shape);
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-1.0..1.0));
            request.push(t);
        }
        requests.push(request);
    }
    let batch: Vec<&[Tensor]> = requests.iter().map(Vec::as_slice).collect();
    let together = many.run(&batch).map_err(anyhow::Error::msg)?;
    for (k, request) in requests.iter().enumerate() {
        let alone = one.run(&[request]).map_err(anyhow::Error::msg)?.remove(0);
        for ((a, b), info) in alone.iter().zip(&together[k]).zip(&one.model().outputs) {
            let scale = a.data.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = a
                .data
                .iter()
                .zip(&b.data)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            // `max` skips NaN: a non-finite value of the copy fails on its own.
            let broken = b.data.iter().any(|v| !v.is_finite());
            if a.shape != b.shape || broken || diff > 1e-4 * scale {
                bail!(
                    "output {info}, request {k} of {CHECK_BATCH}: shapes {:?} vs {:?}, max |difference| {diff} (scale {scale})",
                    a.shape,
                    b.shape
                );
            }
        }
    }
    Ok(())
}
