//! Frame in, faces out: preprocessing, inference, decoding and NMS around one ONNX session.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::contract::{ContractError, ModelContract, TensorInfo};
use crate::decode::{Face, decode_faces};
use crate::nms::nms;
use crate::preprocess::{Frame, FrameError, InputGeometry, Preprocessor, ScaleFilter};
use crate::priors::{self, Prior};
use crate::runtime::{self, RuntimeError, SessionConfig};

/// Candidates kept before NMS, best first: bounds NMS cost at low thresholds (the reference
/// keeps 5000; at threshold 0 every one of the 16,800 priors of a 640×640 input is a candidate).
pub const PRE_NMS_TOP_K: usize = 2000;
/// Faces reported per frame at most, whatever `max_faces` says: bounds metadata and drawing cost
/// when the threshold is set near 0 (the reference's `keep_top_k` is 750). Real crowds at the
/// model's input size stay well under it.
pub const MAX_FACES: usize = 500;

/// Per-frame detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectParams {
    /// Minimum face probability.
    pub confidence_threshold: f32,
    /// IoU above which the weaker of two overlapping faces is dropped.
    pub nms_threshold: f32,
    /// Keep at most this many faces (best first); 0 = [`MAX_FACES`], which also caps any larger value.
    pub max_faces: usize,
    /// Drop faces whose box is narrower or shorter than this, in frame pixels.
    pub min_face_size: f32,
    /// Long side of the model input in pixels; 0 = the frame's own size.
    pub inference_size: usize,
    /// How the frame is scaled to the inference size.
    pub scale_filter: ScaleFilter,
}

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            confidence_threshold: 0.6,
            nms_threshold: 0.4,
            max_faces: 0,
            min_face_size: 0.0,
            inference_size: 640,
            scale_filter: ScaleFilter::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model '{path}' does not fit the RetinaFace contract: {source}")]
    Contract {
        path: PathBuf,
        source: ContractError,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// A RetinaFace model ready to run on frames.
pub struct Detector {
    session: Session,
    contract: ModelContract,
    preprocessor: Preprocessor,
    /// Priors of the last input size; recomputed only when the size changes.
    priors: ((usize, usize), Vec<Prior>),
    /// Non-fatal problems met while loading (e.g. GPU provider fallback).
    pub warnings: Vec<String>,
}

impl Detector {
    /// Loads ONNX Runtime (searching `ort_dirs` as described in [`runtime::environment`]) and
    /// the model, and checks the model against its contract.
    pub fn load(
        model: &Path,
        config: &SessionConfig,
        ort_dirs: &[PathBuf],
    ) -> Result<Self, DetectorError> {
        let env = runtime::environment(ort_dirs)?;
        let loaded = runtime::load_session(env, model, config)?;
        let session = loaded.session;
        let contract_err = |source| DetectorError::Contract {
            path: model.to_path_buf(),
            source,
        };
        let metadata = session
            .metadata()
            .map_err(|e| DetectorError::Inference(e.to_string()))?;
        let contract =
            ModelContract::from_metadata(|key| metadata.custom(key)).map_err(contract_err)?;
        drop(metadata);
        let describe = |outlets: &[ort::value::Outlet]| -> Vec<TensorInfo> {
            outlets
                .iter()
                .map(|o| TensorInfo {
                    name: o.name().to_string(),
                    shape: o
                        .dtype()
                        .tensor_shape()
                        .map(|s| s.to_vec())
                        .unwrap_or_default(),
                    is_f32: o.dtype().tensor_type() == Some(ort::value::TensorElementType::Float32),
                })
                .collect()
        };
        contract
            .check_io(&describe(session.inputs()), &describe(session.outputs()))
            .map_err(contract_err)?;
        Ok(Self {
            session,
            contract,
            preprocessor: Preprocessor::new(),
            priors: ((0, 0), Vec::new()),
            warnings: loaded.warnings,
        })
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// Detects faces on `frame`; boxes and landmarks are in the frame's pixels, best first.
    pub fn detect(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<Vec<Face>, DetectorError> {
        let geometry = InputGeometry::for_frame(frame.width, frame.height, params.inference_size);
        let (w, h) = (geometry.width, geometry.height);
        if self.priors.0 != (h, w) {
            self.priors = ((h, w), priors::generate(&self.contract.priors, h, w));
        }
        let priors = &self.priors.1;
        let tensor = self
            .preprocessor
            .run(frame, geometry, &self.contract, params.scale_filter)?;
        let infer_err = |e: &dyn std::fmt::Display| DetectorError::Inference(e.to_string());
        let input =
            TensorRef::from_array_view(([1usize, 3, h, w], tensor)).map_err(|e| infer_err(&e))?;
        let contract = &self.contract;
        let outputs = self
            .session
            .run(ort::inputs![contract.input.as_str() => input])
            .map_err(|e| infer_err(&e))?;
        let output = |name: &str, per_prior: usize| -> Result<&[f32], DetectorError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| infer_err(&format!("model returned no '{name}'")))?;
            let (_, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| infer_err(&e))?;
            if data.len() != priors.len() * per_prior {
                return Err(infer_err(&format!(
                    "output '{name}' has {} values for a {w}×{h} input, but the prior layout {:?} gives {} anchors × {per_prior}; \
                     the model's retinaface.* metadata does not describe it",
                    data.len(),
                    contract.priors,
                    priors.len()
                )));
            }
            Ok(data)
        };
        let scale = geometry.to_frame_scale(frame.width, frame.height);
        let mut faces = decode_faces(
            contract,
            priors,
            output(&contract.loc, 4)?,
            output(&contract.conf, 2)?,
            output(&contract.landmarks, 10)?,
            params.confidence_threshold,
            scale,
        );
        drop(outputs);
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        for f in &mut faces {
            f.bbox = [
                f.bbox[0].clamp(0.0, fw),
                f.bbox[1].clamp(0.0, fh),
                f.bbox[2].clamp(0.0, fw),
                f.bbox[3].clamp(0.0, fh),
            ];
        }
        faces.retain(|f| {
            f.width() >= params.min_face_size.max(f32::MIN_POSITIVE)
                && f.height() >= params.min_face_size.max(f32::MIN_POSITIVE)
        });
        if faces.len() > PRE_NMS_TOP_K {
            faces.select_nth_unstable_by(PRE_NMS_TOP_K, |a, b| b.score.total_cmp(&a.score));
            faces.truncate(PRE_NMS_TOP_K);
        }
        let mut faces = nms(faces, params.nms_threshold);
        let limit = match params.max_faces {
            0 => MAX_FACES,
            n => n.min(MAX_FACES),
        };
        faces.truncate(limit);
        Ok(faces)
    }
}
