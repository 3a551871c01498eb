//! Face tracking across frames: what a `retinafacetrack` element runs between the detector and
//! its output. Plain Rust, no GStreamer types.
//!
//! - Motion: a constant-velocity Kalman filter on the box centre and size
//!   (`cx, cy, w, h` and their per-frame velocities), with process and measurement noise scaled by
//!   the box size as in SORT/ByteTrack (ByteTrack's weights 1/20 for position, 1/160 for
//!   velocity; like BoT-SORT's `xywh` variant, `x` and `w` scale with the width, `y` and `h`
//!   with the height). All the noise matrices are diagonal and the transition only couples a
//!   coordinate with its own velocity, so the 8×8 covariance stays block-diagonal and the filter
//!   is exactly four independent 2-state filters, which is what is run.
//! - Association: ByteTrack's stages, each an optimal (Kuhn–Munkres) one-to-one assignment on
//!   IoU between the tracks' predicted boxes and the detections, gated by a minimum IoU:
//!   1. confirmed tracks (including ones that missed recent analysed frames) with the
//!      high-score detections (`score >= high_score`), gate [`TrackerConfig::match_iou`];
//!   2. confirmed tracks left over that were matched on the previous analysed frame with the
//!      low-score detections (`low_score <= score < high_score`), gate
//!      [`TrackerConfig::low_match_iou`]: a detection the detector is unsure of keeps a track
//!      alive, but never starts one;
//!   3. tentative (not yet confirmed) tracks with the high-score detections left, gate
//!      `match_iou`.
//!
//!   High-score detections still unmatched start tentative tracks. Among the gated pairs, the
//!   assignment maximises `Σ (IoU − gate)`, which is what ByteTrack's `lapjv` with
//!   `cost_limit = 1 − gate` on the cost `1 − IoU` computes.
//! - Life cycle: a tentative track becomes confirmed, and only then gets an ID and is output,
//!   once it has been matched on [`TrackerConfig::confirm_hits`] consecutive analysed frames; a
//!   tentative track that misses one analysed frame is dropped. A confirmed track is removed
//!   when it has missed more than [`TrackerConfig::max_missed`] consecutive analysed frames.
//!   Frames the detector did not analyse ([`Tracker::predict`]) count for neither.
//! - IDs: `u64`, starting at 1, handed out in order of confirmation, unique for the life of a
//!   [`Tracker`] and never reused, [`Tracker::reset`] included (see there).
//! - Late detections: a detector that never waits for its model (`async`) hands over faces
//!   found some frames before the one they arrive with. [`Tracker::update_delayed`] takes them
//!   as what they are: detections of that earlier frame. The tracker keeps its state as it was
//!   before each of the last [`HISTORY`] frames; it goes back to the detection's frame,
//!   associates there (the tracks as they were then, not as they are predicted now: a face
//!   walking 10 px a frame is 100 px from a 10-frame-old detection), and moves every track
//!   forward again, frame by frame, to the current one. Between two results only predictions
//!   happen, so nothing but predictions is redone.
//!
//! What is output (a [`TrackedFace`] per confirmed track, sorted by ID) is a *display estimate*,
//! kept next to the filter: on an analysed frame where the track is matched it is the matched
//! detection itself (box, score and landmarks, bit for bit) when smoothing is off, or an
//! exponential blend of the previous estimate and the detection when it is on
//! ([`TrackerConfig::smoothing`]); on every other frame it moves as the filter's box does
//! (centre and size by the filter's per-frame change), and the landmarks follow the box: they
//! keep their position relative to it (normalised to the box, so they scale with it too). The
//! filter state itself is what is associated with the next detections.
//!
//! Coordinates are frame pixels. The tracker does not know the frame size and clamps nothing to
//! it, but box sizes never drop below [`MIN_SIZE`] pixels, and tracks whose state stops being
//! finite are dropped, so every output box is finite with a positive size. Detections that are
//! not finite or not of positive size are ignored.

mod assign;
mod kalman;

use crate::decode::Face;
use crate::geometry::{centre_to_corners, corners_to_centre};
use assign::associate;
use kalman::BoxFilter;
pub use kalman::MIN_SIZE;

/// Largest smoothing factor used; 1 would freeze the output on analysed frames. The tracker
/// element's `smoothing` property takes its maximum from here.
pub const MAX_SMOOTHING: f32 = 0.99;

/// Frames of state kept for [`Tracker::update_delayed`]: a detection older than this is taken
/// as if it were found on the current frame. 256 frames is 8.5 s at 30 fps, longer than any
/// model run a live stream can wait for.
pub const HISTORY: usize = 256;

