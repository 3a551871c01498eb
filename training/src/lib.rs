//! RetinaFace training with libtorch (tch): the network, its loss, WIDER FACE data loading,
//! evaluation, ONNX import/export in the model contract the GStreamer plugin reads, and the
//! `retinaface-train` command line ([`cli`]).
//!
//! Everything that must agree with the plugin (priors, box/landmark encoding, decoding, NMS, the
//! metadata contract) comes from the `retinaface` core crate, not from here.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod device_batch;
pub mod eval;
pub mod fsutil;
pub mod infer;
pub mod loss;
pub mod model;
pub mod plot;
pub mod sgd;
pub mod torchscript;
pub mod train;

pub mod onnx {
    //! ONNX protobuf types generated from the vendored `proto/onnx.proto`.
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
pub mod onnx_io;
