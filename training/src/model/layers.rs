//! The building blocks of the network and the one forward description shared by training
//! (tch tensors) and ONNX export (graph nodes): [`Ops`].
//!
//! Every convolution of RetinaFace is a [`ConvUnit`]: a convolution, optionally followed by a
//! BatchNorm, then an activation. Keeping that as one value lets the exporter fold the BatchNorm
//! into the convolution and the importer unfold published (folded) weights back into it.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Activation after a convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    None,
    Relu,
    /// min(max(x, 0), 6): MobileNetV2's activation.
    Relu6,
    Leaky(f64),
}

impl Act {
    /// The reference uses LeakyReLU(0.1) in narrow (≤ 64 channel) necks, ReLU otherwise.
    pub fn for_width(channels: i64) -> Self {
        if channels <= 64 {
            Act::Leaky(0.1)
        } else {
            Act::Relu
        }
    }
}

/// BatchNorm epsilon of the reference (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// Convolution (+ BatchNorm) + activation, with the geometry the exporter needs.
#[derive(Debug)]
pub struct ConvUnit {
    /// Module path, e.g. `fx.stage1.1.0`, `fpn.output1`, `ssh1.conv3X3`, `class_head.0`; the
    /// variable names in checkpoints and the key that ONNX import matches on.
    pub name: String,
    pub weight: Tensor,
    /// Only for convolutions without BatchNorm (the heads).
    pub bias: Option<Tensor>,
    pub bn: Option<nn::BatchNorm>,
    pub act: Act,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub groups: i64,
}

/// How a [`ConvUnit`] is built.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub kernel: i64,
    pub stride: i64,
    pub groups: i64,
    pub batch_norm: bool,
    pub act: Act,
}

impl ConvSpec {
    pub fn bn(kernel: i64, stride: i64, act: Act) -> Self {
        Self {
            kernel,
            stride,
            groups: 1,
            batch_norm: true,
            act,
        }
    }

    pub fn depthwise(channels: i64, stride: i64, act: Act) -> Self {
        Self {
            kernel: 3,
            stride,
            groups: channels,
            batch_norm: true,
            act,
        }
    }

    /// A plain 1×1 convolution with bias (the class/box/landmark heads).
    pub fn head() -> Self {
        Self {
            kernel: 1,
            stride: 1,
            groups: 1,
            batch_norm: false,
            act: Act::None,
        }
    }
}

impl ConvUnit {
    pub fn new(
        root: &nn::Path,
        name: &str,
        in_channels: i64,
        out_channels: i64,
        spec: ConvSpec,
    ) -> Self {
        let p = name.split('.').fold(root.clone(), |p, part| p.sub(part));
        let fan_in = in_channels / spec.groups * spec.kernel * spec.kernel;
        let weight = p.sub("conv").var(
            "weight",
            &[
                out_channels,
                in_channels / spec.groups,
                spec.kernel,
                spec.kernel,
            ],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        );
        let (bias, bn) = if spec.batch_norm {
            let config = nn::BatchNormConfig {
                eps: BN_EPS,
                momentum: 0.1,
                ws_init: Init::Const(1.0),
                bs_init: Init::Const(0.0),
                ..Default::default()
            };
            (
                None,
                Some(nn::batch_norm2d(p.sub("bn"), out_channels, config)),
            )
        } else {
            // PyTorch's Conv2d bias initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            let bound = 1.0 / (fan_in as f64).sqrt();
            let bias = p.sub("conv").var(
                "bias",
                &[out_channels],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            );
            (Some(bias), None)
        };
        Self {
            name: name.to_string(),
            weight,
            bias,
            bn,
            act: spec.act,
            in_channels,
            out_channels,
            kernel: spec.kernel,
            stride: spec.stride,
            groups: spec.groups,
        }
    }

    pub fn padding(&self) -> i64 {
        self.kernel / 2
    }

