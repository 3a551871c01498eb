use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use retinaface::FaceRecord;
use retinaface::events::payload::{EventMessage, FrameMessage, Snapshot};
use retinaface::events::snapshot::{face_crop, face_quality};
use retinaface::events::{
    EndReason, EventConfig, EventKind, FrameOutcome, Observation, Stamp, TrackEvent, Tracks,
};
use retinaface::publish::{Class, Pushed, Shared};
use retinaface::quality::{FaceBox, QualityConfig};

use super::client::{self, Connect, Link, Publisher, Report};
use super::shots::{self, Shots};
use super::{STATS_NAME, SnapshotMode};
use crate::facemeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacepublish",
        gst::DebugColorFlags::empty(),
        Some("RetinaFace face events to MQTT"),
    )
});

/// Margin around the face box in snapshots and in the quality crop, × box width/height.
const MARGIN: f32 = 0.25;
/// Least time between two WARNINGs about dropped messages.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Settings {
    broker: String,
    camera: String,
    topic_prefix: String,
    client_id: String,
    username: String,
    password: String,
    ca_file: String,
    cert_file: String,
    key_file: String,
    qos: u32,
    clean_session: bool,
    frames: bool,
    snapshot: SnapshotMode,
    snapshot_size: u32,
    snapshot_dir: String,
    update_interval_ms: u32,
    update_gain: f32,
    end_timeout_ms: u32,
    max_queue: u32,
    drain_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let events = EventConfig::default();
        Self {
            broker: "mqtt://localhost:1883".into(),
            camera: "camera".into(),
            topic_prefix: String::new(),
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            qos: 1,
            clean_session: false,
            frames: false,
            snapshot: SnapshotMode::Embed,
            snapshot_size: 256,
            snapshot_dir: String::new(),
            update_interval_ms: (events.update_interval / 1_000_000) as u32,
            update_gain: events.update_gain,
            end_timeout_ms: (events.end_after / 1_000_000) as u32,
            max_queue: 10_000,
            drain_timeout_ms: 5_000,
        }
    }
}

impl Settings {
    fn events(&self) -> EventConfig {
        EventConfig {
            update_interval: self.update_interval_ms as u64 * 1_000_000,
            update_gain: self.update_gain,
            end_after: self.end_timeout_ms as u64 * 1_000_000,
        }
    }

    fn prefix(&self) -> String {
        if self.topic_prefix.is_empty() {
            format!("retinaface/{}", self.camera)
        } else {
            self.topic_prefix.trim_end_matches('/').to_string()
        }
    }

    /// Checks the broker settings and reads the TLS files: an error names the bad value.
    fn connect(&self) -> Result<Connect, String> {
        let url = client::parse_url(&self.broker)?;
        let tls = if url.tls {
            Some(client::tls_config(
                &self.ca_file,
                &self.cert_file,
                &self.key_file,
            )?)
        } else {
            None
        };
        let credentials = if self.username.is_empty() {
            url.credentials
        } else {
            Some((self.username.clone(), self.password.clone()))
        };
        let qos = match self.qos {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            _ => rumqttc::QoS::ExactlyOnce,
        };
        let client_id = if self.client_id.is_empty() {
            format!("retinaface-{}", self.camera)
        } else {
            self.client_id.clone()
        };
        Ok(Connect {
            url: self.broker.clone(),
            host: url.host,
            port: url.port,
            tls,
            client_id,
            credentials,
            qos,
            clean_session: self.clean_session,
            status_topic: format!("{}/status", self.prefix()),
        })
    }
}

struct State {
    outbox: Arc<Shared>,
    link: Arc<Link>,
    publisher: Option<Publisher>,
    broker: String,
    camera: String,
    prefix: String,
    session: u64,
    tracks: Tracks,
    shots: Shots,
    info: Option<gst_video::VideoInfo>,
    frame: u64,
    last: Option<Stamp>,
    /// Drops reported in the last WARNING, and when it was posted.
    warned: (u64, u64),
    warned_at: Option<Instant>,
}

/// Messages for the bus, posted after the state lock is released.
#[derive(Default)]
struct Notes {
    warnings: Vec<String>,
}

#[derive(Default)]
pub struct RetinaFacePublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The stats of the last run, for the `stats` property after stop.
    last_stats: Mutex<Option<gst::Structure>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFacePublish {
    const NAME: &'static str = "GstRetinaFacePublish";
    type Type = super::RetinaFacePublish;
    type ParentType = gst_base::BaseTransform;
}

