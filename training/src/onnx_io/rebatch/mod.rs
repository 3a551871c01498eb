//! `rebatch`: a copy of a model written for one input at a time (a first dimension of 1, as a
//! PyTorch export traced with one dummy input has it) whose first dimension is symbolic, so
//! that ONNX Runtime runs several inputs in one run: the shared engine batches only a model
//! whose inputs have a symbolic first dimension.
//!
//! Renaming the dimension is not enough where the graph itself has batch 1 written in: the
//! usual case is a Reshape whose shape constant starts with 1 (`x.view(1, -1)`, or
//! `x.view(x.size(0), -1)` with the size folded to 1 at export), which is rewritten to start
//! with 0 ("keep the input's first dimension"). Whether a graph keeps its samples apart cannot
//! be decided for any operator, so every node must be one of the operators below with
//! attributes that leave the first axis alone (a Concat not along axis 0, a Transpose that
//! keeps axis 0 first, a Softmax not over axis 0, a Gemm of the activation by constant
//! weights, ...); a model with any other node is refused with the node named, and nothing is
//! written. Everything else in the file (weights, metadata, opsets) is kept as it is.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};

use crate::onnx::tensor_proto::DataType;
use crate::onnx::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::{ModelProto, NodeProto, TensorProto, ValueInfoProto, type_proto};

#[cfg(test)]
mod tests;

/// Name the symbolic first dimension gets.
pub const BATCH_DIM: &str = "batch";

/// Operators that compute each element from the same position of their inputs (with ONNX
/// broadcasting); their constant operands must not vary along the first axis.
const ELEMENTWISE: &[&str] = &[
    "Abs",
    "Add",
    "Cast",
    "Ceil",
    "Clip",
    "Div",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "Max",
    "Min",
    "Mul",
    "Neg",
    "Pow",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Selu",
    "Sigmoid",
    "Softplus",
    "Sqrt",
    "Sub",
    "Sum",
    "Tanh",
];

/// Operators that work on each sample of their first input on its own, with constant weights
/// as their other inputs, and keep its rank.
const PER_SAMPLE: &[&str] = &[
    "AveragePool",
    "BatchNormalization",
    "Conv",
    "ConvTranspose",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "InstanceNormalization",
    "LpPool",
    "LRN",
    "MaxPool",
];

/// Reductions, accepted when their axes leave axis 0 alone.
const REDUCE: &[&str] = &[
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
];

/// What [`rebatch`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebatched {
    /// Graph inputs and outputs whose first dimension became [`BATCH_DIM`].
    pub tensors: Vec<String>,
    /// Reshape nodes whose shape now starts with 0 instead of 1.
    pub reshapes: Vec<String>,
}

/// Gives `model`'s graph a symbolic first dimension ([`BATCH_DIM`]) in place; refuses (and
/// leaves `model` unchanged) a model it cannot show to keep its samples apart.
pub fn rebatch(model: &mut ModelProto) -> anyhow::Result<Rebatched> {
    let plan = plan(model)?;
    let graph = model.graph.as_mut().expect("plan checked the graph");
    for t in graph.initializer.iter_mut() {
        if plan.shapes.contains(t.name.as_deref().unwrap_or("")) {
            set_first_to_zero(t);
        }
    }
    for node in graph.node.iter_mut() {
        if node.op_type.as_deref() == Some("Constant")
            && node.output.first().is_some_and(|o| plan.shapes.contains(o))
        {
            let value = node
                .attribute
                .iter_mut()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_mut())
                .expect("plan read this constant");
            set_first_to_zero(value);
        }
    }
    let mut tensors = Vec::new();
    for v in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        if plan.batched.contains_key(v.name.as_deref().unwrap_or("")) {
            *first_dim(v).expect("plan checked the shape") = Dimension {
                value: Some(dimension::Value::DimParam(BATCH_DIM.into())),
                denotation: None,
            };
            tensors.push(v.name.clone().unwrap_or_default());
        }
    }
    // Shapes recorded for intermediate tensors must not contradict the new batch dimension.
    for v in graph.value_info.iter_mut() {
        if plan.batched.contains_key(v.name.as_deref().unwrap_or(""))
            && let Some(d) = first_dim(v)
            && d.value == Some(dimension::Value::DimValue(1))
        {
            d.value = Some(dimension::Value::DimParam(BATCH_DIM.into()));
        }
    }
    Ok(Rebatched {
        tensors,
        reshapes: plan.reshapes,
    })
}

