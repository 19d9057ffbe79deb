//! A worker: one OS thread that takes batches from its model's [`ModelQueue`] and runs them on a
//! [`Backend`] (libtorch in-process for native workers), answering each job on its own reply
//! channel. The manager holds a [`WorkerHandle`]; dropping the handle retires the worker, which
//! finishes the batch in hand and exits.
//!
//! Panics are caught at the thread boundary: the jobs of the batch are answered `Worker died.`
//! (their replies are dropped unanswered), the manager hears [`WorkerEvent::Died`] and replaces
//! the worker. Nothing a model does can take the server down.

pub mod native;
pub mod python;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::{Message, Recipient};

use super::model_queue::{ModelQueue, StopFlag};
use super::queue::Ran;
use super::pool::WorkerId;
use super::{Job, Reply};
use crate::handlers::ModelError;
use crate::metrics::ModelMetrics;

/// Why a worker is gone for good.
#[derive(Debug, thiserror::Error)]
pub enum WorkerExit {
    #[error("{0}")]
    LoadFailed(ModelError),
    /// A fault that leaves the worker untrustworthy (a CUDA error may corrupt the device context).
    #[error("{0}")]
    Fault(ModelError),
    #[error("panic on the worker thread: {0}")]
    Panicked(String),
    /// The worker's process ended or its connection broke.
    #[error("{0}")]
    ProcessEnded(String),
    /// The worker's process answered out of step with the requests it was sent (more replies
    /// than requests, or a reply for a request it was not sent): reading on would hand later
    /// clients answers meant for others.
    #[error("its replies got out of step with its requests: {0}")]
    OutOfStep(String),
}

/// What a worker's thread tells its manager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum WorkerEvent {
    /// The model is loaded; the worker takes batches.
    Loaded(WorkerId),
    /// The worker is gone for good; the manager replaces it.
    Died(WorkerId, WorkerExit),
}

/// Runs one model on a worker's thread.
pub trait Backend: Send + 'static {
    /// Loads the model; called once, on the worker's thread, before any batch. A backend that
    /// runs the model in a child process says which, through `child`.
    fn load(&mut self, child: &ChildPid) -> Result<(), WorkerExit>;
    /// Whether the backend can run a batch now; asked with a batch in hand, before `run`. An
    /// `Err` retires the worker, and the batch, never sent, goes back to the queue for another.
    fn ready(&mut self) -> Result<(), WorkerExit> {
        Ok(())
    }
    /// Runs a batch and answers each of its jobs; gives back how long the backend call itself
    /// took (the model's own work, or the round trip to the worker process), so the worker
    /// thread's time around it can be reported as TorchServe's `WorkerThreadTime`. An `Err`
    /// retires the worker; jobs it left unanswered read `Worker died.` to their clients.
    fn run(&mut self, jobs: Vec<Job>) -> Result<Duration, WorkerExit>;
}

/// What a worker's thread and its manager share.
#[derive(Debug, Default)]
struct WorkerLink {
    stop: StopFlag,
    /// The batch being run, so the manager can answer it if it overruns.
    running: Mutex<Option<RunningBatch>>,
    child: ChildPid,
}

/// The child process serving a worker, if any (0: the server itself).
#[derive(Debug, Default)]
pub struct ChildPid(AtomicU32);

impl ChildPid {
    pub fn set(&self, pid: u32) {
        self.0.store(pid, Ordering::Release);
    }

    /// Forgets the child, before it is reaped (its pid may then be reused).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }

    fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::Acquire)).filter(|&pid| pid != 0)
    }
}

#[derive(Debug)]
struct RunningBatch {
    started: Instant,
    replies: Vec<Reply>,
}

impl WorkerLink {
    fn running(&self) -> std::sync::MutexGuard<'_, Option<RunningBatch>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// TorchServe's worker name, `W-<id>-<model>_<version>`, used in every log line about it.
pub fn worker_name(id: WorkerId, model: &str, version: &str) -> String {
    format!("W-{id}-{model}_{version}")
}

/// Where a worker runs and whom it reports to.
pub struct WorkerStart {
    pub id: WorkerId,
    pub name: String,
    pub queue: Arc<ModelQueue>,
    pub events: Recipient<WorkerEvent>,
    pub metrics: Arc<ModelMetrics>,
    /// Whether tserve runs the handler (and so reports `HandlerTime` and `PredictionTime`).
    pub reports_handler_time: bool,
}

/// The manager's hold on a worker. Dropping it retires the worker.
pub struct WorkerHandle {
    link: Arc<WorkerLink>,
    queue: Arc<ModelQueue>,
}

impl WorkerHandle {
    /// Starts the worker's thread running `backend`.
    pub fn spawn(start: WorkerStart, backend: impl Backend) -> std::io::Result<Self> {
        let link = Arc::new(WorkerLink::default());
        let handle = Self {
            link: link.clone(),
            queue: start.queue.clone(),
        };
        // A thread name may not hold a NUL byte (the builder would panic).
        let thread_name = start.name.replace('\0', "?");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || serve(backend, start, &link))?;
        Ok(handle)
    }

