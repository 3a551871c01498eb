use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use retinaface::embedding::{Embedder, Embedding};
use retinaface::events::snapshot::face_quality;
use retinaface::library::{
    self, CROP_SIDE, DEFAULT_THRESHOLD, Library, LoadReport, Match, TrackConfig, Tracks,
    aligned_rgb, write_unknown,
};
use retinaface::quality::{FaceBox, QualityConfig};
use retinaface::{FaceRecord, Frame};

use super::loading::{self, Background, Request};
use super::{MAX_SHOT_AGE, MESSAGE_NAME, default_model_path};
use crate::facemeta::{self, Identity, Provenance};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafaceidentify",
        gst::DebugColorFlags::empty(),
        Some("RetinaFace face identification"),
    )
});

/// Buffers a track may be absent before it is forgotten (and its crop written to the unknown
/// folder). The tracker never reuses an ID, so forgetting a track that comes back later only
/// costs embedding it again.
const FORGET_AFTER: u64 = 250;

/// How often a watched library folder is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Settings {
    library: Option<String>,
    model: String,
    detector_model: String,
    threshold: f32,
    unknown_folder: Option<String>,
    watch_library: bool,
    post_messages: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            library: None,
            model: default_model_path(),
            detector_model: crate::detect::default_model_path(),
            threshold: DEFAULT_THRESHOLD,
            unknown_folder: None,
            watch_library: true,
            post_messages: false,
        }
    }
}

/// What a frame needs of the settings, copied per buffer (the paths are read from the settings
/// only when the folder is checked or a track ends).
#[derive(Debug, Clone, Copy)]
struct FrameSettings {
    threshold: f32,
    /// An unknown folder is set: each track's best crop is kept.
    keep_crops: bool,
    watch_library: bool,
    post_messages: bool,
}

impl Settings {
    fn for_frame(&self) -> FrameSettings {
        FrameSettings {
            threshold: self.threshold,
            keep_crops: self.unknown_folder.is_some(),
            watch_library: self.watch_library,
            post_messages: self.post_messages,
        }
    }

    /// What loading the library needs; `None` without a library.
    fn request(&self) -> Option<Request> {
        Some(Request {
            folder: PathBuf::from(self.library.as_ref()?),
            detector_model: PathBuf::from(&self.detector_model),
            embedding_model: PathBuf::from(&self.model),
        })
    }
}

/// The best aligned crop of a track so far (for the unknown folder).
struct Shot {
    quality: f32,
    rgb: Vec<u8>,
}

struct State {
    embedder: Embedder,
    library: Library,
    tracks: Tracks,
    info: Option<gst_video::VideoInfo>,
    background: Background,
    /// The library folder's [`library::fingerprint`] when it was last loaded, and when the
    /// folder was last checked (`watch-library`).
    fingerprint: Option<u64>,
    checked: Instant,
    /// Buffers handled, and the last buffer each track was seen on.
    frame: u64,
    last_seen: HashMap<u64, u64>,
    /// Per track, its best crop (only with an unknown folder).
    shots: HashMap<u64, Shot>,
    /// An embedding failure was reported (once per run: the next ones only go to the log).
    warned: bool,
    /// A face with a track ID came by: a tracker runs upstream, and its faces without an ID are
    /// tentative ones (not confirmed yet), left to the track they become rather than embedded
    /// frame by frame.
    tracked_input: bool,
}

/// One face to embed on this frame: its index among the buffer's faces, landmarks and quality.
struct Job {
    index: usize,
    landmarks: [[f32; 2]; 5],
    quality: f32,
}

#[derive(Default)]
pub struct RetinaFaceIdentify {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceIdentify {
    const NAME: &'static str = "GstRetinaFaceIdentify";
    type Type = super::RetinaFaceIdentify;
    type ParentType = gst_base::BaseTransform;
}

fn path(name: &str, nick: &str, blurb: &str, default: Option<&str>) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(default)
        .mutable_playing()
        .build()
}