fn string(name: &str, nick: &str, blurb: &str, default: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(Some(default))
        .mutable_ready()
        .build()
}

fn uint(
    name: &str,
    nick: &str,
    blurb: &str,
    (min, max, default): (u32, u32, u32),
) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(min)
        .maximum(max)
        .default_value(default)
        .mutable_playing()
        .build()
}

impl ObjectImpl for RetinaFacePublish {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                string("broker", "Broker", "mqtt://host[:port] or mqtts://host[:port] (TLS; ca-file, or the system's CAs)", &d.broker),
                string("camera", "Camera", "Camera name: in every message and in the default topic prefix", &d.camera),
                string("topic-prefix", "Topic prefix", "Topics start with this (empty: retinaface/<camera>)", &d.topic_prefix),
                string("client-id", "Client ID", "MQTT client ID, stable for a persistent session (empty: retinaface-<camera>)", &d.client_id),
                string("username", "Username", "MQTT username (empty: none, or the one in the broker URL)", &d.username),
                string("password", "Password", "MQTT password", &d.password),
                string("ca-file", "CA file", "PEM file of the CA certificates that sign the broker's (mqtts://; empty: the system's)", &d.ca_file),
                string("cert-file", "Client certificate", "PEM client certificate for mqtts:// (with key-file; empty: none)", &d.cert_file),
                string("key-file", "Client key", "PEM private key of cert-file", &d.key_file),
                glib::ParamSpecUInt::builder("qos")
                    .nick("QoS")
                    .blurb("MQTT quality of service of every message: 0, 1 (at least once) or 2")
                    .maximum(2)
                    .default_value(d.qos)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("clean-session")
                    .nick("Clean session")
                    .blurb("Start a new MQTT session on every connection (false: persistent session)")
                    .default_value(d.clean_session)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("frames")
                    .nick("Per-frame messages")
                    .blurb("Also send every frame's faces to <prefix>/frames (dropped first when the queue is full)")
                    .default_value(d.frames)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("snapshot", d.snapshot)
                    .nick("Snapshot")
                    .blurb("Where the best shot's JPEG goes: inside the event (base64), its own topic, or nowhere")
                    .mutable_playing()
                    .build(),
                uint("snapshot-size", "Snapshot size", "Longest side of snapshots, pixels", (16, 4096, d.snapshot_size)),
                string("snapshot-dir", "Snapshot folder", "Also write each track's best shot to <folder>/<camera>/<id>.jpg (empty: no)", &d.snapshot_dir),
                uint("update-interval", "Update interval", "Least time between two messages (new/update) of one track, ms of stream time", (0, u32::MAX, d.update_interval_ms)),
                glib::ParamSpecFloat::builder("update-gain")
                    .nick("Update gain")
                    .blurb("An update is sent when the best shot's quality beats the last one sent by this fraction (0.2 = 20 %)")
                    .minimum(0.0)
                    .maximum(100.0)
                    .default_value(d.update_gain)
                    .mutable_playing()
                    .build(),
                uint("end-timeout", "End timeout", "A track ends once unseen for this long, ms of stream time (keep it above the tracker's max-missed span)", (0, u32::MAX, d.end_timeout_ms)),
                uint("max-queue", "Maximum queue", "Messages held while the broker is unreachable; beyond, per-frame messages are dropped first, then the oldest events (with a WARNING)", (1, 10_000_000, d.max_queue)),
                uint("drain-timeout", "Drain timeout", "At EOS and stop, wait this long (ms) for the queue to be delivered", (0, 3_600_000, d.drain_timeout_ms)),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(&format!("'{STATS_NAME}': queued, pushed, delivered, dropped-frames, dropped-events, connected, connections, open-tracks"))
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let text = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            "broker" => s.broker = text(),
            "camera" => s.camera = text(),
            "topic-prefix" => s.topic_prefix = text(),
            "client-id" => s.client_id = text(),
            "username" => s.username = text(),
            "password" => s.password = text(),
            "ca-file" => s.ca_file = text(),
            "cert-file" => s.cert_file = text(),
            "key-file" => s.key_file = text(),
            "qos" => s.qos = value.get().unwrap(),
            "clean-session" => s.clean_session = value.get().unwrap(),
            "frames" => s.frames = value.get().unwrap(),
            "snapshot" => s.snapshot = value.get().unwrap(),
            "snapshot-size" => s.snapshot_size = value.get().unwrap(),
            "snapshot-dir" => s.snapshot_dir = text(),
            "update-interval" => s.update_interval_ms = value.get().unwrap(),
            "update-gain" => s.update_gain = value.get().unwrap(),
            "end-timeout" => s.end_timeout_ms = value.get().unwrap(),
            "max-queue" => s.max_queue = value.get().unwrap(),
            "drain-timeout" => s.drain_timeout_ms = value.get().unwrap(),
            _ => unreachable!(),
        }
        if pspec.name() != "password" {
            gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "broker" => s.broker.to_value(),
            "camera" => s.camera.to_value(),
            "topic-prefix" => s.topic_prefix.to_value(),
            "client-id" => s.client_id.to_value(),
            "username" => s.username.to_value(),
            "password" => s.password.to_value(),
            "ca-file" => s.ca_file.to_value(),
            "cert-file" => s.cert_file.to_value(),
            "key-file" => s.key_file.to_value(),
            "qos" => s.qos.to_value(),
            "clean-session" => s.clean_session.to_value(),
            "frames" => s.frames.to_value(),
            "snapshot" => s.snapshot.to_value(),
            "snapshot-size" => s.snapshot_size.to_value(),
            "snapshot-dir" => s.snapshot_dir.to_value(),
            "update-interval" => s.update_interval_ms.to_value(),
            "update-gain" => s.update_gain.to_value(),
            "end-timeout" => s.end_timeout_ms.to_value(),
            "max-queue" => s.max_queue.to_value(),
            "drain-timeout" => s.drain_timeout_ms.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFacePublish {}

impl ElementImpl for RetinaFacePublish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace face events publisher",
                "Filter/Analyzer/Video",
                "Publishes new/update/end events per tracked face, with the best shot, to an MQTT broker",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        // The detector's formats: snapshots are cut from the frame.
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&crate::videoformat::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl RetinaFacePublish {
    fn stats(&self) -> gst::Structure {
        let guard = self.state.lock().unwrap();
        let Some(state) = guard.as_ref() else {
            return self
                .last_stats
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| gst::Structure::new_empty(STATS_NAME));
        };
        state.stats()
    }

    /// Turns `events` into messages on the outbox (snapshots encoded here).
    fn send_events(
        &self,
        state: &mut State,
        settings: &Settings,
        events: &[TrackEvent],
        notes: &mut Notes,
    ) {
        for event in events {
            let id = event.track.id;
            let jpeg = match settings.snapshot {
                SnapshotMode::None if settings.snapshot_dir.is_empty() => None,
                _ => state.shots.jpeg(id),
            };
            if let (Some(jpeg), false) = (&jpeg, settings.snapshot_dir.is_empty())
                && event.kind != EventKind::End
                && let Err(e) = shots::write_file(&settings.snapshot_dir, &state.camera, id, jpeg)
            {
                notes.warnings.push(format!(
                    "cannot write the snapshot of track {id} under snapshot-dir '{}': {e}",
                    settings.snapshot_dir
                ));
            }
            let snapshot = match (settings.snapshot, jpeg) {
                (SnapshotMode::Embed, Some(j)) => Some(Snapshot {
                    width: j.width,
                    height: j.height,
                    format: "jpeg",
                    data: Some(base64::engine::general_purpose::STANDARD.encode(&j.bytes)),
                    topic: None,
                }),
                (SnapshotMode::Topic, Some(j)) => {
                    let topic = format!("{}/snapshot/{id}", state.prefix);
                    let pushed =
                        state
                            .outbox
                            .push_unnumbered(Class::Event, topic.clone(), j.bytes, false);
                    state.note_drops(pushed, notes);
                    Some(Snapshot {
                        width: j.width,
                        height: j.height,
                        format: "jpeg",
                        data: None,
                        topic: Some(topic),
                    })
                }
                _ => None,
            };
            let topic = format!("{}/events", state.prefix);
            let (camera, session) = (state.camera.clone(), state.session);
            let pushed = state.outbox.push(Class::Event, |seq| {
                let message = EventMessage::new(&camera, session, seq, event, snapshot);
                let json = serde_json::to_vec(&message).expect("numbers and strings serialize");
                (topic, json, false)
            });
            gst::debug!(
                CAT,
                imp = self,
                "{:?} track {id} (seq {:?})",
                event.kind,
                pushed.seq
            );
            state.note_drops(pushed, notes);
            if event.kind == EventKind::End {
                state.shots.forget(id);
            }
        }
    }

    /// Ends every open track for `reason` and queues the end events.
    fn settle(&self, reason: EndReason) {
        let settings = self.settings.lock().unwrap().clone();
        let mut notes = Notes::default();
        {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return;
            };
            let last = state.last;
            let events = state.tracks.end_all(reason, last);
            if !events.is_empty() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "{reason:?}: ending {} tracks",
                    events.len()
                );
            }
            self.send_events(state, &settings, &events, &mut notes);
            state.shots.clear();
        }
        self.post(notes);
    }

    /// Waits up to `drain-timeout` for the queue to be delivered (streaming thread at EOS, or
    /// stop); warns about what is left.
    fn drain(&self, when: &str) {
        let timeout = Duration::from_millis(self.settings.lock().unwrap().drain_timeout_ms as u64);
        let Some((outbox, broker)) = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| (s.outbox.clone(), s.broker.clone()))
        else {
            return;
        };
        if !outbox.wait_delivered(timeout) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "{when}: {} messages not delivered to broker {broker} within drain-timeout ({} ms)",
                    outbox.undelivered(),
                    timeout.as_millis()
                )
            );
        }
    }

    fn post(&self, notes: Notes) {
        for warning in notes.warnings {
            gst::element_imp_warning!(self, gst::ResourceError::Write, ("{warning}"));
        }
    }

    /// The time of `buf` in every clock.
    fn stamp(&self, buf: &gst::BufferRef) -> Stamp {
        let wall = unix_now();
        let pts = buf.pts();
        let running_time = self
            .obj()
            .segment()
            .downcast_ref::<gst::ClockTime>()
            .and_then(|s| s.to_running_time(pts));
        let ns = |t: Option<gst::ClockTime>| t.map(gst::ClockTime::nseconds);
        Stamp {
            wall: wall.as_secs_f64(),
            running_time: ns(running_time),
            pts: ns(pts),
            clock: ns(running_time)
                .or(ns(pts))
                .unwrap_or(wall.as_nanos() as u64),
        }
    }
}

