//! SGD with momentum and weight decay, PyTorch semantics (`torch.optim.SGD`, dampening 0):
//! `buf = momentum·buf + (grad + wd·p)` (the first step starts with `buf = grad + wd·p`),
//! `p -= lr·buf`. Written out (instead of tch's opaque optimizer) so the momentum buffers can be
//! checkpointed and a resumed run continues exactly.
//!
//! All trainable variables are moved into one contiguous buffer (each variable becomes a view of
//! it) on the first step, so an update is a handful of kernels over the whole network instead of
//! six per variable: on a GPU the small MobileNet step is bound by kernel launches, not maths.

use std::collections::BTreeMap;

use tch::{Kind, Tensor, nn::VarStore};

/// The trainable variables as views of one flat buffer.
struct Flat {
    /// Name, offset and length of each variable in `data`, sorted by name.
    layout: Vec<(String, i64, i64)>,
    vars: Vec<Tensor>,
    data: Tensor,
    momentum: Option<Tensor>,
}

pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    flat: Option<Flat>,
    /// Momentum buffers loaded from a checkpoint before the first step.
    pending: BTreeMap<String, Tensor>,
    /// Variables whose names start with one of these are not updated (a frozen backbone).
    frozen: Vec<String>,
}

impl Sgd {
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Self {
            momentum,
            weight_decay,
            flat: None,
            pending: BTreeMap::new(),
            frozen: Vec::new(),
        }
    }

    /// Leaves the variables whose names start with one of `prefixes` alone (set before the
    /// first step or state load).
    pub fn freeze(mut self, prefixes: &[&str]) -> Self {
        self.frozen = prefixes.iter().map(|p| p.to_string()).collect();
        self
    }

    /// The variables this optimizer updates, by name (BatchNorm running statistics are not
    /// trainable, frozen ones are left out).
    fn trainable(&self, vs: &VarStore) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(name, t)| {
                t.requires_grad() && !self.frozen.iter().any(|p| name.starts_with(p.as_str()))
            })
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    fn flat(&mut self, vs: &VarStore) -> &mut Flat {
        if self.flat.is_none() {
            let vars = self.trainable(vs);
            let mut layout = Vec::with_capacity(vars.len());
            let mut offset = 0;
            for (name, t) in &vars {
                let n = t.numel() as i64;
                layout.push((name.clone(), offset, n));
                offset += n;
            }
            let data = tch::no_grad(|| {
                Tensor::cat(
                    &vars
                        .iter()
                        .map(|(_, t)| t.detach().view([-1]))
                        .collect::<Vec<_>>(),
                    0,
                )
            });
            let mut tensors = Vec::with_capacity(vars.len());
            for ((_, mut t), (_, off, n)) in vars.into_iter().zip(&layout) {
                let size = t.size();
                t.set_data(&data.narrow(0, *off, *n).view(size.as_slice()));
                tensors.push(t);
            }
            let momentum = (!self.pending.is_empty()).then(|| {
                let parts: Vec<Tensor> = layout
                    .iter()
                    .map(|(name, _, _)| self.pending[name].to_device(data.device()).view([-1]))
                    .collect();
                Tensor::cat(&parts, 0)
            });
            self.pending.clear();
            self.flat = Some(Flat {
                layout,
                vars: tensors,
                data,
                momentum,
            });
        }
        self.flat.as_mut().expect("just built")
    }

    pub fn zero_grad(&self, vs: &VarStore) {
        for (_, mut v) in self.trainable(vs) {
            v.zero_grad();
        }
    }

    /// One update with learning rate `lr`. A variable without a gradient counts as gradient 0.
    pub fn step(&mut self, vs: &VarStore, lr: f64) {
        let (momentum, weight_decay) = (self.momentum, self.weight_decay);
        let flat = self.flat(vs);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = flat
                .vars
                .iter()
                .map(|v| {
                    let g = v.grad();
                    if g.defined() {
                        g.view([-1])
                    } else {
                        v.zeros_like().view([-1])
                    }
                })
                .collect();
            let mut d = Tensor::cat(&grads, 0);
            if weight_decay != 0.0 {
                d += &flat.data * weight_decay;
            }
            let buf = match flat.momentum.take() {
                Some(buf) => buf * momentum + d,
                None => d,
            };
            let _ = flat.data.f_sub_(&(&buf * lr)).expect("in-place update");
            flat.momentum = Some(buf);
        });
    }

    /// Momentum buffers by variable name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match &self.flat {
            Some(Flat {
                layout,
                vars,
                momentum: Some(buf),
                ..
            }) => layout
                .iter()
                .zip(vars)
                .map(|((name, off, n), v)| {
                    (
                        name.clone(),
                        buf.narrow(0, *off, *n).view(v.size().as_slice()),
                    )
                })
                .collect(),
            _ => self
                .pending
                .iter()
                .map(|(k, v)| (k.clone(), v.shallow_clone()))
                .collect(),
        }
    }

    /// Restores momentum buffers saved by [`Sgd::state`] (before the first step).
    pub fn load_state(
        &mut self,
        state: Vec<(String, Tensor)>,
        vs: &VarStore,
    ) -> anyhow::Result<()> {
        let known: BTreeMap<String, Vec<i64>> = self
            .trainable(vs)
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let mut pending = BTreeMap::new();
        for (name, t) in state {
            match known.get(&name) {
                Some(size) if *size == t.size() => {
                    pending.insert(name, t.to_kind(Kind::Float));
                }
                _ => anyhow::bail!(
                    "optimizer state has a buffer '{name}' that does not fit the network"
                ),
            }
        }
        if !pending.is_empty() && pending.len() != known.len() {
            anyhow::bail!(
                "optimizer state has {} momentum buffers for {} trainable variables",
                pending.len(),
                known.len()
            );
        }
        self.flat = None;
        self.pending = pending;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    #[test]
    fn frozen_variables_keep_their_values_and_have_no_state() {
        let vs = VarStore::new(Device::Cpu);
        let body = (vs.root() / "body").var("w", &[1], nn::Init::Const(1.0));
        let head = (vs.root() / "head").var("w", &[1], nn::Init::Const(1.0));
        let mut sgd = Sgd::new(0.9, 0.1).freeze(&["body."]);
        sgd.zero_grad(&vs);
        ((&body * 2.0).sum(Kind::Float) + (&head * 2.0).sum(Kind::Float)).backward();
        sgd.step(&vs, 0.5);
        // Frozen: neither the gradient nor the weight decay moves it.
        assert_eq!(body.double_value(&[0]), 1.0);
        // Trained: d = 2 + 0.1·1 = 2.1, w = 1 − 0.5·2.1 = −0.05.
        assert!((head.double_value(&[0]) - (-0.05)).abs() < 1e-6);
        let names: Vec<_> = sgd.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["head.w"]);
    }

    #[test]
    fn matches_hand_computed_momentum_steps() {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root().var("p", &[1], nn::Init::Const(1.0));
        let q = vs.root().var("q", &[2], nn::Init::Const(0.0));
        let mut sgd = Sgd::new(0.9, 0.1);
        // loss = 2p + (q0 + q1) → grad 2 for p, 1 for q; d = grad + 0.1·value.
        for _ in 0..2 {
            sgd.zero_grad(&vs);
            ((&p * 2.0).sum(Kind::Float) + q.sum(Kind::Float)).backward();
            sgd.step(&vs, 0.5);
        }
        // p, step 1: d = 2.1, buf = 2.1, p = 1 − 1.05 = −0.05
        // p, step 2: d = 2 − 0.005 = 1.995, buf = 0.9·2.1 + 1.995 = 3.885, p = −0.05 − 1.9425
        let got = p.double_value(&[0]);
        assert!((got - (-1.9925)).abs() < 1e-6, "{got}");
        // q, step 1: d = 1, buf = 1, q = −0.5; step 2: d = 1 − 0.05 = 0.95, buf = 1.85, q = −1.425
        assert!((q.double_value(&[1]) - (-1.425)).abs() < 1e-6);
        // The variables are views of the optimizer's buffer now, still trainable and named.
        assert!(p.requires_grad());
        let state = sgd.state();
        assert_eq!(
            state.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["p", "q"]
        );
        assert!((state[0].1.double_value(&[0]) - 3.885).abs() < 1e-6);
    }

    #[test]
    fn restored_state_continues_like_an_uninterrupted_run() {
        let run = |steps: usize, restore_after: Option<usize>| {
            let vs = VarStore::new(Device::Cpu);
            let p = vs.root().var("p", &[3], nn::Init::Const(1.0));
            let mut sgd = Sgd::new(0.9, 5e-4);
            for i in 0..steps {
                if Some(i) == restore_after {
                    let state = sgd.state();
                    sgd = Sgd::new(0.9, 5e-4);
                    sgd.load_state(state.into_iter().map(|(n, t)| (n, t.copy())).collect(), &vs)
                        .unwrap();
                }
                sgd.zero_grad(&vs);
                (&p * &p).sum(Kind::Float).backward();
                sgd.step(&vs, 0.1);
            }
            Vec::<f32>::try_from(p.detach()).unwrap()
        };
        assert_eq!(run(5, None), run(5, Some(2)));
    }
}
