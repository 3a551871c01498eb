//! The inference engine: one model session per (model file, execution provider, device,
//! threads) per process, shared by every client (element instance) that asks for the same,
//! behind a request queue whose worker thread batches requests of different streams.
//!
//! - A [`Registry`] (one per process: [`Registry::global`]) maps an [`EngineKey`] to a weak
//!   reference to its [`Engine`]: the first client loads the model, later ones share it, and the
//!   engine (session, worker thread) is freed when its last client goes.
//! - A request is one preprocessed slot ([`Slot`]: planar `[3, H, W]` f32, already scaled and
//!   normalised by the client); the answer is that slot's raw per-prior rows ([`SlotOutput`]),
//!   which the client decodes with the engine's [`ModelContract`] (see
//!   [`crate::postprocess::candidates`]).
//! - The worker takes the oldest request and adds later requests **of the same input size** (a
//!   batch is one `[N, 3, H, W]` tensor; padding to the largest size would change the results)
//!   until the batch holds as many as every member allows (its client's `batch_size`, at most
//!   [`Backend::max_batch`]) or the earliest member's `batch_timeout` has expired.
//! - Each request carries its own reply channel, so each [`Ticket`] gets exactly its own result,
//!   and a client that stops reading never blocks the worker (a dropped ticket's request is
//!   skipped if it has not run yet).
//! - Sync mode: [`Client::submit`] then [`Ticket::wait`]. Async mode: [`Client::try_submit`]
//!   hands the slot over only if the client has nothing in flight and the queue has room for the
//!   next batch, otherwise gives the slot back at once; the client polls with
//!   [`Ticket::try_take`] and attaches the latest result it has.
//! - Live model swap is client-side: [`Client::swap_model`] gets (loads, or shares) the engine of
//!   the new key on a background thread and [`Client::poll_swap`], called between two frames,
//!   moves the client to it. An engine always runs the model its key names, so other clients
//!   sharing the old model are unaffected; the old engine is freed when its last client leaves.
//!   A failed load leaves the client on its old engine and reports the file and the reason.
//!
//! What the engine runs is a [`Backend`]: [`OrtBackend`] is ONNX Runtime; tests use fakes.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use crate::contract::{ModelContract, TensorInfo};
use crate::detector::DetectorError;
use crate::runtime::{self, ExecutionProvider, SessionConfig};

/// What identifies a shareable engine: clients asking for equal keys share one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey {
    pub model: PathBuf,
    pub provider: ExecutionProvider,
    pub device_id: i32,
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    /// TensorRT options (see [`SessionConfig`]): engines built with other options differ.
    pub tensorrt_fp16: bool,
    pub tensorrt_cache: Option<PathBuf>,
}

impl Hash for EngineKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.model.hash(state);
        let provider: u8 = match self.provider {
            ExecutionProvider::Cpu => 0,
            ExecutionProvider::Cuda => 1,
            ExecutionProvider::TensorRt => 2,
        };
        provider.hash(state);
        self.device_id.hash(state);
        self.threads.hash(state);
        self.tensorrt_fp16.hash(state);
        self.tensorrt_cache.hash(state);
    }
}

impl EngineKey {
    /// The key of `model` opened with `config`. The path is made absolute (symbolic links
    /// resolved) when the file exists, so `./m.onnx` and `/abs/m.onnx` share one engine.
    pub fn new(model: &Path, config: &SessionConfig) -> Self {
        Self {
            model: std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf()),
            provider: config.provider,
            device_id: config.device_id,
            threads: config.threads,
            tensorrt_fp16: config.tensorrt_fp16,
            tensorrt_cache: config.tensorrt_cache.clone(),
        }
    }

    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            threads: self.threads,
            provider: self.provider,
            device_id: self.device_id,
            tensorrt_fp16: self.tensorrt_fp16,
            tensorrt_cache: self.tensorrt_cache.clone(),
        }
    }
}

/// One model input: a preprocessed planar `[3, height, width]` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub width: usize,
    pub height: usize,
    /// `3 * height * width` values, channel-major.
    pub data: Vec<f32>,
}

