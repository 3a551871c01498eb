//! `retinafacepublish`: face **events** through an MQTT broker. Pass-through, after
//! `retinafacetrack`; pixels and metadata are never changed.
//!
//! Per track ID ([`retinaface::events`]): `new` when a face gets its ID, `update` when its best
//! shot improves markedly (at most every `update-interval`), `end` when it has not been seen
//! for `end-timeout`, and for every open track at EOS, flush, new stream/caps or stop, with the
//! reason. The best shot is the picture with the highest [`retinaface::quality`] (detector
//! score × size × frontalness × sharpness); its snapshot (the face with a margin, JPEG, long
//! side at most `snapshot-size`) goes inside the event as base64, or to its own topic, or
//! nowhere (`snapshot`), and optionally to `snapshot-dir/<camera>/<id>.jpg`. With `frames=true`
//! every frame's faces are sent too (the records `retinafacejson` writes).
//!
//! Topics (`topic-prefix`, default `retinaface/<camera>`): `<prefix>/events` (JSON, QoS
//! `qos`), `<prefix>/frames` (JSON), `<prefix>/snapshot/<id>` (JPEG bytes), `<prefix>/status`
//! (retained `online`, and `offline` as the last will). Every JSON message has `session` (the
//! element's start, Unix ms) and `seq` (per session, counted separately on `events` and
//! `frames`), so consumers drop repeats and see gaps.
//!
//! **Never blocks, never loses silently.** The streaming thread only queues (a bounded queue,
//! `max-queue` messages); two threads of the element send (see `client.rs`). When the broker is
//! down at start, restarts or drops the connection, the pipeline runs on, messages wait in the
//! queue and are delivered in order once it is back (at least once). When the queue is full,
//! per-frame messages are dropped before events, with a WARNING saying how many; the `stats`
//! property counts queued, delivered and dropped messages. At EOS the element waits up to
//! `drain-timeout` for delivery before passing EOS on, and warns about what is left; at stop
//! likewise. A malformed `broker` or unreadable TLS file fails the start with an error naming
//! it; credentials the broker rejects are an ERROR naming the username.
//!
//! ```text
//! gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
//!     retinafacedetect ! retinafacetrack ! \
//!     retinafacepublish broker=mqtt://localhost:1883 camera=door ! fakesink
//! mosquitto_sub -t 'retinaface/door/events' -v
//! ```

use gst::prelude::*;

mod client;
mod imp;
mod shots;

glib::wrapper! {
    pub struct RetinaFacePublish(ObjectSubclass<imp::RetinaFacePublish>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Where an event's snapshot goes.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRetinaFacePublishSnapshot")]
pub enum SnapshotMode {
    #[default]
    #[enum_value(name = "Inside the event, base64", nick = "embed")]
    Embed = 0,
    #[enum_value(name = "JPEG bytes on <prefix>/snapshot/<id>", nick = "topic")]
    Topic = 1,
    #[enum_value(name = "No snapshot", nick = "none")]
    None = 2,
}

/// Name of the structure the `stats` property returns.
pub const STATS_NAME: &str = "retinaface-publish-stats";

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "retinafacepublish",
        gst::Rank::NONE,
        RetinaFacePublish::static_type(),
    )
}
