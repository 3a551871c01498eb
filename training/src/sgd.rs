//! SGD with momentum and weight decay, PyTorch semantics (`torch.optim.SGD`, dampening 0):
//! `buf = momentum·buf + (grad + wd·p)` (the first step starts with `buf = grad + wd·p`),
//! `p -= lr·buf`. Written out (instead of tch's opaque optimizer) so the momentum buffers can be
//! checkpointed and a resumed run continues exactly.

use std::collections::BTreeMap;

use tch::{Tensor, nn::VarStore};

pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Momentum buffer per trainable variable name.
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Self {
            momentum,
            weight_decay,
            buffers: BTreeMap::new(),
        }
    }

    /// Trainable variables by name (the BatchNorm running statistics are not trainable).
    fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    pub fn zero_grad(&self, vs: &VarStore) {
        for (_, mut v) in Self::trainable(vs) {
            v.zero_grad();
        }
    }

    /// One update with learning rate `lr`; variables without a gradient are left alone.
    pub fn step(&mut self, vs: &VarStore, lr: f64) {
        tch::no_grad(|| {
            for (name, mut p) in Self::trainable(vs) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let d = if self.weight_decay != 0.0 {
                    &grad + &p * self.weight_decay
                } else {
                    grad
                };
                let buf = match self.buffers.remove(&name) {
                    Some(buf) => buf * self.momentum + d,
                    None => d.copy(),
                };
                let _ = p.f_sub_(&(&buf * lr)).expect("in-place update");
                self.buffers.insert(name, buf);
            }
        });
    }

    /// Momentum buffers, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect()
    }

    pub fn load_state(
        &mut self,
        state: Vec<(String, Tensor)>,
        vs: &VarStore,
    ) -> anyhow::Result<()> {
        let device = vs.device();
        let known: BTreeMap<String, Vec<i64>> = Self::trainable(vs)
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        self.buffers.clear();
        for (name, t) in state {
            match known.get(&name) {
                Some(size) if *size == t.size() => {
                    self.buffers.insert(name, t.to_device(device));
                }
                _ => anyhow::bail!(
                    "optimizer state has a buffer '{name}' that does not fit the network"
                ),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, nn};

    #[test]
    fn matches_hand_computed_momentum_steps() {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root().var("p", &[1], nn::Init::Const(1.0));
        let mut sgd = Sgd::new(0.9, 0.1);
        // loss = 2p → grad 2; d = 2 + 0.1·p.
        for _ in 0..2 {
            sgd.zero_grad(&vs);
            (&p * 2.0).sum(Kind::Float).backward();
            sgd.step(&vs, 0.5);
        }
        // step 1: d = 2.1, buf = 2.1, p = 1 − 1.05 = −0.05
        // step 2: d = 2 − 0.005 = 1.995, buf = 0.9·2.1 + 1.995 = 3.885, p = −0.05 − 1.9425
        let got = p.double_value(&[0]);
        assert!((got - (-1.9925)).abs() < 1e-6, "{got}");
    }
}
