//! Frame in, faces out, as a client of a shared inference [`engine`](crate::engine): the frame
//! is planned into passes (whole frame, regions of interest, tiles: [`crate::tiling`]), each
//! pass's crop is preprocessed into one `[3, H, W]` input [`Tensor`] (a "slot"), the slots go
//! to the engine together (those of one input size share model runs), and every slot's outputs
//! become candidates in frame pixels that one [`finish`] step merges ([`crate::postprocess`],
//! shared with the trainer).
//!
//! When the engine's backend scales and normalises on its own device (libtorch:
//! [`Engine::takes_pixels`](crate::engine::Engine::takes_pixels)) and the frame is packed RGB,
//! a pass's crop goes instead as 8-bit RGB [`Pixels`] at source resolution with the slot's
//! geometry and the contract's normalisation: the CPU copies the crop's rows, the device does
//! the rest. Other layouts are prepared on the CPU as for ONNX Runtime ([`uploads_by_copy`]
//! says why).
//!
//! Everything RetinaFace is here, not in the engine: the loader the detector gives the engine
//! refuses a model that does not fit the [`ModelContract`] (so such a file fails its load, also
//! in a live swap), and the outputs are found by the contract's names and checked against the
//! priors of the slot's size before they are decoded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::contract::{ContractError, ModelContract};
use crate::decode::Face;
use crate::engine::{
    Client, ClientOptions, Done, EngineError, EngineKey, Inputs, LoadError, Loader, ModelInfo,
    Pixels, Registry, Tensor, Ticket, open_backend,
};
use crate::pixfmt::PixelLayout;
use crate::postprocess::{FinishParams, Limits, Placement, candidates, finish, reduce};
pub use crate::postprocess::{MAX_FACES, PRE_NMS_TOP_K};
use crate::preprocess::{
    Frame, FrameError, InputGeometry, Normalisation, Preprocessor, ScaleFilter,
};
use crate::priors::{self, Prior};
use crate::runtime::{RuntimeError, SessionConfig};
use crate::tiling::{self, PassScale, Rect, RegionScale, Tiling};

/// Slots of one frame per model run at least (when the model's batch dimension is dynamic):
/// tiles of one frame share a run (fewer, larger matrix products), but the run's working memory
/// grows with the batch, so a 4K frame's dozens of tiles go in several runs and memory stays
/// bounded by a few tiles, never by the frame. A client's `batch_size` may raise it.
pub const MAX_BATCH: usize = 4;

/// Longest [`Detector::detect`] waits for the engine by default: far above any frame's run
/// (seconds for a 4K native pass on a CPU), so it only fires when the engine is stuck.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// How `regions` are scaled: each to `inference_size`, or as the whole frame sees them.
    pub region_scale: RegionScale,
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
            region_scale: RegionScale::Fit,
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
    #[error(transparent)]
    Engine(EngineError),
}

/// Load failures come back as what they are (missing runtime or file, a model that does not
/// fit the contract), so that callers can tell their user what to fix; other engine errors as
/// [`DetectorError::Engine`].
impl From<EngineError> for DetectorError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Load {
                source: LoadError::Runtime(e),
                ..
            } => Self::Runtime(e),
            EngineError::Load {
                path,
                source: LoadError::Unfit { reason, .. },
            } => Self::Contract {
                path,
                source: ContractError(reason),
            },
            other => Self::Engine(other),
        }
    }
}

/// The name [`LoadError::Unfit`] gives the contract the detector's loader checks.
const CONTRACT: &str = "RetinaFace";

/// A RetinaFace model ready to run on frames: one stream's client of an engine.
pub struct Detector {
    client: Client,
    preprocessor: Preprocessor,
    /// How the detector reads the model it last prepared a frame for or decoded an answer of.
    view: Option<View>,
    /// Slots the engine gave back, reused for the next frame's passes.
    spare: Vec<Tensor>,
    /// Pixel buffers the engine gave back (backends that take pixels), reused likewise.
    spare_pixels: Vec<Vec<u8>>,
    /// Longest [`Detector::collect`] waits for one slot's answer.
    pub timeout: Duration,
    /// Non-fatal problems met while loading (e.g. GPU provider fallback).
    pub warnings: Vec<String>,
}