impl State {
    fn stats(&self) -> gst::Structure {
        let s = self.outbox.stats();
        gst::Structure::builder(STATS_NAME)
            .field("queued", s.queued as u64)
            .field("pushed", s.pushed)
            .field("delivered", s.delivered)
            .field("dropped-frames", s.dropped_frames)
            .field("dropped-events", s.dropped_events)
            .field("connected", self.link.connected.load(Ordering::SeqCst))
            .field("connections", self.link.connections.load(Ordering::SeqCst))
            .field("open-tracks", self.tracks.open() as u64)
            .build()
    }

    /// A WARNING when messages were dropped: the first drop at once, then at most every
    /// [`DROP_WARNING_EVERY`], with the totals.
    fn note_drops(&mut self, pushed: Pushed, notes: &mut Notes) {
        if pushed.dropped_frames + pushed.dropped_events == 0 {
            return;
        }
        let s = self.outbox.stats();
        let due = self
            .warned_at
            .is_none_or(|at| at.elapsed() >= DROP_WARNING_EVERY);
        if due && (s.dropped_frames, s.dropped_events) != self.warned {
            self.warned = (s.dropped_frames, s.dropped_events);
            self.warned_at = Some(Instant::now());
            notes.warnings.push(format!(
                "queue full ({} messages waiting for broker {}, connected: {}; raise max-queue for longer outages): dropped {} per-frame messages and {} events so far",
                s.queued,
                self.broker,
                self.link.connected.load(Ordering::SeqCst),
                s.dropped_frames,
                s.dropped_events
            ));
        }
    }
}