    /// Weight and bias of the equivalent single convolution (BatchNorm in inference mode folded
    /// in): `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`.
    pub fn folded(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| match &self.bn {
            None => (
                self.weight.detach().copy(),
                self.bias
                    .as_ref()
                    .map(|b| b.detach().copy())
                    .unwrap_or_else(|| {
                        Tensor::zeros([self.out_channels], (Kind::Float, self.weight.device()))
                    }),
            ),
            Some(bn) => {
                let gamma = bn.ws.as_ref().expect("affine BatchNorm");
                let beta = bn.bs.as_ref().expect("affine BatchNorm");
                let scale = gamma / (&bn.running_var + BN_EPS).sqrt();
                let w = &self.weight * scale.view([-1, 1, 1, 1]);
                let b = beta - &bn.running_mean * &scale;
                (w.detach(), b.detach())
            }
        })
    }

    /// Sets the unit from a folded convolution (weight `w'`, bias `b'`).
    ///
    /// The original BatchNorm statistics are gone, so the unit is re-parametrised: each output
    /// channel's kernel is split into a unit-norm direction (the convolution weight) and its norm
    /// (BatchNorm γ), with mean 0, variance 1 − ε (so √(σ²+ε) = 1) and β = `b'`. In inference
    /// mode this computes exactly `w' * x + b'`. Keeping the folded kernel as the weight instead
    /// would make SGD steps wildly uneven: the stem's folded kernel has a norm of ~0.02 against
    /// inputs of ~100, and its first gradient step alone diverges at lr 1e-3.
    pub fn load_folded(&mut self, weight: &Tensor, bias: &Tensor) -> Result<(), String> {
        if weight.size() != self.weight.size() {
            return Err(format!(
                "{}: weight shape {:?} does not fit the network's {:?}",
                self.name,
                weight.size(),
                self.weight.size()
            ));
        }
        if bias.size() != [self.out_channels] {
            return Err(format!(
                "{}: bias shape {:?} does not fit {} output channels",
                self.name,
                bias.size(),
                self.out_channels
            ));
        }
        tch::no_grad(|| match (&mut self.bn, &mut self.bias) {
            (Some(bn), _) => {
                let norm = weight
                    .flatten(1, -1)
                    .norm_scalaropt_dim(2, [1i64].as_slice(), false)
                    .clamp_min(1e-12);
                self.weight.copy_(&(weight / norm.view([-1, 1, 1, 1])));
                let _ = bn.running_mean.fill_(0.0);
                let _ = bn.running_var.fill_(1.0 - BN_EPS);
                if let Some(g) = bn.ws.as_mut() {
                    g.copy_(&norm);
                }
                if let Some(b) = bn.bs.as_mut() {
                    b.copy_(bias);
                }
            }
            (None, Some(b)) => {
                self.weight.copy_(weight);
                b.copy_(bias);
            }
            (None, None) => self.weight.copy_(weight),
        });
        Ok(())
    }
}

/// The operations the RetinaFace forward pass is written in. Implemented once for tch tensors
/// ([`TensorOps`]) and once for ONNX graph building (`export`), so the exported graph is the
/// trained network by construction.
pub trait Ops {
    type T;
    /// Convolution + BatchNorm + activation.
    fn conv(&mut self, x: &Self::T, unit: &ConvUnit) -> Self::T;
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn relu(&mut self, x: &Self::T) -> Self::T;
    /// Max pooling, `kernel`×`kernel`, padding `kernel / 2` (the ResNet stem).
    fn max_pool(&mut self, x: &Self::T, kernel: i64, stride: i64) -> Self::T;
    /// Nearest-neighbour upsampling of `x` to the spatial size of `like`.
    fn upsample_to(&mut self, x: &Self::T, like: &Self::T) -> Self::T;
    /// Concatenation along the channel axis (NCHW).
    fn concat_channels(&mut self, xs: &[Self::T]) -> Self::T;
    /// Head convolution, then NCHW → `[N, H·W·anchors, per_anchor]` (anchor-major per cell).
    fn head(&mut self, x: &Self::T, unit: &ConvUnit, per_anchor: i64) -> Self::T;
    /// Concatenation of per-level head outputs along the prior axis.
    fn concat_priors(&mut self, xs: &[Self::T]) -> Self::T;
    /// Each level's head (`units[l]` on the `l`-th level), concatenated along the prior axis.
    fn heads<'a>(
        &mut self,
        levels: impl IntoIterator<Item = &'a Self::T>,
        units: &[ConvUnit],
        per_anchor: i64,
    ) -> Self::T
    where
        Self: Sized,
        Self::T: 'a,
    {
        let parts: Vec<Self::T> = levels
            .into_iter()
            .zip(units)
            .map(|(f, u)| self.head(f, u, per_anchor))
            .collect();
        self.concat_priors(&parts)
    }
    /// Softmax over the last axis (class scores).
    fn softmax(&mut self, x: &Self::T) -> Self::T;
    /// One sigmoid logit per prior `[N, P, 1]` → `[N, P, 2]` = `[1 − σ(x), σ(x)]`: the two
    /// softmax columns the model contract (and every plugin build) reads, with the same face
    /// probability.
    fn sigmoid_pair(&mut self, x: &Self::T) -> Self::T;
    /// Runs `f` (the backbone's part of the forward pass). Training ops with a frozen backbone
    /// run it as fixed features: no gradients, BatchNorm on its running statistics. Graph
    /// builders and inference just run it.
    fn backbone_pass<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R
    where
        Self: Sized,
    {
        f(self)
    }
}