/// An engine's model as the detector reads it, made once per model (a swap brings another).
struct View {
    model: Arc<ModelInfo>,
    contract: Arc<ModelContract>,
    /// Where `loc`, `conf` and `landmarks` are among an answer's outputs.
    outputs: [usize; 3],
    /// Priors per input size `(height, width)`; a frame uses one size per kind of pass.
    priors: HashMap<(usize, usize), Vec<Prior>>,
}

impl View {
    fn new(model: &Arc<ModelInfo>) -> Result<Self, ContractError> {
        let contract = ModelContract::of_model(model)?;
        let position = |name: &str| {
            model
                .output(name)
                .ok_or_else(|| ContractError(format!("model has no output '{name}'")))
        };
        let outputs = [
            position(&contract.loc)?,
            position(&contract.conf)?,
            position(&contract.landmarks)?,
        ];
        Ok(Self {
            model: Arc::clone(model),
            contract: Arc::new(contract),
            outputs,
            priors: HashMap::new(),
        })
    }
}

/// One frame's slots handed to the engine, waiting for their outputs.
pub struct Pending {
    tickets: Vec<Ticket>,
    placements: Vec<Placement>,
    /// Answers taken so far (async polling), by slot.
    answers: Vec<Option<Done>>,
}

impl Pending {
    fn new(tickets: Vec<Ticket>, placements: Vec<Placement>) -> Self {
        let answers = tickets.iter().map(|_| None).collect();
        Self {
            tickets,
            placements,
            answers,
        }
    }
}

/// Whether a frame in `layout` goes to a backend that takes pixels as its bytes (a row copy)
/// rather than preprocessed on the CPU. Only packed RGB: measured on a 1080p frame into a
/// 640 input, converting I420/NV12 to RGB at full size costs the CPU ≈ 10 ms and reordering
/// BGR/RGBx ≈ 2 ms (optimised build), more than the CPU's own scaled preprocessing (≈ 1 ms with
/// the default nearest filter), which reads only the pixels it samples. Uploading YUV planes
/// and converting them on the device is what would make those layouts cheaper.
fn uploads_by_copy(layout: PixelLayout) -> bool {
    layout == PixelLayout::Rgb
}

/// Slots kept for reuse at most (a 4K frame's tiles).
const MAX_SPARE: usize = 64;

impl Detector {
    /// Loads ONNX Runtime (searching `ort_dirs` as described in
    /// [`crate::runtime::environment`]) and the model on an engine of its own, and checks the
    /// model against its contract.
    pub fn load(
        model: &Path,
        config: &SessionConfig,
        ort_dirs: &[PathBuf],
    ) -> Result<Self, DetectorError> {
        Self::connect(
            &Registry::new(),
            EngineKey::new(model, config),
            ort_dirs,
            ClientOptions::default(),
        )
    }

    /// A detector on the engine of `key` in `registry`, shared with every other client of
    /// that key ([`Registry::global`]: the whole process); the engine is loaded if none is
    /// alive. A load failure comes back typed (missing file, not ONNX, contract…).
    pub fn connect(
        registry: &Registry,
        key: EngineKey,
        ort_dirs: &[PathBuf],
        options: ClientOptions,
    ) -> Result<Self, DetectorError> {
        let loader = retinaface_loader(ort_dirs.to_vec());
        let client = registry.client(key, loader, frame_options(options))?;
        let warnings = client.engine().warnings().to_vec();
        let mut detector = Self {
            client,
            preprocessor: Preprocessor::new(),
            view: None,
            spare: Vec::new(),
            spare_pixels: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            warnings,
        };
        // Checked again here in case another kind of client of the registry loaded this model
        // file (with a loader of its own): a detector only runs models that fit.
        let model = Arc::clone(detector.client.engine().model());
        detector.view(&model)?;
        Ok(detector)
    }

