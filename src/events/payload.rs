//! The JSON messages `retinafacepublish` sends (README "Face events over MQTT" lists the topics).
//! Every message of a camera carries `session` (the publisher's start, Unix ms) and `seq` (0, 1,
//! 2, … per session): a consumer that keeps the highest `seq` seen per (camera, session) drops
//! repeats (delivery is at least once) and sees a gap when a message was dropped.

use super::{EndReason, EventKind, Stamp, TrackEvent, TrackSummary};
use crate::FaceRecord;

/// A JPEG picture of the face (with a margin), base64 in the event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub width: u32,
    pub height: u32,
    /// `"jpeg"`.
    pub format: &'static str,
    /// Base64 (standard alphabet, padded) of the JPEG file; absent when the snapshot goes to its
    /// own topic instead (`topic` then says which).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// One event message (topic `<prefix>/events`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventMessage<'a> {
    /// `new`, `update` or `end`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub camera: &'a str,
    pub session: u64,
    pub seq: u64,
    /// `<camera>-<session>-<track id>-<start pts or 0>`: one id per event, the same on its new,
    /// updates and end.
    pub event_id: String,
    /// Only on `end`: `left`, `eos`, `flush`, `restart` or `stop`.
    pub reason: Option<EndReason>,
    #[serde(flatten)]
    pub track: &'a TrackSummary,
    /// Only on `end`.
    pub end: Option<Stamp>,
    /// The best shot's picture; `null` when snapshots are off or the picture was unavailable.
    pub snapshot: Option<Snapshot>,
}

impl<'a> EventMessage<'a> {
    pub fn new(
        camera: &'a str,
        session: u64,
        seq: u64,
        event: &'a TrackEvent,
        snapshot: Option<Snapshot>,
    ) -> Self {
        let t = &event.track;
        Self {
            kind: event.kind,
            camera,
            session,
            seq,
            event_id: format!("{camera}-{session}-{}-{}", t.id, t.start.clock),
            reason: event.reason,
            track: t,
            end: event.end,
            snapshot,
        }
    }
}

/// One per-frame message (topic `<prefix>/frames`, `frames=true`): the faces of the frame, each
/// the record `retinafacejson` writes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameMessage<'a> {
    pub camera: &'a str,
    pub session: u64,
    pub seq: u64,
    /// Frames the element has handled before this one.
    pub frame: u64,
    pub time: Stamp,
    pub width: u32,
    pub height: u32,
    pub faces: &'a [FaceRecord],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BestShot, EventKind};
    use crate::quality::Quality;

    #[test]
    fn an_end_event_names_its_track_times_reason_and_best_shot() {
        let stamp = |s: u64| Stamp {
            wall: 1_700_000_000.5,
            running_time: Some(s),
            pts: None,
            clock: s,
        };
        let event = TrackEvent {
            kind: EventKind::End,
            reason: Some(EndReason::Eos),
            end: Some(stamp(9)),
            track: TrackSummary {
                id: 4,
                start: stamp(1),
                last: stamp(8),
                frames: 3,
                best: BestShot {
                    quality: Quality {
                        overall: 0.5,
                        score: 1.0,
                        size: 1.0,
                        frontal: 1.0,
                        sharpness: 0.5,
                    },
                    bbox: [1.0, 2.0, 3.0, 4.0],
                    landmarks: None,
                    time: stamp(2),
                },
                name: Some("Alice".into()),
                similarity: Some(0.75),
            },
        };
        let json = serde_json::to_value(EventMessage::new("door", 77, 12, &event, None)).unwrap();
        let t =
            |s: u64| serde_json::json!({"wall": 1_700_000_000.5, "running_time": s, "pts": null});
        assert_eq!(
            json,
            serde_json::json!({
                "type": "end", "camera": "door", "session": 77, "seq": 12,
                "event_id": "door-77-4-1", "reason": "eos",
                "id": 4, "start": t(1), "last": t(8), "frames": 3,
                "best": {
                    "quality": {"overall": 0.5, "score": 1.0, "size": 1.0, "frontal": 1.0, "sharpness": 0.5},
                    "box": [1.0, 2.0, 3.0, 4.0], "landmarks": null, "time": t(2)
                },
                "name": "Alice", "similarity": 0.75,
                "end": t(9), "snapshot": null
            })
        );
    }
}