/// Tracker settings. The defaults are provisional, ByteTrack-like values, to be tuned by
/// measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Minimum IoU between a track's predicted box and a high-score detection for them to be
    /// matched (stages 1 and 3). ByteTrack: cost `1 − IoU` at most 0.8 (MOT) for stage 1 and
    /// 0.7 for tentative tracks; 0.2 here for both, measured (examples/track_eval.rs sweep):
    /// at 0.3 a face moving ≳ 0.4 face widths between analysed frames is never confirmed (a new
    /// track has no velocity yet, so its second detection overlaps its box by IoU < 0.3).
    pub match_iou: f32,
    /// Minimum IoU for matching a low-score detection (stage 2). ByteTrack: 0.5.
    pub low_match_iou: f32,
    /// Detections with `score >= high_score` are matched first and start new tracks.
    pub high_score: f32,
    /// Detections with `low_score <= score < high_score` only keep existing tracks alive;
    /// lower ones are ignored. The detector's own threshold must be at most this for any to
    /// arrive.
    pub low_score: f32,
    /// Consecutive analysed frames a new track must be matched on before it is confirmed, gets
    /// an ID and is output. 0 and 1 both confirm on the first detection.
    pub confirm_hits: u32,
    /// A confirmed track is removed after missing more than this many consecutive analysed
    /// frames; until then a reappearing face gets its old ID back.
    pub max_missed: u32,
    /// A confirmed track that missed at most this many consecutive analysed frames is still
    /// output, at its predicted position with `fresh == false`. 0 (ByteTrack's behaviour):
    /// only tracks matched on the last analysed frame are output.
    pub output_missed: u32,
    /// Display smoothing in `[0, 1)`: on a match the output becomes
    /// `smoothing · previous + (1 − smoothing) · detection` (box corners and landmarks; the
    /// previous estimate having moved with the filter since). 0 (the default) is off: the output
    /// is the detection itself. Values outside are clamped to `[0, 0.99]`, NaN is 0.
    pub smoothing: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            match_iou: 0.2,
            low_match_iou: 0.5,
            high_score: 0.6,
            low_score: 0.1,
            confirm_hits: 2,
            max_missed: 15,
            output_missed: 0,
            smoothing: 0.0,
        }
    }
}

impl TrackerConfig {
    fn smoothing_factor(&self) -> f32 {
        if self.smoothing > 0.0 {
            self.smoothing.min(MAX_SMOOTHING)
        } else {
            0.0
        }
    }
}

/// One confirmed track on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedFace {
    /// Unique for the life of the [`Tracker`], starting at 1, never reused.
    pub id: u64,
    /// The current estimate: box, landmarks, and the score of the last matched detection.
    pub face: Face,
    /// Matched to a detection on this frame (only ever true from [`Tracker::update`]).
    pub fresh: bool,
    /// Analysed frames this track was matched on, in all.
    pub hits: u32,
    /// Consecutive analysed frames, up to the last one, this track was not matched on.
    pub missed: u32,
    /// Frames (analysed or not) since the track's first detection; 0 on that frame.
    pub age: u32,
    /// Frames since the frame of the detection this track was last matched with: 0 when its
    /// box was measured on this very frame, more when it is predicted (frames the detector
    /// skipped, a detection that arrived late). How far the face may have moved from where the
    /// box says grows with it.
    pub since_detection: u32,
}

fn face_is_valid(f: &Face) -> bool {
    f.bbox.iter().all(|x| x.is_finite())
        && f.score.is_finite()
        && f.landmarks.iter().flatten().all(|x| x.is_finite())
        && f.width() > 0.0
        && f.height() > 0.0
}

/// Moves a face's box by `delta` (`[dcx, dcy, dw, dh]`, the size kept at least [`MIN_SIZE`])
/// and carries the landmarks along: same position relative to the box.
fn move_face(face: &mut Face, delta: [f32; 4]) {
    let old = face.bbox;
    let s = corners_to_centre(old);
    let new = centre_to_corners([
        s[0] + delta[0],
        s[1] + delta[1],
        (s[2] + delta[2]).max(MIN_SIZE),
        (s[3] + delta[3]).max(MIN_SIZE),
    ]);
    let (ow, oh) = (old[2] - old[0], old[3] - old[1]);
    let (sx, sy) = ((new[2] - new[0]) / ow, (new[3] - new[1]) / oh);
    for l in &mut face.landmarks {
        l[0] = new[0] + (l[0] - old[0]) * sx;
        l[1] = new[1] + (l[1] - old[1]) * sy;
    }
    face.bbox = new;
}

fn blend(prev: f32, det: f32, s: f32) -> f32 {
    s * prev + (1.0 - s) * det
}

#[derive(Debug, Clone)]
struct Track {
    /// 0 while tentative.
    id: u64,
    filter: BoxFilter,
    /// What is output (see the module documentation).
    display: Face,
    hits: u32,
    missed: u32,
    age: u32,
    since_detection: u32,
    /// Matched on the current analysed frame.
    matched: bool,
}

impl Track {
    fn new(det: &Face) -> Self {
        Self {
            id: 0,
            filter: BoxFilter::new(corners_to_centre(det.bbox)),
            display: *det,
            hits: 1,
            missed: 0,
            age: 0,
            since_detection: 0,
            matched: true,
        }
    }

    fn confirmed(&self) -> bool {
        self.id != 0
    }

    /// One frame forward.
    fn step(&mut self) {
        if self.missed > 0 {
            self.filter.freeze_size();
        }
        let before = self.filter.state();
        self.filter.predict();
        let after = self.filter.state();
        move_face(
            &mut self.display,
            std::array::from_fn(|i| after[i] - before[i]),
        );
        self.age = self.age.saturating_add(1);
        self.since_detection = self.since_detection.saturating_add(1);
    }

    fn hit(&mut self, det: &Face, smoothing: f32) {
        self.filter.update(corners_to_centre(det.bbox));
        if smoothing == 0.0 {
            self.display = *det;
        } else {
            let d = &mut self.display;
            for (p, q) in d.bbox.iter_mut().zip(det.bbox) {
                *p = blend(*p, q, smoothing);
            }
            for (p, q) in d
                .landmarks
                .iter_mut()
                .flatten()
                .zip(det.landmarks.iter().flatten())
            {
                *p = blend(*p, *q, smoothing);
            }
            d.score = det.score;
        }
        self.hits = self.hits.saturating_add(1);
        self.missed = 0;
        self.since_detection = 0;
        self.matched = true;
    }