    /// Takes the replies of a batch that has run for longer than `limit` since it started or,
    /// streaming, since its last intermediate answer, so the caller can answer them; the worker
    /// is then retired by dropping its handle.
    pub fn take_overrun(&self, now: Instant, limit: Duration) -> Option<Vec<Reply>> {
        let mut running = self.link.running();
        let overran = running.as_ref().is_some_and(|batch| {
            let last_sign = batch.replies.iter().filter_map(Reply::last_part_at).fold(batch.started, Instant::max);
            now.saturating_duration_since(last_sign) > limit
        });
        if overran {
            running.take().map(|batch| batch.replies)
        } else {
            None
        }
    }

    /// The process that runs the worker's model.
    pub fn pid(&self) -> u32 {
        self.link.child.get().unwrap_or_else(std::process::id)
    }

    /// Stops the worker now: a child process is killed (a stuck one would never take the stop
    /// signal); an in-process worker stops after the call it is in.
    pub fn abort(self) {
        if let Some(pid) = self.link.child.get() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.link.stop.stop();
        self.queue.wake_all();
    }
}

/// The worker's thread: load, then take and run batches until stopped or failed.
fn serve(mut backend: impl Backend, start: WorkerStart, link: &WorkerLink) {
    if let Some(event) = serve_batches(&mut backend, &start, link) {
        start.events.do_send(event);
    }
    // Forget the child before the backend reaps it: its pid may be reused after.
    link.child.clear();
    drop(backend);
}

/// Runs the worker until it is stopped (`None`) or fails (what to tell the manager).
fn serve_batches(backend: &mut impl Backend, start: &WorkerStart, link: &WorkerLink) -> Option<WorkerEvent> {
    let loading = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| backend.load(&link.child))) {
        Ok(Ok(())) => {
            start.metrics.metrics().worker_loaded(&start.name, loading.elapsed());
            start.events.do_send(WorkerEvent::Loaded(start.id));
        }
        Ok(Err(exit)) => return Some(WorkerEvent::Died(start.id, exit)),
        Err(panic) => return Some(WorkerEvent::Died(start.id, panicked(panic.as_ref()))),
    }
    let mut ran = None;
    while let Some(jobs) = start.queue.take_batch(&link.stop, ran) {
        let unready = match catch_unwind(AssertUnwindSafe(|| backend.ready())) {
            Ok(Ok(())) => None,
            Ok(Err(exit)) => Some(exit),
            Err(panic) => Some(panicked(panic.as_ref())),
        };
        if let Some(exit) = unready {
            // The batch never reached the backend: it is not this worker's failure to answer.
            start.queue.give_back(jobs);
            return Some(WorkerEvent::Died(start.id, exit));
        }
        let taken = Instant::now();
        for job in &jobs {
            start.metrics.dequeued(job.version_named, taken.saturating_duration_since(job.accepted_at));
        }
        let size = jobs.len();
        let request_ids = start.reports_handler_time.then(|| {
            jobs.iter().map(|job| job.request.id.as_str()).collect::<Vec<_>>().join(",")
        });
        *link.running() = Some(RunningBatch {
            started: taken,
            replies: jobs.iter().map(|job| job.reply.clone()).collect(),
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| backend.run(jobs)));
        // Dropping the replies here answers, as `Worker died.`, any job the batch left
        // unanswered (a panic drops its jobs half-way).
        *link.running() = None;
        let took = taken.elapsed();
        start.metrics.batch_ran(size, took, request_ids.as_deref());
        ran = Some(Ran { jobs: size, took });
        let exit = match outcome {
            Ok(Ok(in_backend)) => {
                // As TorchServe's WorkerThread measures it: from taking the batch to having
                // answered it, less the backend call.
                start.metrics.worker_thread_time(took.saturating_sub(in_backend));
                continue;
            }
            Ok(Err(exit)) => exit,
            Err(panic) => panicked(panic.as_ref()),
        };
        return Some(WorkerEvent::Died(start.id, exit));
    }
    log::debug!("{}: retired", start.name);
    None
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> WorkerExit {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_string());
    WorkerExit::Panicked(detail)
}