/// [`Ops`] on tch tensors.
#[derive(Default)]
pub struct TensorOps {
    /// Dropout-free network: `train` only switches BatchNorm to batch statistics.
    pub train_batch_norm: bool,
    /// See [`Ops::backbone_pass`].
    pub freeze_backbone: bool,
}

impl Ops for TensorOps {
    type T = Tensor;

    fn conv(&mut self, x: &Tensor, unit: &ConvUnit) -> Tensor {
        let pad = unit.padding();
        let y = x.conv2d(
            &unit.weight,
            unit.bias.as_ref(),
            [unit.stride, unit.stride],
            [pad, pad],
            [1, 1],
            unit.groups,
        );
        let y = match &unit.bn {
            Some(bn) => nn::ModuleT::forward_t(bn, &y, self.train_batch_norm),
            None => y,
        };
        match unit.act {
            Act::None => y,
            Act::Relu => y.relu(),
            Act::Relu6 => y.clamp(0.0, 6.0),
            Act::Leaky(slope) => y.maximum(&(&y * slope)),
        }
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a + b
    }

    fn relu(&mut self, x: &Tensor) -> Tensor {
        x.relu()
    }

    fn max_pool(&mut self, x: &Tensor, kernel: i64, stride: i64) -> Tensor {
        x.max_pool2d(
            [kernel, kernel],
            [stride, stride],
            [kernel / 2, kernel / 2],
            [1, 1],
            false,
        )
    }

    fn upsample_to(&mut self, x: &Tensor, like: &Tensor) -> Tensor {
        let s = like.size();
        x.upsample_nearest2d([s[2], s[3]], None, None)
    }

    fn concat_channels(&mut self, xs: &[Tensor]) -> Tensor {
        Tensor::cat(xs, 1)
    }

    fn head(&mut self, x: &Tensor, unit: &ConvUnit, per_anchor: i64) -> Tensor {
        let y = self.conv(x, unit);
        let n = y.size()[0];
        y.permute([0, 2, 3, 1])
            .contiguous()
            .view([n, -1, per_anchor])
    }

    fn concat_priors(&mut self, xs: &[Tensor]) -> Tensor {
        Tensor::cat(xs, 1)
    }

    fn softmax(&mut self, x: &Tensor) -> Tensor {
        x.softmax(-1, Kind::Float)
    }

    fn sigmoid_pair(&mut self, x: &Tensor) -> Tensor {
        let face = x.sigmoid();
        Tensor::cat(&[1.0 - &face, face], -1)
    }

    fn backbone_pass<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        if !self.freeze_backbone {
            return f(self);
        }
        let train = std::mem::replace(&mut self.train_batch_norm, false);
        let out = tch::no_grad(|| f(self));
        self.train_batch_norm = train;
        out
    }
}

/// [`TensorOps`] in inference mode that shows every convolution — its input, unit and output
/// (for heads, the output after the reshape to priors) — to `seen`: how the network is measured
/// (BatchNorm statistics, cost) with the one forward description.
pub struct Observed<F> {
    pub inner: TensorOps,
    pub seen: F,
}

impl<F: FnMut(&Tensor, &ConvUnit, &Tensor)> Observed<F> {
    pub fn new(seen: F) -> Self {
        Self {
            inner: TensorOps::default(),
            seen,
        }
    }
}

impl<F: FnMut(&Tensor, &ConvUnit, &Tensor)> Ops for Observed<F> {
    type T = Tensor;

    fn conv(&mut self, x: &Tensor, unit: &ConvUnit) -> Tensor {
        let y = self.inner.conv(x, unit);
        (self.seen)(x, unit, &y);
        y
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
        self.inner.upsample_to(x, like)
    }
    fn concat_channels(&mut self, xs: &[Tensor]) -> Tensor {
        self.inner.concat_channels(xs)
    }
    fn head(&mut self, x: &Tensor, unit: &ConvUnit, per_anchor: i64) -> Tensor {
        // `inner` runs the head's convolution itself: shown here, with the reshaped output.
        let y = self.inner.head(x, unit, per_anchor);
        (self.seen)(x, unit, &y);
        y
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
