//! `export`: writes the network as an ONNX model the plugin consumes.
//!
//! The graph is produced by running the network's own forward description
//! ([`RetinaFace::forward`]) over [`GraphBuilder`], an [`Ops`] implementation that emits nodes
//! instead of computing, so the exported graph cannot drift from the trained one. BatchNorms are
//! folded into their convolutions. Input `input` `[N,3,H,W]` and outputs `loc`, `conf`
//! (softmaxed) and `landmarks` have dynamic N/H/W; the model contract (colour order, mean, priors,
//! variances…) goes into the metadata properties under the keys the plugin reads.

use std::path::Path;

use anyhow::Context;
use prost::Message;
use tch::{Kind, Tensor};

use super::metadata;
use crate::model::layers::{Act, ConvUnit, Ops};
use crate::model::srn::{FirstStage, SrnOps};
use crate::model::{MAX_LOG_SCALE, Outputs, RetinaFace};
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::type_proto::{self, Tensor as TensorType};
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Default-domain opset of the exported graph (Resize with `sizes`, Softmax over one axis).
pub const OPSET: i64 = 17;
/// ONNX IR version matching opset 17.
const IR_VERSION: i64 = 8;

/// Collects nodes and initializers while the forward pass runs over tensor names.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    /// Units whose weights are initializers already: a unit applied at several levels (the
    /// RetinaNet subnets) has one copy of its weights.
    emitted: std::collections::HashSet<String>,
}

pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(f),
        ..Default::default()
    }
}

