//! TorchScript export for the plugin's libtorch backend (`backend=torch`): the network traced
//! into a TorchScript archive `<name>.pt`, with its contract in a side file `<name>.pt.json`
//! ([`retinaface::engine::TorchScriptSideFile`]: the same metadata keys the ONNX export writes).
//!
//! The trace runs the network's own forward description ([`RetinaFace::forward`]) over
//! [`TraceOps`]: [`TensorOps`]'s arithmetic, written so that no size is read from a tensor on
//! the host — a traced graph keeps such a number as a constant and would then only run at the
//! size it was traced at. So the head's reshape names only the per-anchor sizes, and the FPN's
//! upsampling computes its nearest-neighbour indices with tensor operations (as PyTorch's own
//! `upsample_nearest2d` rounds). Every weight is cast to its input's type (`type_as`), so the
//! backend runs the same archive in FP16 by giving it a half input. [`export_torchscript`]
//! reloads what it wrote and checks it against the network at another size and batch before it
//! keeps the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use retinaface::engine::{SideTensor, TORCHSCRIPT_FORMAT, TorchScriptSideFile, torchscript_paths};
use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::model::layers::{Act, ConvUnit, Ops, TensorOps};
use crate::model::srn::{FirstStage, SrnOps};
use crate::model::{HeadKind, Outputs, RetinaFace};
use crate::onnx_io::metadata;

/// Input the network is traced at (batch, height, width): small, and not a multiple of the
/// largest stride, so rounding in the pyramid is part of the trace.
const TRACE_INPUT: [i64; 3] = [1, 72, 104];

/// Inputs the written archive is checked at against the network: another batch and sizes whose
/// feature maps round differently.
const CHECK_INPUTS: [[i64; 3]; 2] = [[2, 96, 160], [1, 136, 200]];

/// Largest difference between the archive's outputs and the network's that the check accepts
/// (the same float operations, in another order at most).
const CHECK_TOLERANCE: f64 = 1e-3;

/// [`Ops`] for tracing; see the module documentation.
pub struct TraceOps {
    inner: TensorOps,
    /// Each unit's folded weight and bias by unit name, computed before the trace starts (the
    /// folding itself must not be traced: it reads trainable parameters).
    folded: HashMap<String, (Tensor, Tensor)>,
}

impl TraceOps {
    /// Ops for tracing `net` (its units folded now).
    pub fn new(net: &RetinaFace) -> Self {
        let folded = net
            .units()
            .into_iter()
            .map(|u| (u.name.clone(), u.folded()))
            .collect();
        Self {
            inner: TensorOps::default(),
            folded,
        }
    }

    /// `0, 1, …, n−1` (f32) for the `n` rows of `t`'s dimension `dim` of an NCHW tensor, and `n`:
    /// computed on the device from `t`, so the trace keeps them dynamic.
    fn positions(t: &Tensor, dim: i64) -> (Tensor, Tensor) {
        let line = t.select(0, 0).select(0, 0);
        let line = if dim == 2 {
            line.select(1, 0)
        } else {
            line.select(0, 0)
        };
        let ones = line.ones_like().to_kind(Kind::Float);
        let count = ones.sum(Kind::Float);
        (ones.cumsum(0, Kind::Float) - 1.0, count)
    }

    /// The source row of each of `like`'s rows along `dim`: `min(⌊i · (in/out)⌋, in − 1)`, as
    /// PyTorch's nearest-neighbour upsampling computes it (its scale in f32).
    fn nearest_rows(x: &Tensor, like: &Tensor, dim: i64) -> Tensor {
        let (out_rows, out_count) = Self::positions(like, dim);
        let (_, in_count) = Self::positions(x, dim);
        let scale = &in_count / out_count;
        (out_rows * scale)
            .floor()
            .minimum(&(in_count - 1.0))
            .to_kind(Kind::Int64)
    }
}

impl Ops for TraceOps {
    type T = Tensor;

    fn conv(&mut self, x: &Tensor, unit: &ConvUnit) -> Tensor {
        let (weight, bias) = &self.folded[&unit.name];
        let pad = unit.padding();
        let y = x.conv2d(
            &weight.type_as(x),
            Some(&bias.type_as(x)),
            [unit.stride, unit.stride],
            [pad, pad],
            [1, 1],
            unit.groups,
        );
        match unit.act {
            Act::None => y,
            Act::Relu => y.relu(),
            Act::Relu6 => y.clamp(0.0, 6.0),
            Act::Leaky(slope) => y.maximum(&(&y * slope)),
        }
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        self.inner.add(a, b)
    }

    fn relu(&mut self, x: &Tensor) -> Tensor {
        self.inner.relu(x)
    }

    fn max_pool(&mut self, x: &Tensor, kernel: i64, stride: i64) -> Tensor {
        self.inner.max_pool(x, kernel, stride)
    }

    fn upsample_to(&mut self, x: &Tensor, like: &Tensor) -> Tensor {
        let rows = Self::nearest_rows(x, like, 2);
        let columns = Self::nearest_rows(x, like, 3);
        x.index_select(2, &rows).index_select(3, &columns)
    }

    fn concat_channels(&mut self, xs: &[Tensor]) -> Tensor {
        self.inner.concat_channels(xs)
    }

    fn head(&mut self, x: &Tensor, unit: &ConvUnit, per_anchor: i64) -> Tensor {
        let y = self.conv(x, unit);
        let anchors = unit.out_channels / per_anchor;
        // [N, A·k, H, W] → [N, H·W, A·k] → [N, H·W, A, k] → [N, H·W·A, k]: anchor-major per
        // cell, as `TensorOps::head`, without reading N.
        y.permute([0, 2, 3, 1])
            .flatten(1, 2)
            .unflatten(2, [anchors, per_anchor])
            .flatten(1, 2)
    }

