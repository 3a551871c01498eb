//! The answer to one request: a [`Ticket`] to wait on or poll, and what it gives ([`Done`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use super::backend::{Inputs, ModelInfo, Pixels, Tensor};
use super::error::EngineError;

/// A finished request.
#[derive(Debug, Clone)]
pub struct Done {
    /// One tensor per model output, in [`ModelInfo::outputs`] order.
    pub outputs: Vec<Tensor>,
    /// The submitted inputs, given back so their buffers can be reused (empty for a
    /// [`Pixels`] request).
    pub inputs: Vec<Tensor>,
    /// The submitted [`Pixels`] of a pixel request, given back likewise.
    pub pixels: Option<Pixels>,
    /// The model that produced `outputs`: read them by this one, also after a swap.
    pub model: Arc<ModelInfo>,
    /// How many requests shared the run.
    pub batch_len: usize,
}

/// What the worker sends back: outputs, the inputs given back, and the batch's length.
pub(super) type Reply = Result<(Vec<Tensor>, Inputs, usize), EngineError>;

/// Counts a request in its client's in-flight count until it is answered or dropped.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The answer to one request, to wait for (sync) or poll (async). Dropping it cancels the
/// request if it has not run yet.
pub struct Ticket {
    rx: Receiver<Reply>,
    cancelled: Arc<AtomicBool>,
    model: Arc<ModelInfo>,
}

impl Ticket {
    /// A ticket and the two ends the queued request keeps: where to answer and whether the
    /// ticket is gone.
    pub(super) fn new(model: Arc<ModelInfo>) -> (Self, SyncSender<Reply>, Arc<AtomicBool>) {
        // One answer per ticket: sending never blocks the worker.
        let (tx, rx) = sync_channel(1);
        let cancelled = Arc::new(AtomicBool::new(false));
        let ticket = Self {
            rx,
            cancelled: Arc::clone(&cancelled),
            model,
        };
        (ticket, tx, cancelled)
    }

    /// A ticket answered at once (a request refused before it was queued).
    pub(super) fn resolved(reply: Reply, model: Arc<ModelInfo>) -> Self {
        let (ticket, tx, _) = Self::new(model);
        let _ = tx.try_send(reply);
        ticket
    }

    fn done(&self, reply: Reply) -> Result<Done, EngineError> {
        reply.map(|(outputs, inputs, batch_len)| {
            let (inputs, pixels) = match inputs {
                Inputs::Tensors(tensors) => (tensors, None),
                Inputs::Pixels(pixels) => (Vec::new(), Some(pixels)),
            };
            Done {
                outputs,
                inputs,
                pixels,
                model: Arc::clone(&self.model),
                batch_len,
            }
        })
    }

    /// Waits at most `timeout` for the answer. [`EngineError::Timeout`] leaves the ticket
    /// pending; once the answer has been taken, later calls give [`EngineError::Stopped`].
    pub fn wait(&self, timeout: Duration) -> Result<Done, EngineError> {
        match self.rx.recv_timeout(timeout) {
            Ok(reply) => self.done(reply),
            Err(RecvTimeoutError::Timeout) => Err(EngineError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(EngineError::Stopped),
        }
    }

    /// The answer if it is there; never waits.
    pub fn try_take(&self) -> Option<Result<Done, EngineError>> {
        match self.rx.try_recv() {
            Ok(reply) => Some(self.done(reply)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(EngineError::Stopped)),
        }
    }

    /// The model of the engine the request went to.
    pub fn model(&self) -> &Arc<ModelInfo> {
        &self.model
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}
