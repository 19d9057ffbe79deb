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

use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::handlers::ModelError;

pub use error::ManagerError;
pub use manager::{Enqueue, ModelHealth, ModelManager};
pub use spec::{HandlerFactory, ModelSpec, ModelSpecBuilder};
pub use supervisor::{CheckHealth, Register, Registration, Route, RouteTo, Supervisor};

/// What a worker answers for one job.
pub type JobResult = Result<Value, ModelError>;

/// One inference request on its way to a worker.
pub struct Job {
    /// The request's input: the raw body or the `data` form field.
    pub payload: Bytes,
    /// Where the answer goes; dropped unanswered means the worker died.
    pub reply: oneshot::Sender<JobResult>,
    /// When the job was accepted, for queue-time logging.
    pub accepted_at: Instant,
}

impl Job {
    pub fn new(payload: Bytes) -> (Self, oneshot::Receiver<JobResult>) {
        let (reply, answer) = oneshot::channel();
        let job = Self {
            payload,
            reply,
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
