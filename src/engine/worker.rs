//! One loaded model ([`Engine`]): its request queue and the worker thread that batches the
//! queued requests and runs them on the [`Backend`].

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::{Backend, Inputs, ModelInfo, Pixels, Tensor};
use super::error::EngineError;
use super::key::EngineKey;
use super::ticket::{InFlight, Reply, Ticket};

/// How a client's requests may be batched with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Most requests in a batch this client's requests join (1 = always run alone). Capped by
    /// the backend's [`Backend::max_batch`].
    pub batch_size: usize,
    /// Longest a request waits for others to fill its batch, from its submission.
    pub batch_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            batch_size: 1,
            batch_timeout: Duration::ZERO,
        }
    }
}

/// Counters of an engine's work since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Backend runs.
    pub batches: u64,
    /// Requests run (successfully or not).
    pub requests: u64,
    /// Largest batch run.
    pub largest_batch: u64,
    /// Time the backend spent running: against wall time, how busy the engine's one worker
    /// is (requests of all its clients run one batch at a time).
    pub busy: Duration,
}

/// A mutex's guard even if a thread panicked while holding it: the engine's state stays
/// consistent across a panic (a backend's panic is caught outside any lock).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Request {
    inputs: Inputs,
    batch_size: usize,
    /// Submission + the client's batch timeout.
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
    in_flight: InFlight,
    reply: SyncSender<Reply>,
}

impl Request {
    /// Sends the answer (giving the inputs back with the outputs).
    fn answer(self, outcome: Result<(Vec<Tensor>, usize), EngineError>) {
        let Self {
            inputs,
            reply,
            in_flight,
            ..
        } = self;
        // Counted out before the answer is visible, so a client that sees the answer may
        // hand over its next request at once.
        drop(in_flight);
        // The ticket may be gone: nobody to tell. The channel holds one answer, so this never
        // blocks.
        let _ = reply.try_send(outcome.map(|(outputs, batch_len)| (outputs, inputs, batch_len)));
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Request>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    batches: AtomicU64,
    requests: AtomicU64,
    largest_batch: AtomicU64,
    busy_ns: AtomicU64,
}

/// One loaded model with its request queue and worker thread. Shared through
/// [`Registry`](super::Registry); dropping the last `Arc` stops the worker (after the batch it
/// is running) and frees the model.
pub struct Engine {
    key: EngineKey,
    model: Arc<ModelInfo>,
    warnings: Vec<String>,
    max_batch: usize,
    /// [`Backend::takes_pixels`] of the backend.
    takes_pixels: bool,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts an engine of its own (not shared) around `backend`.
    pub fn new(key: EngineKey, backend: Box<dyn Backend>) -> Self {
        let model = Arc::new(backend.model().clone());
        let warnings = backend.warnings();
        let max_batch = backend.max_batch().max(1);
        let takes_pixels = backend.takes_pixels();
        let shared = Arc::new(Shared::default());
        let for_worker = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("retinaface-engine".into())
            .spawn(move || work(&for_worker, backend, max_batch))
            .ok();
        if worker.is_none() {
            // No thread: every request is answered `Stopped` at once.
            lock(&shared.state).stop = true;
        }
        Self {
            key,
            model,
            warnings,
            max_batch,
            takes_pixels,
            shared,
            worker,
        }
    }

    pub fn key(&self) -> &EngineKey {
        &self.key
    }

    /// The model this engine runs: its inputs, outputs and metadata.
    pub fn model(&self) -> &Arc<ModelInfo> {
        &self.model
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Most requests per run ([`Backend::max_batch`], at least 1).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Whether the backend makes the model input of [`Pixels`] itself (on its device), so a
    /// client may send those instead of f32 tensors ([`Backend::takes_pixels`]). Fixed for the
    /// life of the engine; a swap brings another engine, so a client asks per frame.
    pub fn takes_pixels(&self) -> bool {
        self.takes_pixels
    }

    /// Requests waiting (not yet running).
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            batches: self.shared.batches.load(Ordering::SeqCst),
            requests: self.shared.requests.load(Ordering::SeqCst),
            largest_batch: self.shared.largest_batch.load(Ordering::SeqCst),
            busy: Duration::from_nanos(self.shared.busy_ns.load(Ordering::SeqCst)),
        }
    }

    /// Why `inputs` cannot go to this model, if they cannot: caught here, so a bad request
    /// never reaches the backend (nor fails the batch it would have joined).
    fn refuse(&self, inputs: &Inputs) -> Option<EngineError> {
        let inputs = match inputs {
            Inputs::Tensors(tensors) => tensors,
            Inputs::Pixels(pixels) => return self.refuse_pixels(pixels),
        };
        let expected = self.model.inputs.len();
        if inputs.len() != expected {
            return Some(EngineError::InputCount {
                expected,
                got: inputs.len(),
            });
        }
        let (index, bad) = inputs
            .iter()
            .enumerate()
            .find(|(_, t)| !t.is_consistent())?;
        Some(EngineError::BadInput {
            index,
            shape: bad.shape.clone(),
            len: bad.data.len(),
        })
    }

    /// [`Engine::refuse`] for a pixel request: the backend must take pixels, the model have one
    /// input, the pixels be what they say.
    fn refuse_pixels(&self, pixels: &Pixels) -> Option<EngineError> {
        if !self.takes_pixels {
            return Some(EngineError::BadPixels(
                "this engine's backend takes f32 tensors only (Engine::takes_pixels is false): \
                 preprocess the image into a tensor"
                    .into(),
            ));
        }
        let expected = self.model.inputs.len();
        if expected != 1 {
            return Some(EngineError::InputCount { expected, got: 1 });
        }
        pixels.problem().map(EngineError::BadPixels)
    }

