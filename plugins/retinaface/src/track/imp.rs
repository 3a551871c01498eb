use std::sync::{LazyLock, Mutex};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::collections::VecDeque;

use retinaface::track::{HISTORY, MAX_SMOOTHING};
use retinaface::{Face, FaceRecord, TrackedFace, Tracker, TrackerConfig};

use super::MESSAGE_NAME;
use crate::facemeta::{self, Provenance};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacetrack",
        gst::DebugColorFlags::empty(),
        Some("RetinaFace face tracker"),
    )
});

/// Largest `confirm-hits`, `max-missed`, `output-missed`: beyond this many analysed frames a
/// setting no longer means anything (minutes of video at any usual rate and interval).
const MAX_FRAMES: u32 = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    /// All the tracker's settings; `TrackerConfig::default()` is the one source of their
    /// defaults.
    config: TrackerConfig,
    post_messages: bool,
}

struct State {
    tracker: Tracker,
    /// Negotiated frame size: the writer normalises boxes by it.
    info: Option<gst_video::VideoInfo>,
    /// Whether the faces coming in have landmarks; remembered from the last buffer with faces,
    /// so tracks predicted through frames without input faces are written the same way.
    landmarks: bool,
    /// pts of the last frames handled, newest last (as many as the tracker's history): where a
    /// late result's frame is found.
    recent_pts: VecDeque<Option<gst::ClockTime>>,
}

impl State {
    /// Ends every track (IDs keep counting up). Flush, seek (new segment), stream start and caps
    /// changes all come through here: a face before a seek is not the same face after it.
    fn reset(&mut self) {
        self.tracker.reset();
        self.recent_pts.clear();
    }

    /// Frames between the one a new result was found on and this one (`pts`): found by its pts
    /// among the frames handled here, so frames dropped or added between detector and tracker
    /// do not shift it; the detector's own count when the pts is unknown.
    fn result_age(&self, provenance: &Provenance, pts: Option<gst::ClockTime>) -> usize {
        if let Some(detected) = provenance.detected_pts {
            if pts == Some(detected) {
                return 0;
            }
            if let Some(back) = self
                .recent_pts
                .iter()
                .rev()
                .position(|p| *p == Some(detected))
            {
                return back + 1;
            }
        }
        provenance.result_age.unwrap_or(0) as usize
    }

    fn remember_pts(&mut self, pts: Option<gst::ClockTime>) {
        if self.recent_pts.len() >= HISTORY {
            self.recent_pts.pop_front();
        }
        self.recent_pts.push_back(pts);
    }
}

#[derive(Default)]
pub struct RetinaFaceTrack {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceTrack {
    const NAME: &'static str = "GstRetinaFaceTrack";
    type Type = super::RetinaFaceTrack;
    type ParentType = gst_base::BaseTransform;
}

fn float(name: &str, nick: &str, blurb: &str, default: f32, max: f32) -> glib::ParamSpec {
    glib::ParamSpecFloat::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(0.0)
        .maximum(max)
        .default_value(default)
        .mutable_playing()
        .build()
}

fn frames(name: &str, nick: &str, blurb: &str, default: u32) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder(name)
        .nick(nick)
        .blurb(blurb)
        .maximum(MAX_FRAMES)
        .default_value(default)
        .mutable_playing()
        .build()
}

