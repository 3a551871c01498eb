//! Events about people, per **track** (the face a tracker follows under one ID): `new` when a
//! track ID is first seen, `update` when its best shot improves markedly, `end` when it is gone
//! or the stream ends. GStreamer-free: the publish element feeds it the tracked faces of each
//! frame with their [`Quality`], and turns the events it returns into messages ([`payload`]).
//!
//! - **new**: on the first frame a track ID appears; its best shot is that frame's picture.
//! - **best shot**: the picture of the track with the highest [`Quality::overall`]; each frame
//!   that beats it is reported in [`FrameOutcome::best_now`] (the caller keeps that picture).
//! - **update**: when the best shot's quality is at least `(1 + update_gain)` × the quality last
//!   sent (new or update) and at least `update_interval` of stream time has passed since then;
//!   an improvement inside the interval goes out with the first frame after it on which the
//!   track is seen.
//! - **name**: when an identify element named the track, or its name changed (the library
//!   changed, a better shot moved it past the threshold), an update goes out at once with the
//!   new `name` and `similarity`, whatever the interval: who arrived is what a site waits for.
//! - **end**: [`EndReason::Left`] once a track has not been seen for `end_after` of stream time
//!   (checked on every frame; the end time is the last time it was seen); the caller ends every
//!   open track with [`Tracks::end_all`] at EOS, flush, new stream or stop. An ID seen again
//!   after its end (a tracker that kept it longer than `end_after`) starts a new track.
//!
//! Stream time ([`Stamp::clock`]) only needs to be monotonic per stream: running time, or pts,
//! or the wall clock when a stream has neither.

pub mod payload;
pub mod snapshot;

use std::collections::BTreeMap;

use crate::quality::{FaceBox, Quality};

/// When something happened, in every clock a consumer may want.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Stamp {
    /// Wall clock (UTC), Unix seconds.
    pub wall: f64,
    /// Running time of the frame, ns (GStreamer's clock of the pipeline); `None` when unknown.
    pub running_time: Option<u64>,
    /// Presentation timestamp of the frame, ns; `None` when unknown.
    pub pts: Option<u64>,
    /// Monotonic stream time, ns, for intervals and timeouts (not serialised).
    #[serde(skip)]
    pub clock: u64,
}

/// The constants of the event rules (module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventConfig {
    /// Least stream time between two messages (new/update) of one track, ns.
    pub update_interval: u64,
    /// Least relative improvement of the best shot's quality for an update (0.2 = 20 %).
    pub update_gain: f32,
    /// Stream time a track may go unseen before it ends, ns.
    pub end_after: u64,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            update_interval: 2_000_000_000,
            update_gain: 0.2,
            end_after: 3_000_000_000,
        }
    }
}

/// One tracked face on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Track ID (non-zero).
    pub id: u64,
    pub face: FaceBox,
    pub quality: Quality,
    /// Who it is (`retinafaceidentify`): the name, `None` when unknown or not identified.
    pub name: Option<String>,
    /// Similarity to the nearest person of the face library; `None`: not identified.
    pub similarity: Option<f32>,
}

/// The best picture of a track so far.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BestShot {
    pub quality: Quality,
    /// `[x_min, y_min, x_max, y_max]`, frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose, left and right mouth corner (frame pixels); `null` if unknown.
    pub landmarks: Option<[[f32; 2]; 5]>,
    pub time: Stamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

/// Why a track ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Not seen for `end_after`.
    Left,
    /// End of stream.
    Eos,
    /// A flush (seek): the tracker ends its tracks too.
    Flush,
    /// A new segment, a new stream or new caps: the tracker ends its tracks too.
    Restart,
    /// The element stopped (pipeline to READY/NULL).
    Stop,
}

/// The state of a track as an event reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrackSummary {
    pub id: u64,
    /// First seen.
    pub start: Stamp,
    /// Last seen.
    pub last: Stamp,
    /// Frames it was seen on.
    pub frames: u64,
    pub best: BestShot,
    /// Who it is, as last identified (`null`: unknown or not identified).
    pub name: Option<String>,
    /// Similarity to the nearest person of the face library, as last identified (`null`: not
    /// identified).
    pub similarity: Option<f32>,
}