impl BaseTransformImpl for RetinaFacePublish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let connect = settings
            .connect()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        let outbox = Arc::new(Shared::new(settings.max_queue as usize));
        let link = Arc::new(Link::default());
        let weak = self.obj().downgrade();
        let report = Arc::new(move |report: Report| {
            let Some(element) = weak.upgrade() else {
                return;
            };
            match report {
                Report::Connected { resent } => {
                    gst::info!(
                        CAT,
                        obj = element,
                        "connected; {resent} messages sent again"
                    );
                }
                Report::Unreachable(why) => gst::element_warning!(
                    element,
                    gst::ResourceError::OpenWrite,
                    ("{why}; retrying, messages are queued (max-queue)")
                ),
                Report::Refused(why) => {
                    gst::element_error!(element, gst::ResourceError::NotAuthorized, ("{why}"))
                }
            }
        });
        let publisher = Publisher::spawn(connect, outbox.clone(), link.clone(), report);
        *self.state.lock().unwrap() = Some(State {
            outbox,
            link,
            publisher: Some(publisher),
            broker: settings.broker.clone(),
            camera: settings.camera.clone(),
            prefix: settings.prefix(),
            session: unix_now().as_millis() as u64,
            tracks: Tracks::new(settings.events()),
            shots: Shots::default(),
            info: None,
            frame: 0,
            last: None,
            warned: (0, 0),
            warned_at: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.settle(EndReason::Stop);
        self.drain("stop");
        let Some(mut state) = self.state.lock().unwrap().take() else {
            return Ok(());
        };
        if let Some(publisher) = state.publisher.take() {
            publisher.stop();
        }
        let undelivered = state.outbox.undelivered();
        let stats = state.stats();
        *self.last_stats.lock().unwrap() = Some(stats);
        if undelivered > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "stopped with {undelivered} messages not delivered to broker {}",
                    state.broker
                )
            );
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let changed = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.info.as_ref().is_some_and(|i| *i != info));
        if changed {
            self.settle(EndReason::Restart);
        }
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                self.settle(EndReason::Eos);
                self.drain("EOS");
            }
            gst::EventView::FlushStop(_) => self.settle(EndReason::Flush),
            _ if crate::starts_over(&event) => self.settle(EndReason::Restart),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        let faces = facemeta::read(buf);
        let now = self.stamp(buf);
        let mut notes = Notes::default();
        {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
            state.tracks.set_config(settings.events());
            state.outbox.set_capacity(settings.max_queue as usize);
            let outcome = observe(buf, &info, &faces, now, state, settings.snapshot_size);
            self.send_events(state, &settings, &outcome.events, &mut notes);
            if settings.frames {
                let topic = format!("{}/frames", state.prefix);
                let (camera, session, frame) = (state.camera.clone(), state.session, state.frame);
                let pushed = state.outbox.push(Class::Frame, |seq| {
                    let message = FrameMessage {
                        camera: &camera,
                        session,
                        seq,
                        frame,
                        time: now,
                        width: info.width(),
                        height: info.height(),
                        faces: &faces,
                    };
                    let json = serde_json::to_vec(&message).expect("numbers serialize");
                    (topic, json, false)
                });
                state.note_drops(pushed, &mut notes);
            }
            state.frame += 1;
            state.last = Some(now);
        }
        self.post(notes);
        Ok(gst::FlowSuccess::Ok)
    }
}

