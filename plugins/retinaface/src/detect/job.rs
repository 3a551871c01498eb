//! A frame between its arrival and its departure: what `retinafacedetect` decided for it when it
//! came (analyse it, carry the faces before it, or nothing to look at) and, in sync mode, the
//! inference it is waiting for.
//!
//! Frames leave in arrival order. With `frames-in-flight` = 1 a frame is finished as soon as it
//! begins (the streaming thread waits for its inference); with more, the streaming thread hands
//! a frame to the model and goes back upstream for the next ones, and a frame is finished (its
//! faces collected, set as the result, attached) once that many later frames have arrived, or at
//! EOS, a caps or segment change, or a drain query. Results are applied in frame order either
//! way, so every frame gets the faces it would have got with 1.

use std::time::Instant;

use retinaface::DetectParams;
use retinaface::detector::Pending;
use retinaface::tiling::Rect;

/// A frame the detector handled: its place in the count since the last reset, and its pts. What
/// a result's age is measured from.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameStamp {
    pub index: u64,
    pub pts: Option<gst::ClockTime>,
}

/// What finishing a frame adds to the faces carried so far.
pub(super) enum Outcome {
    /// Nothing new (not analysed, or async: a result that came back was applied on arrival).
    Carried,
    /// Only upstream regions are looked at and there were none: no faces on this frame.
    Empty,
    /// Sync mode: handed to the model; its faces are collected when the frame leaves.
    /// `partial`: the motion regions it was looked at in (`None`: all of it).
    Submitted {
        pending: Pending,
        partial: Option<Vec<Rect>>,
    },
}

pub(super) struct Job {
    pub stamp: FrameStamp,
    pub outcome: Outcome,
    /// Async: whether the faces are this frame's own / the first buffer to carry a result
    /// (decided on arrival; `Empty` and `Submitted` set both when finished).
    pub analysed: bool,
    pub arrived: bool,
    /// Frame-time settings the frame was begun with.
    pub params: DetectParams,
    pub post_messages: bool,
    /// Whether the frame's time in the element counts towards the reported latency (it waited
    /// for an inference, or was held behind other frames).
    pub timed: bool,
    pub since: Instant,
}
