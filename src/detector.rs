//! Frame in, faces out around one ONNX session: the frame is planned into passes (whole frame,
//! regions of interest, tiles: [`crate::tiling`]), each pass's crop is preprocessed into a slot
//! of a batch, batches of equal input size run through the model together, and every slot's
//! outputs become candidates in frame pixels that one [`finish`] step merges
//! ([`crate::postprocess`], shared with the trainer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::contract::{ContractError, ModelContract, TensorInfo};
use crate::decode::Face;
use crate::postprocess::{FinishParams, Limits, Placement, candidates, finish, reduce};
pub use crate::postprocess::{MAX_FACES, PRE_NMS_TOP_K};
use crate::preprocess::{Frame, FrameError, InputGeometry, Preprocessor, ScaleFilter};
use crate::priors::{self, Prior};
use crate::runtime::{self, RuntimeError, SessionConfig};
use crate::tiling::{self, PassScale, Rect, Tiling};

/// Slots per model run at most: tiles of one frame share a run (fewer, larger matrix products),
/// but the run's working memory grows with the batch, so a 4K frame's dozens of tiles go in
/// several runs and memory stays bounded by a few tiles, never by the frame.
pub const MAX_BATCH: usize = 4;

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
    /// Whether regions larger than a tile are tiled ([`crate::tiling`]).
    pub tiling: Tiling,
    /// Scale of tiles: 1 = native frame pixels, 2 = upsampled twice (for faces under 16 px).
    pub tile_scale: f32,
    /// Regions of interest in frame pixels; empty = the whole frame. Parts outside the frame
    /// are ignored ([`tiling::clip_regions`] says which).
    pub regions: Vec<Rect>,
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
            tiling: Tiling::default(),
            tile_scale: 1.0,
            regions: Vec::new(),
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
    /// Priors per input size `(height, width)`; a frame uses one size per kind of pass.
    priors: HashMap<(usize, usize), Vec<Prior>>,
    /// Batch input tensor, reused between runs.
    batch: Vec<f32>,
    /// Whether the model's input has a dynamic batch dimension (else one run per slot).
    batches: bool,
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
        let inputs = describe(session.inputs());
        contract
            .check_io(&inputs, &describe(session.outputs()))
            .map_err(contract_err)?;
        let batches = inputs[0].shape.first().is_some_and(|n| *n < 0);
        Ok(Self {
            session,
            contract,
            preprocessor: Preprocessor::new(),
            priors: HashMap::new(),
            batch: Vec::new(),
            batches,
            warnings: loaded.warnings,
        })
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// Whether several slots go into one model run (the model's batch dimension is dynamic).
    pub fn batches(&self) -> bool {
        self.batches
    }

    /// Detects faces on `frame`; boxes and landmarks are in the frame's pixels, best first.
    pub fn detect(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<Vec<Face>, DetectorError> {
        let (regions, _) = tiling::clip_regions(&params.regions, frame.width, frame.height);
        if regions.is_empty() && !params.regions.is_empty() {
            // Every region lies outside the frame: nothing to look at.
            return Ok(Vec::new());
        }
        let passes = tiling::plan(
            frame.width,
            frame.height,
            &regions,
            params.inference_size,
            params.tiling,
            params.tile_scale,
        );
        // Passes of equal input size share model runs, in plan order.
        let mut groups: Vec<(InputGeometry, Vec<(crate::preprocess::Crop, Placement)>)> =
            Vec::new();
        for pass in &passes {
            let crop = frame.crop(pass.crop.x, pass.crop.y, pass.crop.w, pass.crop.h);
            let geometry = match pass.scale {
                PassScale::Fit(size) => InputGeometry::for_frame(crop.width, crop.height, size),
                PassScale::Factor(k) => InputGeometry::scaled(crop.width, crop.height, k),
            };
            let placement = Placement {
                origin: [crop.x as f32, crop.y as f32],
                scale: geometry.to_frame_scale(crop.width, crop.height),
                clip: pass.clip.bounds(),
                keep: pass.keep,
            };
            match groups.iter_mut().find(|(g, _)| *g == geometry) {
                Some((_, members)) => members.push((crop, placement)),
                None => groups.push((geometry, vec![(crop, placement)])),
            }
        }
        let per_run = if self.batches { MAX_BATCH } else { 1 };
        let finish_params = FinishParams {
            nms_threshold: params.nms_threshold,
            max_faces: params.max_faces,
            min_face_size: params.min_face_size,
            limits: Limits::DEPLOYMENT,
        };
        let reduce_each = (passes.len() > 1).then_some(&finish_params);
        let mut faces = Vec::new();
        for (geometry, members) in &groups {
            for chunk in members.chunks(per_run) {
                self.run(chunk, *geometry, params, reduce_each, &mut faces)?;
            }
        }
        Ok(finish(faces, &finish_params))
    }

    /// One model run over `slots` (crops of one input size); their candidates go into `faces`,
    /// each slot's [`reduce`]d first when `reduce_each` is given (frames of several passes).
    fn run(
        &mut self,
        slots: &[(crate::preprocess::Crop, Placement)],
        geometry: InputGeometry,
        params: &DetectParams,
        reduce_each: Option<&FinishParams>,
        faces: &mut Vec<Face>,
    ) -> Result<(), DetectorError> {
        let (w, h) = (geometry.width, geometry.height);
        if self.priors.len() > 16 {
            // Region sizes changed many times: forget old sizes rather than grow.
            self.priors.clear();
        }
        let contract = &self.contract;
        let priors = self
            .priors
            .entry((h, w))
            .or_insert_with(|| priors::generate(&contract.priors, h, w));
        let n = slots.len();
        let slot_len = geometry.slot_len();
        self.batch.resize(n * slot_len, 0.0);
        for ((crop, _), slot) in slots.iter().zip(self.batch.chunks_exact_mut(slot_len)) {
            self.preprocessor
                .fill(&crop.frame(), geometry, contract, params.scale_filter, slot)?;
        }
        let infer_err = |e: &dyn std::fmt::Display| DetectorError::Inference(e.to_string());
        let input = TensorRef::from_array_view(([n, 3, h, w], self.batch.as_slice()))
            .map_err(|e| infer_err(&e))?;
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
            if data.len() != n * priors.len() * per_prior {
                return Err(infer_err(&format!(
                    "output '{name}' has {} values for {n} input(s) of {w}×{h}, but the prior layout {:?} gives {} anchors × {per_prior} each; \
                     the model's retinaface.* metadata does not describe it",
                    data.len(),
                    contract.priors,
                    priors.len()
                )));
            }
            Ok(data)
        };
        let (loc, conf, landmarks) = (
            output(&contract.loc, 4)?,
            output(&contract.conf, 2)?,
            output(&contract.landmarks, 10)?,
        );
        let a = priors.len();
        for (i, (_, placement)) in slots.iter().enumerate() {
            let outputs = [
                &loc[i * a * 4..][..a * 4],
                &conf[i * a * 2..][..a * 2],
                &landmarks[i * a * 10..][..a * 10],
            ];
            let found = candidates(
                contract,
                priors,
                outputs,
                params.confidence_threshold,
                placement,
            );
            match reduce_each {
                Some(finish_params) => faces.extend(reduce(found, finish_params)),
                None => faces.extend(found),
            }
        }
        Ok(())
    }
}