impl ObjectImpl for RetinaFaceIdentify {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                path(
                    "library",
                    "Face library",
                    "Folder with one sub-folder of photos per person (library/Alice/1.jpg, …). Set while playing, the new library is loaded in the background and used when ready",
                    None,
                ),
                glib::ParamSpecString::builder("model")
                    .nick("Embedding model")
                    .blurb("ONNX face embedding model (ArcFace-style, 112×112 aligned crops; README \"Who is it\")")
                    .default_value(Some(d.model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("detector-model")
                    .nick("Detector model")
                    .blurb("RetinaFace model that finds the face in each library photo")
                    .default_value(Some(d.detector_model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Threshold")
                    .blurb("Cosine similarity to a person's photo at and above which a face is named; below it the face is unknown")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(d.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("watch-library")
                    .nick("Watch the library")
                    .blurb("Check the library folder every 2 s while playing and load it again in the background when a person or photo was added, removed or replaced")
                    .default_value(d.watch_library)
                    .mutable_playing()
                    .build(),
                path(
                    "unknown-folder",
                    "Unknown faces folder",
                    "Folder where the best aligned crop of each track nobody matched is written (JPEG, mode 0600) when the track ends; move one into a person's folder to enrol them. Unset: none written",
                    None,
                ),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(&format!("Post a '{MESSAGE_NAME}' element message with the faces (and names) of every frame"))
                    .default_value(d.post_messages)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let non_empty =
            |v: &glib::Value| v.get::<Option<String>>().unwrap().filter(|s| !s.is_empty());
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "library" => {
                s.library = non_empty(value);
                let request = s.request();
                drop(s);
                self.library_changed(request);
                return;
            }
            "model" => s.model = non_empty(value).unwrap_or_else(default_model_path),
            "detector-model" => {
                s.detector_model =
                    non_empty(value).unwrap_or_else(crate::detect::default_model_path)
            }
            "threshold" => s.threshold = value.get().unwrap(),
            "unknown-folder" => s.unknown_folder = non_empty(value),
            "watch-library" => s.watch_library = value.get().unwrap(),
            "post-messages" => s.post_messages = value.get().unwrap(),
            _ => unreachable!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "library" => s.library.to_value(),
            "model" => s.model.to_value(),
            "detector-model" => s.detector_model.to_value(),
            "threshold" => s.threshold.to_value(),
            "unknown-folder" => s.unknown_folder.to_value(),
            "watch-library" => s.watch_library.to_value(),
            "post-messages" => s.post_messages.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceIdentify {}

impl ElementImpl for RetinaFaceIdentify {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace face identification",
                "Filter/Analyzer/Video",
                "Names tracked faces by matching their embeddings against a face library (a folder per person)",
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

impl BaseTransformImpl for RetinaFaceIdentify {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let embedder = loading::connect_embedder(std::path::Path::new(&settings.model))
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        for warning in &embedder.warnings {
            gst::element_imp_warning!(self, gst::LibraryError::Init, ("{}", warning));
        }
        // The first frames are matched against the library: it is loaded before they come
        // (with its cache, a large library loads in seconds).
        let request = settings.request();
        let fingerprint = request
            .as_ref()
            .and_then(|r| library::fingerprint(&r.folder));
        let library = match request {
            None => Library::default(),
            Some(request) => {
                let (library, report) = loading::load(&request)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)))?;
                self.report(&library, &report);
                library
            }
        };
        *self.state.lock().unwrap() = Some(State {
            embedder,
            library,
            tracks: Tracks::new(TrackConfig {
                threshold: settings.threshold,
                ..TrackConfig::default()
            }),
            info: None,
            background: Background::default(),
            fingerprint,
            checked: Instant::now(),
            frame: 0,
            last_seen: HashMap::new(),
            shots: HashMap::new(),
            warned: false,
            tracked_input: false,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(mut state) = self.state.lock().unwrap().take() {
            self.end_all(&mut state);
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        state.info = Some(info);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let ends = crate::starts_over(&event) || matches!(event.view(), gst::EventView::Eos(_));
        if ends && let Some(state) = self.state.lock().unwrap().as_mut() {
            // The tracker ends its tracks here too: their crops are due now.
            gst::debug!(CAT, imp = self, "{:?}: ending all tracks", event.type_());
            self.end_all(state);
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().for_frame();
        let faces = facemeta::read(buf);
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        self.take_reloaded(state);
        if settings.watch_library {
            self.watch(state);
        }
        state.tracks.config.threshold = settings.threshold;
        state.frame += 1;
        let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        state.tracked_input |= faces.iter().any(|f| f.id.is_some());
        let per_frame = self.embed_shots(state, buf, &info, &faces, settings);
        let threshold = settings.threshold;
        let identities: Vec<Option<Identity>> = faces
            .iter()
            .zip(&per_frame)
            .map(|(f, now)| match f.id {
                Some(id) => state.tracks.nearest(id).map(|m| who(m, threshold)),
                None => now.as_ref().map(|m| who(m, threshold)),
            })
            .collect();
        facemeta::identify(buf, &identities);
        for id in faces.iter().filter_map(|f| f.id) {
            state.last_seen.insert(id, state.frame);
        }
        self.forget_gone(state);
        drop(guard);
        if settings.post_messages {
            let provenance =
                facemeta::provenance(buf).unwrap_or_else(|| Provenance::analysed(buf.pts()));
            let records = facemeta::read(buf);
            facemeta::post_message(
                self.obj().upcast_ref(),
                MESSAGE_NAME,
                buf,
                provenance,
                records.into_iter().map(|f| {
                    let fresh = f.since_detection == Some(0);
                    (f, fresh)
                }),
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// How `m` reads on a face: named at or above `threshold`, unknown below.
fn who(m: &Match, threshold: f32) -> Identity<'_> {
    Identity {
        name: m.reaches(threshold).then_some(m.name.as_str()),
        similarity: m.similarity,
    }
}

/// Whether `face`'s landmarks are recent enough to align a crop on (another producer that does
/// not say how old they are: taken as measured on this frame).
fn fit_to_embed(face: &FaceRecord) -> bool {
    face.landmarks.len() == 5 && face.since_detection.unwrap_or(0) <= MAX_SHOT_AGE
}

impl RetinaFaceIdentify {
    /// Embeds the faces of this frame that need it: tracks that want a (better) shot, and every
    /// untracked face. Returns, per face, the nearest person of an untracked face embedded now.
    fn embed_shots(
        &self,
        state: &mut State,
        buf: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        faces: &[FaceRecord],
        settings: FrameSettings,
    ) -> Vec<Option<Match>> {
        let mut nearest = vec![None; faces.len()];
        // Without a library nothing can be named; embed only to collect unknown crops.
        let useful = !state.library.is_empty() || settings.keep_crops;
        if !useful || !faces.iter().any(fit_to_embed) {
            return nearest;
        }
        let Some(layout) = crate::videoformat::pixel_layout(info.format()) else {
            return nearest;
        };
        let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info) else {
            gst::warning!(
                CAT,
                imp = self,
                "cannot map the frame: faces not identified"
            );
            return nearest;
        };
        crate::videoformat::with_core_frame(&frame, layout, |core| {
            let jobs = jobs(state, core, faces);
            if jobs.is_empty() {
                return;
            }
            let landmarks: Vec<_> = jobs.iter().map(|j| j.landmarks).collect();
            let embeddings = match state.embedder.embed(core, &landmarks) {
                Ok(e) => e,
                Err(e) => {
                    self.embedding_failed(state, &e.to_string());
                    return;
                }
            };
            gst::trace!(CAT, imp = self, "{} faces embedded", embeddings.len());
            for (job, embedding) in jobs.iter().zip(embeddings) {
                match faces[job.index].id {
                    Some(id) => {
                        self.add_shot(state, core, id, job, embedding, settings.keep_crops);
                    }
                    None => nearest[job.index] = state.library.nearest(&embedding),
                }
            }
        });
        nearest
    }

    /// A new shot of track `id`: into its estimate, and its crop kept when it is the best yet.
    fn add_shot(
        &self,
        state: &mut State,
        core: &Frame,
        id: u64,
        job: &Job,
        embedding: Embedding,
        keep_crop: bool,
    ) {
        state.tracks.add(id, embedding, job.quality, &state.library);
        if let Some(m) = state.tracks.nearest(id) {
            // Names only at DEBUG: they are personal data.
            gst::debug!(
                CAT,
                imp = self,
                "track {id}: nearest '{}' at {:.3}",
                m.name,
                m.similarity
            );
        }
        if !keep_crop
            || state
                .shots
                .get(&id)
                .is_some_and(|s| s.quality >= job.quality)
        {
            return;
        }
        if let Ok(rgb) = aligned_rgb(core, &job.landmarks, CROP_SIDE) {
            state.shots.insert(
                id,
                Shot {
                    quality: job.quality,
                    rgb,
                },
            );
        }
    }

    fn embedding_failed(&self, state: &mut State, why: &str) {
        if state.warned {
            gst::warning!(CAT, imp = self, "faces not identified: {why}");
        } else {
            state.warned = true;
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Failed,
                (
                    "faces could not be embedded, so they are not identified: {}",
                    why
                )
            );
        }
    }

    /// Forgets the tracks not seen for [`FORGET_AFTER`] buffers.
    fn forget_gone(&self, state: &mut State) {
        let now = state.frame;
        let gone: Vec<u64> = state
            .last_seen
            .iter()
            .filter(|(_, seen)| now - **seen > FORGET_AFTER)
            .map(|(id, _)| *id)
            .collect();
        self.end_tracks(state, &gone);
    }

    /// Ends every track (EOS, flush, new segment, stop).
    fn end_all(&self, state: &mut State) {
        let ids: Vec<u64> = state.last_seen.keys().copied().collect();
        self.end_tracks(state, &ids);
        state.tracks.reset();
        state.shots.clear();
    }

    /// Ends the tracks `ids` ([`Self::end_track`]).
    fn end_tracks(&self, state: &mut State, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let folder = self.settings.lock().unwrap().unknown_folder.clone();
        for &id in ids {
            self.end_track(state, id, folder.as_deref());
        }
    }

    /// Ends track `id`: if it was embedded and nobody matched, its best crop goes to the unknown
    /// folder.
    fn end_track(&self, state: &mut State, id: u64, folder: Option<&str>) {
        state.last_seen.remove(&id);
        let shot = state.shots.remove(&id);
        let unknown = state.tracks.embedded(id) && state.tracks.name(id).is_none();
        state.tracks.retain(|t| t != id);
        let (Some(folder), Some(shot), true) = (folder, shot, unknown) else {
            return;
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stem = format!("{}-{stamp}-track{id}", self.obj().name());
        match write_unknown(std::path::Path::new(folder), &stem, &shot.rgb, CROP_SIDE) {
            Ok(path) => gst::debug!(
                CAT,
                imp = self,
                "unknown face written to {}",
                path.display()
            ),
            Err(e) => gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "cannot write an unknown face into '{}': {} (check that the folder is writable)",
                    folder,
                    e
                )
            ),
        }
    }

    /// `library` was set: load it in the background when running (at start otherwise).
    fn library_changed(&self, request: Option<Request>) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return;
        };
        match request {
            Some(request) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "loading the face library in the background"
                );
                state.background.start(request);
            }
            None => {
                // No library: nobody is named from the next frame on.
                state.background = Background::default();
                state.library = Library::default();
                state.tracks.rematch(&state.library);
            }
        }
    }

    /// Loads the library again in the background when its folder changed since it was loaded
    /// (checked every [`WATCH_EVERY`]).
    fn watch(&self, state: &mut State) {
        if state.checked.elapsed() < WATCH_EVERY || state.background.running() {
            return;
        }
        state.checked = Instant::now();
        let Some(request) = self.settings.lock().unwrap().request() else {
            return;
        };
        let now = library::fingerprint(&request.folder);
        if now != state.fingerprint {
            gst::info!(
                CAT,
                imp = self,
                "the face library changed: loading it again"
            );
            state.fingerprint = now;
            state.background.start(request);
        }
    }

    /// Switches to a library loaded in the background, if one is ready.
    fn take_reloaded(&self, state: &mut State) {
        let Some((folder, loaded)) = state.background.poll() else {
            return;
        };
        match loaded {
            Ok((library, report)) => {
                self.report(&library, &report);
                state.library = library;
                state.tracks.rematch(&state.library);
            }
            Err(e) => gst::element_imp_warning!(
                self,
                gst::ResourceError::OpenRead,
                (
                    "face library '{}' not loaded, the previous one stays: {}",
                    folder.display(),
                    e
                )
            ),
        }
    }

    /// Warnings for the photos a load skipped, and a summary in the log.
    fn report(&self, library: &Library, report: &LoadReport) {
        for skipped in &report.skipped {
            gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", skipped));
        }
        if let Some(e) = &report.cache_error {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "the face library's cache cannot be written ({}): the next start embeds every photo again",
                    e
                )
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "face library: {} people, {} photos from the cache, {} embedded now, {} skipped",
            library.people.len(),
            report.cached,
            report.computed,
            report.skipped.len()
        );
    }
}

/// The faces of `core` to embed now, with their landmarks and quality.
fn jobs(state: &State, core: &Frame, faces: &[FaceRecord]) -> Vec<Job> {
    let config = QualityConfig::default();
    faces
        .iter()
        .enumerate()
        .filter(|(_, f)| fit_to_embed(f))
        .filter_map(|(index, f)| {
            let face = FaceBox::of_record(f);
            let landmarks = face.landmarks?;
            let quality = face_quality(&face, Some(core), &config).overall;
            let wanted = match f.id {
                Some(id) => state.tracks.wants(id, quality),
                None => !state.tracked_input,
            };
            wanted.then_some(Job {
                index,
                landmarks,
                quality,
            })
        })
        .collect()
}
