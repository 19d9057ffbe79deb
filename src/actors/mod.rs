//! The actor system that owns models and workers.
//!
//! ```text
//! Supervisor ── one per process: registry of models → versions → ModelManager
//!   └─ ModelManager ── one per (model, version): bounded job queue, batches, worker pool,
//!        │              replacement of failed workers with TorchServe's backoff
//!        └─ Worker ── one per worker: owns an OS thread that owns the loaded model on its
//!                     device; libtorch runs only on that thread
//! ```
//!
//! A request is a [`Job`]: its payload and a oneshot reply channel. The worker thread answers
//! each job on its channel; a job whose channel is dropped unanswered (its worker died) reads as
//! `Worker died.`, so no failure path can leave a request waiting.

mod error;
mod manager;
mod spec;
mod supervisor;
mod worker;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

pub use error::ManagerError;
pub use manager::{
    Describe, Enqueue, ModelHealth, ModelManager, ModelStatus, ScaleWorkers, Shutdown, WorkerStatus,
};
pub use spec::{HandlerFactory, ModelOrigin, ModelSpec, ModelSpecBuilder, Overrides};
pub use supervisor::{
    CheckHealth, ListModels, Lookup, Readiness, Register, Registration, Route, RouteTo, Scale,
    SetDefault, Supervisor, TakeSnapshot, Unregister, Unregistered, VersionSelector,
};

/// What a job's client gets: the handler's answer, or why there is none.
pub type JobResult = Result<Value, ManagerError>;

/// One inference request on its way to a worker.
pub struct Job {
    /// The request's input: the raw body or the `data` form field.
    pub payload: Bytes,
    /// Where the answer goes.
    pub reply: Reply,
    /// When the job was accepted: for queue-time logs and the client timeout.
    pub accepted_at: Instant,
}

impl Job {
    pub fn new(payload: Bytes) -> (Self, oneshot::Receiver<JobResult>) {
        let (sender, answer) = oneshot::channel();
        let job = Self {
            payload,
            reply: Reply(Arc::new(Mutex::new(Some(sender)))),
            accepted_at: Instant::now(),
        };
        (job, answer)
    }

    /// The client that sent it has gone (its HTTP request was dropped): nobody would read the
    /// answer, so the job need not run.
    pub fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// A job's reply channel, shared by the worker that runs the job and the manager that gave it
/// out, so the manager can answer for a worker that is stuck or gone. The first answer wins;
/// a reply dropped unanswered reads as `Worker died.` to the client.
#[derive(Clone)]
pub struct Reply(Arc<Mutex<Option<oneshot::Sender<JobResult>>>>);

impl Reply {
    pub fn send(&self, result: JobResult) {
        if let Some(sender) = self.take() {
            // The client may have gone; then the answer has nowhere to go, which is fine.
            let _ = sender.send(result);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().as_ref().is_none_or(|sender| sender.is_closed())
    }

    fn take(&self) -> Option<oneshot::Sender<JobResult>> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<JobResult>>> {
        // Held only to take or inspect the sender: a panic elsewhere cannot leave it half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
