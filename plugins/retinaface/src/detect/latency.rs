//! The latency `retinafacedetect` reports: how long a buffer may spend in the element.
//!
//! In sync mode the streaming thread waits for the model, so a live buffer leaves the element that
//! much after its capture time; a sink that is not told drops it as late (or the pipeline lags).
//! The element therefore adds a recent upper bound of its processing time to the latency query
//! and posts a LATENCY message when that bound moves enough to matter. In async mode a buffer only
//! waits for a copy into the engine's input, and nothing is added.
//!
//! The bound is the largest recent processing time, forgotten slowly (1/32 of the gap per
//! analysed frame): one slow frame raises it at once, a faster model lowers it over a few dozen
//! frames. A new value is published only when it leaves a band around the published one, so a
//! noisy CPU does not make the pipeline recompute its latency every frame.

use std::sync::Mutex;
use std::time::Duration;

/// Published bound grows when the estimate exceeds it by this factor, and shrinks when the
/// estimate falls under it by the inverse of [`SHRINK_BELOW`].
const GROW_ABOVE: f64 = 1.2;
const SHRINK_BELOW: f64 = 0.5;
/// Fraction of the gap to a faster sample that the estimate closes per sample.
const DECAY: u32 = 32;

#[derive(Debug, Default)]
pub struct ProcessingLatency {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Inner {
    estimate: Duration,
    published: Duration,
}

impl ProcessingLatency {
    /// Records how long one analysed frame kept the streaming thread. Returns true when the
    /// published latency changed (post a LATENCY message so the pipeline redistributes it).
    pub fn record(&self, took: Duration) -> bool {
        let mut inner = self.inner.lock().unwrap();
        inner.estimate = if took >= inner.estimate {
            took
        } else {
            inner.estimate - (inner.estimate - took) / DECAY
        };
        let estimate = inner.estimate.as_secs_f64();
        let published = inner.published.as_secs_f64();
        if estimate > published * GROW_ABOVE || estimate < published * SHRINK_BELOW {
            inner.published = inner.estimate;
            true
        } else {
            false
        }
    }

    /// Forgets the estimate (async mode, or stopped). Returns true when a latency had been
    /// published, i.e. the pipeline should be told.
    pub fn clear(&self) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let had = !inner.published.is_zero();
        *inner = Inner::default();
        had
    }

    /// What the latency query adds.
    pub fn published(&self) -> Duration {
        self.inner.lock().unwrap().published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_frame_publishes_and_slower_frames_raise_at_once() {
        let l = ProcessingLatency::default();
        assert!(l.record(10 * MS));
        assert_eq!(l.published(), 10 * MS);
        // Within the band: nothing new to publish.
        assert!(!l.record(11 * MS));
        assert_eq!(l.published(), 10 * MS);
        // 30 ms > 1.2 × 10 ms.
        assert!(l.record(30 * MS));
        assert_eq!(l.published(), 30 * MS);
    }

    #[test]
    fn a_faster_model_lowers_it_slowly_and_never_below_the_last_sample() {
        let l = ProcessingLatency::default();
        l.record(40 * MS);
        let mut republished_after = None;
        for frame in 1..=200 {
            if l.record(5 * MS) {
                republished_after = Some(frame);
                break;
            }
        }
        // 40 → under 20 ms closes 1/32 of the gap per frame: ln(35/15)/ln(32/31) ≈ 27 frames.
        let frames = republished_after.expect("shrinks eventually");
        assert!((20..=35).contains(&frames), "after {frames} frames");
        assert!(l.published() >= 5 * MS && l.published() < 20 * MS);
    }

    #[test]
    fn clear_reports_whether_anything_was_published() {
        let l = ProcessingLatency::default();
        assert!(!l.clear());
        l.record(7 * MS);
        assert!(l.clear());
        assert_eq!(l.published(), Duration::ZERO);
    }
}
