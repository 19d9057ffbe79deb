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
//! no failure path can leave a request waiting. A streaming job also has a bounded channel for
//! the handler's intermediate answers, which come before the last one.

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

use tokio::sync::{mpsc, oneshot};

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

/// How many intermediate answers may wait for a slow client before the worker that makes them
/// waits too (back-pressure: a stream is never buffered without bound).
pub const PARTS_BUFFERED: usize = 8;

/// The receiving ends of a job: its intermediate answers (for a backend that can stream), then
/// its last one.
#[derive(Debug)]
pub struct Answers {
    pub parts: Option<mpsc::Receiver<Prediction>>,
    pub last: oneshot::Receiver<JobResult>,
}

impl Job {
    pub fn new(request: InferenceRequest) -> (Self, oneshot::Receiver<JobResult>) {
        Self::with_parts(request, None)
    }

    /// A job whose handler may stream (`send_intermediate_predict_response`) when `streams`:
    /// its intermediate answers come on [`Answers::parts`], at most [`PARTS_BUFFERED`] ahead of
    /// the client. A backend that cannot stream (native models) gets no parts channel.
    pub fn with_answers(request: InferenceRequest, streams: bool) -> (Self, Answers) {
        if !streams {
            let (job, last) = Self::with_parts(request, None);
            return (job, Answers { parts: None, last });
        }
        let (sender, parts) = mpsc::channel(PARTS_BUFFERED);
        let (job, last) = Self::with_parts(request, Some(sender));
        (job, Answers { parts: Some(parts), last })
    }

    fn with_parts(request: InferenceRequest, parts: Option<mpsc::Sender<Prediction>>) -> (Self, oneshot::Receiver<JobResult>) {
        let (sender, last) = oneshot::channel();
        let job = Self {
            request,
            reply: Reply(Arc::new(Mutex::new(Unanswered {
                last: Some(sender),
                parts,
                last_part_at: None,
            }))),
            accepted_at: Instant::now(),
            version_named: false,
        };
        (job, last)
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

/// The sending ends until the last answer is sent; dropped unused, it sends `Worker died.`.
#[derive(Debug)]
struct Unanswered {
    last: Option<oneshot::Sender<JobResult>>,
    /// Where intermediate answers go, for a streaming job; closed with the last answer.
    parts: Option<mpsc::Sender<Prediction>>,
    /// When the client last took an intermediate answer: a streaming batch is alive while its
    /// answers keep coming (`responseTimeout` bounds the gap between them, as in TorchServe).
    last_part_at: Option<Instant>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(sender) = self.last.take() {
            let _ = sender.send(Err(ManagerError::WorkerDied));
        }
    }
}

/// What became of an intermediate answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSent {
    Delivered,
    /// The client has gone, or the job does not stream: the part is dropped.
    Dropped,
}

impl Reply {
    /// The last answer: the client's request is done, and its stream (if any) ends.
    pub fn send(&self, result: JobResult) {
        let mut unanswered = self.lock();
        if let Some(sender) = unanswered.last.take() {
            // The client may have gone; then the answer has nowhere to go, which is fine.
            let _ = sender.send(result);
        }
        // The stream closes after the last answer is in place, not before: closed first, it
        // could wake the client's task to find no answer yet, and the answer then woke it again
        // (two eventfd writes to its HTTP thread for every Python request, seen with `strace`;
        // now one). Parts sent earlier are still taken first: the client reads the stream until
        // it is closed, then takes the last answer.
        unanswered.parts = None;
    }

    /// An intermediate answer, for a streaming job. Blocks the calling (worker) thread while
    /// [`PARTS_BUFFERED`] answers wait for the client: the handler then waits too. Never call
    /// it on an async thread.
    pub fn send_part(&self, part: Prediction) -> PartSent {
        let sender = {
            let mut unanswered = self.lock();
            unanswered.last_part_at = Some(Instant::now());
            unanswered.parts.clone()
        };
        let Some(sender) = sender else {
            return PartSent::Dropped;
        };
        let sent = sender.blocking_send(part);
        self.lock().last_part_at = Some(Instant::now());
        match sent {
            Ok(()) => PartSent::Delivered,
            Err(_) => PartSent::Dropped,
        }
    }

    /// When the job's last intermediate answer was handed on, if it streams.
    pub fn last_part_at(&self) -> Option<Instant> {
        self.lock().last_part_at
    }

    pub fn is_closed(&self) -> bool {
        self.lock().last.as_ref().is_none_or(|sender| sender.is_closed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unanswered> {
        // Held only to take or inspect the sender: a panic elsewhere cannot leave it half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str) -> Prediction {
        Prediction::json(serde_json::json!(text))
    }

    #[test]
    fn parts_come_in_order_before_the_last_answer_and_end_with_it() {
        let (job, answers) = Job::with_answers(InferenceRequest::default(), true);
        let (mut parts, mut last) = (answers.parts.unwrap(), answers.last);
        assert_eq!(job.reply.send_part(part("a")), PartSent::Delivered);
        assert_eq!(job.reply.send_part(part("b")), PartSent::Delivered);
        assert!(job.reply.last_part_at().is_some(), "a streaming batch shows it is alive");
        job.reply.send(Ok(part("last")));
        assert_eq!(job.reply.send_part(part("late")), PartSent::Dropped, "nothing after the last answer");
        let bodies: Vec<String> = std::iter::from_fn(|| parts.try_recv().ok())
            .map(|p| String::from_utf8(p.body.into_bytes().to_vec()).unwrap())
            .collect();
        assert_eq!(bodies, ["\"a\"\n", "\"b\"\n"]);
        assert!(parts.is_closed(), "the last answer closes the parts");
        assert!(matches!(last.try_recv(), Ok(Ok(_))));
    }

    #[test]
    fn a_client_that_left_takes_no_parts_and_a_job_that_does_not_stream_drops_them() {
        let (job, answers) = Job::with_answers(InferenceRequest::default(), true);
        drop(answers);
        assert_eq!(job.reply.send_part(part("a")), PartSent::Dropped);
        assert!(job.is_abandoned());
        let (plain, _last) = Job::new(InferenceRequest::default());
        assert_eq!(plain.reply.send_part(part("a")), PartSent::Dropped);
        assert_eq!(plain.reply.last_part_at().map(|_| ()), Some(()), "still counts as a sign of life");
    }

    #[test]
    fn a_reply_dropped_unanswered_answers_worker_died() {
        let (job, mut last) = Job::new(InferenceRequest::default());
        drop(job);
        assert!(matches!(last.try_recv(), Ok(Err(ManagerError::WorkerDied))));
    }
}