/// One event: what happened to which track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    pub kind: EventKind,
    /// Only on `end`.
    pub reason: Option<EndReason>,
    /// Only on `end`: the time the track ended (the last time it was seen when it left).
    pub end: Option<Stamp>,
    pub track: TrackSummary,
}

/// What one frame changed.
#[derive(Debug, Default, PartialEq)]
pub struct FrameOutcome {
    /// Tracks whose best shot is this frame's picture (new tracks included).
    pub best_now: Vec<u64>,
    /// In order: tracks that left, new tracks, updates.
    pub events: Vec<TrackEvent>,
}

#[derive(Debug, Clone)]
struct Track {
    summary: TrackSummary,
    /// Quality and stream time of the last new/update sent.
    sent_quality: f32,
    sent_at: u64,
}

/// The open tracks of one camera.
#[derive(Debug, Default)]
pub struct Tracks {
    config: EventConfig,
    open: BTreeMap<u64, Track>,
}

impl Tracks {
    pub fn new(config: EventConfig) -> Self {
        Self {
            config,
            open: BTreeMap::new(),
        }
    }

    /// Applies new rules from the next frame on; open tracks stay.
    pub fn set_config(&mut self, config: EventConfig) {
        self.config = config;
    }

    /// Number of open tracks.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The tracked faces of one frame at `now`.
    pub fn observe(&mut self, now: Stamp, faces: &[Observation]) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        let end_after = self.config.end_after;
        let left: Vec<u64> = self
            .open
            .iter()
            .filter(|(id, t)| {
                now.clock.saturating_sub(t.summary.last.clock) > end_after
                    && !faces.iter().any(|f| f.id == **id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in left {
            let track = self.open.remove(&id).expect("listed above");
            outcome.events.push({
                let last = track.summary.last;
                end_event(track, EndReason::Left, last)
            });
        }
        let mut updates = Vec::new();
        for f in faces.iter().filter(|f| f.id != 0) {
            let shot = BestShot {
                quality: f.quality,
                bbox: f.face.bbox,
                landmarks: f.face.landmarks,
                time: now,
            };
            match self.open.get_mut(&f.id) {
                None => {
                    let summary = TrackSummary {
                        id: f.id,
                        start: now,
                        last: now,
                        frames: 1,
                        best: shot,
                        name: f.name.clone(),
                        similarity: f.similarity,
                    };
                    self.open.insert(
                        f.id,
                        Track {
                            summary: summary.clone(),
                            sent_quality: shot.quality.overall,
                            sent_at: now.clock,
                        },
                    );
                    outcome.best_now.push(f.id);
                    outcome.events.push(TrackEvent {
                        kind: EventKind::New,
                        reason: None,
                        end: None,
                        track: summary,
                    });
                }
                Some(track) => {
                    let s = &mut track.summary;
                    s.last = now;
                    s.frames += 1;
                    if shot.quality.overall > s.best.quality.overall {
                        s.best = shot;
                        outcome.best_now.push(f.id);
                    }
                    // A face not identified on this frame keeps the track's identity.
                    let renamed = f.similarity.is_some() && f.name != s.name;
                    if f.similarity.is_some() {
                        s.name = f.name.clone();
                        s.similarity = f.similarity;
                    }
                    updates.push((f.id, renamed));
                }
            }
        }
        let (gain, interval) = (self.config.update_gain, self.config.update_interval);
        for (id, renamed) in updates {
            let track = self.open.get_mut(&id).expect("open");
            let best = track.summary.best.quality.overall;
            let better = best > track.sent_quality * (1.0 + gain)
                && now.clock.saturating_sub(track.sent_at) >= interval;
            if better || renamed {
                track.sent_quality = best;
                track.sent_at = now.clock;
                outcome.events.push(TrackEvent {
                    kind: EventKind::Update,
                    reason: None,
                    end: None,
                    track: track.summary.clone(),
                });
            }
        }
        outcome
    }

    /// Ends every open track for `reason` at `now` (`None`: the time each was last seen), in
    /// track ID order.
    pub fn end_all(&mut self, reason: EndReason, now: Option<Stamp>) -> Vec<TrackEvent> {
        std::mem::take(&mut self.open)
            .into_values()
            .map(|t| {
                let end = now.unwrap_or(t.summary.last);
                end_event(t, reason, end)
            })
            .collect()
    }
}

fn end_event(track: Track, reason: EndReason, end: Stamp) -> TrackEvent {
    TrackEvent {
        kind: EventKind::End,
        reason: Some(reason),
        end: Some(end),
        track: track.summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(seconds: f64) -> Stamp {
        let ns = (seconds * 1e9) as u64;
        Stamp {
            wall: 1_700_000_000.0 + seconds,
            running_time: Some(ns),
            pts: Some(ns),
            clock: ns,
        }
    }

    fn face(id: u64, overall: f32) -> Observation {
        Observation {
            id,
            face: FaceBox {
                bbox: [0.0, 0.0, 10.0, 10.0],
                landmarks: None,
                score: 0.9,
            },
            quality: Quality {
                overall,
                ..Quality::default()
            },
            name: None,
            similarity: None,
        }
    }

    fn kinds(outcome: &FrameOutcome) -> Vec<(EventKind, u64, Option<EndReason>)> {
        outcome
            .events
            .iter()
            .map(|e| (e.kind, e.track.id, e.reason))
            .collect()
    }

    #[test]
    fn a_track_gets_one_new_then_one_end_after_it_has_been_gone_for_end_after() {
        let mut tracks = Tracks::new(EventConfig::default());
        let first = tracks.observe(at(0.0), &[face(1, 0.5)]);
        assert_eq!(kinds(&first), [(EventKind::New, 1, None)]);
        assert_eq!(first.best_now, [1]);
        for k in 1..10 {
            let o = tracks.observe(at(k as f64 * 0.1), &[face(1, 0.5)]);
            assert!(o.events.is_empty());
        }
        // Last seen at 0.9 s; end_after 3 s: still open at 3.9 s, ended after it.
        assert!(tracks.observe(at(3.9), &[]).events.is_empty());
        let gone = tracks.observe(at(3.95), &[]);
        assert_eq!(kinds(&gone), [(EventKind::End, 1, Some(EndReason::Left))]);
        let end = &gone.events[0];
        assert_eq!(end.end, Some(at(0.9)));
        assert_eq!(end.track.frames, 10);
        assert_eq!(end.track.start, at(0.0));
        assert_eq!(tracks.open(), 0);
    }

    #[test]
    fn an_update_needs_a_marked_improvement_and_the_interval() {
        let mut tracks = Tracks::new(EventConfig::default());
        tracks.observe(at(0.0), &[face(1, 0.5)]);
        // 10 % better: a new best shot, but not marked enough for an update.
        let o = tracks.observe(at(2.5), &[face(1, 0.55)]);
        assert_eq!(o.best_now, [1]);
        assert!(o.events.is_empty());
        // 0.7 > 0.5 × 1.2, and 2.6 s since the new: an update.
        let o = tracks.observe(at(2.6), &[face(1, 0.7)]);
        assert_eq!(kinds(&o), [(EventKind::Update, 1, None)]);
        assert_eq!(o.events[0].track.best.quality.overall, 0.7);
        // Better again 1 s later: held back by the interval, sent on the first frame after it.
        let o = tracks.observe(at(3.6), &[face(1, 0.9)]);
        assert_eq!(o.best_now, [1]);
        assert!(o.events.is_empty());
        let o = tracks.observe(at(4.5), &[face(1, 0.1)]);
        assert!(o.events.is_empty() && o.best_now.is_empty());
        let o = tracks.observe(at(4.7), &[face(1, 0.1)]);
        assert_eq!(kinds(&o), [(EventKind::Update, 1, None)]);
        assert_eq!(o.events[0].track.best.quality.overall, 0.9);
        assert_eq!(o.events[0].track.best.time, at(3.6));
    }

    #[test]
    fn end_all_ends_every_open_track_with_the_reason_in_id_order() {
        let mut tracks = Tracks::new(EventConfig::default());
        let o = tracks.observe(at(0.0), &[face(7, 0.5), face(3, 0.5)]);
        assert_eq!(
            kinds(&o),
            [(EventKind::New, 7, None), (EventKind::New, 3, None)]
        );
        let ended = tracks.end_all(EndReason::Eos, Some(at(1.0)));
        let ids: Vec<_> = ended
            .iter()
            .map(|e| (e.track.id, e.reason, e.end))
            .collect();
        assert_eq!(
            ids,
            [
                (3, Some(EndReason::Eos), Some(at(1.0))),
                (7, Some(EndReason::Eos), Some(at(1.0)))
            ]
        );
        assert!(tracks.end_all(EndReason::Stop, None).is_empty());
    }

    #[test]
    fn a_face_without_an_id_is_no_track_and_an_id_seen_after_its_end_is_new_again() {
        let mut tracks = Tracks::new(EventConfig {
            end_after: S,
            ..EventConfig::default()
        });
        assert!(tracks.observe(at(0.0), &[face(0, 0.9)]).events.is_empty());
        tracks.observe(at(0.0), &[face(2, 0.5)]);
        let o = tracks.observe(at(1.5), &[]);
        assert_eq!(kinds(&o), [(EventKind::End, 2, Some(EndReason::Left))]);
        let o = tracks.observe(at(2.0), &[face(2, 0.5)]);
        assert_eq!(kinds(&o), [(EventKind::New, 2, None)]);
        assert_eq!(o.events[0].track.start, at(2.0));
    }

    #[test]
    fn a_track_named_later_gets_an_update_at_once_and_keeps_its_name() {
        let mut tracks = Tracks::new(EventConfig::default());
        let named = |name: Option<&str>, similarity| Observation {
            name: name.map(String::from),
            similarity: Some(similarity),
            ..face(4, 0.5)
        };
        // Not identified yet on its first frame.
        let o = tracks.observe(at(0.0), &[face(4, 0.5)]);
        assert_eq!(o.events[0].track.name, None);
        assert_eq!(o.events[0].track.similarity, None);
        // Embedded, unknown: no event (nothing a site waits for changed).
        let o = tracks.observe(at(0.1), &[named(None, 0.2)]);
        assert!(o.events.is_empty());
        // Named 0.2 s later, well inside the update interval: an update goes out now.
        let o = tracks.observe(at(0.2), &[named(Some("Alice"), 0.8)]);
        assert_eq!(kinds(&o), [(EventKind::Update, 4, None)]);
        assert_eq!(o.events[0].track.name.as_deref(), Some("Alice"));
        assert_eq!(o.events[0].track.similarity, Some(0.8));
        // Frames that do not identify the face keep the name; the end carries it.
        assert!(tracks.observe(at(0.3), &[face(4, 0.5)]).events.is_empty());
        let end = tracks.end_all(EndReason::Eos, None);
        assert_eq!(end[0].track.name.as_deref(), Some("Alice"));
    }

    #[test]
    fn ends_come_before_news_and_updates_in_a_frame() {
        let mut tracks = Tracks::new(EventConfig {
            end_after: S,
            update_interval: 0,
            ..EventConfig::default()
        });
        tracks.observe(at(0.0), &[face(1, 0.2)]);
        tracks.observe(at(0.9), &[face(1, 0.2), face(2, 0.2)]);
        let o = tracks.observe(at(2.0), &[face(2, 0.9), face(3, 0.1)]);
        assert_eq!(
            kinds(&o),
            [
                (EventKind::End, 1, Some(EndReason::Left)),
                (EventKind::New, 3, None),
                (EventKind::Update, 2, None)
            ]
        );
        assert_eq!(o.best_now, [2, 3]);
    }
}
