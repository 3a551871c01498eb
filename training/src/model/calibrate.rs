//! Re-estimating BatchNorm statistics of an imported (folded) model without changing what it
//! computes, so that fine-tuning sees the same parametrisation as the original training.
//!
//! After import a unit computes `y = s·z + b` with `z = conv(x; w)` (`w` unit norm per channel,
//! `s` = γ, placeholder statistics). Given the measured per-channel mean μ and variance σ² of `z`
//! on real inputs, the unit is rewritten as a genuine BatchNorm: running mean μ, running variance
//! σ², γ' = s·√(σ²+ε), β' = b + s·μ, which is the same function in inference mode — but now the
//! gradients of γ and β are those of normalised activations (the stem sees raw pixels of ~±100,
//! and an unnormalised γ there diverges at the first SGD step).

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::RetinaFace;
use super::layers::{ConvUnit, Observed};

/// Per-channel sums of `z` and `z²`, and the element count per channel.
#[derive(Default)]
struct Moments {
    sum: Option<Tensor>,
    sum_sq: Option<Tensor>,
    count: f64,
}

/// Adds the pre-BatchNorm moments of `unit` on input `x` to `moments`.
fn record(moments: &mut HashMap<String, Moments>, x: &Tensor, unit: &ConvUnit) {
    if unit.bn.is_none() {
        return;
    }
    let pad = unit.padding();
    let z = x.conv2d(
        &unit.weight,
        None::<Tensor>,
        [unit.stride, unit.stride],
        [pad, pad],
        [1, 1],
        unit.groups,
    );
    let dims = [0i64, 2, 3];
    let m = moments.entry(unit.name.clone()).or_default();
    let s = z.sum_dim_intlist(dims.as_slice(), false, Kind::Double);
    let sq = (&z * &z).sum_dim_intlist(dims.as_slice(), false, Kind::Double);
    m.sum = Some(m.sum.take().map_or(s.shallow_clone(), |a| a + &s));
    m.sum_sq = Some(m.sum_sq.take().map_or(sq.shallow_clone(), |a| a + &sq));
    m.count += (z.numel() / z.size()[1] as usize) as f64;
}

/// Measures the statistics on `inputs` (NCHW network inputs) and rewrites every BatchNorm as
/// described in the module docs. Clears `folded_batch_norm`. Does nothing for models whose
/// statistics are real already.
pub fn calibrate_batch_norm(
    net: &mut RetinaFace,
    inputs: impl IntoIterator<Item = Tensor>,
) -> anyhow::Result<()> {
    if !net.config.folded_batch_norm {
        return Ok(());
    }
    let mut moments = HashMap::new();
    let mut ops =
        Observed::new(|x: &Tensor, unit: &ConvUnit, _: &Tensor| record(&mut moments, x, unit));
    let mut seen = 0;
    tch::no_grad(|| {
        for x in inputs {
            net.forward(&mut ops, &x, false);
            seen += 1;
        }
    });
    anyhow::ensure!(seen > 0, "no images to estimate BatchNorm statistics from");
    tch::no_grad(|| {
        for unit in net.units_mut() {
            let Some(bn) = unit.bn.as_mut() else { continue };
            let m = &moments[&unit.name];
            let (Some(sum), Some(sum_sq)) = (&m.sum, &m.sum_sq) else {
                continue;
            };
            let mean = sum / m.count;
            let var = (sum_sq / m.count - &mean * &mean).clamp_min(0.0);
            let (mean, var) = (mean.to_kind(Kind::Float), var.to_kind(Kind::Float));
            let (Some(gamma), Some(beta)) = (bn.ws.as_mut(), bn.bs.as_mut()) else {
                continue;
            };
            // y = s·z + b  ==  γ'(z − μ)/√(σ²+ε) + β'  with γ' = s·√(σ²+ε), β' = b + s·μ.
            let s = gamma.detach().copy();
            beta.copy_(&(beta.detach() + &s * &mean));
            gamma.copy_(&(&s * (&var + super::layers::BN_EPS).sqrt()));
            bn.running_mean.copy_(&mean);
            bn.running_var.copy_(&var);
        }
    });
    net.config.folded_batch_norm = false;
    Ok(())
}