    /// Contract of the model frames go to now (also right after a swap the client applied).
    /// Read afresh from the engine's model, so it is never the one before a swap; the default
    /// stands in only for a model that does not fit, which the next frame reports as an error.
    pub fn contract(&self) -> ModelContract {
        ModelContract::of_model(self.client.engine().model()).unwrap_or_default()
    }

    /// Whether several slots go into one model run (the model's batch dimension is dynamic).
    pub fn batches(&self) -> bool {
        self.client.engine().max_batch() > 1
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// For model swaps ([`Client::swap_model`], [`Client::poll_swap`]) between frames.
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// New batching options for frames submitted from now on (see [`frame_options`]).
    pub fn set_options(&mut self, options: ClientOptions) {
        self.client.set_options(frame_options(options));
    }

    /// Detects faces on `frame`; boxes and landmarks are in the frame's pixels, best first.
    pub fn detect(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<Vec<Face>, DetectorError> {
        let pending = self.submit(frame, params)?;
        self.collect(pending, params)
    }

    /// Preprocesses `frame`'s passes into slots and queues them all at once, so that slots of
    /// one input size share runs; the frame is not needed afterwards. See [`Detector::collect`].
    pub fn submit(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<Pending, DetectorError> {
        let (slots, placements) = self.prepare(frame, params)?;
        let tickets = self.client.submit_inputs(slots);
        Ok(Pending::new(tickets, placements))
    }

    /// Async mode: preprocesses `frame` and hands its slots over only if this stream has
    /// nothing in flight and the engine has room ([`Client::try_submit_inputs`]); `None` means
    /// the frame is skipped. Never waits for the model. See [`Detector::try_collect`].
    pub fn try_submit(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<Option<Pending>, DetectorError> {
        if self.client.in_flight() > 0 {
            // Busy: skip before spending the preprocessing.
            return Ok(None);
        }
        let (slots, placements) = self.prepare(frame, params)?;
        if slots.is_empty() {
            return Ok(Some(Pending::new(Vec::new(), placements)));
        }
        match self.client.try_submit_inputs(slots) {
            Ok(tickets) => Ok(Some(Pending::new(tickets, placements))),
            Err(slots) => {
                for slot in slots {
                    self.keep_spare(slot);
                }
                Ok(None)
            }
        }
    }

    /// Async mode: the faces of `pending` once all its slots are answered, `None` before.
    /// Never waits.
    pub fn try_collect(
        &mut self,
        pending: &mut Pending,
        params: &DetectParams,
    ) -> Option<Result<Vec<Face>, DetectorError>> {
        for (ticket, answer) in pending.tickets.iter().zip(&mut pending.answers) {
            if answer.is_none() {
                match ticket.try_take()? {
                    Ok(done) => *answer = Some(done),
                    Err(e) => return Some(Err(e.into())),
                }
            }
        }
        Some(self.collect(
            std::mem::replace(pending, Pending::new(Vec::new(), Vec::new())),
            params,
        ))
    }

    /// Waits (at most [`Detector::timeout`] per slot) for a submitted frame's outputs and
    /// merges them into its faces.
    pub fn collect(
        &mut self,
        pending: Pending,
        params: &DetectParams,
    ) -> Result<Vec<Face>, DetectorError> {
        let finish_params = finish_params(params);
        let reduce_each = (pending.placements.len() > 1).then_some(&finish_params);
        // Answers are decoded in slot order, whatever order they came in: the same candidates
        // in the same order reach `finish` in sync and async mode.
        let mut faces = Vec::new();
        let Pending {
            tickets,
            placements,
            answers,
        } = pending;
        for ((ticket, placement), answer) in tickets.iter().zip(&placements).zip(answers) {
            let done = match answer {
                Some(done) => done,
                None => ticket.wait(self.timeout)?,
            };
            faces.extend(self.decode(done, placement, params.confidence_threshold, reduce_each)?);
        }
        Ok(finish(faces, &finish_params))
    }

    /// Keeps the buffers of a slot the engine gave back (or did not take) for the next frame.
    fn keep_spare(&mut self, slot: Inputs) {
        match slot {
            Inputs::Tensors(tensors) => {
                let room = MAX_SPARE.saturating_sub(self.spare.len());
                self.spare.extend(tensors.into_iter().take(room));
            }
            Inputs::Pixels(pixels) if self.spare_pixels.len() < MAX_SPARE => {
                self.spare_pixels.push(pixels.rgb);
            }
            Inputs::Pixels(_) => {}
        }
    }

    /// The slots of `frame`'s passes and where each lies in the frame. Passes of equal input
    /// size come together, in plan order, so that the engine batches them as they come. A slot
    /// is the preprocessed f32 tensor, or, when the engine's backend takes pixels, the crop's
    /// RGB bytes with what to make of them ([`Pixels`]).
    fn prepare(
        &mut self,
        frame: &Frame,
        params: &DetectParams,
    ) -> Result<(Vec<Inputs>, Vec<Placement>), DetectorError> {
        let (regions, _) = tiling::clip_regions(&params.regions, frame.width, frame.height);
        if regions.is_empty() && !params.regions.is_empty() {
            // Every region lies outside the frame: nothing to look at.
            return Ok((Vec::new(), Vec::new()));
        }
        let plan = match params.region_scale {
            RegionScale::Fit => tiling::plan,
            RegionScale::WholeFrame => tiling::plan_like_whole_frame,
        };
        let passes = plan(
            frame.width,
            frame.height,
            &regions,
            params.inference_size,
            params.tiling,
            params.tile_scale,
        );
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
        // The contract of the engine the slots go to: a swap happens only between frames.
        let model = Arc::clone(self.client.engine().model());
        let contract = Arc::clone(&self.view(&model)?.contract);
        let takes_pixels = self.client.engine().takes_pixels() && uploads_by_copy(frame.layout);
        let (mut slots, mut placements) = (Vec::new(), Vec::new());
        for (geometry, members) in groups {
            for (crop, placement) in members {
                if takes_pixels {
                    // The device scales and normalises: the CPU's part is this copy.
                    let mut rgb = self.spare_pixels.pop().unwrap_or_default();
                    crop.frame().to_rgb(&mut rgb)?;
                    slots.push(Inputs::Pixels(Pixels {
                        rgb,
                        width: crop.width,
                        height: crop.height,
                        geometry,
                        filter: params.scale_filter,
                        normalisation: Normalisation::for_contract(&contract),
                    }));
                    placements.push(placement);
                    continue;
                }
                let mut slot = self.spare.pop().unwrap_or_default();
                slot.shape.clear();
                slot.shape.extend([3, geometry.height, geometry.width]);
                slot.data.resize(geometry.slot_len(), 0.0);
                self.preprocessor.fill(
                    &crop.frame(),
                    geometry,
                    &contract,
                    params.scale_filter,
                    &mut slot.data,
                )?;
                // One input tensor per request: the model's image.
                slots.push(Inputs::Tensors(vec![slot]));
                placements.push(placement);
            }
        }
        Ok((slots, placements))
    }

    /// The candidates of one answered slot, [`reduce`]d when `reduce_each` is given (frames of
    /// several passes).
    fn decode(
        &mut self,
        done: Done,
        placement: &Placement,
        threshold: f32,
        reduce_each: Option<&FinishParams>,
    ) -> Result<Vec<Face>, DetectorError> {
        let Done {
            outputs,
            inputs,
            pixels,
            model,
            ..
        } = done;
        // The input's size: the slot tensor's, or the one the pixels became on the device.
        let (h, w) = match (&pixels, inputs.first()) {
            (Some(p), _) => (p.geometry.height, p.geometry.width),
            (None, Some(input)) if input.shape.len() == 3 => (input.shape[1], input.shape[2]),
            _ => {
                return Err(DetectorError::Inference(
                    "the engine did not give the slot back".into(),
                ));
            }
        };
        self.keep_spare(match pixels {
            Some(p) => Inputs::Pixels(p),
            None => Inputs::Tensors(inputs),
        });
        // The model that answered: after a swap, the old one's answers still decode by it.
        let view = self.view(&model)?;
        if view.priors.len() > 16 {
            // Region sizes changed many times: forget old sizes.
            view.priors.clear();
        }
        let contract = &view.contract;
        let priors = view
            .priors
            .entry((h, w))
            .or_insert_with(|| priors::generate(&contract.priors, h, w));
        let rows = view
            .outputs
            .map(|i| outputs.get(i).map_or(&[][..], |t| t.data.as_slice()));
        let names = [&contract.loc, &contract.conf, &contract.landmarks];
        let widths = [4, contract.conf_kind.columns(), 10];
        for ((name, values), per_prior) in names.into_iter().zip(rows).zip(widths) {
            if values.len() != priors.len() * per_prior {
                return Err(DetectorError::Inference(format!(
                    "output '{name}' has {} values for an input of {w}×{h}, but the prior layout {:?} gives {} anchors × {per_prior} each; \
                     the model's retinaface.* metadata does not describe it",
                    values.len(),
                    contract.priors,
                    priors.len()
                )));
            }
        }
        let found = candidates(contract, priors, rows, threshold, placement);
        Ok(match reduce_each {
            Some(finish_params) => reduce(found, finish_params),
            None => found,
        })
    }

    /// How the detector reads `model`: the one it read last, or made now (its first frame, or
    /// the first after a swap). A model that does not fit the contract is an error.
    fn view(&mut self, model: &Arc<ModelInfo>) -> Result<&mut View, DetectorError> {
        let current = self
            .view
            .as_ref()
            .is_some_and(|v| Arc::ptr_eq(&v.model, model));
        if !current {
            let view = View::new(model).map_err(|source| DetectorError::Contract {
                path: self.client.engine().key().model.clone(),
                source,
            })?;
            self.view = Some(view);
        }
        Ok(self.view.as_mut().expect("set above"))
    }
}

/// What a detector asks of the engine: a frame's own passes share runs of up to [`MAX_BATCH`]
/// slots whatever `batch_size` says (as they did before the engine was shared, so results do
/// not depend on it); a larger `batch_size` lets more slots, also of other streams, share one.
pub fn frame_options(options: ClientOptions) -> ClientOptions {
    ClientOptions {
        batch_size: options.batch_size.max(MAX_BATCH),
        ..options
    }
}

fn finish_params(params: &DetectParams) -> FinishParams {
    FinishParams {
        nms_threshold: params.nms_threshold,
        max_faces: params.max_faces,
        min_face_size: params.min_face_size,
        limits: Limits::DEPLOYMENT,
    }
}

/// Backends (ONNX Runtime, or libtorch where the session options ask:
/// [`open_backend`]) of models that fit the RetinaFace contract: one that does not fails
/// its load ([`LoadError::Unfit`]), so it never becomes an engine, and a swap to it leaves the
/// stream on its old model.
fn retinaface_loader(ort_dirs: Vec<PathBuf>) -> Arc<Loader> {
    Arc::new(move |key: &EngineKey| {
        let backend = open_backend(key, &ort_dirs)?;
        ModelContract::of_model(backend.model()).map_err(|e| LoadError::Unfit {
            contract: CONTRACT,
            reason: e.0,
        })?;
        Ok(backend)
    })
}
