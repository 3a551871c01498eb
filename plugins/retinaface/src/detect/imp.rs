use std::collections::VecDeque;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use retinaface::detector::Pending;
use retinaface::engine::{EngineKey, Registry};
use retinaface::geometry::corners_to_centre;
use retinaface::tiling::{Rect, RegionScale, clip_regions};
use retinaface::{DetectParams, Detector, Face, PixelLayout, SessionConfig};

use super::MESSAGE_NAME;
use super::job::{FrameStamp, Job, Outcome};
use super::latency::ProcessingLatency;
use super::settings::{self, Settings};
use crate::{facemeta, videoformat};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacedetect",
        gst::DebugColorFlags::empty(),
        Some("RetinaFace face detector"),
    )
});

struct State {
    detector: Detector,
    /// Session settings of the engine key (a new `model` keeps them).
    config: SessionConfig,
    /// Model path in use, and the `model_serial` last handed to the engine.
    model: String,
    model_serial: u64,
    /// Model path a swap is loading.
    swapping: Option<String>,
    /// Negotiated caps and the matching pixel layout.
    info: Option<(gst_video::VideoInfo, PixelLayout)>,
    /// Frames seen since the last caps, for `interval`.
    frames: u64,
    /// Faces of the last result, repeated on skipped frames so nothing blinks.
    last_faces: Vec<Face>,
    /// The frame index each of `last_faces` was found on (motion gating keeps faces that did
    /// not move from earlier results).
    last_found: Vec<u64>,
    /// The frame the last result was found on; `None` before the first result.
    last_detected: Option<FrameStamp>,
    /// Async mode: the frame handed to the engine, and the motion regions it was looked at in
    /// (`None`: all of it), until its faces are collected.
    pending: Option<(Pending, FrameStamp, Option<Vec<Rect>>)>,
    /// Frames since the model last looked at the whole frame (motion gating's refresh).
    since_full: u64,
    /// Where this element's refreshes (motion gating) fall against those of the other
    /// detectors of the process; taken by the first whole-frame look.
    stagger: Option<u64>,
    /// Regions and frame size last checked against each other, so each problem is reported once.
    regions_checked: Option<(Vec<Rect>, u32, u32)>,
    /// Frames begun and not yet sent on (`frames-in-flight`), oldest first.
    held: VecDeque<(gst::Buffer, Job)>,
}

impl State {
    /// Forgets everything carried over from earlier frames, so the next frame is analysed afresh.
    /// Flush, seek (new segment), stream start and caps changes all come through here: a face
    /// from before a seek must never be shown (or left unblurred) after it.
    fn reset_carried(&mut self) {
        self.frames = 0;
        self.last_faces.clear();
        self.last_found.clear();
        self.last_detected = None;
        self.since_full = u64::MAX;
        // Its faces belong to the frames before the reset (dropping the tickets cancels it).
        self.pending = None;
        // Only a flush gets here with frames held (other events drain them first): they were
        // flushed.
        self.held.clear();
    }

    /// The model looked at the whole frame: the next refresh is `refresh_interval` frames away,
    /// except after the first look, where it is a share of that set by the element's name.
    /// Cameras started together would otherwise all refresh on the same frames and queue a
    /// whole-frame inference each at once on the shared engine, every time. (A name, not a
    /// start order: the same pipeline gives the same results in every run.)
    fn looked_at_whole(&mut self, refresh_interval: u32) {
        self.since_full = match self.stagger.take() {
            Some(place) if refresh_interval > 1 => {
                let share = (place as f64 * 0.618_033_988_75).fract();
                (share * refresh_interval as f64) as u64
            }
            _ => 0,
        };
    }

    /// A new result, found on frame `at`. When the model looked only at `partial` regions
    /// (where something moved), the earlier faces outside all of them did not move and are
    /// kept, with the frame they were found on, unless a new face covers them.
    fn set_result(&mut self, mut faces: Vec<Face>, at: FrameStamp, partial: Option<&[Rect]>) {
        let mut found = vec![at.index; faces.len()];
        if let Some(regions) = partial {
            let new = faces.len();
            for (face, &when) in self.last_faces.iter().zip(&self.last_found) {
                let [cx, cy, _, _] = corners_to_centre(face.bbox);
                let moved = regions.iter().any(|r| r.contains(cx, cy));
                let replaced = faces[..new].iter().any(|f| f.iou(face) > 0.3);
                if !moved && !replaced {
                    faces.push(*face);
                    found.push(when);
                }
            }
        }
        self.last_faces = faces;
        self.last_found = found;
        self.last_detected = Some(at);
    }
}