    fn concat_priors(&mut self, xs: &[Tensor]) -> Tensor {
        self.inner.concat_priors(xs)
    }

    fn softmax(&mut self, x: &Tensor) -> Tensor {
        self.inner.softmax(x)
    }

    fn sigmoid_pair(&mut self, x: &Tensor) -> Tensor {
        self.inner.sigmoid_pair(x)
    }
}

impl SrnOps for TraceOps {
    /// Not traced: [`export_torchscript`] refuses SRN heads (their refinement reads sizes on the
    /// host); this only keeps [`RetinaFace::forward`]'s bound.
    fn srn_refine(
        &mut self,
        first: &FirstStage<Tensor>,
        second: &Outputs<Tensor>,
        size_variance: f32,
        min_face: f32,
    ) -> Outputs<Tensor> {
        self.inner
            .srn_refine(first, second, size_variance, min_face)
    }
}

/// The network traced on the CPU: a module whose `forward(input)` returns `loc`, `conf` and
/// `landmarks` of the ONNX export side by side in one `[N, P, 16]` tensor.
pub fn trace(net: &RetinaFace) -> anyhow::Result<CModule> {
    anyhow::ensure!(
        net.config.head != HeadKind::Srn,
        "TorchScript export does not support the SRN head yet (its refinement reads tensor \
         sizes while tracing, so the archive would only run at one input size); export ONNX \
         and use backend=onnxruntime"
    );
    let [n, h, w] = TRACE_INPUT;
    let input = Tensor::zeros([n, 3, h, w], (Kind::Float, Device::Cpu));
    let mut ops = TraceOps::new(net);
    tch::no_grad(|| {
        CModule::create_by_tracing("RetinaFace", "forward", &[input], &mut |xs| {
            let out = net.forward(&mut ops, &xs[0], true);
            // One returned value (see `TorchScriptSideFile::packed_outputs`); `cat` promotes a
            // half `loc` to the f32 of the softmaxed `conf` in FP16 runs.
            vec![Tensor::cat(&[out.loc, out.conf, out.landmarks], -1)]
        })
    })
    .context("tracing the network")
}

/// The side file of `net`'s export: contract names, shapes and the metadata the ONNX export
/// writes.
pub fn side_file(net: &RetinaFace) -> TorchScriptSideFile {
    let c = &net.config.contract;
    let tensor = |name: &str, shape: &[i64]| SideTensor {
        name: name.to_string(),
        shape: shape.to_vec(),
    };
    TorchScriptSideFile {
        format: TORCHSCRIPT_FORMAT.into(),
        inputs: vec![tensor(&c.input, &[-1, 3, -1, -1])],
        outputs: vec![
            tensor(&c.loc, &[-1, -1, 4]),
            tensor(&c.conf, &[-1, -1, 2]),
            tensor(&c.landmarks, &[-1, -1, 10]),
        ],
        packed_outputs: true,
        metadata: metadata::to_metadata(&net.config)
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Writes `net` (moved to the CPU for the trace) as TorchScript to `path` (an `.onnx` path
/// names the `.pt` beside it) and its side file to `<path>.json`; returns both paths. The
/// archive is reloaded and compared with the network at [`CHECK_INPUTS`] first, so a file that
/// would only run at one size is never left behind.
pub fn export_torchscript(net: &RetinaFace, path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (archive, side) = torchscript_paths(path);
    let module = trace(net)?;
    let tmp = archive.with_extension("pt.partial");
    let checked = module
        .save(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| check_against(net, &tmp));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &archive).with_context(|| format!("writing {}", archive.display()))?;
    let json = serde_json::to_vec_pretty(&side_file(net))?;
    crate::fsutil::write_atomic(&side, &json)
        .with_context(|| format!("writing {}", side.display()))?;
    Ok((archive, side))
}

/// Runs the archive at `path` and the network on the same random inputs of [`CHECK_INPUTS`];
/// fails naming the output and size that differ.
pub fn check_against(net: &RetinaFace, path: &Path) -> anyhow::Result<()> {
    let module = CModule::load_on_device(path, Device::Cpu)
        .with_context(|| format!("reloading {}", path.display()))?;
    let net_device = net.vs.device();
    tch::manual_seed(22);
    for [n, h, w] in CHECK_INPUTS {
        let input = Tensor::randn([n, 3, h, w], (Kind::Float, Device::Cpu)) * 50.0;
        let traced = tch::no_grad(|| module.forward_is(&[IValue::Tensor(input.shallow_clone())]))
            .with_context(|| format!("running the TorchScript export at {n}x3x{h}x{w}"))?;
        let IValue::Tensor(packed) = traced else {
            anyhow::bail!("the TorchScript export returned no tensor");
        };
        let parts = packed.split_with_sizes([4, 2, 10], -1);
        let expected = net.infer(&input.to_device(net_device));
        for (part, (name, want)) in parts.into_iter().zip([
            ("loc", &expected.loc),
            ("conf", &expected.conf),
            ("landmarks", &expected.landmarks),
        ]) {
            let got = part;
            let want = want.to_device(Device::Cpu);
            anyhow::ensure!(
                got.size() == want.size(),
                "the TorchScript export gives '{name}' of shape {:?} at input {n}x3x{h}x{w}, \
                 the network {:?}",
                got.size(),
                want.size()
            );
            let diff = (&got - &want).abs().max().double_value(&[]);
            anyhow::ensure!(
                diff <= CHECK_TOLERANCE,
                "the TorchScript export's '{name}' differs from the network's by {diff} at input \
                 {n}x3x{h}x{w}"
            );
        }
    }
    Ok(())
}