    /// Queues `requests` together (one lock, so the worker sees them all at once); with
    /// `only_if_room`, refuses (giving the inputs back) unless the queue then holds no more
    /// than a batch's worth for this client (more than a batch: unless the queue is empty).
    pub(super) fn enqueue(
        &self,
        requests: Vec<Inputs>,
        options: &ClientOptions,
        in_flight: &Arc<AtomicUsize>,
        only_if_room: bool,
    ) -> Result<Vec<Ticket>, Vec<Inputs>> {
        let mut state = lock(&self.shared.state);
        if only_if_room {
            state.queue.retain(|r| !r.cancelled.load(Ordering::SeqCst));
            let room = options
                .batch_size
                .clamp(1, self.max_batch)
                .max(requests.len());
            if state.queue.len() + requests.len() > room {
                return Err(requests);
            }
        }
        let deadline = Instant::now() + options.batch_timeout;
        let mut tickets = Vec::with_capacity(requests.len());
        for inputs in requests {
            let refused = match self.refuse(&inputs) {
                Some(e) => Some(e),
                None => state.stop.then_some(EngineError::Stopped),
            };
            if let Some(e) = refused {
                tickets.push(Ticket::resolved(Err(e), Arc::clone(&self.model)));
                continue;
            }
            let (ticket, reply, cancelled) = Ticket::new(Arc::clone(&self.model));
            state.queue.push_back(Request {
                inputs,
                batch_size: options.batch_size.max(1),
                deadline,
                cancelled,
                in_flight: InFlight::new(in_flight),
                reply,
            });
            tickets.push(ticket);
        }
        drop(state);
        self.shared.wake.notify_all();
        Ok(tickets)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        // Whatever is still queued is answered `Stopped` as its reply channel drops.
        lock(&self.shared.state).queue.clear();
    }
}

/// The worker: batch, run, answer, until the engine stops.
fn work(shared: &Shared, mut backend: Box<dyn Backend>, max_batch: usize) {
    while let Some(batch) = next_batch(shared, max_batch) {
        // A batch is of one kind (`Inputs::batch_with`): tensors or pixels.
        let tensors: Vec<&[Tensor]> = batch
            .iter()
            .filter_map(|r| match &r.inputs {
                Inputs::Tensors(t) => Some(t.as_slice()),
                Inputs::Pixels(_) => None,
            })
            .collect();
        let pixels: Vec<&Pixels> = batch
            .iter()
            .filter_map(|r| match &r.inputs {
                Inputs::Pixels(p) => Some(p),
                Inputs::Tensors(_) => None,
            })
            .collect();
        let run = |backend: &mut Box<dyn Backend>| {
            if pixels.is_empty() {
                backend.run(&tensors)
            } else {
                backend.run_pixels(&pixels)
            }
        };
        // A backend that panics fails its batch, not the engine: the next batch runs.
        let started = Instant::now();
        let outcome = match catch_unwind(AssertUnwindSafe(|| run(&mut backend))) {
            Ok(Ok(outputs)) if outputs.len() == batch.len() => Ok(outputs),
            Ok(Ok(outputs)) => Err(format!(
                "the model gave {} outputs for {} inputs",
                outputs.len(),
                batch.len()
            )),
            Ok(Err(reason)) => Err(reason),
            Err(panic) => Err(panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .map_or_else(|| "the model panicked".into(), |m| format!("panic: {m}"))),
        };
        drop((tensors, pixels));
        shared
            .busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
        let n = batch.len();
        shared.batches.fetch_add(1, Ordering::SeqCst);
        shared.requests.fetch_add(n as u64, Ordering::SeqCst);
        shared.largest_batch.fetch_max(n as u64, Ordering::SeqCst);
        match outcome {
            Ok(outputs) => {
                for (request, output) in batch.into_iter().zip(outputs) {
                    request.answer(Ok((output, n)));
                }
            }
            Err(reason) => {
                for request in batch {
                    request.answer(Err(EngineError::Inference(reason.clone())));
                }
            }
        }
    }
    // Stopping: what is queued is dropped here (or by the engine), answering `Stopped`.
    lock(&shared.state).queue.clear();
}

/// The next batch: the oldest live request, plus later live requests of its kind and input
/// shapes ([`Inputs::batch_with`]), until the batch is as large as every member allows or the
/// earliest member's deadline has passed. `None` once the engine stops.
fn next_batch(shared: &Shared, max_batch: usize) -> Option<Vec<Request>> {
    let mut state = lock(&shared.state);
    let mut batch: Vec<Request> = Vec::new();
    loop {
        if state.stop {
            return None;
        }
        // Requests whose ticket is gone are not run (their client stopped waiting).
        state.queue.retain(|r| !r.cancelled.load(Ordering::SeqCst));
        batch.retain(|r| !r.cancelled.load(Ordering::SeqCst));
        let mut cap = batch
            .iter()
            .map(|r| r.batch_size)
            .fold(max_batch, usize::min);
        let mut i = 0;
        while i < state.queue.len() && batch.len() < cap {
            let r = &state.queue[i];
            let fits = batch.first().is_none_or(|f| f.inputs.batch_with(&r.inputs))
                && batch.len() < r.batch_size;
            if fits {
                let r = state.queue.remove(i).expect("index is in the queue");
                cap = cap.min(r.batch_size);
                batch.push(r);
            } else {
                i += 1;
            }
        }
        match batch.iter().map(|r| r.deadline).min() {
            None => {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner)
            }
            Some(deadline) => {
                let now = Instant::now();
                if batch.len() >= cap || now >= deadline {
                    return Some(batch);
                }
                state = shared
                    .wake
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}
