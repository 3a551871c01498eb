//! Running a network on one image and turning its outputs into faces, with the same decoding
//! and NMS as the plugin (core crate), for `detect`, `eval` and the tests.

use image::RgbImage;
use retinaface::{Face, decode::decode_faces, nms::nms, priors};
use tch::{Device, Tensor};

use crate::data::augment::to_network_input;
use crate::model::RetinaFace;

/// Thresholds of a detection run.
#[derive(Debug, Clone, Copy)]
pub struct InferParams {
    pub confidence_threshold: f32,
    pub nms_threshold: f32,
    /// Candidates kept before NMS, best first (the reference's `top_k`).
    pub pre_nms_top_k: usize,
    /// Faces kept after NMS (the reference's `keep_top_k`); 0 = all.
    pub max_faces: usize,
}

impl Default for InferParams {
    fn default() -> Self {
        Self {
            confidence_threshold: 0.6,
            nms_threshold: 0.4,
            pre_nms_top_k: 5000,
            max_faces: 750,
        }
    }
}

impl InferParams {
    /// The WIDER FACE evaluation settings of the reference (score ≥ 0.02, NMS 0.4).
    pub fn evaluation() -> Self {
        Self {
            confidence_threshold: 0.02,
            ..Self::default()
        }
    }
}

/// The network input for `image` at its own size, as a `[1, 3, H, W]` tensor on `device`.
pub fn input_tensor(net: &RetinaFace, image: &RgbImage, device: Device) -> Tensor {
    let chw = to_network_input(image, &net.config.contract);
    Tensor::from_slice(&chw)
        .view([1, 3, image.height() as i64, image.width() as i64])
        .to_device(device)
}

/// Flattened float values of a tensor (any device).
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).flatten(0, -1)).expect("float tensor")
}

/// Faces on `image` in its pixel coordinates, best first.
pub fn detect(net: &RetinaFace, image: &RgbImage, params: &InferParams) -> Vec<Face> {
    let device = net.vs.device();
    let out = net.infer(&input_tensor(net, image, device));
    let (w, h) = (image.width() as usize, image.height() as usize);
    let contract = &net.config.contract;
    let priors = priors::generate(&contract.priors, h, w);
    let mut faces = decode_faces(
        contract,
        &priors,
        &to_vec(&out.loc),
        &to_vec(&out.conf),
        &to_vec(&out.landmarks),
        params.confidence_threshold,
        [w as f32, h as f32],
    );
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    faces.truncate(params.pre_nms_top_k);
    let mut faces = nms(faces, params.nms_threshold);
    if params.max_faces > 0 {
        faces.truncate(params.max_faces);
    }
    faces
}
