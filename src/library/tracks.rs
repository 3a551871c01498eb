//! Who each track is: the per-track state an identify element keeps. Embeddings cost as much as a
//! detection (≈ 10 ms per face on 2 cores), so they are computed per track, never per frame: a
//! track's face is embedded on its first [`TrackConfig::first_shots`] analysed frames, then only
//! when a clearly better shot comes (its quality, from [`crate::quality`], beats the best so far
//! by [`TrackConfig::better_by`]), at most [`TrackConfig::max_shots`] times. The track's
//! estimate is the quality-weighted mean of its normalised embeddings (a blurred or turned face
//! counts less), matched against the library after each new shot and when the library changes.

use std::collections::HashMap;

use super::people::{DEFAULT_THRESHOLD, Library, Match};
use crate::embedding::Embedding;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackConfig {
    /// Shots embedded unconditionally when a track starts.
    pub first_shots: usize,
    /// Later, a shot is embedded when its quality ≥ best quality so far × this.
    pub better_by: f32,
    /// Most shots embedded per track.
    pub max_shots: usize,
    /// Cosine similarity at and above which a track is named.
    pub threshold: f32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            first_shots: 3,
            better_by: 1.2,
            max_shots: 10,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Track {
    shots: Vec<(Embedding, f32)>,
    best_quality: f32,
    estimate: Option<Embedding>,
    /// The library's nearest person to the estimate, whatever the similarity.
    nearest: Option<Match>,
}

/// The identities of the tracks of one stream.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    pub config: TrackConfig,
    tracks: HashMap<u64, Track>,
}

impl Tracks {
    pub fn new(config: TrackConfig) -> Self {
        Self {
            config,
            tracks: HashMap::new(),
        }
    }

    /// Whether the face of `track` seen now with `quality` should be embedded.
    pub fn wants(&self, track: u64, quality: f32) -> bool {
        let Some(t) = self.tracks.get(&track) else {
            return true;
        };
        let n = t.shots.len();
        n < self.config.first_shots
            || (n < self.config.max_shots && quality >= t.best_quality * self.config.better_by)
    }

    /// Adds a shot of `track` and matches its new estimate against `library`; returns the
    /// track's name now (`None` = unknown).
    pub fn add(
        &mut self,
        track: u64,
        embedding: Embedding,
        quality: f32,
        library: &Library,
    ) -> Option<&Match> {
        let threshold = self.config.threshold;
        let t = self.tracks.entry(track).or_default();
        // A quality of 0 would make the shot count for nothing; keep it a little.
        t.shots.push((embedding, quality.max(1e-3)));
        t.best_quality = t.best_quality.max(quality);
        t.estimate = Embedding::mean(t.shots.iter().map(|(e, q)| (e, *q)));
        t.nearest = t.estimate.as_ref().and_then(|e| library.nearest(e));
        t.nearest.as_ref().filter(|m| m.reaches(threshold))
    }

    /// The name of `track` (`None`: unknown, or not embedded yet).
    pub fn name(&self, track: u64) -> Option<&Match> {
        self.nearest(track)
            .filter(|m| m.reaches(self.config.threshold))
    }

    /// The library's nearest person to the estimate of `track` whatever the similarity (`None`:
    /// not embedded yet, or an empty library): its similarity says how far an unknown face is
    /// from being named.
    pub fn nearest(&self, track: u64) -> Option<&Match> {
        self.tracks.get(&track)?.nearest.as_ref()
    }

    /// Whether `track` has been embedded at least once.
    pub fn embedded(&self, track: u64) -> bool {
        self.tracks.contains_key(&track)
    }

    /// The estimate of `track` and the nearest person whatever the threshold (for the unknown
    /// folder and for logs at DEBUG).
    pub fn estimate(&self, track: u64) -> Option<&Embedding> {
        self.tracks.get(&track)?.estimate.as_ref()
    }

    /// Matches every track again (the library changed while playing).
    pub fn rematch(&mut self, library: &Library) {
        for t in self.tracks.values_mut() {
            t.nearest = t.estimate.as_ref().and_then(|e| library.nearest(e));
        }
    }

    /// Forgets the tracks not in `alive` (ended tracks); returns the ids forgotten.
    pub fn retain(&mut self, alive: impl Fn(u64) -> bool) -> Vec<u64> {
        let gone: Vec<u64> = self.tracks.keys().copied().filter(|&k| !alive(k)).collect();
        for k in &gone {
            self.tracks.remove(k);
        }
        gone
    }

    /// Forgets everything (flush, seek, new stream).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::people::Person;
    use super::*;

    fn e(v: &[f32]) -> Embedding {
        Embedding::new(v.to_vec()).unwrap()
    }

    fn library() -> Library {
        Library {
            people: vec![Person {
                name: "Alice".into(),
                embeddings: vec![e(&[1.0, 0.0])],
                photos: Vec::new(),
            }],
        }
    }

    #[test]
    fn first_shots_then_only_clearly_better_ones_are_embedded() {
        let mut tracks = Tracks::new(TrackConfig {
            first_shots: 2,
            better_by: 1.5,
            max_shots: 4,
            threshold: 0.5,
        });
        let lib = library();
        assert!(tracks.wants(7, 0.1), "a new track is embedded");
        tracks.add(7, e(&[1.0, 0.0]), 0.2, &lib);
        assert!(tracks.wants(7, 0.01), "second of the first shots");
        tracks.add(7, e(&[1.0, 0.0]), 0.4, &lib);
        // Best so far 0.4: a shot needs ≥ 0.6.
        assert!(!tracks.wants(7, 0.59));
        assert!(tracks.wants(7, 0.6));
        tracks.add(7, e(&[1.0, 0.0]), 0.6, &lib);
        tracks.add(7, e(&[1.0, 0.0]), 0.9, &lib);
        assert!(!tracks.wants(7, 1.0), "max shots reached");
        assert!(tracks.wants(8, 0.0), "another track is new");
    }

    #[test]
    fn the_estimate_is_the_quality_weighted_mean_and_names_by_threshold() {
        let mut tracks = Tracks::new(TrackConfig {
            threshold: 0.7,
            ..TrackConfig::default()
        });
        let lib = library();
        // A poor shot pointing away from Alice: cos = 0 → unknown.
        assert_eq!(tracks.add(1, e(&[0.0, 1.0]), 0.1, &lib), None);
        let near = tracks.nearest(1).unwrap();
        assert_eq!((near.name.as_str(), near.similarity), ("Alice", 0.0));
        assert!(tracks.embedded(1) && !tracks.embedded(2));
        // A good shot of Alice with 9× the weight: mean ∝ (0.9, 0.1), cos = 0.9 / √0.82 = 0.9939.
        let m = tracks.add(1, e(&[1.0, 0.0]), 0.9, &lib).cloned().unwrap();
        assert_eq!(m.name, "Alice");
        assert!((m.similarity - 0.9 / 0.82f32.sqrt()).abs() < 1e-5, "{m:?}");
        assert_eq!(tracks.name(1), Some(&m));
        // The library loses Alice: the track becomes unknown without a new shot.
        tracks.rematch(&Library::default());
        assert_eq!(tracks.name(1), None);
        assert_eq!(tracks.nearest(1), None, "nobody left to be near");
        assert!(tracks.estimate(1).is_some());
        assert_eq!(tracks.retain(|id| id != 1), vec![1]);
        assert!(tracks.is_empty());
    }
}