/// Feeds the tracked faces of `buf` (each with its quality, measured on the frame's luma) to
/// the event rules at `now`, and keeps the picture (face + margin, RGB) of every face that is
/// now its track's best shot. Without a readable frame the faces still count, with no
/// sharpness and no picture.
fn observe(
    buf: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    faces: &[FaceRecord],
    now: Stamp,
    state: &mut State,
    snapshot_size: u32,
) -> FrameOutcome {
    let observations = |core: Option<&retinaface::Frame>| -> Vec<Observation> {
        faces
            .iter()
            .filter_map(|f| {
                let face = FaceBox::of_record(f);
                Some(Observation {
                    id: f.id?,
                    face,
                    quality: face_quality(&face, core, &QualityConfig::default()),
                    name: f.name.clone(),
                    similarity: f.similarity.map(|v| v as f32),
                })
            })
            .collect()
    };
    if faces.iter().all(|f| f.id.is_none()) {
        return state.tracks.observe(now, &[]);
    }
    let frame = crate::videoformat::pixel_layout(info.format()).and_then(|layout| {
        gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info)
            .ok()
            .map(|f| (f, layout))
    });
    let Some((frame, layout)) = frame else {
        return state.tracks.observe(now, &observations(None));
    };
    crate::videoformat::with_core_frame(&frame, layout, |core| {
        let observations = observations(Some(core));
        let outcome = state.tracks.observe(now, &observations);
        for o in observations
            .iter()
            .filter(|o| outcome.best_now.contains(&o.id))
        {
            if let Some((picture, _)) = face_crop(core, o.face.bbox, MARGIN) {
                state.shots.keep(o.id, picture, snapshot_size);
            }
        }
        outcome
    })
}
