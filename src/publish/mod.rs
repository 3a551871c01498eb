//! The outbox between a streaming thread that must never block and a publisher thread that
//! sends to a broker which may be down: a bounded queue of messages with one sequence number
//! per message, which drops per-frame messages before events when full and counts every drop.
//! GStreamer- and MQTT-free; `retinafacepublish` wraps it.
//!
//! - [`Outbox::push`] (streaming thread) gives the message the next `seq` of its class (events
//!   and per-frame messages count separately: they go to different topics), even when the
//!   message is then dropped, so a consumer sees a gap where one went missing;
//! - when the queue holds `capacity` messages, the oldest [`Class::Frame`] message is dropped to
//!   make room; when it holds none, an incoming frame message is dropped; an event is only
//!   dropped (the oldest event) when the whole queue is events. [`Pushed`] says what was
//!   dropped, so the caller can warn, and [`Stats`] counts it;
//! - the publisher takes messages in order ([`Shared::take`]) and reports them delivered
//!   ([`Shared::delivered`]) once the broker acknowledged them; the ones it holds unacknowledged
//!   are its own to resend.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a message is, for the drop order when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Per-frame face records: dropped first.
    Frame,
    /// new / update / end, snapshots, status.
    Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `None` for messages without a number (binary snapshots).
    pub seq: Option<u64>,
    pub class: Class,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// Counters since the outbox was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages waiting in the queue (not handed to the publisher yet).
    pub queued: usize,
    /// Messages accepted by [`Outbox::push`] (dropped ones included).
    pub pushed: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    pub dropped_frames: u64,
    pub dropped_events: u64,
}

/// What one push dropped to respect the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    pub seq: Option<u64>,
    pub dropped_frames: u64,
    pub dropped_events: u64,
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Message>,
    capacity: usize,
    /// Next `seq` per class: events and per-frame messages go to different topics, and a
    /// consumer of one sees no gaps made by the other.
    next_seq: [u64; 2],
    stats: Stats,
}

impl Outbox {
    /// An outbox holding at most `capacity` (≥ 1) messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: [0; 2],
            stats: Stats::default(),
        }
    }

    /// The bound for the next pushes (messages already queued beyond it stay until taken).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Queues the message `build(seq)` returns as `(topic, payload, retain)`, `seq` being the
    /// next number of its class.
    pub fn push(
        &mut self,
        class: Class,
        build: impl FnOnce(u64) -> (String, Vec<u8>, bool),
    ) -> Pushed {
        let counter = &mut self.next_seq[class as usize];
        let seq = *counter;
        *counter += 1;
        let (topic, payload, retain) = build(seq);
        self.enqueue(class, Some(seq), topic, payload, retain)
    }

    /// Queues a message that carries no `seq` (a binary snapshot: its event has one).
    pub fn push_unnumbered(
        &mut self,
        class: Class,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Pushed {
        self.enqueue(class, None, topic, payload, retain)
    }

    fn enqueue(
        &mut self,
        class: Class,
        seq: Option<u64>,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Pushed {
        self.stats.pushed += 1;
        let mut pushed = Pushed {
            seq,
            ..Pushed::default()
        };
        if self.queue.len() >= self.capacity {
            if let Some(i) = self.queue.iter().position(|m| m.class == Class::Frame) {
                self.queue.remove(i);
                pushed.dropped_frames += 1;
            } else if class == Class::Frame {
                pushed.dropped_frames += 1;
                self.stats.dropped_frames += 1;
                return pushed;
            } else {
                self.queue.pop_front();
                pushed.dropped_events += 1;
            }
        }
        self.stats.dropped_frames += pushed.dropped_frames;
        self.stats.dropped_events += pushed.dropped_events;
        self.queue.push_back(Message {
            seq,
            class,
            topic,
            payload,
            retain,
        });
        pushed
    }

    /// Up to `max` messages from the front, in order.
    pub fn take(&mut self, max: usize) -> Vec<Message> {
        let n = max.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            queued: self.queue.len(),
            ..self.stats
        }
    }
}

/// An [`Outbox`] shared by threads: pushes wake a publisher waiting in [`Shared::take`].
#[derive(Debug)]
pub struct Shared {
    outbox: Mutex<Outbox>,
    changed: Condvar,
    /// Messages taken by the publisher and not acknowledged yet.
    in_flight: Mutex<usize>,
}

impl Shared {
    pub fn new(capacity: usize) -> Self {
        Self {
            outbox: Mutex::new(Outbox::new(capacity)),
            changed: Condvar::new(),
            in_flight: Mutex::new(0),
        }
    }

    /// [`Outbox::push`], then wakes the publisher.
    pub fn push(&self, class: Class, build: impl FnOnce(u64) -> (String, Vec<u8>, bool)) -> Pushed {
        let pushed = self.outbox.lock().unwrap().push(class, build);
        self.changed.notify_all();
        pushed
    }