    fn is_finite(&self) -> bool {
        self.filter.is_finite()
            && self.display.bbox.iter().all(|x| x.is_finite())
            && self
                .display
                .landmarks
                .iter()
                .flatten()
                .all(|x| x.is_finite())
    }

    fn output(&self) -> TrackedFace {
        TrackedFace {
            id: self.id,
            face: self.display,
            fresh: self.matched,
            hits: self.hits,
            missed: self.missed,
            age: self.age,
            since_detection: self.since_detection,
        }
    }
}

/// Multi-face tracker for one stream. See the module documentation.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    /// The ID the next confirmed track gets.
    next_id: u64,
    /// `tracks` as they were before each of the last [`HISTORY`] frames, oldest first: the
    /// last entry is the state before the previous call.
    history: std::collections::VecDeque<Vec<Track>>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
            history: std::collections::VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Changes the settings while running; tracks, their state and the ID counter are kept. New
    /// values apply from the next call (a lower `max_missed` removes tracks at the next
    /// analysed frame, a lower `confirm_hits` confirms tentative tracks at their next match).
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    /// Forgets every track (for a flush, seek or caps change). The ID counter is *not* reset:
    /// IDs stay unique and are never reused for the life of this `Tracker`, so nothing
    /// downstream can mistake a face after a seek for one before it. A stream that wants IDs
    /// from 1 again makes a new `Tracker`.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.history.clear();
    }

    /// Frames of history [`Self::update_delayed`] can go back (at most [`HISTORY`]).
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Keeps the state before the frame about to be processed, reusing the oldest entry's
    /// allocation once the history is full.
    fn remember(&mut self) {
        let mut entry = if self.history.len() >= HISTORY {
            self.history.pop_front().unwrap_or_default()
        } else {
            Vec::new()
        };
        entry.clone_from(&self.tracks);
        self.history.push_back(entry);
    }

    /// Live tracks, tentative and lost ones included.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Tentative tracks (not confirmed yet, so `id` is 0) that were matched on the last
    /// analysed frame, at their current estimate. A display that must not lose a detected face
    /// (blurring) shows these too: a new face is covered from its first detection, and gets its
    /// ID once confirmed.
    pub fn tentative(&self) -> Vec<TrackedFace> {
        self.tracks
            .iter()
            .filter(|t| !t.confirmed() && t.missed == 0)
            .map(Track::output)
            .collect()
    }

    /// A frame the detector did not analyse: every track moves one frame forward. Returns the
    /// confirmed tracks with `missed <= output_missed` at their predicted positions
    /// (`fresh == false`), sorted by ID.
    pub fn predict(&mut self) -> Vec<TrackedFace> {
        self.remember();
        for t in &mut self.tracks {
            t.matched = false;
            t.step();
        }
        self.tracks.retain(Track::is_finite);
        self.output()
    }

    /// A frame the detector analysed, with its detections (any order; invalid ones are
    /// ignored): every track moves one frame forward, is associated (ByteTrack's three stages),
    /// updated, confirmed or removed, and unmatched high-score detections start tentative
    /// tracks. Returns the confirmed tracks matched on this frame (`fresh == true`) and those
    /// with `1 <= missed <= output_missed` at their predicted positions, sorted by ID.
    pub fn update(&mut self, detections: &[Face]) -> Vec<TrackedFace> {
        self.remember();
        let cfg = self.config;
        let smoothing = cfg.smoothing_factor();
        let mut high = Vec::new();
        let mut low = Vec::new();
        for d in detections.iter().filter(|d| face_is_valid(d)) {
            if d.score >= cfg.high_score {
                high.push(d);
            } else if d.score >= cfg.low_score {
                low.push(d);
            }
        }

        for t in &mut self.tracks {
            t.matched = false;
            t.step();
        }

        // Stage 1: confirmed tracks, tracked or lost, with the high-score detections.
        let confirmed: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed())
            .collect();
        let mut high_used = vec![false; high.len()];
        self.match_stage(&confirmed, &high, &mut high_used, cfg.match_iou, smoothing);

        // Stage 2: confirmed tracks still unmatched that were tracked on the last analysed
        // frame, with the low-score detections.
        let tracked: Vec<usize> = confirmed
            .iter()
            .copied()
            .filter(|&i| !self.tracks[i].matched && self.tracks[i].missed == 0)
            .collect();
        let mut low_used = vec![false; low.len()];
        self.match_stage(&tracked, &low, &mut low_used, cfg.low_match_iou, smoothing);

        // Stage 3: tentative tracks with the high-score detections left.
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].confirmed())
            .collect();
        self.match_stage(&tentative, &high, &mut high_used, cfg.match_iou, smoothing);

        // Confirmation, misses, removal.
        let mut next_id = self.next_id;
        self.tracks.retain_mut(|t| {
            if t.matched {
                if !t.confirmed() && t.hits >= cfg.confirm_hits {
                    t.id = next_id;
                    next_id += 1;
                }
            } else {
                t.missed = t.missed.saturating_add(1);
                if !t.confirmed() || t.missed > cfg.max_missed {
                    return false;
                }
            }
            t.is_finite()
        });

        // Births.
        for (d, _) in high.iter().zip(&high_used).filter(|(_, used)| !**used) {
            let mut t = Track::new(d);
            if cfg.confirm_hits <= 1 {
                t.id = next_id;
                next_id += 1;
            }
            self.tracks.push(t);
        }
        self.next_id = next_id;
        self.output()
    }

    /// A frame carrying detections that were found `age` frames before it (0: on this frame,
    /// which is [`Self::update`]). The tracks go back to their state before that frame, are
    /// associated and updated there as [`Self::update`] does, then move forward `age` frames
    /// as [`Self::predict`] does, so the result is what the tracker would have output had the
    /// detections arrived on their own frame and been predicted since. The matched tracks come
    /// out with `fresh == false` and `since_detection == age` (their boxes are predictions).
    /// Detections older than the history (a reset in between, or more than [`HISTORY`] frames)
    /// are taken as found on this frame.
    pub fn update_delayed(&mut self, detections: &[Face], age: usize) -> Vec<TrackedFace> {
        if age == 0 || age > self.history.len() {
            return self.update(detections);
        }
        // The state before the detection's frame; the entries after it are rewritten by the
        // replay below (each step remembers the state before it).
        let at = self.history.len() - age;
        self.history.truncate(at + 1);
        self.tracks = self.history.pop_back().unwrap_or_default();
        let mut out = self.update(detections);
        for _ in 0..age {
            out = self.predict();
        }
        out
    }

    /// Matches `tracks` (indices) with the unused `dets`, marking what is used.
    fn match_stage(
        &mut self,
        tracks: &[usize],
        dets: &[&Face],
        used: &mut [bool],
        gate: f32,
        smoothing: f32,
    ) {
        let free: Vec<usize> = (0..dets.len()).filter(|&j| !used[j]).collect();
        if tracks.is_empty() || free.is_empty() {
            return;
        }
        let boxes: Vec<[f32; 4]> = tracks
            .iter()
            .map(|&i| self.tracks[i].filter.bbox())
            .collect();
        let det_boxes: Vec<[f32; 4]> = free.iter().map(|&j| dets[j].bbox).collect();
        for (r, c) in associate(&boxes, &det_boxes, gate) {
            let j = free[c];
            used[j] = true;
            self.tracks[tracks[r]].hit(dets[j], smoothing);
        }
    }

    fn output(&self) -> Vec<TrackedFace> {
        let mut out: Vec<TrackedFace> = self
            .tracks
            .iter()
            .filter(|t| t.confirmed() && t.missed <= self.config.output_missed)
            .map(Track::output)
            .collect();
        out.sort_unstable_by_key(|t| t.id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face with box `[x1, y1, x1 + w, y1 + h]` and landmarks at fixed fractions of the box.
    fn face(x1: f32, y1: f32, w: f32, h: f32, score: f32) -> Face {
        Face::from_box([x1, y1, x1 + w, y1 + h], score)
    }

    fn cfg() -> TrackerConfig {
        TrackerConfig::default()
    }

    fn ids(out: &[TrackedFace]) -> Vec<u64> {
        out.iter().map(|t| t.id).collect()
    }

    fn assert_close(a: [f32; 4], b: [f32; 4], tol: f32, what: &str) {
        for i in 0..4 {
            assert!(
                (a[i] - b[i]).abs() <= tol,
                "{what}: {a:?} vs {b:?} (tolerance {tol})"
            );
        }
    }

    #[test]
    fn ids_start_at_one_and_follow_confirmation_order() {
        let mut t = Tracker::new(cfg());
        let a = face(10.0, 10.0, 50.0, 50.0, 0.9);
        let b = face(200.0, 10.0, 50.0, 50.0, 0.9);
        assert!(
            t.update(&[a]).is_empty(),
            "tentative after one hit (confirm_hits 2)"
        );
        let out = t.update(&[a, b]);
        assert_eq!(ids(&out), [1]);
        assert!(out[0].fresh);
        assert_eq!(out[0].hits, 2);
        let out = t.update(&[b, a]);
        assert_eq!(ids(&out), [1, 2]);
        assert_eq!(out[0].face.bbox, a.bbox);
        assert_eq!(out[1].face.bbox, b.bbox);
    }

    #[test]
    fn birth_only_after_confirm_hits_consecutive_hits() {
        let f = face(100.0, 100.0, 80.0, 80.0, 0.9);
        let mut t = Tracker::new(TrackerConfig {
            confirm_hits: 3,
            ..cfg()
        });
        assert!(t.update(&[f]).is_empty());
        assert!(
            t.predict().is_empty(),
            "tentative tracks are not output between analysed frames"
        );
        assert!(t.update(&[f]).is_empty());
        // A miss drops the tentative track: counting starts again.
        assert!(t.update(&[]).is_empty());
        assert!(t.is_empty());
        assert!(t.update(&[f]).is_empty());
        assert!(t.update(&[f]).is_empty());
        assert_eq!(ids(&t.update(&[f])), [1]);

        let mut t = Tracker::new(TrackerConfig {
            confirm_hits: 1,
            ..cfg()
        });
        let out = t.update(&[f]);
        assert_eq!(ids(&out), [1]);
        assert_eq!((out[0].hits, out[0].age, out[0].fresh), (1, 0, true));
    }

    /// Ground truth of the constant-velocity face: 100×80 at (200, 150), moving (+3, −2) px and
    /// growing (+0.5, +0.4) px per frame.
    fn moving(frame: u32) -> Face {
        let k = frame as f32;
        face(
            200.0 + 3.0 * k - 0.25 * k,
            150.0 - 2.0 * k - 0.2 * k,
            100.0 + 0.5 * k,
            80.0 + 0.4 * k,
            0.9,
        )
    }

    #[test]
    fn constant_velocity_keeps_one_id_and_predicts_between_analysed_frames() {
        const INTERVAL: u32 = 4;
        let mut t = Tracker::new(cfg());
        let mut frame = 0;
        for n in 0..30 {
            let out = t.update(&[moving(frame)]);
            if n >= 1 {
                assert_eq!(ids(&out), [1], "analysed frame {n}");
                assert_eq!(
                    out[0].face,
                    moving(frame),
                    "smoothing off: the detection itself"
                );
            }
            frame += 1;
            for _ in 1..INTERVAL {
                let out = t.predict();
                if n >= 1 {
                    assert_eq!(ids(&out), [1]);
                    assert!(!out[0].fresh);
                }
                if n >= 15 {
                    // Converged: the predicted box is within a pixel of the true one.
                    assert_close(
                        out[0].face.bbox,
                        moving(frame).bbox,
                        1.0,
                        &format!("frame {frame}"),
                    );
                }
                frame += 1;
            }
        }
        // The filter's own estimate has converged too: velocity (3, -2, 0.5, 0.4).
        let v = t.tracks[0].filter.axes.map(|a| a.v);
        assert_close(v, [3.0, -2.0, 0.5, 0.4], 0.05, "velocity");
        assert_eq!(t.next_id, 2);
    }

    #[test]
    fn landmarks_follow_the_predicted_box() {
        let mut t = Tracker::new(cfg());
        let mut frame = 0;
        for _ in 0..20 {
            t.update(&[moving(frame)]);
            frame += 1;
            for _ in 0..2 {
                let out = t.predict();
                let now = frame;
                frame += 1;
                let Some(f) = out.first().map(|o| &o.face) else {
                    continue;
                };
                let [x1, y1, x2, y2] = f.bbox;
                // Same place relative to the box as in the detections (the eye at 30 %, 40 %…).
                let rel = f
                    .landmarks
                    .map(|[x, y]| [(x - x1) / (x2 - x1), (y - y1) / (y2 - y1)]);
                let want = [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]];
                for (r, w) in rel.iter().zip(want) {
                    assert!(
                        (r[0] - w[0]).abs() < 1e-3 && (r[1] - w[1]).abs() < 1e-3,
                        "{rel:?}"
                    );
                }
                // And so, once converged, within a pixel of where the true ones are.
                if now > 30 {
                    for (l, w) in f.landmarks.iter().zip(moving(now).landmarks) {
                        assert!(
                            (l[0] - w[0]).abs() < 1.0 && (l[1] - w[1]).abs() < 1.0,
                            "frame {now}: {l:?} vs {w:?}"
                        );
                    }
                }
            }
        }
        // They move: 40 frames at (+2.75, −2.2) px per frame for the box's top-left corner.
        let last = t.predict()[0].face;
        assert!(last.landmarks[0][0] > moving(0).landmarks[0][0] + 100.0);
        assert!(last.landmarks[0][1] < moving(0).landmarks[0][1] - 80.0);
    }

    #[test]
    fn crossing_faces_keep_their_ids() {
        // A moves right, B left, 10 px per frame, boxes 60×60 offset 4 px vertically; they pass
        // each other between frames 20 and 21. Without the motion model, A's box of frame 20
        // (x 300, y 100) would overlap B's detection of frame 21 (x 300, y 104; IoU 0.88) more
        // than A's own (x 310, y 100; IoU 0.71): the IDs would swap.
        let a = |k: f32| face(100.0 + 10.0 * k, 100.0, 60.0, 60.0, 0.9);
        let b = |k: f32| face(510.0 - 10.0 * k, 104.0, 60.0, 60.0, 0.9);
        for interval in [1, 2] {
            let mut t = Tracker::new(cfg());
            let mut id_a = 0;
            let mut id_b = 0;
            for frame in 0..50 {
                let k = frame as f32;
                let out = if frame % interval == 0 {
                    t.update(&[b(k), a(k)])
                } else {
                    t.predict()
                };
                if out.is_empty() {
                    continue;
                }
                assert_eq!(out.len(), 2, "interval {interval}, frame {frame}");
                for o in &out {
                    // Whichever box is nearer A's true position is A's.
                    let is_a = o.face.bbox[1] < 102.0;
                    let id = if is_a { &mut id_a } else { &mut id_b };
                    if *id == 0 {
                        *id = o.id;
                    }
                    assert_eq!(o.id, *id, "interval {interval}, frame {frame}: {out:?}");
                    let want = if is_a { a(k) } else { b(k) };
                    // Within 2 px once the velocity has converged.
                    if frame >= 10 {
                        assert_close(
                            o.face.bbox,
                            want.bbox,
                            2.0,
                            &format!("position, interval {interval}, frame {frame}"),
                        );
                    }
                }
            }
            assert_eq!(
                (id_a, id_b),
                (2, 1),
                "interval {interval}: B was listed first"
            );
        }
    }

    #[test]
    fn missing_face_keeps_its_id_up_to_max_missed() {
        // Slowly moving face; the filter coasts through the gap.
        let f = |k: u32| face(100.0 + 2.0 * k as f32, 100.0, 80.0, 80.0, 0.9);
        for (gap, want) in [(3, 1), (4, 2)] {
            let mut t = Tracker::new(TrackerConfig {
                max_missed: 3,
                ..cfg()
            });
            let mut k = 0;
            for _ in 0..10 {
                t.update(&[f(k)]);
                k += 1;
            }
            for n in 1..=gap {
                let out = t.update(&[]);
                assert!(
                    out.is_empty(),
                    "output_missed 0: lost tracks are not output"
                );
                assert_eq!(t.len(), if n <= 3 { 1 } else { 0 }, "gap {gap}, missed {n}");
                k += 1;
            }
            let out = t.update(&[f(k)]);
            k += 1;
            if want == 1 {
                assert_eq!(ids(&out), [1], "back after {gap} misses");
                assert_eq!(out[0].missed, 0);
            } else {
                assert!(out.is_empty(), "a new track, tentative");
                assert_eq!(ids(&t.update(&[f(k)])), [2], "a new ID, never the old one");
            }
        }
    }

    #[test]
    fn tentative_tracks_are_shown_without_an_id_until_confirmed() {
        let mut t = Tracker::new(TrackerConfig {
            confirm_hits: 3,
            ..TrackerConfig::default()
        });
        let face = |x: f32| Face {
            bbox: [x, 50.0, x + 40.0, 100.0],
            score: 0.9,
            landmarks: [[x + 20.0, 75.0]; 5],
        };
        assert!(t.update(&[face(10.0)]).is_empty(), "not confirmed yet");
        assert_eq!(t.tentative().len(), 1, "but shown");
        assert_eq!(t.tentative()[0].face.bbox, face(10.0).bbox);
        assert_eq!(t.tentative()[0].id, 0, "no ID yet");
        assert!(t.predict().is_empty());
        assert_eq!(
            t.tentative().len(),
            1,
            "still shown between analysed frames"
        );
        assert!(t.update(&[face(12.0)]).is_empty());
        let confirmed = t.update(&[face(14.0)]);
        assert_eq!(confirmed.len(), 1);
        assert_eq!(confirmed[0].id, 1);
        assert!(
            t.tentative().is_empty(),
            "confirmed tracks are not tentative"
        );
        // A tentative track that misses one analysed frame is gone, and so is its display.
        t.update(&[face(14.0), face(300.0)]);
        assert_eq!(t.tentative().len(), 1);
        t.update(&[face(14.0)]);
        assert!(t.tentative().is_empty());
    }

    #[test]
    fn output_missed_shows_lost_tracks_at_their_predicted_position() {
        let f = |k: u32| face(100.0 + 2.0 * k as f32, 100.0, 80.0, 80.0, 0.9);
        let mut t = Tracker::new(TrackerConfig {
            output_missed: 1,
            ..cfg()
        });
        for k in 0..10 {
            t.update(&[f(k)]);
        }
        let out = t.update(&[]);
        assert_eq!(ids(&out), [1]);
        assert_eq!((out[0].fresh, out[0].missed), (false, 1));
        assert_close(out[0].face.bbox, f(10).bbox, 0.5, "coasted");
        assert_eq!(ids(&t.predict()), [1]);
        assert!(t.update(&[]).is_empty(), "missed 2 > output_missed 1");
        assert_eq!(t.len(), 1, "but still alive (max_missed 15)");
    }

    #[test]
    fn low_score_detection_keeps_a_track_alive_but_never_starts_one() {
        let c = TrackerConfig {
            max_missed: 1,
            ..cfg()
        };
        let f = |score| face(100.0, 100.0, 80.0, 80.0, score);
        let other = face(400.0, 100.0, 80.0, 80.0, 0.3);
        let mut t = Tracker::new(c);
        t.update(&[f(0.9)]);
        assert_eq!(ids(&t.update(&[f(0.9)])), [1]);
        for _ in 0..5 {
            // max_missed 1: without the low-score match the track would be gone by now.
            let out = t.update(&[f(0.3), other]);
            assert_eq!(ids(&out), [1]);
            assert!(out[0].fresh);
            assert_eq!(out[0].face.score, 0.3);
        }
        assert_eq!(t.len(), 1, "the low-score face elsewhere started nothing");
        // Below low_score a detection is ignored: two misses remove the track.
        t.update(&[f(0.05)]);
        t.update(&[f(0.05)]);
        assert!(t.is_empty());
        // A low-score detection does not revive a lost track either (ByteTrack's stage 2 is for
        // tracks matched on the previous analysed frame).
        let mut t = Tracker::new(c);
        t.update(&[f(0.9)]);
        t.update(&[f(0.9)]);
        assert!(t.update(&[]).is_empty());
        assert!(t.update(&[f(0.3)]).is_empty());
        assert!(t.update(&[f(0.3)]).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn reset_forgets_tracks_but_never_reuses_ids() {
        let a = face(10.0, 10.0, 50.0, 50.0, 0.9);
        let b = face(200.0, 10.0, 50.0, 50.0, 0.9);
        let mut t = Tracker::new(cfg());
        t.update(&[a, b]);
        assert_eq!(ids(&t.update(&[a, b])), [1, 2]);
        t.reset();
        assert!(t.is_empty());
        assert!(t.predict().is_empty());
        assert!(t.update(&[a, b]).is_empty(), "new tentative tracks");
        assert_eq!(ids(&t.update(&[a, b])), [3, 4]);
    }

    #[test]
    fn smoothing_off_outputs_the_detection_and_moves_it_with_the_filter() {
        let mut t = Tracker::new(cfg());
        let mut frame = 0;
        for _ in 0..10 {
            let det = moving(frame);
            let out = t.update(&[det]);
            if !out.is_empty() {
                assert_eq!(out[0].face, det, "bit for bit");
            }
            // Between analysed frames, the output is the detection moved by the filter's
            // per-frame change (not the filter's own, lagging, box).
            let v = t.tracks[0].filter.axes.map(|a| a.v);
            let s = corners_to_centre(det.bbox);
            for k in 1..=2 {
                let out = t.predict();
                frame += 1;
                if out.is_empty() {
                    continue;
                }
                let k = k as f32;
                let want = centre_to_corners([
                    s[0] + k * v[0],
                    s[1] + k * v[1],
                    s[2] + k * v[2],
                    s[3] + k * v[3],
                ]);
                assert_close(out[0].face.bbox, want, 1e-3, "detection + k·velocity");
                assert_eq!(out[0].face.score, det.score);
            }
            frame += 1;
        }
    }

    #[test]
    fn smoothing_blends_the_previous_estimate_with_the_detection() {
        // A still face: the filter's velocity stays exactly 0, so the previous estimate does not
        // move and the blend is hand-computable.
        let still = face(100.0, 100.0, 80.0, 80.0, 0.9);
        let jumped = face(110.0, 100.0, 80.0, 80.0, 0.8);
        for (smoothing, x1) in [(0.0, 110.0), (0.5, 105.0), (0.75, 102.5)] {
            let mut t = Tracker::new(TrackerConfig { smoothing, ..cfg() });
            for _ in 0..5 {
                assert!(t.update(&[still]).iter().all(|o| o.face == still));
            }
            let out = t.update(&[jumped]);
            assert_eq!(ids(&out), [1]);
            let f = out[0].face;
            assert_close(f.bbox, [x1, 100.0, x1 + 80.0, 180.0], 1e-4, "blended box");
            assert!(
                (f.landmarks[0][0] - (x1 + 24.0)).abs() < 1e-4,
                "landmarks blended alike"
            );
            assert_eq!(f.score, 0.8, "score of the detection");
        }
    }

    #[test]
    fn outputs_stay_finite_with_positive_size() {
        // A face shrinking by 5 px per frame, then predicted far past zero size.
        let mut t = Tracker::new(TrackerConfig {
            output_missed: 100,
            ..cfg()
        });
        for k in 0..14 {
            let s = 100.0 - 5.0 * k as f32;
            t.update(&[face(300.0 - s / 2.0, 300.0 - s / 2.0, s, s, 0.9)]);
        }
        let mut outs = Vec::new();
        for _ in 0..50 {
            outs.extend(t.predict());
        }
        for _ in 0..20 {
            outs.extend(t.update(&[]));
        }
        assert!(!outs.is_empty());
        for o in &outs {
            let f = &o.face;
            assert!(
                f.bbox
                    .iter()
                    .chain(f.landmarks.iter().flatten())
                    .all(|x| x.is_finite()),
                "{o:?}"
            );
            assert!(
                f.width() >= MIN_SIZE * 0.999 && f.height() >= MIN_SIZE * 0.999,
                "{o:?}"
            );
        }
        // Invalid detections are ignored.
        let mut t = Tracker::new(TrackerConfig {
            confirm_hits: 1,
            ..cfg()
        });
        let mut nan = face(10.0, 10.0, 50.0, 50.0, 0.9);
        nan.bbox[0] = f32::NAN;
        let empty = face(10.0, 10.0, 0.0, 50.0, 0.9);
        let inf = face(10.0, 10.0, 50.0, 50.0, f32::INFINITY);
        assert!(t.update(&[nan, empty, inf]).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn set_config_applies_while_keeping_tracks_and_ids() {
        let f = face(100.0, 100.0, 80.0, 80.0, 0.9);
        let mut t = Tracker::new(TrackerConfig {
            confirm_hits: 5,
            ..cfg()
        });
        t.update(&[f]);
        t.update(&[f]);
        t.set_config(TrackerConfig {
            confirm_hits: 3,
            ..cfg()
        });
        assert_eq!(
            ids(&t.update(&[f])),
            [1],
            "third hit confirms under the new setting"
        );
        t.set_config(TrackerConfig {
            max_missed: 0,
            ..cfg()
        });
        assert!(t.update(&[]).is_empty());
        assert!(t.is_empty(), "one miss is more than max_missed 0");
    }

    /// A face walking 12 px a frame (40 px wide), detected every 10th frame, whose detections
    /// arrive `lag` frames after their frame (an async detector).
    fn walker(frame: u32) -> Face {
        face(100.0 + 12.0 * frame as f32, 200.0, 40.0, 40.0, 0.9)
    }

    #[test]
    fn a_late_detection_is_matched_where_the_track_was_on_its_frame() {
        // The track knows the face's velocity; a detection 6 frames old lies 72 px (almost two
        // face widths) behind the face's predicted box, so matched at the current frame it would
        // not overlap and start a second track. Matched on its own frame it keeps the ID.
        let lag = 6;
        let mut t = Tracker::new(cfg());
        // Every frame detected at first: the filter learns the velocity.
        for frame in 0..30 {
            t.update(&[walker(frame)]);
        }
        assert_eq!(ids(&t.predict()), [1]);
        let mut frame = 31;
        for _ in 0..3 {
            // Frames frame..frame+lag−1 pass with predictions; the detection of `frame` arrives
            // with frame + lag.
            for _ in 0..lag {
                t.predict();
            }
            let out = t.update_delayed(&[walker(frame)], lag);
            assert_eq!(ids(&out), [1], "frame {frame}: same track, no second one");
            assert_eq!(t.len(), 1);
            assert_eq!(out[0].since_detection, lag as u32);
            assert!(!out[0].fresh, "a prediction, measured {lag} frames ago");
            // Predicted forward with the track's velocity: where the face is now (within a
            // few px of the filter's velocity error), not 72 px behind.
            let now = walker(frame + lag as u32);
            assert_close(
                out[0].face.bbox,
                now.bbox,
                6.0,
                "moved to the current frame",
            );
            frame += lag as u32 + 1;
        }
    }

    #[test]
    fn a_late_detection_gives_what_it_would_have_given_on_its_own_frame() {
        // Two trackers see the same frames; one gets each detection on its frame, the other
        // `lag` frames later. After the late one arrives they agree exactly, tentative tracks,
        // confirmation and IDs included.
        // A detection every 10th frame; the face (40 px wide, 2 px a frame) enters at frame 20.
        let detections = |frame: u32| {
            if frame >= 20 {
                vec![face(100.0 + 2.0 * frame as f32, 200.0, 40.0, 40.0, 0.9)]
            } else {
                Vec::new()
            }
        };
        for lag in [1u32, 3, 9] {
            let (mut on_time, mut late) = (Tracker::new(cfg()), Tracker::new(cfg()));
            for frame in 0..60u32 {
                let expect = if frame % 10 == 0 {
                    on_time.update(&detections(frame))
                } else {
                    on_time.predict()
                };
                let got = if frame >= lag && (frame - lag) % 10 == 0 {
                    late.update_delayed(&detections(frame - lag), lag as usize)
                } else {
                    late.predict()
                };
                // Between the late arrival and the next detection both have seen the same.
                if frame % 10 >= lag {
                    assert_eq!(got, expect, "lag {lag}, frame {frame}");
                    assert_eq!(
                        late.tentative(),
                        on_time.tentative(),
                        "lag {lag}, frame {frame}"
                    );
                }
            }
            assert_eq!(ids(&late.predict()), [1], "lag {lag}: one confirmed face");
        }
    }

    #[test]
    fn a_detection_older_than_the_history_counts_as_found_now() {
        let mut t = Tracker::new(cfg());
        t.update(&[walker(0)]);
        t.update(&[walker(1)]);
        assert_eq!(t.history_len(), 2);
        // After a reset nothing is remembered: the face is taken where the detection says.
        t.reset();
        assert_eq!(t.history_len(), 0);
        assert!(t.update_delayed(&[walker(5)], 4).is_empty());
        let out = t.tentative();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].face.bbox, walker(5).bbox);
        assert_eq!(out[0].since_detection, 0);
        // The history is bounded.
        for _ in 0..HISTORY + 10 {
            t.predict();
        }
        assert_eq!(t.history_len(), HISTORY);
    }

    /// Per-frame cost with 50 faces: `cargo test --release -p retinaface --lib track -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "timing; run on demand"]
    fn cost_with_50_faces() {
        const FACES: usize = 50;
        const FRAMES: u32 = 3000;
        let mut rng = 12345u32;
        let mut jitter = move || {
            rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (rng >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        // A 10 × 5 grid of 60 px faces, 150 px apart, drifting, with ±1 px detection noise.
        let truth = |i: usize, k: u32| {
            let (gx, gy) = ((i % 10) as f32, (i / 10) as f32);
            face(
                50.0 + 150.0 * gx + 0.5 * k as f32,
                50.0 + 150.0 * gy + 0.3 * k as f32,
                60.0,
                60.0,
                0.9,
            )
        };
        let mut t = Tracker::default();
        let mut update = std::time::Duration::ZERO;
        let mut predict = std::time::Duration::ZERO;
        for k in 0..FRAMES {
            let dets: Vec<Face> = (0..FACES)
                .map(|i| {
                    let mut f = truth(i, k);
                    for v in &mut f.bbox {
                        *v += jitter() * 2.0;
                    }
                    f
                })
                .collect();
            let start = std::time::Instant::now();
            let out = t.update(&dets);
            update += start.elapsed();
            if k > 2 {
                assert_eq!(out.len(), FACES);
            }
            let start = std::time::Instant::now();
            let out = t.predict();
            predict += start.elapsed();
            if k > 2 {
                assert_eq!(out.len(), FACES);
            }
        }
        assert_eq!(t.next_id, FACES as u64 + 1, "no ID switches");
        let per_update = update.as_secs_f64() * 1e3 / FRAMES as f64;
        let per_predict = predict.as_secs_f64() * 1e3 / FRAMES as f64;
        println!(
            "{FACES} faces: update {per_update:.4} ms/frame, predict {per_predict:.4} ms/frame"
        );
        // Crowded: all 50 in one 5 × 10 block of overlapping boxes (every track has several
        // admissible detections, so the solver sees the whole 50 × 50 problem).
        let crowd = |i: usize, k: u32| {
            let (gx, gy) = ((i % 10) as f32, (i / 10) as f32);
            face(
                50.0 + 30.0 * gx + 0.5 * k as f32,
                50.0 + 30.0 * gy,
                60.0,
                60.0,
                0.9,
            )
        };
        let mut t = Tracker::default();
        let mut update = std::time::Duration::ZERO;
        for k in 0..FRAMES / 10 {
            let dets: Vec<Face> = (0..FACES).map(|i| crowd(i, k)).collect();
            let start = std::time::Instant::now();
            t.update(&dets);
            update += start.elapsed();
        }
        let per_update = update.as_secs_f64() * 1e3 / (FRAMES / 10) as f64;
        println!("{FACES} overlapping faces: update {per_update:.4} ms/frame");
    }
}