#[derive(Default)]
pub struct RetinaFaceDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Outside `state`: latency queries must not wait for a frame's inference.
    latency: ProcessingLatency,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceDetect {
    const NAME: &'static str = "GstRetinaFaceDetect";
    type Type = super::RetinaFaceDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RetinaFaceDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if settings::start_only(pspec) && self.state.lock().unwrap().is_some() {
            // Silently keeping the value for the next start would make the user believe it
            // applies now.
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "'{}' cannot change while the element is running; the change is ignored. Set it in the NULL or READY state.",
                    pspec.name()
                )
            );
            return;
        }
        let refused = self.settings.lock().unwrap().set(pspec.name(), value);
        match refused {
            Ok(()) => gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value),
            Err(why) => gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", why)),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.settings.lock().unwrap().get(pspec.name())
    }
}

impl GstObjectImpl for RetinaFaceDetect {}

impl ElementImpl for RetinaFaceDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace face detector",
                "Filter/Analyzer/Video",
                "Detects faces with a RetinaFace ONNX model and attaches box, score and 5 landmarks as ROI metadata",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&crate::videoformat::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RetinaFaceDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let config = settings.session.clone();
        let started = std::time::Instant::now();
        if config.provider == retinaface::ExecutionProvider::TensorRt {
            // Building an engine takes minutes: say so before the wait, not after.
            let cache = config.tensorrt_cache.as_ref().map_or_else(
                || "no cache: every start builds".to_string(),
                |dir| format!("cached in {}", dir.display()),
            );
            gst::element_imp_info!(
                self,
                gst::LibraryError::Init,
                (
                    "TensorRT: loading or building the engine of {} on GPU {} (the first start \
                     with a model and options builds it, which can take minutes; {cache})",
                    settings.model,
                    config.device_id
                )
            );
        }
        // Elements with the same model, provider, device and threads share one session
        // (Registry::global). That is safe: a session only maps an input tensor to outputs and
        // holds no per-stream state; each element keeps its own preprocessing, priors, carried
        // faces and settings, and its requests come back on their own tickets. The engine (and
        // its memory) goes when the last element using it stops. `shared=false` gets a registry,
        // hence a session, of its own.
        let key = EngineKey::new(Path::new(&settings.model), &config);
        let private;
        let registry = if settings.shared {
            Registry::global()
        } else {
            private = Registry::new();
            &private
        };
        let detector = Detector::connect(registry, key, &crate::ort_search_dirs(), settings.client)
            .map_err(|e| {
                use retinaface::detector::DetectorError as E;
                use retinaface::runtime::RuntimeError as R;
                match e {
                    E::Runtime(R::ModelMissing(_)) => {
                        gst::error_msg!(gst::ResourceError::NotFound, ("{e}"))
                    }
                    E::Runtime(R::LibraryMissing { .. }) => {
                        gst::error_msg!(gst::LibraryError::Init, ("{e}"))
                    }
                    E::Runtime(R::ModelInvalid { .. } | R::ModelIsDirectory(_))
                    | E::Contract { .. } => {
                        gst::error_msg!(gst::ResourceError::OpenRead, ("{e}"))
                    }
                    other => gst::error_msg!(gst::LibraryError::Failed, ("{other}")),
                }
            })?;
        for warning in &detector.warnings {
            gst::element_imp_warning!(self, gst::LibraryError::Init, ("{}", warning));
        }
        gst::info!(
            CAT,
            imp = self,
            "using {} ({:?}), ready after {:.1} s",
            settings.model,
            detector.contract(),
            started.elapsed().as_secs_f64()
        );
        *self.state.lock().unwrap() = Some(State {
            detector,
            config,
            model: settings.model,
            model_serial: settings.model_serial,
            swapping: None,
            info: None,
            frames: 0,
            last_faces: Vec::new(),
            last_found: Vec::new(),
            last_detected: None,
            pending: None,
            since_full: u64::MAX,
            stagger: Some(stagger_place(&self.obj().name())),
            regions_checked: None,
            held: VecDeque::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        self.latency.clear();
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && query.type_() == gst::QueryType::Drain {
            // Upstream wants its buffers back (e.g. before reallocating its pool).
            self.drain();
        }
        if !BaseTransformImplExt::parent_query(self, direction, query) {
            return false;
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            // Sync mode: a buffer leaves up to one inference after it came (see latency.rs).
            let ours = gst::ClockTime::try_from(self.latency.published()).unwrap_or_default();
            let (live, min, max) = q.result();
            q.set(live, min + ours, max.map(|max| max + ours));
        }
        true
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_propose_allocation(decide_query, query)?;
        // Frames in flight are buffers kept from upstream's pool: ask for that many more, so a
        // fixed-size pool (a camera's, a decoder's) is not drained dry while they wait.
        let held = self
            .settings
            .lock()
            .unwrap()
            .frames_in_flight
            .saturating_sub(1);
        if held == 0 {
            return Ok(());
        }
        let pools: Vec<_> = query.allocation_pools().collect();
        if pools.is_empty() {
            let (caps, _) = query.get_owned();
            let size = caps
                .as_ref()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                .map_or(0, |info| info.size() as u32);
            query.add_allocation_pool(None::<&gst::BufferPool>, size, held, 0);
        } else {
            for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
                let max = if max == 0 { 0 } else { max.max(min + held) };
                query.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min + held, max);
            }
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let layout = videoformat::pixel_layout(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format {:?}", info.format()))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        gst::debug!(
            CAT,
            imp = self,
            "new caps {}x{} {:?}",
            info.width(),
            info.height(),
            info.format()
        );
        // Faces of the old geometry would be misplaced: start over on the next frame.
        state.info = Some((info, layout));
        state.reset_carried();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // Held frames (frames-in-flight) go before anything that follows them in the stream;
        // a flush drops them (reset below).
        if event.is_serialized() && event.type_() != gst::EventType::FlushStop {
            self.drain();
        }
        if crate::starts_over(&event)
            && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            gst::debug!(
                CAT,
                imp = self,
                "{:?}: forgetting carried faces",
                event.type_()
            );
            state.reset_carried();
        }
        self.parent_sink_event(event)
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        use gst_base::subclass::base_transform::GenerateOutputSuccess;
        // Called after each input buffer (queued by the default submit_input_buffer, which also
        // does QoS), then again as long as it returns a buffer.
        let limit = {
            let settings = self.settings.lock().unwrap();
            if settings.async_ {
                1
            } else {
                settings.frames_in_flight.max(1) as usize
            }
        };
        if let Some(buf) = self.take_queued_buffer() {
            let job = self.begin_frame(&buf)?;
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            state.held.push_back((buf, job));
        }
        let next = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            if state.held.len() >= limit {
                state.held.pop_front()
            } else {
                None
            }
        };
        let Some((mut buf, job)) = next else {
            return Ok(GenerateOutputSuccess::NoOutput);
        };
        self.finish_frame(buf.make_mut(), job)?;
        Ok(GenerateOutputSuccess::Buffer(buf))
    }
}