    /// [`Outbox::push_unnumbered`], then wakes the publisher.
    pub fn push_unnumbered(
        &self,
        class: Class,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Pushed {
        let pushed = self
            .outbox
            .lock()
            .unwrap()
            .push_unnumbered(class, topic, payload, retain);
        self.changed.notify_all();
        pushed
    }

    /// Up to `max` messages, waiting at most `timeout` for the first; the publisher now holds
    /// them (in flight) until [`Self::delivered`].
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut outbox = self.outbox.lock().unwrap();
        while outbox.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            outbox = self.changed.wait_timeout(outbox, left).unwrap().0;
        }
        let taken = outbox.take(max);
        *self.in_flight.lock().unwrap() += taken.len();
        taken
    }

    /// `n` messages taken earlier were acknowledged by the broker.
    pub fn delivered(&self, n: usize) {
        self.outbox.lock().unwrap().stats.delivered += n as u64;
        let mut in_flight = self.in_flight.lock().unwrap();
        *in_flight = in_flight.saturating_sub(n);
        drop(in_flight);
        self.changed.notify_all();
    }

    /// Messages not delivered yet: queued + in flight.
    pub fn undelivered(&self) -> usize {
        let queued = self.outbox.lock().unwrap().len();
        queued + *self.in_flight.lock().unwrap()
    }

    /// Waits until every message pushed so far is delivered, at most `timeout`; whether it was.
    pub fn wait_delivered(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut outbox = self.outbox.lock().unwrap();
        loop {
            if outbox.is_empty() && *self.in_flight.lock().unwrap() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Short waits: `delivered` notifies, but it takes the in-flight lock separately.
            outbox = self
                .changed
                .wait_timeout(outbox, left.min(Duration::from_millis(20)))
                .unwrap()
                .0;
        }
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.outbox.lock().unwrap().set_capacity(capacity);
    }

    /// Stats with the in-flight messages counted as queued.
    pub fn stats(&self) -> Stats {
        let mut stats = self.outbox.lock().unwrap().stats();
        stats.queued += *self.in_flight.lock().unwrap();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(outbox: &mut Outbox, class: Class, name: &str) -> Pushed {
        outbox.push(class, |_| (name.to_string(), Vec::new(), false))
    }

    fn topics(outbox: &mut Outbox) -> Vec<(Option<u64>, String)> {
        outbox
            .take(100)
            .into_iter()
            .map(|m| (m.seq, m.topic))
            .collect()
    }

    #[test]
    fn messages_come_out_in_order_with_consecutive_seqs() {
        let mut outbox = Outbox::new(10);
        for name in ["a", "b", "c"] {
            push(&mut outbox, Class::Event, name);
        }
        let frame = outbox.push(Class::Frame, |seq| ("d".into(), vec![seq as u8], true));
        // Frames count on their own.
        assert_eq!(frame.seq, Some(0));
        outbox.push_unnumbered(Class::Event, "jpeg".into(), vec![1, 2], true);
        assert_eq!(push(&mut outbox, Class::Event, "e").seq, Some(3));
        let seqs = |m: &[Message]| m.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&outbox.take(2)), [Some(0), Some(1)]);
        let rest = outbox.take(10);
        assert_eq!(seqs(&rest), [Some(2), Some(0), None, Some(3)]);
        assert_eq!((rest[1].payload.clone(), rest[1].retain), (vec![0], true));
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_frame_message_before_any_event() {
        let mut outbox = Outbox::new(3);
        push(&mut outbox, Class::Event, "e0");
        push(&mut outbox, Class::Frame, "f1");
        push(&mut outbox, Class::Frame, "f2");
        let p = push(&mut outbox, Class::Event, "e3");
        assert_eq!((p.dropped_frames, p.dropped_events), (1, 0));
        let p = push(&mut outbox, Class::Event, "e4");
        assert_eq!((p.dropped_frames, p.dropped_events), (1, 0));
        // Only events left: a frame message is refused (its seq still counted: a gap), an event
        // pushes the oldest event out.
        let p = push(&mut outbox, Class::Frame, "f5");
        assert_eq!((p.seq, p.dropped_frames, p.dropped_events), (Some(2), 1, 0));
        let p = push(&mut outbox, Class::Event, "e6");
        assert_eq!((p.dropped_frames, p.dropped_events), (0, 1));
        let stats = outbox.stats();
        assert_eq!(
            (
                stats.queued,
                stats.pushed,
                stats.dropped_frames,
                stats.dropped_events
            ),
            (3, 7, 3, 1)
        );
        assert_eq!(
            topics(&mut outbox),
            [
                (Some(1), "e3".into()),
                (Some(2), "e4".into()),
                (Some(3), "e6".into())
            ]
        );
    }

    #[test]
    fn shared_take_waits_for_a_push_or_times_out_and_tracks_delivery() {
        let shared = std::sync::Arc::new(Shared::new(10));
        assert!(shared.take(5, Duration::from_millis(10)).is_empty());
        let pusher = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                shared.push(Class::Event, |_| ("t".into(), Vec::new(), false));
            })
        };
        let taken = shared.take(5, Duration::from_secs(10));
        pusher.join().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(shared.undelivered(), 1);
        assert!(!shared.wait_delivered(Duration::from_millis(10)));
        shared.delivered(1);
        assert!(shared.wait_delivered(Duration::from_millis(10)));
        let stats = shared.stats();
        assert_eq!((stats.queued, stats.pushed, stats.delivered), (0, 1, 1));
    }
}
