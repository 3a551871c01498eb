//! [`rebatch`] on small hand-made graphs: what it rewrites, and what it refuses untouched.

use prost::Message;

use super::*;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{AttributeProto, GraphProto, OperatorSetIdProto, StringStringEntryProto};
use crate::onnx_io::export::{attr_int, attr_ints, int64_tensor, value_info};

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: (0..n).map(|i| i as f32 * 0.5).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{output}/{op}")),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// The layout of the embedding model: input [1,3,4,4] → Conv (2 channels) → PRelu → Reshape
/// to [1,-1] → Gemm to 8 values → output [1,8]; with one metadata property.
fn embedding_like() -> ModelProto {
    ModelProto {
        ir_version: Some(7),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(9),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![
                node("Conv", &["input", "w"], "c", vec![]),
                node("PRelu", &["c", "slope"], "p", vec![]),
                node("Reshape", &["p", "shape"], "flat", vec![]),
                node(
                    "Gemm",
                    &["flat", "fc", "bias"],
                    "output",
                    vec![attr_int("transB", 1)],
                ),
            ],
            initializer: vec![
                floats("w", &[2, 3, 1, 1]),
                floats("slope", &[2, 1, 1]),
                int64_tensor("shape", &[1, -1]),
                floats("fc", &[8, 32]),
                floats("bias", &[8]),
            ],
            input: vec![value_info("input", &[Ok(1), Ok(3), Ok(4), Ok(4)])],
            output: vec![value_info("output", &[Ok(1), Ok(8)])],
            value_info: vec![value_info("flat", &[Ok(1), Ok(32)])],
            ..Default::default()
        }),
        metadata_props: vec![StringStringEntryProto {
            key: Some("embedding.input".into()),
            value: Some("input".into()),
        }],
        ..Default::default()
    }
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().unwrap()
}

fn first(v: &ValueInfoProto) -> Option<dimension::Value> {
    dims_of(v).remove(0)
}

#[test]
fn the_first_dimension_becomes_symbolic_and_the_reshape_keeps_the_batch() {
    let before = embedding_like();
    let mut m = before.clone();
    let done = rebatch(&mut m).unwrap();
    assert_eq!(done.tensors, ["input", "output"]);
    assert_eq!(done.reshapes, ["flat/Reshape"]);
    let g = m.graph.as_ref().unwrap();
    let batch = Some(dimension::Value::DimParam("batch".into()));
    assert_eq!(first(&g.input[0]), batch);
    assert_eq!(first(&g.output[0]), batch);
    assert_eq!(first(&g.value_info[0]), batch);
    // The other dimensions stay fixed.
    assert_eq!(
        dims_of(&g.input[0])[1..],
        dims_of(&before.graph.as_ref().unwrap().input[0])[1..]
    );
    assert_eq!(constant(&g.initializer[2]).ints, Some(vec![0, -1]));
    // Weights, metadata and opsets as they were.
    for k in [0, 1, 3, 4] {
        assert_eq!(
            g.initializer[k],
            before.graph.as_ref().unwrap().initializer[k]
        );
    }
    assert_eq!(m.metadata_props, before.metadata_props);
    assert_eq!(m.opset_import, before.opset_import);
    assert_eq!(g.node, before.graph.as_ref().unwrap().node);
}

#[test]
fn a_shape_from_a_constant_node_is_rewritten_too() {
    let mut m = embedding_like();
    let g = graph(&mut m);
    g.initializer.remove(2);
    g.node.insert(
        0,
        NodeProto {
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(TensorProto {
                    int64_data: vec![1, 32],
                    raw_data: None,
                    ..int64_tensor("", &[1, 32])
                }),
                ..Default::default()
            }],
            ..node("Constant", &[], "shape", vec![])
        },
    );
    rebatch(&mut m).unwrap();
    let t = graph(&mut m).node[0].attribute[0].t.clone().unwrap();
    assert_eq!(t.int64_data, [0, 32]);
}

/// `change` applied to the embedding-like model makes `rebatch` refuse with a message that
/// contains `says`, and leave the model as it was.
fn refused(change: impl FnOnce(&mut ModelProto), says: &str) {
    let mut m = embedding_like();
    change(&mut m);
    let before = m.encode_to_vec();
    let err = rebatch(&mut m).unwrap_err().to_string();
    assert!(err.contains(says), "expected '{says}' in: {err}");
    assert_eq!(
        m.encode_to_vec(),
        before,
        "a refused model is left unchanged"
    );
}

#[test]
fn a_model_that_is_batched_already_or_not_batch_one_is_refused() {
    refused(
        |m| graph(m).input[0] = value_info("input", &[Err("n"), Ok(3), Ok(4), Ok(4)]),
        "already has a symbolic first dimension",
    );
    refused(
        |m| graph(m).input[0] = value_info("input", &[Ok(2), Ok(3), Ok(4), Ok(4)]),
        "first dimension of 2",
    );
}

#[test]
fn nodes_that_would_mix_samples_are_refused_by_name() {
    refused(
        |m| graph(m).initializer[2] = int64_tensor("shape", &[2, -1]),
        "node 'flat/Reshape' (Reshape) reshapes to [2, -1]",
    );
    refused(
        |m| graph(m).node[2] = node("Flatten", &["p"], "flat", vec![attr_int("axis", 0)]),
        "flattens the batch axis",
    );
    refused(
        |m| {
            graph(m).node[1] = node("Concat", &["c", "c"], "p", vec![attr_int("axis", 0)]);
        },
        "concatenates along the batch axis",
    );
    refused(
        |m| {
            graph(m).node[1] = node(
                "Transpose",
                &["c"],
                "p",
                vec![attr_ints("perm", &[1, 0, 2, 3])],
            );
        },
        "moves the batch axis",
    );
    refused(
        |m| graph(m).initializer[1] = floats("slope", &[2, 2, 1, 1]),
        "constant 'slope' [2, 2, 1, 1] would vary along the batch axis",
    );
    refused(
        |m| graph(m).node[1] = node("Shape", &["c"], "p", vec![]),
        "operator Shape is not one this command can show",
    );
    refused(
        |m| {
            graph(m).node[3] = node(
                "Gemm",
                &["flat", "fc", "bias"],
                "output",
                vec![attr_int("transA", 1)],
            );
        },
        "does not multiply a [batch, k] activation by constant weights",
    );
}

#[test]
fn a_shape_constant_read_elsewhere_is_not_rewritten() {
    refused(
        |m| {
            graph(m)
                .node
                .push(node("Cast", &["shape"], "shape_f", vec![]));
        },
        "computes on constants only",
    );
    refused(
        |m| {
            let g = graph(m);
            g.node
                .push(node("Reshape", &["output", "shape"], "again", vec![]));
            g.node
                .push(node("Mul", &["again", "shape"], "mixed", vec![]));
        },
        "shape constant 'shape' is also read by another operator",
    );
}