/// What the checks found: the tensors computed from the inputs (with their rank), the shape
/// constants to rewrite and the Reshape nodes that use them.
struct Plan {
    batched: HashMap<String, usize>,
    shapes: HashSet<String>,
    reshapes: Vec<String>,
}

/// A constant: its dims, and its values when it is int64 (shapes, axes).
struct Constant {
    dims: Vec<i64>,
    ints: Option<Vec<i64>>,
    /// Stored in the file (an initializer or a Constant node), so it can be rewritten.
    stored: bool,
}

fn plan(model: &ModelProto) -> anyhow::Result<Plan> {
    let graph = model.graph.as_ref().context("the model has no graph")?;
    if !model.functions.is_empty() || !model.training_info.is_empty() {
        bail!("the model has local functions or training information: not rebatched");
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    let mut constants: HashMap<String, Constant> = HashMap::new();
    for t in &graph.initializer {
        constants.insert(t.name.clone().unwrap_or_default(), constant(t));
    }
    for s in &graph.sparse_initializer {
        if let Some(values) = &s.values {
            let name = values.name.clone().unwrap_or_default();
            let c = Constant {
                dims: s.dims.clone(),
                ints: None,
                stored: false,
            };
            constants.insert(name, c);
        }
    }
    let mut batched: HashMap<String, usize> = HashMap::new();
    for v in &graph.input {
        let name = v.name.as_deref().unwrap_or("");
        if constants.contains_key(name) {
            continue; // an initializer listed as an input too (IR < 4)
        }
        let dims = dims_of(v);
        match dims.first() {
            Some(Some(dimension::Value::DimValue(1))) => {}
            Some(Some(dimension::Value::DimValue(n))) => {
                bail!("input '{name}' has a first dimension of {n}, not 1: not rebatched")
            }
            Some(_) => bail!(
                "input '{name}' already has a symbolic first dimension: the model runs batches as it is"
            ),
            None => bail!("input '{name}' has no shape: cannot tell its batch dimension"),
        }
        batched.insert(name.to_string(), dims.len());
    }
    if batched.is_empty() {
        bail!("the model has no input");
    }
    let mut shape_uses: HashMap<String, usize> = HashMap::new();
    let mut plan = Plan {
        batched,
        shapes: HashSet::new(),
        reshapes: Vec::new(),
    };
    for (i, node) in graph.node.iter().enumerate() {
        let op = node.op_type.as_deref().unwrap_or("");
        let label = format!(
            "node '{}' ({op})",
            node.name.clone().unwrap_or_else(|| format!("#{i}"))
        );
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            bail!(
                "{label} is of operator domain '{}': not rebatched",
                node.domain.as_deref().unwrap_or("")
            );
        }
        let ins: Vec<&str> = node.input.iter().map(String::as_str).collect();
        let is_batched = |name: &str| plan.batched.contains_key(name);
        if !ins.iter().any(|n| is_batched(n)) {
            if op == "Constant"
                && let Some(out) = node.output.first()
                && let Some(t) = node
                    .attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("value"))
                    .and_then(|a| a.t.as_ref())
            {
                constants.insert(out.clone(), constant(t));
                continue;
            }
            // PyTorch writes an Identity of a weight shared by two layers.
            if op == "Identity"
                && let (Some(out), Some(c)) = (
                    node.output.first(),
                    ins.first().and_then(|n| constants.get(*n)),
                )
            {
                let copy = Constant {
                    dims: c.dims.clone(),
                    ints: c.ints.clone(),
                    stored: false,
                };
                constants.insert(out.clone(), copy);
                continue;
            }
            bail!(
                "{label} computes on constants only (only Constant and Identity nodes are understood there): not rebatched"
            );
        }
        let outputs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        if outputs.len() != 1 && op != "Dropout" {
            bail!(
                "{label} has {} outputs: only single-output nodes are understood",
                outputs.len()
            );
        }
        // Rank of the first input, which every operator below takes as its activation.
        let first = plan.batched.get(ins[0]).copied();
        let constant_dims = |name: &str| -> anyhow::Result<&Constant> {
            constants.get(name).with_context(|| {
                format!("{label}: input '{name}' is neither computed before nor a constant")
            })
        };
        let others_constant = || -> anyhow::Result<()> {
            for name in ins.iter().skip(1).filter(|n| !n.is_empty()) {
                if is_batched(name) {
                    bail!(
                        "{label}: input '{name}' is computed from the model input, not a constant weight"
                    );
                }
                constant_dims(name)?;
            }
            Ok(())
        };
        let Some(rank) = first.or(if ELEMENTWISE.contains(&op) {
            Some(0)
        } else {
            None
        }) else {
            bail!("{label}: its first input is not computed from the model input");
        };
        let axis = |name: &str, default: i64, r: usize| -> usize {
            let a = attr_i(node, name).unwrap_or(default);
            if a < 0 {
                (a + r as i64).max(0) as usize
            } else {
                a as usize
            }
        };
        let rank_out = if ELEMENTWISE.contains(&op) {
            let ranks: Vec<usize> = ins
                .iter()
                .filter_map(|n| plan.batched.get(*n).copied())
                .collect();
            let r = ranks[0];
            if ranks.iter().any(|x| *x != r) {
                bail!("{label} broadcasts tensors of different ranks computed from the input");
            }
            for name in ins.iter().filter(|n| !n.is_empty() && !is_batched(n)) {
                let c = constant_dims(name)?;
                if c.dims.len() > r || (c.dims.len() == r && c.dims[0] != 1) {
                    bail!(
                        "{label}: constant '{name}' {:?} would vary along the batch axis",
                        c.dims
                    );
                }
            }
            r
        } else if PER_SAMPLE.contains(&op) {
            others_constant()?;
            if attr_i(node, "training_mode") == Some(1) {
                bail!("{label} uses batch statistics (training_mode=1)");
            }
            rank
        } else {
            match op {
                "Flatten" => {
                    if axis("axis", 1, rank) < 1 {
                        bail!("{label} flattens the batch axis");
                    }
                    2
                }
                "Gemm" => {
                    others_constant()?;
                    if rank != 2 || attr_i(node, "transA") == Some(1) {
                        bail!(
                            "{label} does not multiply a [batch, k] activation by constant weights"
                        );
                    }
                    2
                }
                "MatMul" => {
                    others_constant()?;
                    if rank < 2 || constant_dims(ins[1])?.dims.len() != 2 {
                        bail!("{label} does not multiply the activation by a constant matrix");
                    }
                    rank
                }
                "Reshape" => {
                    others_constant()?;
                    if attr_i(node, "allowzero") == Some(1) {
                        bail!("{label} has allowzero=1: a 0 in its shape cannot keep the batch");
                    }
                    let c = constant_dims(ins[1])?;
                    let shape = c.ints.clone().with_context(|| {
                        format!("{label}: its shape '{}' is not an int64 constant", ins[1])
                    })?;
                    match shape.first() {
                        Some(0) => {}
                        Some(1) if !c.stored => bail!(
                            "{label}: its shape '{}' is computed from a constant, not stored: not rewritten",
                            ins[1]
                        ),
                        Some(1) => {
                            plan.shapes.insert(ins[1].to_string());
                            plan.reshapes
                                .push(node.name.clone().unwrap_or_else(|| format!("#{i}")));
                        }
                        _ => bail!(
                            "{label} reshapes to {shape:?}: only a shape that starts with 1 (the batch) or 0 keeps the samples apart"
                        ),
                    }
                    *shape_uses.entry(ins[1].to_string()).or_default() += 1;
                    shape.len()
                }
                "Concat" => {
                    if ins.iter().any(|n| plan.batched.get(*n) != Some(&rank)) {
                        bail!(
                            "{label} joins a constant (or a tensor of another rank) to the activation"
                        );
                    }
                    if axis("axis", 0, rank) == 0 {
                        bail!("{label} concatenates along the batch axis");
                    }
                    rank
                }
                "Transpose" => {
                    let perm = attr_ints(node, "perm");
                    if perm.first() != Some(&0) {
                        bail!("{label} moves the batch axis (perm {perm:?})");
                    }
                    rank
                }
                "Softmax" | "LogSoftmax" | "Hardmax" | "LpNormalization" => {
                    others_constant()?;
                    let default = if op == "LpNormalization" || opset >= 13 {
                        -1
                    } else {
                        1
                    };
                    if axis("axis", default, rank) == 0 {
                        bail!("{label} normalises over the batch axis");
                    }
                    rank
                }
                _ if REDUCE.contains(&op) => {
                    let mut axes = attr_ints(node, "axes");
                    if axes.is_empty()
                        && let Some(name) = ins.get(1).filter(|n| !n.is_empty())
                    {
                        axes = constant_dims(name)?.ints.clone().unwrap_or_default();
                    }
                    if axes.is_empty() {
                        bail!("{label} reduces over every axis, the batch axis too");
                    }
                    if axes
                        .iter()
                        .any(|a| (if *a < 0 { a + rank as i64 } else { *a }) == 0)
                    {
                        bail!("{label} reduces over the batch axis");
                    }
                    if attr_i(node, "keepdims") == Some(0) {
                        rank - axes.len()
                    } else {
                        rank
                    }
                }
                _ => bail!(
                    "{label}: operator {op} is not one this command can show to keep the samples of a batch apart; not rebatched"
                ),
            }
        };
        for out in outputs {
            plan.batched.insert(out.clone(), rank_out);
        }
    }
    // A shape constant is rewritten for every Reshape that uses it: nothing else may read it.
    for node in &graph.node {
        for (k, name) in node.input.iter().enumerate() {
            if plan.shapes.contains(name) && !(node.op_type.as_deref() == Some("Reshape") && k == 1)
            {
                bail!("shape constant '{name}' is also read by another operator: not rebatched");
            }
        }
    }
    for v in &graph.output {
        let name = v.name.as_deref().unwrap_or("");
        if plan.shapes.contains(name) || !plan.batched.contains_key(name) {
            bail!("output '{name}' is not computed from the model input");
        }
        match dims_of(v).first() {
            Some(Some(dimension::Value::DimValue(1))) => {}
            other => bail!(
                "output '{name}' has the first dimension {other:?}, not 1: cannot tell its batch dimension"
            ),
        }
    }
    Ok(plan)
}

fn constant(t: &TensorProto) -> Constant {
    let ints = (t.data_type == Some(DataType::Int64 as i32)).then(|| match &t.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        _ => t.int64_data.clone(),
    });
    Constant {
        dims: t.dims.clone(),
        ints,
        stored: true,
    }
}

/// An int64 shape constant whose first element is 1, with 0 there instead.
fn set_first_to_zero(t: &mut TensorProto) {
    match &mut t.raw_data {
        Some(raw) if !raw.is_empty() => raw[..8].copy_from_slice(&0i64.to_le_bytes()),
        _ => t.int64_data[0] = 0,
    }
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .map(|a| a.ints.clone())
        .unwrap_or_default()
}

/// The dimensions of a tensor's declared shape (`None` for a dimension with neither value nor
/// name); empty when it has none.
fn dims_of(v: &ValueInfoProto) -> Vec<Option<dimension::Value>> {
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| s.dim.iter().map(|d| d.value.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn first_dim(v: &mut ValueInfoProto) -> Option<&mut Dimension> {
    match v.r#type.as_mut()?.value.as_mut()? {
        type_proto::Value::TensorType(t) => t.shape.as_mut()?.dim.first_mut(),
        _ => None,
    }
}
