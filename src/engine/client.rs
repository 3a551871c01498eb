//! One stream's handle on a shared engine ([`Client`]): sync and async hand-over, and the live
//! model swap, which moves the client from one engine to another between two frames.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::backend::{Inputs, LoadError, Loader, Tensor};
use super::error::EngineError;
use super::key::EngineKey;
use super::registry::Registry;
use super::ticket::Ticket;
use super::worker::{ClientOptions, Engine};

// Here rather than in registry.rs: a client keeps its registry for its swaps, so the registry
// module knowing clients too would make the two import each other.
impl Registry {
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
}

struct PendingSwap {
    key: EngineKey,
    /// In a mutex only so that `Client` is `Sync`; reached through `get_mut`.
    rx: Mutex<Receiver<Result<Arc<Engine>, EngineError>>>,
}

/// One stream's handle on a shared engine (what a detect element instance holds). A request is
/// one tensor per model input ([`Engine::model`]).
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

    /// Queues one request (sync mode); wait on the ticket, with a timeout.
    pub fn submit(&self, inputs: Vec<Tensor>) -> Ticket {
        self.submit_all(vec![inputs])
            .pop()
            .expect("one ticket per request")
    }

    /// Queues the requests of one frame (e.g. its tiles) at once, so that those of one shape
    /// share runs up to `batch_size` even with no batch timeout. One ticket per request, in
    /// order.
    pub fn submit_all(&self, requests: Vec<Vec<Tensor>>) -> Vec<Ticket> {
        self.submit_inputs(requests.into_iter().map(Inputs::Tensors).collect())
    }

    /// [`Client::submit_all`] for requests of either kind: f32 tensors, or
    /// [`Pixels`](super::Pixels) where the engine [takes them](Engine::takes_pixels) (a pixel
    /// request to an engine that does not is answered [`EngineError::BadPixels`]).
    pub fn submit_inputs(&self, requests: Vec<Inputs>) -> Vec<Ticket> {
        self.engine
            .enqueue(requests, &self.options, &self.in_flight, false)
            .unwrap_or_else(|_| unreachable!("enqueue refuses only when asked to"))
    }

    /// Async mode: hands one request over only if this client has no request in flight and
    /// the engine's queue holds less than one batch (so the request runs in the next batch,
    /// after at most the run in progress and its batch timeout); otherwise gives the inputs
    /// back at once. Never waits for the model.
    pub fn try_submit(&self, inputs: Vec<Tensor>) -> Result<Ticket, Vec<Tensor>> {
        match self.try_submit_all(vec![inputs]) {
            Ok(mut tickets) => Ok(tickets.pop().expect("one ticket per request")),
            Err(mut requests) => Err(requests.pop().expect("the inputs come back")),
        }
    }

    /// [`Client::try_submit`] for the requests of one frame (e.g. its tiles), handed over
    /// together or not at all; a frame of more requests than a batch is handed over only onto
    /// an empty queue. One ticket per request, in order.
    pub fn try_submit_all(
        &self,
        requests: Vec<Vec<Tensor>>,
    ) -> Result<Vec<Ticket>, Vec<Vec<Tensor>>> {
        self.try_submit_inputs(requests.into_iter().map(Inputs::Tensors).collect())
            .map_err(|back| {
                back.into_iter()
                    .map(|inputs| match inputs {
                        Inputs::Tensors(tensors) => tensors,
                        Inputs::Pixels(_) => unreachable!("only tensors were handed over"),
                    })
                    .collect()
            })
    }

    /// [`Client::try_submit_all`] for requests of either kind (see [`Client::submit_inputs`]).
    pub fn try_submit_inputs(&self, requests: Vec<Inputs>) -> Result<Vec<Ticket>, Vec<Inputs>> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Err(requests);
        }
        self.engine
            .enqueue(requests, &self.options, &self.in_flight, true)
    }

    /// Starts moving this client to the engine of `key` (typically a new model path, same
    /// session options): it is loaded (or found shared) on a background thread;
    /// [`Client::poll_swap`] applies it. A later call supersedes a pending one.
    pub fn swap_model(&mut self, key: EngineKey) {
        let (tx, rx) = sync_channel(1);
        if &key == self.engine.key() {
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
                let (tx, rx) = sync_channel(1);
                let _ = tx.try_send(Err(load_failed(
                    &key,
                    format!("no thread to load it on: {e}"),
                )));
                self.swap = Some(PendingSwap {
                    key,
                    rx: Mutex::new(rx),
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
        load_failed(key, "the loader panicked".into())
    }

    fn apply_swap(
        &mut self,
        outcome: Result<Arc<Engine>, EngineError>,
    ) -> Result<EngineKey, EngineError> {
        self.swap = None;
        let engine = outcome?;
        let key = engine.key().clone();
        let old = std::mem::replace(&mut self.engine, engine);
        retire(old);
        Ok(key)
    }
}

fn load_failed(key: &EngineKey, reason: String) -> EngineError {
    EngineError::Load {
        path: key.model.clone(),
        source: LoadError::Other(reason),
    }
}

fn get<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
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