impl Slot {
    /// A zeroed slot of `width` × `height`.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; 3 * width * height],
        }
    }

    /// `(width, height)`: requests batch together only when this is equal.
    pub fn shape(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn check(&self) -> Result<(), EngineError> {
        let expected = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(3));
        if self.width == 0 || self.height == 0 || expected != Some(self.data.len()) {
            return Err(EngineError::BadInput {
                width: self.width,
                height: self.height,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

/// The raw model outputs of one slot: `A` priors × 4 (`loc`), × 2 (`conf`), × 10 (`landmarks`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlotOutput {
    pub loc: Vec<f32>,
    pub conf: Vec<f32>,
    pub landmarks: Vec<f32>,
}

impl SlotOutput {
    /// The three outputs in the order [`crate::postprocess::candidates`] takes them. The caller
    /// checks their length against the priors of the slot's size.
    pub fn rows(&self) -> [&[f32]; 3] {
        [&self.loc, &self.conf, &self.landmarks]
    }
}

/// What an engine runs. Implementations need not be thread-safe: one worker thread owns it.
pub trait Backend: Send {
    /// Runs `inputs` (all of one size) as one batch; one output per input, in order.
    fn run(&mut self, inputs: &[&Slot]) -> Result<Vec<SlotOutput>, String>;
    /// Most inputs one [`Backend::run`] takes (1 for a model with a fixed batch dimension).
    fn max_batch(&self) -> usize;
    /// The contract the model was checked against (preprocessing and decoding follow it).
    fn contract(&self) -> ModelContract {
        ModelContract::default()
    }
    /// Non-fatal problems met while loading (e.g. a GPU provider fallback).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Makes the backend for a key; the error is the reason, shown with the key's model path.
pub type Loader = dyn Fn(&EngineKey) -> Result<Box<dyn Backend>, String> + Send + Sync;

/// Why a request or a load failed. Cloned to every request of a failed batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("model '{}' could not be loaded: {reason}", .path.display())]
    Load { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("input slot of {width}×{height} holds {len} values instead of 3×{width}×{height}")]
    BadInput {
        width: usize,
        height: usize,
        len: usize,
    },
    #[error("no result within {0:?}")]
    Timeout(Duration),
    #[error("the engine stopped before answering (its last client went away)")]
    Stopped,
}

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
}

/// A finished request.
#[derive(Debug, Clone)]
pub struct Done {
    pub output: SlotOutput,
    /// The submitted slot, given back so its buffer can be reused.
    pub input: Slot,
    /// Contract of the model that produced `output`: decode with this one, also after a swap.
    pub contract: Arc<ModelContract>,
    /// How many requests shared the run.
    pub batch_len: usize,
}

type Reply = Result<(SlotOutput, Slot, usize), EngineError>;

/// Decrements its client's in-flight count when the request is answered or dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Request {
    slot: Slot,
    batch_size: usize,
    /// Submission + the client's batch timeout.
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
    in_flight: InFlight,
    reply: SyncSender<Reply>,
}

impl Request {
    /// Sends the answer (giving the slot back with an output).
    fn answer(self, outcome: Result<(SlotOutput, usize), EngineError>) {
        let Self {
            slot,
            reply,
            in_flight,
            ..
        } = self;
        // Counted out before the answer is visible, so a client that sees the answer may
        // hand over its next request at once.
        drop(in_flight);
        // The ticket may be gone: nobody to tell. The channel holds one answer, so this never
        // blocks.
        let _ = reply.try_send(outcome.map(|(output, batch_len)| (output, slot, batch_len)));
    }
}

/// The answer to one request, to wait for (sync) or poll (async). Dropping it cancels the
/// request if it has not run yet.
pub struct Ticket {
    rx: Receiver<Reply>,
    cancelled: Arc<AtomicBool>,
    contract: Arc<ModelContract>,
}

impl Ticket {
    fn resolved(reply: Reply, contract: Arc<ModelContract>) -> Self {
        let (tx, rx) = sync_channel(1);
        let _ = tx.try_send(reply);
        Self {
            rx,
            cancelled: Arc::new(AtomicBool::new(false)),
            contract,
        }
    }

    fn done(&self, reply: Reply) -> Result<Done, EngineError> {
        reply.map(|(output, input, batch_len)| Done {
            output,
            input,
            contract: Arc::clone(&self.contract),
            batch_len,
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

    /// Contract of the engine the request went to.
    pub fn contract(&self) -> &Arc<ModelContract> {
        &self.contract
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn get<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
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
}

/// One loaded model with its request queue and worker thread. Shared through [`Registry`];
/// dropping the last `Arc` stops the worker (after the batch it is running) and frees the model.
pub struct Engine {
    key: EngineKey,
    contract: Arc<ModelContract>,
    warnings: Vec<String>,
    max_batch: usize,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts an engine of its own (not shared) around `backend`.
    pub fn new(key: EngineKey, backend: Box<dyn Backend>) -> Self {
        let contract = Arc::new(backend.contract());
        let warnings = backend.warnings();
        let max_batch = backend.max_batch().max(1);
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
            contract,
            warnings,
            max_batch,
            shared,
            worker,
        }
    }

    pub fn key(&self) -> &EngineKey {
        &self.key
    }

    pub fn contract(&self) -> &Arc<ModelContract> {
        &self.contract
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Most requests per run ([`Backend::max_batch`], at least 1).
    pub fn max_batch(&self) -> usize {
        self.max_batch
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
        }
    }

    /// Queues `slots` together (one lock, so the worker sees them all at once); with
    /// `only_if_room`, refuses (giving the slots back) unless the queue then holds no more than
    /// a batch's worth for this client (slots of more than a batch: unless the queue is empty).
    fn enqueue(
        &self,
        slots: Vec<Slot>,
        options: &ClientOptions,
        in_flight: &Arc<AtomicUsize>,
        only_if_room: bool,
    ) -> Result<Vec<Ticket>, Vec<Slot>> {
        let mut state = lock(&self.shared.state);
        if only_if_room {
            state.queue.retain(|r| !r.cancelled.load(Ordering::SeqCst));
            let room = options.batch_size.clamp(1, self.max_batch).max(slots.len());
            if state.queue.len() + slots.len() > room {
                return Err(slots);
            }
        }
        let deadline = Instant::now() + options.batch_timeout;
        let mut tickets = Vec::with_capacity(slots.len());
        for slot in slots {
            let refused = match slot.check() {
                Err(e) => Some(e),
                Ok(()) => state.stop.then_some(EngineError::Stopped),
            };
            if let Some(e) = refused {
                tickets.push(Ticket::resolved(Err(e), Arc::clone(&self.contract)));
                continue;
            }
            let (tx, rx) = sync_channel(1);
            let cancelled = Arc::new(AtomicBool::new(false));
            state.queue.push_back(Request {
                slot,
                batch_size: options.batch_size.max(1),
                deadline,
                cancelled: Arc::clone(&cancelled),
                in_flight: InFlight::new(in_flight),
                reply: tx,
            });
            tickets.push(Ticket {
                rx,
                cancelled,
                contract: Arc::clone(&self.contract),
            });
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

/// Which of a [`SlotOutput`]'s rows a model output fills.
type OutputField = fn(&mut SlotOutput) -> &mut Vec<f32>;

/// The worker: batch, run, answer, until the engine stops.
fn work(shared: &Shared, mut backend: Box<dyn Backend>, max_batch: usize) {
    while let Some(batch) = next_batch(shared, max_batch) {
        let slots: Vec<&Slot> = batch.iter().map(|r| &r.slot).collect();
        let outcome = match catch_unwind(AssertUnwindSafe(|| backend.run(&slots))) {
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
        drop(slots);
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

/// The next batch: the oldest live request, plus later live requests of its size, until the
/// batch is as large as every member allows or the earliest member's deadline has passed.
/// `None` once the engine stops.
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
            let fits = batch
                .first()
                .is_none_or(|f| f.slot.shape() == r.slot.shape())
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

/// A key's engine, locked while it loads so that clients of one key wait for one load.
type EngineCell = Arc<Mutex<Weak<Engine>>>;

/// Engines by key; cloning gives another handle on the same registry.
#[derive(Clone, Default)]
pub struct Registry {
    engines: Arc<Mutex<HashMap<EngineKey, EngineCell>>>,
}

impl Registry {
    /// A registry of its own (tests, or engines deliberately not shared with the process).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry every element instance uses.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// The engine of `key`: the live one if any client holds it, else a new one `loader` makes.
    /// Clients of one key wait for a single load; loads of other keys go on meanwhile.
    pub fn shared(&self, key: EngineKey, loader: &Loader) -> Result<Arc<Engine>, EngineError> {
        let entry = {
            let mut engines = lock(&self.engines);
            // Forget keys whose engine is gone and that nobody is loading.
            engines.retain(|_, e| {
                Arc::strong_count(e) > 1 || !matches!(e.try_lock(), Ok(w) if w.strong_count() == 0)
            });
            Arc::clone(engines.entry(key.clone()).or_default())
        };
        let mut weak = lock(&entry);
        if let Some(engine) = weak.upgrade() {
            return Ok(engine);
        }
        let backend = loader(&key).map_err(|reason| EngineError::Load {
            path: key.model.clone(),
            reason,
        })?;
        let engine = Arc::new(Engine::new(key, backend));
        *weak = Arc::downgrade(&engine);
        Ok(engine)
    }

    /// A client of the engine of `key` (see [`Registry::shared`]); `loader` also serves its
    /// later model swaps.
    pub fn client(
        &self,
        key: EngineKey,
        loader: Arc<Loader>,
        options: ClientOptions,
    ) -> Result<Client, EngineError> {
        let engine = self.shared(key, &*loader)?;
        Ok(Client {
            engine,
            options,
            in_flight: Arc::new(AtomicUsize::new(0)),
            registry: self.clone(),
            loader,
            swap: None,
        })
    }

    /// Engines alive now (not counting keys being loaded).
    pub fn live(&self) -> usize {
        self.live_engines().len()
    }

    /// The engines alive now, e.g. to read their [`Engine::stats`].
    pub fn live_engines(&self) -> Vec<Arc<Engine>> {
        lock(&self.engines)
            .values()
            .filter_map(|e| e.try_lock().ok()?.upgrade())
            .collect()
    }
}

struct PendingSwap {
    key: EngineKey,
    /// In a mutex only so that `Client` is `Sync`; reached through `get_mut`.
    rx: Mutex<Receiver<Result<Arc<Engine>, EngineError>>>,
}

/// One stream's handle on a shared engine (what a detect element instance holds).
pub struct Client {
    engine: Arc<Engine>,
    options: ClientOptions,
    in_flight: Arc<AtomicUsize>,
    registry: Registry,
    loader: Arc<Loader>,
    swap: Option<PendingSwap>,
}

impl Client {
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn options(&self) -> ClientOptions {
        self.options
    }

    /// New batching options; they apply to requests submitted from now on.
    pub fn set_options(&mut self, options: ClientOptions) {
        self.options = options;
    }

    /// Requests of this client not yet answered (on any engine, also one swapped away from).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Queues `slot` (sync mode); wait on the ticket, with a timeout.
    pub fn submit(&self, slot: Slot) -> Ticket {
        self.submit_all(vec![slot])
            .pop()
            .expect("one ticket per slot")
    }

    /// Queues the slots of one frame (e.g. its tiles) at once, so that those of one size
    /// share runs up to `batch_size` even with no batch timeout. One ticket per slot, in order.
    pub fn submit_all(&self, slots: Vec<Slot>) -> Vec<Ticket> {
        self.engine
            .enqueue(slots, &self.options, &self.in_flight, false)
            .unwrap_or_else(|_| unreachable!("enqueue refuses only when asked to"))
    }

    /// Async mode: hands `slot` over only if this client has no request in flight and the
    /// engine's queue holds less than one batch (so the request runs in the next batch, after
    /// at most the run in progress and its batch timeout); otherwise gives the slot back at
    /// once. Never waits for the model.
    pub fn try_submit(&self, slot: Slot) -> Result<Ticket, Slot> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Err(slot);
        }
        match self
            .engine
            .enqueue(vec![slot], &self.options, &self.in_flight, true)
        {
            Ok(mut tickets) => Ok(tickets.pop().expect("one ticket per slot")),
            Err(mut slots) => Err(slots.pop().expect("the slot comes back")),
        }
    }

    /// [`Client::try_submit`] for the slots of one frame (e.g. its tiles), handed over together
    /// or not at all; a frame of more slots than a batch is handed over only onto an empty
    /// queue. One ticket per slot, in order.
    pub fn try_submit_all(&self, slots: Vec<Slot>) -> Result<Vec<Ticket>, Vec<Slot>> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Err(slots);
        }
        self.engine
            .enqueue(slots, &self.options, &self.in_flight, true)
    }

    /// Starts moving this client to the engine of `key` (typically a new model path, same
    /// provider, device and threads): it is loaded (or found shared) on a background thread;
    /// [`Client::poll_swap`] applies it. A later call supersedes a pending one.
    pub fn swap_model(&mut self, key: EngineKey) {
        let (tx, rx) = sync_channel(1);
        if key == self.engine.key {
            let _ = tx.try_send(Ok(Arc::clone(&self.engine)));
        } else {
            let registry = self.registry.clone();
            let loader = Arc::clone(&self.loader);
            let k = key.clone();
            let spawned = std::thread::Builder::new()
                .name("retinaface-load".into())
                .spawn(move || {
                    let _ = tx.send(registry.shared(k, &*loader));
                });
            if let Err(e) = spawned {
                let (tx, rx2) = sync_channel(1);
                let _ = tx.try_send(Err(EngineError::Load {
                    path: key.model.clone(),
                    reason: format!("no thread to load it on: {e}"),
                }));
                self.swap = Some(PendingSwap {
                    key,
                    rx: Mutex::new(rx2),
                });
                return;
            }
        }
        self.swap = Some(PendingSwap {
            key,
            rx: Mutex::new(rx),
        });
    }

    /// Whether a swap is loading.
    pub fn swap_pending(&self) -> bool {
        self.swap.is_some()
    }

    /// Call between two frames: once the pending swap's load has finished, moves the client to
    /// the new engine (`Ok(new key)`) or keeps the old one (`Err` naming the file and reason).
    /// `None` while loading or when no swap is pending. Never waits.
    pub fn poll_swap(&mut self) -> Option<Result<EngineKey, EngineError>> {
        let outcome = match get(&mut self.swap.as_mut()?.rx).try_recv() {
            Ok(outcome) => outcome,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(self.loader_panicked()),
        };
        Some(self.apply_swap(outcome))
    }

    /// Like [`Client::poll_swap`] but waits up to `timeout` for the load (state changes, tests).
    pub fn wait_swap(&mut self, timeout: Duration) -> Option<Result<EngineKey, EngineError>> {
        let outcome = match get(&mut self.swap.as_mut()?.rx).recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => Err(self.loader_panicked()),
        };
        Some(self.apply_swap(outcome))
    }

    fn loader_panicked(&self) -> EngineError {
        let key = &self.swap.as_ref().expect("a swap is pending").key;
        EngineError::Load {
            path: key.model.clone(),
            reason: "the loader panicked".into(),
        }
    }

    fn apply_swap(
        &mut self,
        outcome: Result<Arc<Engine>, EngineError>,
    ) -> Result<EngineKey, EngineError> {
        self.swap = None;
        let engine = outcome?;
        let key = engine.key.clone();
        let old = std::mem::replace(&mut self.engine, engine);
        retire(old);
        Ok(key)
    }
}

/// Drops an engine this client left. If it was the last client, the drop waits for the run in
/// progress, so it happens on a thread of its own rather than the streaming thread.
fn retire(engine: Arc<Engine>) {
    if Arc::strong_count(&engine) > 1 {
        return;
    }
    // If no thread can be made, the closure (and the engine) is dropped right here.
    let _ = std::thread::Builder::new()
        .name("retinaface-free".into())
        .spawn(move || drop(engine));
}

/// ONNX Runtime backend: runs `[N, 3, H, W]` through a session checked against the contract.
pub struct OrtBackend {
    session: Session,
    contract: ModelContract,
    /// Whether the model's batch dimension is dynamic (else one run per input).
    batches: bool,
    batch: Vec<f32>,
    warnings: Vec<String>,
}

/// A load failure as the text [`EngineError::Load`] shows after the model's path (which
/// [`DetectorError::Contract`]'s own text would repeat).
pub fn load_reason(e: &DetectorError) -> String {
    match e {
        DetectorError::Contract { source, .. } => {
            format!("it does not fit the RetinaFace contract: {source}")
        }
        other => other.to_string(),
    }
}

/// Slots per ONNX Runtime run at most, whatever the clients' `batch_size`: a run's working
/// memory grows with its batch.
pub const ORT_MAX_BATCH: usize = 16;

impl OrtBackend {
    /// Loads ONNX Runtime (searching `ort_dirs`, see [`runtime::environment`]) and the model of
    /// `key`, and checks it against its contract; the error is the reason as text
    /// ([`load_reason`]).
    pub fn load(key: &EngineKey, ort_dirs: &[PathBuf]) -> Result<Self, String> {
        Self::open(&key.model, &key.session_config(), ort_dirs).map_err(|e| load_reason(&e))
    }

    /// [`OrtBackend::load`] with the reason typed: the one place a model is opened and checked
    /// (reading the contract from its metadata, checking its inputs and outputs).
    pub fn open(
        model: &Path,
        config: &SessionConfig,
        ort_dirs: &[PathBuf],
    ) -> Result<Self, DetectorError> {
        let env = runtime::environment(ort_dirs)?;
        let loaded = runtime::load_session(env, model, config)?;
        let session = loaded.session;
        let contract_err = |source| DetectorError::Contract {
            path: model.to_path_buf(),
            source,
        };
        let metadata = session
            .metadata()
            .map_err(|e| DetectorError::Inference(e.to_string()))?;
        let contract =
            ModelContract::from_metadata(|k| metadata.custom(k)).map_err(contract_err)?;
        drop(metadata);
        let describe = |outlets: &[ort::value::Outlet]| -> Vec<TensorInfo> {
            outlets
                .iter()
                .map(|o| TensorInfo {
                    name: o.name().to_string(),
                    shape: o
                        .dtype()
                        .tensor_shape()
                        .map(|s| s.to_vec())
                        .unwrap_or_default(),
                    is_f32: o.dtype().tensor_type() == Some(ort::value::TensorElementType::Float32),
                })
                .collect()
        };
        let inputs = describe(session.inputs());
        contract
            .check_io(&inputs, &describe(session.outputs()))
            .map_err(contract_err)?;
        let batches = inputs[0].shape.first().is_some_and(|n| *n < 0);
        Ok(Self {
            session,
            contract,
            batches,
            batch: Vec::new(),
            warnings: loaded.warnings,
        })
    }

    /// A loader for [`Registry::shared`] / [`Registry::client`] making `OrtBackend`s.
    pub fn loader(ort_dirs: Vec<PathBuf>) -> Arc<Loader> {
        Arc::new(move |key: &EngineKey| {
            OrtBackend::load(key, &ort_dirs).map(|b| Box::new(b) as Box<dyn Backend>)
        })
    }

    fn run_batch(&mut self, inputs: &[&Slot]) -> Result<Vec<SlotOutput>, String> {
        let n = inputs.len();
        let (w, h) = inputs[0].shape();
        let data: &[f32] = if n == 1 {
            &inputs[0].data
        } else {
            self.batch.clear();
            for slot in inputs {
                self.batch.extend_from_slice(&slot.data);
            }
            &self.batch
        };
        let input = TensorRef::from_array_view(([n, 3, h, w], data)).map_err(|e| e.to_string())?;
        let contract = &self.contract;
        let outputs = self
            .session
            .run(ort::inputs![contract.input.as_str() => input])
            .map_err(|e| e.to_string())?;
        let mut per_slot = vec![SlotOutput::default(); n];
        let pick: [(&String, usize, OutputField); 3] = [
            (&contract.loc, 4, |o| &mut o.loc),
            (&contract.conf, contract.conf_kind.columns(), |o| {
                &mut o.conf
            }),
            (&contract.landmarks, 10, |o| &mut o.landmarks),
        ];
        for (name, width, field) in pick {
            let value = outputs
                .get(name)
                .ok_or_else(|| format!("model returned no '{name}'"))?;
            let (_, values) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            if values.len() % (n * width) != 0 {
                return Err(format!(
                    "output '{name}' has {} values for {n} input(s), not rows of {width} per input",
                    values.len()
                ));
            }
            for (out, rows) in per_slot
                .iter_mut()
                .zip(values.chunks_exact(values.len() / n))
            {
                field(out).extend_from_slice(rows);
            }
        }
        Ok(per_slot)
    }
}

impl Backend for OrtBackend {
    fn run(&mut self, inputs: &[&Slot]) -> Result<Vec<SlotOutput>, String> {
        let Some(first) = inputs.first() else {
            return Ok(Vec::new());
        };
        if inputs.iter().any(|s| s.shape() != first.shape()) {
            return Err("inputs of one batch differ in size".into());
        }
        if self.batches {
            self.run_batch(inputs)
        } else {
            let mut outputs = Vec::with_capacity(inputs.len());
            for slot in inputs {
                outputs.extend(self.run_batch(std::slice::from_ref(slot))?);
            }
            Ok(outputs)
        }
    }

    fn max_batch(&self) -> usize {
        if self.batches { ORT_MAX_BATCH } else { 1 }
    }

    fn contract(&self) -> ModelContract {
        self.contract.clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::thread;

    /// Longest any test waits for an answer that should come.
    const WAIT: Duration = Duration::from_secs(5);
    /// First value of a slot that makes the fake backend fail its batch.
    const POISON: f32 = -1.0;
    /// First value of a slot that makes the fake backend panic.
    const PANIC: f32 = -2.0;

    /// What the fake backends of a test did.
    #[derive(Default)]
    struct Probe {
        batches: Mutex<Vec<usize>>,
        live: AtomicUsize,
        loads: AtomicUsize,
    }

    impl Probe {
        fn batches(&self) -> Vec<usize> {
            lock(&self.batches).clone()
        }
    }

    /// Answers each slot with its sum (`loc`), its size (`conf`) and the model's tag
    /// (`landmarks`), after `delay`.
    struct Fake {
        tag: f32,
        delay: Duration,
        probe: Arc<Probe>,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.probe.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Backend for Fake {
        fn run(&mut self, inputs: &[&Slot]) -> Result<Vec<SlotOutput>, String> {
            thread::sleep(self.delay);
            lock(&self.probe.batches).push(inputs.len());
            if inputs.iter().any(|s| s.data[0] == PANIC) {
                panic!("fake backend panicked");
            }
            if inputs.iter().any(|s| s.data[0] == POISON) {
                return Err("poisoned input".into());
            }
            Ok(inputs
                .iter()
                .map(|s| SlotOutput {
                    loc: vec![s.data.iter().sum()],
                    conf: vec![s.width as f32, s.height as f32],
                    landmarks: vec![self.tag],
                })
                .collect())
        }

        fn max_batch(&self) -> usize {
            8
        }
    }

    /// Models `/fake/a.onnx` (tag 1), `/fake/b.onnx` (tag 2), others tag 0; `broken*` fails to
    /// load.
    fn fake_loader(probe: &Arc<Probe>, delay: Duration) -> Arc<Loader> {
        let probe = Arc::clone(probe);
        Arc::new(move |key: &EngineKey| {
            let name = key.model.file_stem().unwrap().to_str().unwrap();
            if name.starts_with("broken") {
                return Err("not an ONNX model".into());
            }
            probe.loads.fetch_add(1, Ordering::SeqCst);
            probe.live.fetch_add(1, Ordering::SeqCst);
            let tag = match name {
                "a" => 1.0,
                "b" => 2.0,
                _ => 0.0,
            };
            Ok(Box::new(Fake {
                tag,
                delay,
                probe: Arc::clone(&probe),
            }) as Box<dyn Backend>)
        })
    }

    fn key(name: &str) -> EngineKey {
        EngineKey {
            model: PathBuf::from(format!("/fake/{name}.onnx")),
            provider: ExecutionProvider::Cpu,
            device_id: 0,
            threads: 0,
            tensorrt_fp16: false,
            tensorrt_cache: None,
        }
    }

    /// A `w`×`h` slot whose values sum to `value`.
    fn slot(value: f32, w: usize, h: usize) -> Slot {
        let mut s = Slot::new(w, h);
        s.data[0] = value;
        s
    }

    fn batched(batch_size: usize, batch_timeout: Duration) -> ClientOptions {
        ClientOptions {
            batch_size,
            batch_timeout,
        }
    }

    /// Polls `done` every millisecond for up to [`WAIT`].
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        done()
    }

    #[test]
    fn equal_keys_share_one_engine_and_other_keys_get_their_own() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::ZERO);
        let a1 = reg.shared(key("a"), &*loader).unwrap();
        let a2 = reg.shared(key("a"), &*loader).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        let threads = EngineKey {
            threads: 2,
            ..key("a")
        };
        let gpu = EngineKey {
            provider: ExecutionProvider::Cuda,
            ..key("a")
        };
        let second_gpu = EngineKey {
            device_id: 1,
            ..gpu.clone()
        };
        let fp16 = EngineKey {
            provider: ExecutionProvider::TensorRt,
            tensorrt_fp16: true,
            ..key("a")
        };
        let fp32 = EngineKey {
            tensorrt_fp16: false,
            ..fp16.clone()
        };
        let cached = EngineKey {
            tensorrt_cache: Some(PathBuf::from("/tmp/trt")),
            ..fp16.clone()
        };
        let a3 = reg.shared(threads, &*loader).unwrap();
        let a4 = reg.shared(gpu, &*loader).unwrap();
        let b = reg.shared(key("b"), &*loader).unwrap();
        let others: Vec<_> = [second_gpu, fp16, fp32, cached]
            .into_iter()
            .map(|k| reg.shared(k, &*loader).unwrap())
            .collect();
        for (i, other) in [&a3, &a4, &b].into_iter().chain(&others).enumerate() {
            assert!(!Arc::ptr_eq(&a1, other), "key {i} shares with a1");
        }
        for (i, x) in others.iter().enumerate() {
            for y in &others[i + 1..] {
                assert!(!Arc::ptr_eq(x, y));
            }
        }
        assert_eq!(probe.loads.load(Ordering::SeqCst), 8);
        assert_eq!(reg.live(), 8);
        // Another registry (a process of its own) does not see these.
        let separate = Registry::new().shared(key("a"), &*loader).unwrap();
        assert!(!Arc::ptr_eq(&a1, &separate));
    }

    #[test]
    fn concurrent_first_clients_of_a_key_wait_for_one_load() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let slow: Arc<Loader> = {
            let inner = fake_loader(&probe, Duration::ZERO);
            Arc::new(move |k: &EngineKey| {
                thread::sleep(Duration::from_millis(50));
                inner(k)
            })
        };
        let engines: Vec<Arc<Engine>> = thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| reg.shared(key("a"), &*slow).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(engines.iter().all(|e| Arc::ptr_eq(e, &engines[0])));
        assert_eq!(probe.loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn engine_is_freed_with_its_last_client() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::ZERO);
        let c1 = reg
            .client(key("a"), Arc::clone(&loader), ClientOptions::default())
            .unwrap();
        let c2 = reg
            .client(key("a"), Arc::clone(&loader), ClientOptions::default())
            .unwrap();
        let weak = Arc::downgrade(c1.engine());
        assert_eq!(
            c2.submit(slot(3.0, 2, 2)).wait(WAIT).unwrap().output.loc,
            [3.0]
        );
        drop(c1);
        assert!(weak.upgrade().is_some(), "c2 still uses it");
        assert_eq!(probe.live.load(Ordering::SeqCst), 1);
        drop(c2);
        // The drop joined the worker, which dropped the backend (the model) as it ended.
        assert!(weak.upgrade().is_none());
        assert_eq!(probe.live.load(Ordering::SeqCst), 0);
        assert_eq!(reg.live(), 0);
        // A new client loads it again.
        let _c3 = reg
            .client(key("a"), loader, ClientOptions::default())
            .unwrap();
        assert_eq!(probe.loads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn four_streams_fill_one_batch_and_each_gets_its_own_result() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::ZERO);
        let options = batched(4, Duration::from_secs(3));
        let clients: Vec<Client> = (0..4)
            .map(|_| reg.client(key("a"), Arc::clone(&loader), options).unwrap())
            .collect();
        let barrier = Barrier::new(4);
        let start = Instant::now();
        thread::scope(|s| {
            for (i, client) in clients.iter().enumerate() {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let done = client
                        .submit(slot(10.0 + i as f32, 4, 3))
                        .wait(WAIT)
                        .unwrap();
                    assert_eq!(done.output.loc, [10.0 + i as f32]);
                    assert_eq!(done.input.data[0], 10.0 + i as f32, "the slot comes back");
                    assert_eq!(done.batch_len, 4);
                });
            }
        });
        assert_eq!(probe.batches(), [4]);
        // Full before the timeout: it did not wait for it.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let stats = clients[0].engine().stats();
        assert_eq!(
            (stats.batches, stats.requests, stats.largest_batch),
            (1, 4, 4)
        );
    }

    #[test]
    fn a_frames_slots_submitted_together_share_runs_without_a_timeout() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let client = reg
            .client(
                key("a"),
                fake_loader(&probe, Duration::ZERO),
                batched(4, Duration::ZERO),
            )
            .unwrap();
        let tiles: Vec<Slot> = (0..6).map(|i| slot(i as f32, 3, 3)).collect();
        let tickets = client.submit_all(tiles);
        for (i, t) in tickets.iter().enumerate() {
            assert_eq!(t.wait(WAIT).unwrap().output.loc, [i as f32]);
        }
        assert_eq!(probe.batches(), [4, 2]);
    }

    #[test]
    fn a_lone_request_runs_when_its_batch_timeout_expires() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let timeout = Duration::from_millis(100);
        let client = reg
            .client(
                key("a"),
                fake_loader(&probe, Duration::ZERO),
                batched(4, timeout),
            )
            .unwrap();
        let start = Instant::now();
        let done = client.submit(slot(1.0, 2, 2)).wait(WAIT).unwrap();
        let took = start.elapsed();
        assert_eq!((done.output.loc[0], done.batch_len), (1.0, 1));
        assert!(took >= timeout && took < timeout * 5, "{took:?}");
    }

    #[test]
    fn requests_of_other_sizes_are_not_batched_together() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::ZERO);
        let client = reg
            .client(key("a"), loader, batched(4, Duration::from_millis(100)))
            .unwrap();
        let sizes = [(4, 3), (3, 4), (4, 3), (3, 4)];
        let tickets: Vec<Ticket> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(w, h))| client.submit(slot(i as f32, w, h)))
            .collect();
        for (i, (t, &(w, h))) in tickets.iter().zip(&sizes).enumerate() {
            let done = t.wait(WAIT).unwrap();
            assert_eq!(done.output.loc, [i as f32]);
            assert_eq!(done.output.conf, [w as f32, h as f32]);
            assert_eq!(done.batch_len, 2);
        }
        assert_eq!(probe.batches(), [2, 2]);
    }

    #[test]
    fn results_come_back_to_each_stream_in_order() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::from_millis(1));
        let options = batched(3, Duration::from_millis(2));
        let clients: Vec<Client> = (0..3)
            .map(|_| reg.client(key("a"), Arc::clone(&loader), options).unwrap())
            .collect();
        thread::scope(|s| {
            for (c, client) in clients.iter().enumerate() {
                s.spawn(move || {
                    // Many in flight at once, of two sizes, then read in submission order.
                    let tickets: Vec<Ticket> = (0..20)
                        .map(|i| {
                            let (w, h) = if i % 3 == 0 { (2, 2) } else { (3, 2) };
                            client.submit(slot((100 * c + i) as f32, w, h))
                        })
                        .collect();
                    for (i, t) in tickets.iter().enumerate() {
                        assert_eq!(t.wait(WAIT).unwrap().output.loc, [(100 * c + i) as f32]);
                    }
                });
            }
        });
        assert_eq!(probe.batches().iter().sum::<usize>(), 60);
        assert!(probe.batches().iter().all(|&n| n <= 3));
    }

    #[test]
    fn a_stream_that_stops_never_blocks_the_others() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::from_millis(5));
        let timeout = Duration::from_millis(50);
        let mut clients: Vec<Client> = (0..4)
            .map(|_| {
                reg.client(key("a"), Arc::clone(&loader), batched(4, timeout))
                    .unwrap()
            })
            .collect();
        let round = |clients: &[Client], base: f32| {
            thread::scope(|s| {
                for (i, client) in clients.iter().enumerate() {
                    s.spawn(move || {
                        let v = base + i as f32;
                        assert_eq!(
                            client.submit(slot(v, 2, 2)).wait(WAIT).unwrap().output.loc,
                            [v]
                        );
                    });
                }
            });
        };
        round(&clients, 0.0);
        // One stream submits and never reads its answer; another submits and walks away
        // (drops the ticket and the client).
        let unread = clients[0].submit(slot(7.0, 2, 2));
        drop(clients[1].submit(slot(8.0, 2, 2)));
        clients.remove(1);
        for r in 1..=5 {
            let start = Instant::now();
            round(&clients[1..], 10.0 * r as f32);
            // Three of four: the batch waits for its timeout, no longer.
            assert!(
                start.elapsed() < timeout * 8,
                "round {r}: {:?}",
                start.elapsed()
            );
        }
        assert_eq!(unread.wait(WAIT).unwrap().output.loc, [7.0]);
        // The abandoned request was either skipped or run; the engine went on regardless.
        let total: usize = probe.batches().iter().sum();
        assert!((4 + 1 + 10..=4 + 2 + 10).contains(&total), "{total}");
    }

    #[test]
    fn a_dropped_ticket_cancels_its_queued_request() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let client = reg
            .client(
                key("a"),
                fake_loader(&probe, Duration::from_millis(100)),
                ClientOptions::default(),
            )
            .unwrap();
        let running = client.submit(slot(1.0, 2, 2));
        assert!(
            eventually(|| client.engine().queued() == 0),
            "first one runs"
        );
        drop(client.submit(slot(2.0, 2, 2)));
        let last = client.submit(slot(3.0, 2, 2));
        assert_eq!(running.wait(WAIT).unwrap().output.loc, [1.0]);
        assert_eq!(last.wait(WAIT).unwrap().output.loc, [3.0]);
        assert_eq!(probe.batches(), [1, 1], "the dropped one never ran");
        assert_eq!(client.in_flight(), 0);
    }

    #[test]
    fn async_hand_over_never_blocks_and_bounds_how_long_a_request_is_held() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let run = Duration::from_millis(200);
        let loader = fake_loader(&probe, run);
        let streams: Vec<Client> = (0..3)
            .map(|_| {
                reg.client(key("a"), Arc::clone(&loader), ClientOptions::default())
                    .unwrap()
            })
            .collect();
        let mut calls = Vec::new();
        let mut timed = |f: &mut dyn FnMut() -> Result<Ticket, Slot>| {
            let start = Instant::now();
            let r = f();
            calls.push(start.elapsed());
            r
        };
        let first = timed(&mut || streams[0].try_submit(slot(1.0, 2, 2)))
            .ok()
            .unwrap();
        let handed = Instant::now();
        assert!(eventually(|| streams[0].engine().queued() == 0), "it runs");
        // Stream 0 has one in flight: refused. Stream 1 gets the free queue place (the next
        // batch); stream 2 finds the queue full: refused.
        assert!(timed(&mut || streams[0].try_submit(slot(2.0, 2, 2))).is_err());
        let second = timed(&mut || streams[1].try_submit(slot(3.0, 2, 2)))
            .ok()
            .unwrap();
        let queued = Instant::now();
        let refused = timed(&mut || streams[2].try_submit(slot(4.0, 2, 2)));
        assert_eq!(refused.err().unwrap().data[0], 4.0, "the slot comes back");
        // Frames keep coming every 10 ms while the model is busy: each is skipped at once. (The
        // first run cannot end before `handed + run`; after it, stream 1's request leaves the
        // queue and stream 2 may hand over again.)
        let mut frames = 0;
        while handed.elapsed() < run * 3 / 4 {
            let r = timed(&mut || streams[2].try_submit(slot(5.0, 2, 2)));
            let at = handed.elapsed();
            assert!(r.is_err() || at >= run, "frame {frames} at {at:?}");
            frames += 1;
            thread::sleep(Duration::from_millis(10));
        }
        assert!(frames >= 5, "{frames}");
        assert_eq!(first.wait(WAIT).unwrap().output.loc, [1.0]);
        assert!(handed.elapsed() < run * 2, "{:?}", handed.elapsed());
        assert_eq!(second.wait(WAIT).unwrap().output.loc, [3.0]);
        // Held at most the run in progress plus its own.
        assert!(queued.elapsed() < run * 3, "{:?}", queued.elapsed());
        // Free again: handed over.
        let third = streams[0].try_submit(slot(6.0, 2, 2)).ok().unwrap();
        assert_eq!(third.wait(WAIT).unwrap().output.loc, [6.0]);
        calls.sort();
        let median = calls[calls.len() / 2];
        assert!(median < Duration::from_millis(1), "median {median:?}");
        // Generous for a loaded 2-core machine; a call that waited for the model takes 200 ms.
        assert!(
            calls[calls.len() - 1] < Duration::from_millis(50),
            "{calls:?}"
        );
        assert_eq!(probe.batches(), [1, 1, 1]);
    }

    #[test]
    fn a_failing_batch_fails_only_its_own_requests() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::ZERO);
        let options = batched(2, Duration::from_secs(2));
        let (c1, c2) = (
            reg.client(key("a"), Arc::clone(&loader), options).unwrap(),
            reg.client(key("a"), Arc::clone(&loader), options).unwrap(),
        );
        for bad in [POISON, PANIC] {
            let (t1, t2) = (c1.submit(slot(bad, 2, 2)), c2.submit(slot(5.0, 2, 2)));
            for t in [&t1, &t2] {
                match t.wait(WAIT) {
                    Err(EngineError::Inference(reason)) => {
                        assert!(
                            reason.contains("poisoned") || reason.contains("panicked"),
                            "{reason}"
                        )
                    }
                    other => panic!("expected an inference error, got {other:?}"),
                }
            }
            // The next batch runs normally.
            let (t1, t2) = (c1.submit(slot(1.0, 2, 2)), c2.submit(slot(2.0, 2, 2)));
            assert_eq!(t1.wait(WAIT).unwrap().output.loc, [1.0]);
            assert_eq!(t2.wait(WAIT).unwrap().output.loc, [2.0]);
        }
        assert_eq!(probe.batches(), [2, 2, 2, 2]);
        assert_eq!((c1.in_flight(), c2.in_flight()), (0, 0));
    }

    #[test]
    fn a_bad_slot_is_refused_without_reaching_the_model() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let client = reg
            .client(
                key("a"),
                fake_loader(&probe, Duration::ZERO),
                ClientOptions::default(),
            )
            .unwrap();
        let mut bad = Slot::new(4, 4);
        bad.data.pop();
        assert!(matches!(
            client.submit(bad).wait(WAIT),
            Err(EngineError::BadInput {
                width: 4,
                height: 4,
                len: 47
            })
        ));
        assert!(probe.batches().is_empty());
    }

    #[test]
    fn model_swap_moves_the_stream_between_two_frames() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::from_millis(20));
        let mut client = reg
            .client(key("a"), Arc::clone(&loader), ClientOptions::default())
            .unwrap();
        let other = reg
            .client(key("a"), Arc::clone(&loader), ClientOptions::default())
            .unwrap();
        let tag = |t: &Ticket| t.wait(WAIT).unwrap().output.landmarks[0];
        let before = client.submit(slot(1.0, 2, 2));
        client.swap_model(key("b"));
        assert!(client.swap_pending());
        // Until the swap is applied, frames go to A.
        let during = client.submit(slot(1.0, 2, 2));
        assert_eq!(client.wait_swap(WAIT), Some(Ok(key("b"))));
        let after = client.submit(slot(1.0, 2, 2));
        assert_eq!((tag(&before), tag(&during), tag(&after)), (1.0, 1.0, 2.0));
        assert_eq!(before.contract().as_ref(), &ModelContract::default());
        // The other stream keeps A.
        assert_eq!(tag(&other.submit(slot(1.0, 2, 2))), 1.0);

        // A model that does not load: the stream keeps B and hears why.
        client.swap_model(key("broken"));
        let failed = client.wait_swap(WAIT).unwrap().unwrap_err();
        assert_eq!(
            failed,
            EngineError::Load {
                path: PathBuf::from("/fake/broken.onnx"),
                reason: "not an ONNX model".into()
            }
        );
        assert!(failed.to_string().contains("/fake/broken.onnx"));
        assert!(failed.to_string().contains("not an ONNX model"));
        assert!(!client.swap_pending());
        assert_eq!(tag(&client.submit(slot(1.0, 2, 2))), 2.0);

        // Back to A, which `other` kept alive: shared, not loaded again.
        let loads = probe.loads.load(Ordering::SeqCst);
        let b = Arc::downgrade(client.engine());
        client.swap_model(key("a"));
        // poll_swap never waits; it applies the swap once the load has finished.
        assert!(eventually(
            || client.poll_swap().is_some() || !client.swap_pending()
        ));
        assert!(Arc::ptr_eq(client.engine(), other.engine()));
        assert_eq!(probe.loads.load(Ordering::SeqCst), loads);
        // B lost its last client: freed (on a background thread).
        assert!(eventually(|| b.upgrade().is_none()));
        assert!(eventually(|| probe.live.load(Ordering::SeqCst) == 1));
        assert_eq!(client.poll_swap(), None);
    }

    #[test]
    fn a_request_queued_when_the_engine_goes_is_answered_stopped() {
        let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
        let loader = fake_loader(&probe, Duration::from_millis(100));
        let client = reg
            .client(key("a"), loader, ClientOptions::default())
            .unwrap();
        let running = client.submit(slot(1.0, 2, 2));
        assert!(eventually(|| client.engine().queued() == 0));
        let queued = client.submit(slot(2.0, 2, 2));
        drop(client);
        assert_eq!(running.wait(WAIT).unwrap().output.loc, [1.0]);
        assert_eq!(queued.wait(WAIT).unwrap_err(), EngineError::Stopped);
    }

    fn model() -> PathBuf {
        std::env::var_os("RETINAFACE_DATA")
            .map_or_else(
                || PathBuf::from("/usr/local/share/retinaface"),
                PathBuf::from,
            )
            .join("models/retinaface-mv025.onnx")
    }

    fn pattern(w: usize, h: usize, seed: usize) -> Slot {
        let mut s = Slot::new(w, h);
        for (i, v) in s.data.iter_mut().enumerate() {
            *v = (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 4.0;
        }
        s
    }

    fn assert_close(a: &SlotOutput, b: &SlotOutput, what: &str) {
        for (x, y) in a.rows().into_iter().zip(b.rows()) {
            assert_eq!(x.len(), y.len(), "{what}");
            let worst = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-5, "{what}: differs by {worst}");
        }
    }

    #[test]
    fn onnx_runtime_batch_of_two_equals_two_single_runs() {
        let key = EngineKey::new(&model(), &SessionConfig::default());
        let mut backend = OrtBackend::load(&key, &[]).expect("default model loads");
        assert!(
            backend.max_batch() > 1,
            "the default model has a dynamic batch dimension"
        );
        let input = pattern(320, 240, 1);
        let single = backend.run(&[&input]).unwrap();
        let pair = backend.run(&[&input, &input]).unwrap();
        assert_eq!((single.len(), pair.len()), (1, 2));
        // 320×240 with steps 8/16/32 and two anchors each: 2 × (1200 + 300 + 80) priors.
        assert_eq!(single[0].loc.len(), 3160 * 4);
        assert_eq!(single[0].conf.len(), 3160 * 2);
        assert_eq!(single[0].landmarks.len(), 3160 * 10);
        assert_close(&single[0], &pair[0], "slot 0");
        assert_close(&single[0], &pair[1], "slot 1");
    }

    /// Four streams of different sizes through a shared engine batching up to 4 give what
    /// separate unbatched engines give.
    #[test]
    fn onnx_runtime_shared_batched_equals_separate_unbatched() {
        let key = EngineKey::new(&model(), &SessionConfig::default());
        let loader = OrtBackend::loader(Vec::new());
        let sizes = [(320, 240), (240, 320), (320, 240), (320, 240)];
        let inputs: Vec<Slot> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(w, h))| pattern(w, h, i))
            .collect();
        let shared = Registry::new();
        let options = batched(4, Duration::from_millis(500));
        let clients: Vec<Client> = (0..4)
            .map(|_| {
                shared
                    .client(key.clone(), Arc::clone(&loader), options)
                    .unwrap()
            })
            .collect();
        let together: Vec<Done> = thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter()
                .zip(&inputs)
                .map(|(c, input)| s.spawn(move || c.submit(input.clone()).wait(WAIT * 6).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            clients[0].engine().stats().batches,
            2,
            "3 of one size, 1 of another"
        );
        assert_eq!(
            together.iter().map(|d| d.batch_len).collect::<Vec<_>>(),
            [3, 1, 3, 3]
        );
        for (i, input) in inputs.iter().enumerate() {
            let alone = Registry::new()
                .client(key.clone(), Arc::clone(&loader), ClientOptions::default())
                .unwrap();
            let done = alone.submit(input.clone()).wait(WAIT * 6).unwrap();
            assert_eq!(done.batch_len, 1);
            assert_close(&together[i].output, &done.output, &format!("stream {i}"));
        }
    }
}