impl ObjectImpl for RetinaFaceTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            let c = d.config;
            vec![
                float(
                    "match-iou",
                    "Match IoU",
                    "Minimum overlap (IoU) of a track's predicted box and a high-score face for them to be matched",
                    c.match_iou,
                    1.0,
                ),
                float(
                    "low-match-iou",
                    "Low-score match IoU",
                    "Minimum overlap (IoU) for matching a low-score face to a track",
                    c.low_match_iou,
                    1.0,
                ),
                float(
                    "high-score",
                    "High score",
                    "Faces scoring at least this are matched first and may start new tracks",
                    c.high_score,
                    1.0,
                ),
                float(
                    "low-score",
                    "Low score",
                    "Faces scoring at least this (and below high-score) only keep existing tracks alive; lower ones are ignored. Set the detector's confidence-threshold to this for any to arrive",
                    c.low_score,
                    1.0,
                ),
                frames(
                    "confirm-hits",
                    "Confirmation hits",
                    "Consecutive analysed frames a new face must be matched on before it gets an ID and is output (0 and 1: at once)",
                    c.confirm_hits,
                ),
                frames(
                    "max-missed",
                    "Maximum missed",
                    "A track ends after missing more than this many consecutive analysed frames; until then a reappearing face gets its old ID back",
                    c.max_missed,
                ),
                frames(
                    "output-missed",
                    "Output missed",
                    "Still output a track that missed at most this many consecutive analysed frames, at its predicted position (0: only tracks matched on the last analysed frame)",
                    c.output_missed,
                ),
                float(
                    "smoothing",
                    "Smoothing",
                    "Display smoothing: on a match the box becomes smoothing × previous + (1 − smoothing) × detection (0 = the detection itself)",
                    c.smoothing,
                    MAX_SMOOTHING,
                ),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(&format!("Post a '{MESSAGE_NAME}' element message with the tracked faces (and IDs) of every frame"))
                    .default_value(d.post_messages)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // Applied to the tracker at the next buffer (transform_ip), which keeps its tracks.
        let mut s = self.settings.lock().unwrap();
        let c = &mut s.config;
        match pspec.name() {
            "match-iou" => c.match_iou = value.get().unwrap(),
            "low-match-iou" => c.low_match_iou = value.get().unwrap(),
            "high-score" => c.high_score = value.get().unwrap(),
            "low-score" => c.low_score = value.get().unwrap(),
            "confirm-hits" => c.confirm_hits = value.get().unwrap(),
            "max-missed" => c.max_missed = value.get().unwrap(),
            "output-missed" => c.output_missed = value.get().unwrap(),
            "smoothing" => c.smoothing = value.get().unwrap(),
            "post-messages" => s.post_messages = value.get().unwrap(),
            _ => unreachable!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let c = &s.config;
        match pspec.name() {
            "match-iou" => c.match_iou.to_value(),
            "low-match-iou" => c.low_match_iou.to_value(),
            "high-score" => c.high_score.to_value(),
            "low-score" => c.low_score.to_value(),
            "confirm-hits" => c.confirm_hits.to_value(),
            "max-missed" => c.max_missed.to_value(),
            "output-missed" => c.output_missed.to_value(),
            "smoothing" => c.smoothing.to_value(),
            "post-messages" => s.post_messages.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceTrack {}

impl ElementImpl for RetinaFaceTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace face tracker",
                "Filter/Analyzer/Video",
                "Gives detected faces track IDs (object_id) that persist across frames and moves them along on frames the detector skipped",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        // The detector's formats: the tracker sits right after it.
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&crate::videoformat::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RetinaFaceTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let config = self.settings.lock().unwrap().config;
        // A new tracker per start: IDs start from 1 again for a new run of the element.
        *self.state.lock().unwrap() = Some(State {
            tracker: Tracker::new(config),
            info: None,
            landmarks: true,
            recent_pts: VecDeque::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        if state.info.as_ref() != Some(&info) {
            // Boxes of the old geometry would be matched against faces in the new one.
            gst::debug!(CAT, imp = self, "new caps {incaps}: ending all tracks");
            state.reset();
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if crate::starts_over(&event)
            && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            gst::debug!(CAT, imp = self, "{:?}: ending all tracks", event.type_());
            state.reset();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Settings {
            config,
            post_messages,
        } = *self.settings.lock().unwrap();
        let input = facemeta::read(buf);
        // Another producer does not say: each of its frames is taken as a fresh detection.
        let provenance =
            facemeta::provenance(buf).unwrap_or_else(|| Provenance::analysed(buf.pts()));
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (width, height) = state
            .info
            .as_ref()
            .map(|i| (i.width(), i.height()))
            .ok_or(gst::FlowError::NotNegotiated)?;
        if !input.is_empty() {
            state.landmarks = input.iter().any(|f| !f.landmarks.is_empty());
        }
        state.tracker.set_config(config);
        // A new result (analysed here, or an async one found on an earlier frame) is a
        // detection of the frame it was found on; a carried one only moves the tracks along.
        let age = state.result_age(&provenance, buf.pts());
        let mut faces = if provenance.new_result {
            let detections: Vec<Face> = input.iter().map(facemeta::FaceRecord::to_face).collect();
            state.tracker.update_delayed(&detections, age)
        } else {
            state.tracker.predict()
        };
        state.remember_pts(buf.pts());
        // Faces seen but not confirmed yet are passed on without an ID, so nothing the detector
        // found goes missing downstream (a blur would otherwise leave a new face visible).
        faces.extend(state.tracker.tentative());
        let landmarks = state.landmarks;
        drop(guard);
        gst::trace!(
            CAT,
            imp = self,
            "{} faces in ({}, {age} frames old), {} out",
            input.len(),
            if provenance.new_result {
                "new result"
            } else {
                "carried"
            },
            faces.len()
        );
        facemeta::remove(buf);
        facemeta::attach_tracked(buf, &faces, provenance, landmarks, width, height);
        if post_messages {
            self.post_faces(buf, provenance, &faces);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl RetinaFaceTrack {
    /// One element message per frame with the same faces as the metas: tracked ones with their
    /// `id`, then unconfirmed ones without.
    fn post_faces(&self, buf: &gst::BufferRef, provenance: Provenance, faces: &[TrackedFace]) {
        facemeta::post_message(
            self.obj().upcast_ref(),
            MESSAGE_NAME,
            buf,
            provenance,
            faces.iter().map(|t| {
                let id = (t.id != 0).then_some(t.id);
                let since = Some(t.since_detection as u64);
                (FaceRecord::from_face_since(&t.face, id, since), t.fresh)
            }),
        );
    }
}
