//! RetinaFace training with libtorch (tch): the network, its loss, WIDER FACE data loading,
//! evaluation, and ONNX import/export in the model contract the GStreamer plugin reads.

pub mod onnx {
    //! ONNX protobuf types generated from the vendored `proto/onnx.proto`.
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
