//! Running a network on one image and turning its outputs into faces with the plugin's own
//! post-processing (core crate [`retinaface::postprocess`]: candidates of a region in image
//! pixels, then the finish step), for `detect`, `eval` and the tests.

use image::RgbImage;
use retinaface::postprocess::{FinishParams, Limits, Placement, candidates, finish};
use retinaface::{Face, priors};
use tch::{Device, Tensor};

use crate::data::augment::to_network_input;
use crate::model::RetinaFace;

/// Thresholds of a detection run.
#[derive(Debug, Clone, Copy)]
pub struct InferParams {
    pub confidence_threshold: f32,
    pub nms_threshold: f32,
    /// Faces kept after NMS; 0 = `limits.max_faces`.
    pub max_faces: usize,
    /// Top-K before NMS and the face ceiling: the plugin's by default; the WIDER protocol's for
    /// [`InferParams::evaluation`] (why: [`Limits::WIDER_EVALUATION`]).
    pub limits: Limits,
}

impl Default for InferParams {
    fn default() -> Self {
        Self {
            confidence_threshold: 0.6,
            nms_threshold: 0.4,
            max_faces: 0,
            limits: Limits::DEPLOYMENT,
        }
    }
}

impl InferParams {
    /// The WIDER FACE evaluation settings of the reference (score ≥ 0.02, NMS 0.4, top-K 5000,
    /// 750 faces).
    pub fn evaluation() -> Self {
        Self {
            confidence_threshold: 0.02,
            limits: Limits::WIDER_EVALUATION,
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
    let (wf, hf) = (w as f32, h as f32);
    let faces = candidates(
        contract,
        &priors,
        [
            &to_vec(&out.loc),
            &to_vec(&out.conf),
            &to_vec(&out.landmarks),
        ],
        params.confidence_threshold,
        &Placement::whole(wf, hf, [wf, hf]),
    );
    finish(
        faces,
        &FinishParams {
            nms_threshold: params.nms_threshold,
            max_faces: params.max_faces,
            min_face_size: 0.0,
            limits: params.limits,
        },
    )
}
