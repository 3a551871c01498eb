//! The inference engine: one session of a model per (model file, session options) per process,
//! shared by every client (element instance) that asks for the same, behind a request queue
//! whose worker thread batches requests of different streams.
//!
//! The engine runs *a model*, not RetinaFace: a request is the model's named input tensors
//! (one [`Tensor`] per input, without the batch dimension) and its answer is the model's named
//! outputs (one [`Tensor`] per output, the batch dimension taken off). What the tensors mean —
//! preprocessing, which output is which, decoding, the check that a file is the right kind of
//! model — belongs to the client (the RetinaFace detector is one), which does it before the
//! request and after the answer, and in the [`Loader`] it gives. Nothing here imports the
//! client side: a second kind of model needs no change in this folder.
//!
//! - `key.rs`: an [`EngineKey`] (model file + [`SessionConfig`](crate::runtime::SessionConfig))
//!   names a shareable engine; equal keys share one session.
//! - `registry.rs`: a [`Registry`] (one per process: [`Registry::global`]) maps a key to a weak
//!   reference to its [`Engine`]: the first client loads the model, later ones share it, and
//!   the engine (session, worker thread) is freed when its last client goes.
//! - `worker.rs`: the [`Engine`] itself, the queue and the worker thread. It takes the oldest
//!   request and adds later requests **whose inputs have the same shapes** (a batch is one
//!   tensor per input with the batch dimension in front; padding to the largest size would
//!   change the results) until the batch holds as many as every member allows (its client's
//!   [`ClientOptions::batch_size`], at most [`Backend::max_batch`]) or the earliest member's
//!   `batch_timeout` has expired. Each request carries its own reply channel ([`Ticket`]), so
//!   each gets exactly its own result, and a client that stops reading never blocks the worker
//!   (a dropped ticket's request is skipped if it has not run yet). `tests.rs` beside it runs
//!   registry, worker and client against fake backends.
//! - `ticket.rs`: the answer to one request ([`Ticket`], [`Done`]); `error.rs`: why a request
//!   or a load failed ([`EngineError`]).
//! - `client.rs`: one stream's [`Client`]. Sync mode: [`Client::submit`] then [`Ticket::wait`].
//!   Async mode: [`Client::try_submit`] hands the inputs over only if the client has nothing in
//!   flight and the queue has room for the next batch, otherwise gives them back at once; the
//!   client polls with [`Ticket::try_take`]. Live model swap is client-side:
//!   [`Client::swap_model`] gets (loads, or shares) the engine of the new key on a background
//!   thread and [`Client::poll_swap`], called between two frames, moves the client to it; other
//!   clients of the old model are unaffected, and a failed load leaves the client where it was.
//! - `backend.rs`: what an engine runs ([`Backend`]), what it says about its model
//!   ([`ModelInfo`]), and how a backend is made for a key ([`Loader`], failing with a typed
//!   [`LoadError`]). A request is [`Inputs`]: the model's f32 tensors (every backend), or, for
//!   a backend that [takes them](Backend::takes_pixels) (libtorch), the image as 8-bit
//!   [`Pixels`] at source resolution with the input geometry and normalisation to make of them
//!   on the device; the two kinds never share a run, and pixel requests batch by the size of
//!   the input they become.
//! - `ort.rs`: the ONNX Runtime backend ([`OrtBackend`]). Tests use fakes.
//! - `torch.rs` (feature `torch`): the libtorch backend (`TorchBackend`), a TorchScript export
//!   with its side file (`side_file.rs`: [`TorchScriptSideFile`], written by the trainer);
//!   `select.rs`: [`open_backend`], the backend a key's [`SessionConfig::backend`] asks for.
//!
//! [`SessionConfig::backend`]: crate::runtime::SessionConfig::backend

mod backend;
mod client;
mod error;
mod key;
// Not `use`d by that name here: `ort` alone would also name the ONNX Runtime crate.
mod ort;
mod registry;
mod select;
mod side_file;
mod ticket;
#[cfg(feature = "torch")]
mod torch;
mod worker;

#[cfg(test)]
mod tests;

pub use self::ort::{ORT_MAX_BATCH, OrtBackend};
pub use backend::{Backend, Inputs, LoadError, Loader, ModelInfo, Pixels, Tensor, TensorInfo};
pub use client::Client;
pub use error::EngineError;
pub use key::EngineKey;
pub use registry::Registry;
pub use select::open_backend;
pub use side_file::{SideTensor, TORCHSCRIPT_FORMAT, TorchScriptSideFile, torchscript_paths};
pub use ticket::{Done, Ticket};
#[cfg(feature = "torch")]
pub use torch::{TORCH_MAX_BATCH, TorchBackend};
pub use worker::{ClientOptions, Engine, EngineStats};