/// A number from an element name (FNV-1a): auto-named elements (`retinafacedetect0`, `…1`, …)
/// get different ones.
fn stagger_place(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    }) % 1_000_003
}

impl RetinaFaceDetect {
    /// What a frame needs when it comes: in sync mode its inference is handed to the model (and
    /// waited for when it leaves); in async mode a result that came back is applied, and the
    /// frame is handed over if the model is free.
    fn begin_frame(&self, buf: &gst::BufferRef) -> Result<Job, gst::FlowError> {
        // Only what a frame needs: cloning all settings would copy the model path every frame.
        let settings::FrameSettings {
            mut params,
            interval,
            post_messages,
            client: options,
            model_serial,
            async_,
            frames_in_flight,
            roi_type,
            refresh_interval,
        } = self.settings.lock().unwrap().for_frame();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        state.detector.set_options(options);
        self.follow_model(state, model_serial);
        let (info, layout) = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        if !async_ {
            // Switched to sync: what is in flight would come late.
            state.pending = None;
        } else if self.latency.clear() {
            self.post_latency();
        }
        let this = FrameStamp {
            index: state.frames,
            pts: buf.pts(),
        };
        let mut job = Job {
            stamp: this,
            outcome: Outcome::Carried,
            analysed: false,
            arrived: false,
            params: DetectParams::default(),
            post_messages,
            timed: !async_ && frames_in_flight > 1,
            since: std::time::Instant::now(),
        };
        if let Some((pending, _, _)) = state.pending.as_mut()
            && let Some(result) = state.detector.try_collect(pending, &params)
        {
            // Async: faces of an earlier frame that came back since the last buffer.
            let (_, from, partial) = state.pending.take().expect("collected");
            let faces = result.map_err(|e| self.detect_failed(e))?;
            state.set_result(faces, from, partial.as_deref());
            job.arrived = true;
        }
        let mut run_model = state.frames % interval.max(1) as u64 == 0;
        state.frames += 1;
        if async_ && state.pending.is_some() {
            // The model is busy with an earlier frame: this one is not analysed.
            run_model = false;
        }
        if run_model {
            self.check_regions(state, &params.regions, info.width(), info.height());
        }
        // Upstream regions (`roi-type`); with `refresh-interval` > 0 they are where something
        // moved (motion gating), and the whole frame is looked at every `refresh-interval`.
        let mut partial: Option<Vec<Rect>> = None;
        state.since_full = state.since_full.saturating_add(1);
        let refresh = refresh_interval > 0 && state.since_full >= refresh_interval as u64;
        if run_model
            && !refresh
            && let Some(roi_type) = &roi_type
        {
            params
                .regions
                .extend(super::roi::upstream_regions(buf, roi_type));
            let gating = refresh_interval > 0;
            if params.regions.is_empty() {
                run_model = false;
                if !gating {
                    // Only the regions are looked at, and there are none: no faces, and
                    // nothing carried into this frame.
                    job.outcome = Outcome::Empty;
                }
                // Motion gating: nothing moved, so the faces found before are still where
                // they were (carried, not a new result) until the next whole-frame look.
            } else if gating {
                partial = Some(params.regions.clone());
                // The regions stand in for the whole frame: seen as it would see them, at a
                // cost in proportion to what moved (not a whole-frame input per region).
                params.region_scale = RegionScale::WholeFrame;
            }
        }
        if run_model {
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "buffer too small for caps {}x{}",
                            info.width(),
                            info.height()
                        )
                    );
                    gst::FlowError::Error
                })?;
            videoformat::with_core_frame(&frame, layout, |core_frame| {
                // The frame is copied into slots here, so the buffer is never needed again
                // by the model.
                if async_ {
                    let submitted = state.detector.try_submit(core_frame, &params);
                    if let Some(mut pending) = submitted.map_err(|e| self.detect_failed(e))? {
                        match state.detector.try_collect(&mut pending, &params) {
                            // Its own faces came back in time (e.g. nothing to look at).
                            Some(result) => {
                                let faces = result.map_err(|e| self.detect_failed(e))?;
                                state.set_result(faces, this, partial.as_deref());
                                job.analysed = true;
                                job.arrived = true;
                            }
                            None => state.pending = Some((pending, this, partial.clone())),
                        }
                        if partial.is_none() {
                            state.looked_at_whole(refresh_interval);
                        }
                    }
                } else {
                    let pending = state
                        .detector
                        .submit(core_frame, &params)
                        .map_err(|e| self.detect_failed(e))?;
                    if partial.is_none() {
                        state.looked_at_whole(refresh_interval);
                    }
                    job.timed = true;
                    job.outcome = Outcome::Submitted {
                        pending,
                        partial: partial.take(),
                    };
                }
                Ok::<(), gst::FlowError>(())
            })?;
        }
        job.params = params;
        Ok(job)
    }

    /// What a frame gets when it leaves, in arrival order: its own faces collected (waiting for
    /// the model if need be) or the faces carried, attached with where they come from.
    fn finish_frame(&self, buf: &mut gst::BufferRef, job: Job) -> Result<(), gst::FlowError> {
        let Job {
            stamp: this,
            outcome,
            mut analysed,
            mut arrived,
            params,
            post_messages,
            timed,
            since,
        } = job;
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (info, _) = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        match outcome {
            Outcome::Carried => {}
            Outcome::Empty => {
                state.set_result(Vec::new(), this, None);
                (analysed, arrived) = (true, true);
            }
            Outcome::Submitted { pending, partial } => {
                let faces = state
                    .detector
                    .collect(pending, &params)
                    .map_err(|e| self.detect_failed(e))?;
                state.set_result(faces, this, partial.as_deref());
                (analysed, arrived) = (true, true);
            }
        }
        let faces = state.last_faces.clone();
        let since_found: Vec<u64> = state.last_found.iter().map(|&f| this.index - f).collect();
        let provenance = facemeta::Provenance {
            analysed,
            new_result: arrived,
            detected_pts: state.last_detected.and_then(|d| d.pts),
            result_age: state.last_detected.map(|d| this.index - d.index),
        };
        drop(guard);
        // How long the buffer stayed here (its inference, and with frames in flight the later
        // frames it waited behind): what a live pipeline must allow for.
        if timed && self.latency.record(since.elapsed()) {
            self.post_latency();
        }
        // The provenance tells consumers (the tracker) whether these faces are a new result and
        // which frame they were found on.
        facemeta::attach_found(
            buf,
            &faces,
            &since_found,
            provenance,
            info.width(),
            info.height(),
        );
        if post_messages && arrived {
            self.post_faces(buf, &faces, provenance);
        }
        Ok(())
    }

    /// Finishes every held frame and sends them on, in order: before an event or query that
    /// must not overtake them (EOS, caps, segment, gap, drain).
    fn drain(&self) {
        loop {
            let next = self
                .state
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|s| s.held.pop_front());
            let Some((mut buf, job)) = next else {
                return;
            };
            if self.finish_frame(buf.make_mut(), job).is_err() {
                // The error was posted; what is left is dropped with the state.
                return;
            }
            if let Err(e) = self.obj().src_pad().push(buf) {
                gst::debug!(CAT, imp = self, "drained buffer not taken: {e:?}");
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.held.clear();
                }
                return;
            }
        }
    }

    fn detect_failed(&self, e: retinaface::detector::DetectorError) -> gst::FlowError {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("face detection failed: {e}")
        );
        gst::FlowError::Error
    }

    fn post_latency(&self) {
        gst::debug!(
            CAT,
            imp = self,
            "latency now {:?}",
            self.latency.published()
        );
        let _ = self
            .obj()
            .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
    }

    /// Between two frames: starts loading a `model` set while running, and moves to it once
    /// loaded. A model that does not load is reported and the old one stays (also as the
    /// property's value).
    fn follow_model(&self, state: &mut State, model_serial: u64) {
        if model_serial != state.model_serial {
            let model = self.settings.lock().unwrap().model.clone();
            state.model_serial = model_serial;
            let key = EngineKey::new(Path::new(&model), &state.config);
            gst::info!(CAT, imp = self, "loading {model}");
            state.detector.client_mut().swap_model(key);
            state.swapping = Some(model);
        }
        let Some(outcome) = state.detector.client_mut().poll_swap() else {
            return;
        };
        let model = state.swapping.take().unwrap_or_default();
        match outcome {
            Ok(_) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "now using {model} ({:?})",
                    state.detector.contract()
                );
                state.model = model;
            }
            Err(e) => {
                {
                    let mut s = self.settings.lock().unwrap();
                    if s.model_serial == state.model_serial {
                        s.model = state.model.clone();
                    }
                }
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenRead,
                    ("{}; frames go on with '{}'", e, state.model)
                );
            }
        }
    }

    /// Posts a WARNING for each region outside the frame, once per regions and frame size.
    fn check_regions(&self, state: &mut State, regions: &[Rect], width: u32, height: u32) {
        let key = (regions.to_vec(), width, height);
        if state.regions_checked.as_ref() == Some(&key) {
            return;
        }
        for warning in clip_regions(regions, width as usize, height as usize).1 {
            gst::element_imp_warning!(self, gst::StreamError::Format, ("{}", warning));
        }
        state.regions_checked = Some(key);
    }

    /// One message per new result, on the buffer that first carries it.
    fn post_faces(&self, buf: &gst::BufferRef, faces: &[Face], provenance: facemeta::Provenance) {
        facemeta::post_message(
            self.obj().upcast_ref(),
            MESSAGE_NAME,
            buf,
            provenance,
            faces.iter().map(|f| {
                let record = facemeta::FaceRecord::from_face_since(f, None, provenance.result_age);
                (record, provenance.analysed)
            }),
        );
    }
}
