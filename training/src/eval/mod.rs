//! Evaluation: WIDER FACE protocol and simple AP.