fn attr_str(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(s.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn float_tensor(name: &str, t: &Tensor) -> TensorProto {
    let t = t
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let values: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1)).expect("float tensor");
    TensorProto {
        name: Some(name.into()),
        dims: t.size(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

pub(crate) fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

impl GraphBuilder {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    fn node(
        &mut self,
        op: &str,
        name: Option<String>,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = name.unwrap_or_else(|| self.fresh(op));
        let output = format!("{name}:0");
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    fn int_constant(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(int64_tensor(&name, values));
        name
    }

    fn float_scalar(&mut self, hint: &str, value: f32) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![],
            data_type: Some(DataType::Float as i32),
            raw_data: Some(value.to_le_bytes().to_vec()),
            ..Default::default()
        });
        name
    }

    fn activation(&mut self, x: &str, act: Act) -> String {
        match act {
            Act::None => x.to_string(),
            Act::Relu => self.node("Relu", None, &[x], vec![]),
            Act::Relu6 => {
                // Clip takes its bounds as (scalar) inputs since opset 11.
                let (lo, hi) = (
                    self.float_scalar("clip_min", 0.0),
                    self.float_scalar("clip_max", 6.0),
                );
                self.node("Clip", None, &[x, &lo, &hi], vec![])
            }
            Act::Leaky(alpha) => self.node(
                "LeakyRelu",
                None,
                &[x],
                vec![attr_float("alpha", alpha as f32)],
            ),
        }
    }

    /// `[N, P, 1]` face probabilities → the contract's two columns `[1 − p, p]`.
    fn with_background(&mut self, face: &str) -> String {
        let one = self.float_scalar("one", 1.0);
        let background = self.node("Sub", None, &[&one, face], vec![]);
        self.node(
            "Concat",
            None,
            &[&background, face],
            vec![attr_int("axis", -1)],
        )
    }

    fn conv_only(&mut self, x: &str, unit: &ConvUnit) -> String {
        let (w, b) = unit.folded();
        let (wn, bn) = (
            format!("{}.weight", unit.name),
            format!("{}.bias", unit.name),
        );
        // The first application is `unit/Conv` (what import matches); repeats get a suffix that
        // keeps node and output names unique, and import skips them.
        let node_name = if self.emitted.insert(unit.name.clone()) {
            self.initializers.push(float_tensor(&wn, &w));
            self.initializers.push(float_tensor(&bn, &b));
            format!("{}/Conv", unit.name)
        } else {
            let n = self.fresh("repeat");
            format!("{}/Conv_{n}", unit.name)
        };
        let p = unit.padding();
        self.node(
            "Conv",
            Some(node_name),
            &[x, &wn, &bn],
            vec![
                attr_ints("kernel_shape", &[unit.kernel, unit.kernel]),
                attr_ints("strides", &[unit.stride, unit.stride]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", unit.groups),
            ],
        )
    }
}

impl Ops for GraphBuilder {
    type T = String;

    fn conv(&mut self, x: &String, unit: &ConvUnit) -> String {
        let y = self.conv_only(x, unit);
        self.activation(&y, unit.act)
    }

    fn add(&mut self, a: &String, b: &String) -> String {
        self.node("Add", None, &[a, b], vec![])
    }

    fn relu(&mut self, x: &String) -> String {
        self.node("Relu", None, &[x], vec![])
    }

    fn max_pool(&mut self, x: &String, kernel: i64, stride: i64) -> String {
        let p = kernel / 2;
        self.node(
            "MaxPool",
            None,
            &[x],
            vec![
                attr_ints("kernel_shape", &[kernel, kernel]),
                attr_ints("strides", &[stride, stride]),
                attr_ints("pads", &[p, p, p, p]),
            ],
        )
    }

    fn upsample_to(&mut self, x: &String, like: &String) -> String {
        // sizes = shape(x)[0:2] ++ shape(like)[2:4], so H and W stay dynamic.
        let (zero, two, four) = (
            self.int_constant("c0", &[0]),
            self.int_constant("c2", &[2]),
            self.int_constant("c4", &[4]),
        );
        let x_shape = self.node("Shape", None, &[x], vec![]);
        let like_shape = self.node("Shape", None, &[like], vec![]);
        let nc = self.node("Slice", None, &[&x_shape, &zero, &two, &zero], vec![]);
        let hw = self.node("Slice", None, &[&like_shape, &two, &four, &zero], vec![]);
        let sizes = self.node("Concat", None, &[&nc, &hw], vec![attr_int("axis", 0)]);
        // Nearest, asymmetric, floor: PyTorch's `interpolate(mode="nearest")` / tch's
        // `upsample_nearest2d`.
        self.node(
            "Resize",
            None,
            &[x, "", "", &sizes],
            vec![
                attr_str("mode", "nearest"),
                attr_str("coordinate_transformation_mode", "asymmetric"),
                attr_str("nearest_mode", "floor"),
            ],
        )
    }

    fn concat_channels(&mut self, xs: &[String]) -> String {
        let inputs: Vec<&str> = xs.iter().map(String::as_str).collect();
        self.node("Concat", None, &inputs, vec![attr_int("axis", 1)])
    }

    fn head(&mut self, x: &String, unit: &ConvUnit, per_anchor: i64) -> String {
        let y = self.conv(x, unit);
        let t = self.node(
            "Transpose",
            None,
            &[&y],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        );
        // 0 copies the batch dimension, -1 collects H·W·anchors.
        let shape = self.int_constant("head_shape", &[0, -1, per_anchor]);
        self.node("Reshape", None, &[&t, &shape], vec![])
    }

    fn concat_priors(&mut self, xs: &[String]) -> String {
        let inputs: Vec<&str> = xs.iter().map(String::as_str).collect();
        self.node("Concat", None, &inputs, vec![attr_int("axis", 1)])
    }

    fn softmax(&mut self, x: &String) -> String {
        self.node("Softmax", None, &[x], vec![attr_int("axis", -1)])
    }

    fn sigmoid_pair(&mut self, x: &String) -> String {
        let face = self.node("Sigmoid", None, &[x], vec![]);
        self.with_background(&face)
    }
}

impl SrnOps for GraphBuilder {
    fn srn_refine(
        &mut self,
        first: &FirstStage<String>,
        second: &Outputs<String>,
        size_variance: f32,
        min_face: f32,
    ) -> Outputs<String> {
        let last = self.int_constant("axis_last", &[-1]);
        let slice = |g: &mut Self, x: &str, from: i64, to: i64| {
            let (a, b) = (g.int_constant("from", &[from]), g.int_constant("to", &[to]));
            g.node("Slice", None, &[x, &a, &b, &last], vec![])
        };
        let l1_centre = slice(self, &first.loc, 0, 2);
        let l1_size = slice(self, &first.loc, 2, 4);
        let l2_centre = slice(self, &second.loc, 0, 2);
        let l2_size = slice(self, &second.loc, 2, 4);
        let face2 = slice(self, &second.conf, 1, 2);
        let v1 = self.float_scalar("size_variance", size_variance);
        let scaled = self.node("Mul", None, &[&l1_size, &v1], vec![]);
        let (lo, hi) = (
            self.float_scalar("grow_min", -MAX_LOG_SCALE as f32),
            self.float_scalar("grow_max", MAX_LOG_SCALE as f32),
        );
        let scaled = self.node("Clip", None, &[&scaled, &lo, &hi], vec![]);
        let grow = self.node("Exp", None, &[&scaled], vec![]);
        let moved = self.node("Mul", None, &[&l2_centre, &grow], vec![]);
        let centre = self.node("Add", None, &[&l1_centre, &moved], vec![]);
        let size = self.node("Add", None, &[&l1_size, &l2_size], vec![]);
        let loc = self.node(
            "Concat",
            None,
            &[&centre, &size],
            vec![attr_int("axis", -1)],
        );
        // Landmarks as [N, P, 5, 2] pairs, each moved like the centre.
        let (pairs, flat, axis2) = (
            self.int_constant("pairs", &[0, 0, 5, 2]),
            self.int_constant("flat", &[0, 0, 10]),
            self.int_constant("axis2", &[2]),
        );
        let lm = self.node("Reshape", None, &[&second.landmarks, &pairs], vec![]);
        let grow4 = self.node("Unsqueeze", None, &[&grow, &axis2], vec![]);
        let centre4 = self.node("Unsqueeze", None, &[&l1_centre, &axis2], vec![]);
        let lm = self.node("Mul", None, &[&lm, &grow4], vec![]);
        let lm = self.node("Add", None, &[&lm, &centre4], vec![]);
        let landmarks = self.node("Reshape", None, &[&lm, &flat], vec![]);
        // The first stage's filter: face probability · [σ(first logit) ≥ min_face].
        let p1 = self.node("Sigmoid", None, &[&first.logit], vec![]);
        let threshold = self.float_scalar("min_face", min_face);
        let keep = self.node("GreaterOrEqual", None, &[&p1, &threshold], vec![]);
        let keep = self.node(
            "Cast",
            None,
            &[&keep],
            vec![attr_int("to", DataType::Float as i64)],
        );
        let face = self.node("Mul", None, &[&face2, &keep], vec![]);
        let conf = self.with_background(&face);
        Outputs {
            loc,
            conf,
            landmarks,
            first_stage: None,
        }
    }
}

pub(crate) fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(TensorType {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(v) => dimension::Value::DimValue(*v),
                                Err(p) => dimension::Value::DimParam(p.to_string()),
                            }),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

/// Builds the ONNX model of `net` (weights as they are now, BatchNorm folded).
pub fn to_onnx(net: &RetinaFace) -> ModelProto {
    let contract = &net.config.contract;
    let mut g = GraphBuilder::default();
    let input = contract.input.clone();
    let out = net.forward(&mut g, &input, true);
    // Give the outputs the contract's names.
    for (tensor, name) in [
        (&out.loc, &contract.loc),
        (&out.conf, &contract.conf),
        (&out.landmarks, &contract.landmarks),
    ] {
        g.nodes.push(NodeProto {
            op_type: Some("Identity".into()),
            name: Some(format!("{name}/Identity")),
            input: vec![tensor.clone()],
            output: vec![name.clone()],
            ..Default::default()
        });
    }
    let outputs = [
        (&contract.loc, 4),
        (&contract.conf, 2),
        (&contract.landmarks, 10),
    ]
    .iter()
    .map(|(name, k)| value_info(name, &[Err("batch"), Err("priors"), Ok(*k)]))
    .collect();
    let metadata_props = metadata::to_metadata(&net.config)
        .into_iter()
        .map(|(k, v)| StringStringEntryProto {
            key: Some(k),
            value: Some(v),
        })
        .collect();
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("retinaface-train".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            name: Some("retinaface".into()),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![value_info(
                &input,
                &[Err("batch"), Ok(3), Err("height"), Err("width")],
            )],
            output: outputs,
            ..Default::default()
        }),
        metadata_props,
        ..Default::default()
    }
}

/// Writes `net` to `path` as ONNX (atomically).
pub fn export_onnx(net: &RetinaFace, path: &Path) -> anyhow::Result<()> {
    let bytes = to_onnx(net).encode_to_vec();
    crate::fsutil::write_atomic(path, &bytes)
        .with_context(|| format!("exporting to {}", path.display()))
}
