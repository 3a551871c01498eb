//! Starting a network from another of a different layout (`init_partial`): every convolution
//! unit that exists in both, with the same shapes, is copied; pyramid units are matched by the
//! stride of their level, not their index, so that adding a stride-4 level below the published
//! three (which renumbers `fpn.output1` → `fpn.output2`, `ssh1` → `ssh2`, `class_head.0` →
//! `class_head.1`, …) keeps every trained level where it was.

use std::collections::HashMap;

use tch::Tensor;

use super::{ConvUnit, RetinaFace};

/// What [`copy_matching`] did.
#[derive(Debug, Default)]
pub struct GrowReport {
    /// Units copied.
    pub copied: usize,
    /// Units of the target that kept their fresh weights.
    pub fresh: Vec<String>,
    /// Units of the source with no place (or another shape) in the target.
    pub unused: Vec<String>,
}

/// The level-independent name of a pyramid unit: (`kind`, level, rest) for `fpn.output<k>`,
/// `fpn.merge<k>`, `fpn.reduce<k>`, `ssh<k>.…` (1-based) and `<class|bbox|landmark>_head.<i>`
/// and SRN's `srn1_<class|bbox>.<i>` (0-based); `None` for the backbone, `fpn.extra` and shared
/// heads.
fn level_of(name: &str) -> Option<(String, usize, String)> {
    let (first, rest) = name.split_once('.').unwrap_or((name, ""));
    if let Some(k) = first.strip_prefix("ssh") {
        let k: usize = k.parse().ok()?;
        return Some(("ssh".into(), k.checked_sub(1)?, rest.into()));
    }
    if first == "fpn" {
        for kind in ["output", "merge", "reduce"] {
            if let Some(k) = rest
                .strip_prefix(kind)
                .and_then(|k| k.parse::<usize>().ok())
            {
                return Some((format!("fpn.{kind}"), k.checked_sub(1)?, String::new()));
            }
        }
        return None;
    }
    if [
        "class_head",
        "bbox_head",
        "landmark_head",
        "srn1_class",
        "srn1_bbox",
    ]
    .contains(&first)
    {
        let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
        return Some((first.into(), index.parse().ok()?, tail.into()));
    }
    None
}

/// `name` with its level index replaced by `level` (the inverse of [`level_of`]).
fn with_level(kind: &str, level: usize, rest: &str) -> String {
    let base = match kind {
        "ssh" => format!("ssh{}", level + 1),
        k if k.starts_with("fpn.") => format!("{k}{}", level + 1),
        k => format!("{k}.{level}"),
    };
    if rest.is_empty() {
        base
    } else {
        format!("{base}.{rest}")
    }
}

/// Name of `source`'s unit `name` in a network whose levels have strides `to_steps`, or `None`
/// if that stride is not there.
pub fn rename(name: &str, from_steps: &[u32], to_steps: &[u32]) -> Option<String> {
    match level_of(name) {
        None => Some(name.to_string()),
        Some((kind, level, rest)) => {
            let stride = from_steps.get(level)?;
            let to = to_steps.iter().position(|s| s == stride)?;
            Some(with_level(&kind, to, &rest))
        }
    }
}

fn same_shapes(a: &ConvUnit, b: &ConvUnit) -> bool {
    let bn = |u: &ConvUnit| u.bn.as_ref().map(|bn| bn.running_mean.size());
    a.weight.size() == b.weight.size()
        && a.bias.as_ref().map(Tensor::size) == b.bias.as_ref().map(Tensor::size)
        && bn(a) == bn(b)
}

/// Copies into `target` every unit of `source` that has a place in it. Imported (folded)
/// weights stay marked as such, so that training re-estimates BatchNorm statistics first;
/// that re-estimation leaves fresh units computing what they computed.
pub fn copy_matching(source: &RetinaFace, target: &mut RetinaFace) -> anyhow::Result<GrowReport> {
    let from = source.config.contract.priors.steps.clone();
    let to = target.config.contract.priors.steps.clone();
    let mut by_name: HashMap<String, &ConvUnit> = HashMap::new();
    let mut report = GrowReport::default();
    for unit in source.units() {
        match rename(&unit.name, &from, &to) {
            Some(name) => {
                by_name.insert(name, unit);
            }
            None => report.unused.push(unit.name.clone()),
        }
    }
    tch::no_grad(|| {
        for unit in target.units_mut() {
            let Some(src) = by_name.remove(&unit.name).filter(|s| same_shapes(s, unit)) else {
                report.fresh.push(unit.name.clone());
                continue;
            };
            unit.weight.copy_(&src.weight);
            if let (Some(b), Some(s)) = (unit.bias.as_mut(), src.bias.as_ref()) {
                b.copy_(s);
            }
            if let (Some(bn), Some(s)) = (unit.bn.as_mut(), src.bn.as_ref()) {
                bn.running_mean.copy_(&s.running_mean);
                bn.running_var.copy_(&s.running_var);
                if let (Some(w), Some(sw)) = (bn.ws.as_mut(), s.ws.as_ref()) {
                    w.copy_(sw);
                }
                if let (Some(b), Some(sb)) = (bn.bs.as_mut(), s.bs.as_ref()) {
                    b.copy_(sb);
                }
            }
            report.copied += 1;
        }
    });
    report
        .unused
        .extend(by_name.into_values().map(|u| u.name.clone()));
    report.unused.sort();
    anyhow::ensure!(
        report.copied > 0,
        "no weight of the init model fits the configured network (backbone {} vs {}): \
         init_partial keeps what fits, and nothing does",
        source.config.backbone.name(),
        target.config.backbone.name()
    );
    target.config.folded_batch_norm = source.config.folded_batch_norm;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_move_by_stride() {
        let from = [8, 16, 32];
        let to = [4, 8, 16, 32];
        for (a, b) in [
            ("fpn.output1", "fpn.output2"),
            ("fpn.merge2", "fpn.merge3"),
            ("ssh3.conv7x7_3", "ssh4.conv7x7_3"),
            ("class_head.0", "class_head.1"),
            ("landmark_head.2", "landmark_head.3"),
            ("fx.stage1.0", "fx.stage1.0"),
            ("fpn.extra", "fpn.extra"),
            ("srn1_bbox.1", "srn1_bbox.2"),
        ] {
            assert_eq!(rename(a, &from, &to).as_deref(), Some(b), "{a}");
        }
        // Stride 32 is not in a 4–16 pyramid.
        assert_eq!(rename("ssh3.conv3X3", &from, &[4, 8, 16]), None);
        assert_eq!(
            rename("bbox_head.2", &[4, 8, 16, 32], &[16, 32, 64]).as_deref(),
            Some("bbox_head.0")
        );
    }
}
