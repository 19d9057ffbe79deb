//! The actor system that owns models and workers.
//!
//! ```text
//! Supervisor ── one per process: the registry of models → versions, published as a snapshot
//!   └─ ModelManager ── one per (model, version): its worker pool, restarts, timeouts, health
//!        ├─ ModelQueue ── the version's jobs: HTTP threads submit, worker threads take batches
//!        └─ worker ── one per worker: an OS thread running the model (libtorch in-process)
//! ```
//!
//! A request is a [`Job`]: its input and a oneshot reply channel. The worker answers each job on
//! its channel; a job dropped unanswered (its worker died) answers `Worker died.` as it goes, so
//! no failure path can leave a request waiting.

mod error;
mod manager;
mod model_queue;
mod pool;
mod queue;
mod registry;
mod spec;
mod supervisor;
mod worker;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::request::{InferenceRequest, Prediction};

pub use error::ManagerError;
pub use manager::{Describe, ModelManager, ModelStatus, WorkerStatus};
pub use model_queue::ModelQueue;
pub use pool::{ModelHealth, WorkerId};
pub use registry::{shared_registry, ModelEntry, Registry, SharedRegistry, VersionSelector};
pub use spec::{BackendSpec, HandlerFactory, ModelOrigin, ModelSpec, PythonSpec};
pub use supervisor::{Register, Registration, Scale, SetDefault, Supervisor, TakeSnapshot, Unregister};
pub use worker::native::threads_per_worker;

/// What a job's client gets: the handler's answer, or why there is none.
pub type JobResult = Result<Prediction, ManagerError>;

/// One inference request on its way to a worker.
#[derive(Debug)]
pub struct Job {
    pub request: InferenceRequest,
    /// Where the answer goes.
    pub reply: Reply,
    /// When the job was accepted: for queue-time logs and the client timeout.
    pub accepted_at: Instant,
    /// The request named its model's version (TorchServe's metrics say `default` if not).
    pub version_named: bool,
}

impl Job {
    pub fn new(request: InferenceRequest) -> (Self, oneshot::Receiver<JobResult>) {
        let (sender, answer) = oneshot::channel();
        let job = Self {
            request,
            reply: Reply(Arc::new(Mutex::new(Unanswered(Some(sender))))),
            accepted_at: Instant::now(),
            version_named: false,
        };
        (job, answer)
    }

    /// The client that sent it has gone (its HTTP request was dropped): nobody would read the
    /// answer, so the job need not run.
    pub fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// A job's reply channel, shared by the worker that runs the job and the manager that can answer
/// for a worker that is stuck. The first answer wins; a reply dropped unanswered answers
/// `Worker died.` as it goes.
#[derive(Clone, Debug)]
pub struct Reply(Arc<Mutex<Unanswered>>);

/// The sending end until it is used; dropped unused, it sends `Worker died.`.
#[derive(Debug)]
struct Unanswered(Option<oneshot::Sender<JobResult>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(Err(ManagerError::WorkerDied));
        }
    }
}

impl Reply {
    pub fn send(&self, result: JobResult) {
        if let Some(sender) = self.lock().0.take() {
            // The client may have gone; then the answer has nowhere to go, which is fine.
            let _ = sender.send(result);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().0.as_ref().is_none_or(|sender| sender.is_closed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unanswered> {
        // Held only to take or inspect the sender: a panic elsewhere cannot leave it half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
