//! One worker: an actor that owns a dedicated OS thread, which owns the loaded model.
//!
//! The manager sends the actor a [`RunBatch`] only while the worker is idle; the actor hands the
//! batch to its thread over a one-slot channel. The thread loads the model, runs each batch
//! (preprocess, one `forward`, postprocess) and answers every job on its own reply channel, then
//! reports back. A panic or a fatal libtorch error ends the thread: the jobs it held are dropped
//! unanswered (their callers see `Worker died.`), the actor tells the manager and stops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, Recipient};
use tch::Device;

use super::{Job, ManagerError, ModelSpec};
use crate::handlers::LoadedModel;

/// Identifies a worker, as TorchServe's `W-<port>-<model>_<version>` names do.
pub type WorkerId = usize;

/// What a worker tells its manager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerEvent {
    pub worker: WorkerId,
    pub kind: WorkerEventKind,
}

#[derive(Debug)]
pub enum WorkerEventKind {
    /// The model is loaded; the worker takes batches.
    Ready,
    /// The last batch is answered; the worker takes the next.
    Idle,
    /// The worker is gone for good; the manager replaces it.
    Died(String),
}

/// A batch for an idle worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunBatch(pub Vec<Job>);

/// Stop taking work: the manager gave up on this worker (its batch overran the response
/// timeout). Its thread finishes whatever it is stuck in and exits; it is never reused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// TorchServe's worker name, `W-<id>-<model>_<version>`, used in every log line about it.
pub fn worker_name(id: WorkerId, spec: &ModelSpec) -> String {
    format!("W-{id}-{}_{}", spec.name, spec.version)
}

/// What the worker's thread reports to its actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum ThreadEvent {
    Loaded,
    BatchDone,
    Died(String),
}

pub struct Worker {
    id: WorkerId,
    name: String,
    spec: Arc<ModelSpec>,
    device: Device,
    manager: Recipient<WorkerEvent>,
    /// Batches for the thread; dropping it tells the thread to finish.
    batches: Option<SyncSender<Vec<Job>>>,
}

impl Worker {
    pub fn new(
        id: WorkerId,
        spec: Arc<ModelSpec>,
        device: Device,
        manager: Recipient<WorkerEvent>,
    ) -> Self {
        let name = worker_name(id, &spec);
        Self {
            id,
            name,
            spec,
            device,
            manager,
            batches: None,
        }
    }

    fn report(&self, kind: WorkerEventKind) {
        self.manager.do_send(WorkerEvent {
            worker: self.id,
            kind,
        });
    }

    fn die(&mut self, reason: String, ctx: &mut Context<Self>) {
        log::error!("{}: worker died: {reason}", self.name);
        self.batches = None;
        self.report(WorkerEventKind::Died(reason));
        ctx.stop();
    }
}

/// How often an idle worker checks that its manager still exists.
const MANAGER_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A worker whose manager died belongs to nobody: it retires rather than hold a model.
        ctx.run_interval(MANAGER_CHECK_INTERVAL, |worker, ctx| {
            if !worker.manager.connected() {
                log::warn!("{}: its model manager is gone; retiring", worker.name);
                worker.batches = None;
                ctx.stop();
            }
        });
        // One slot: the manager only sends to an idle worker, so a second batch never waits here.
        let (sender, receiver) = sync_channel(1);
        let thread = WorkerThread {
            name: self.name.clone(),
            spec: self.spec.clone(),
            device: self.device,
            events: ctx.address(),
        };
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || thread.run(receiver));
        match spawned {
            Ok(_) => self.batches = Some(sender),
            Err(e) => self.die(format!("cannot start its thread: {e}"), ctx),
        }
    }
}

impl Handler<RunBatch> for Worker {
    type Result = ();

    fn handle(&mut self, RunBatch(jobs): RunBatch, ctx: &mut Context<Self>) {
        let Some(batches) = &self.batches else {
            // Dropping the jobs answers them `Worker died.`; the manager already knows.
            return;
        };
        match batches.try_send(jobs) {
            Ok(()) => {}
            Err(TrySendError::Full(jobs)) => {
                // The manager's bookkeeping sent a batch to a busy worker: a bug, not a crash.
                log::error!("{}: received a batch while busy; {} jobs failed", self.name, jobs.len());
            }
            Err(TrySendError::Disconnected(_)) => {
                self.die("its thread has exited".into(), ctx);
            }
        }
    }
}

impl Handler<Retire> for Worker {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        log::warn!("{}: retired", self.name);
        self.batches = None;
        ctx.stop();
    }
}

impl Handler<ThreadEvent> for Worker {
    type Result = ();

    fn handle(&mut self, event: ThreadEvent, ctx: &mut Context<Self>) {
        match event {
            ThreadEvent::Loaded => {
                log::info!("{}: model loaded on {:?}", self.name, self.device);
                self.report(WorkerEventKind::Ready);
            }
            ThreadEvent::BatchDone => self.report(WorkerEventKind::Idle),
            ThreadEvent::Died(reason) => self.die(reason, ctx),
        }
    }
}

/// The worker's OS thread: the only place its model is touched.
struct WorkerThread {
    name: String,
    spec: Arc<ModelSpec>,
    device: Device,
    events: Addr<Worker>,
}

impl WorkerThread {
    fn run(self, batches: Receiver<Vec<Job>>) {
        // Per-thread libtorch state: the intra-op pool size, and no autograd bookkeeping.
        tch::set_num_threads(self.spec.threads_per_worker as i32);
        let _no_grad = tch::no_grad_guard();

        let model = match catch_unwind(AssertUnwindSafe(|| self.load())) {
            Ok(Ok(model)) => model,
            Ok(Err(reason)) => return self.events.do_send(ThreadEvent::Died(reason)),
            Err(panic) => {
                return self
                    .events
                    .do_send(ThreadEvent::Died(panic_message(panic.as_ref())))
            }
        };
        self.events.do_send(ThreadEvent::Loaded);

        while let Ok(jobs) = batches.recv() {
            match catch_unwind(AssertUnwindSafe(|| self.run_batch(&model, jobs))) {
                Ok(None) => self.events.do_send(ThreadEvent::BatchDone),
                Ok(Some(fatal)) => return self.events.do_send(ThreadEvent::Died(fatal)),
                Err(panic) => {
                    return self
                        .events
                        .do_send(ThreadEvent::Died(panic_message(panic.as_ref())))
                }
            }
        }
    }

    fn load(&self) -> Result<LoadedModel, String> {
        let started = Instant::now();
        let handler = (self.spec.handler)(&self.spec.model_dir).map_err(|e| e.to_string())?;
        let model = LoadedModel::load(&self.spec.model_file, handler, self.device)
            .map_err(|e| e.to_string())?;
        log::debug!("{}: load took {:?}", self.name, started.elapsed());
        Ok(model)
    }

    /// Runs one batch and answers its jobs. Returns the reason the worker must retire, if any;
    /// the manager then answers the jobs `Worker died.`.
    fn run_batch(&self, model: &LoadedModel, jobs: Vec<Job>) -> Option<String> {
        let started = Instant::now();
        let payloads: Vec<&[u8]> = jobs.iter().map(|job| job.payload.as_ref()).collect();
        let answers = model.predict(&payloads);
        if let Some(fatal) = answers.iter().find_map(|a| a.as_ref().err().filter(|e| e.is_fatal())) {
            return Some(fatal.to_string());
        }
        let waited = jobs
            .iter()
            .map(|job| started.duration_since(job.accepted_at))
            .max()
            .unwrap_or_default();
        log::debug!(
            "{}: ran batch of {} in {:?} (oldest job waited {:?})",
            self.name,
            jobs.len(),
            started.elapsed(),
            waited
        );
        for (job, answer) in jobs.into_iter().zip(answers) {
            if let Err(e) = &answer {
                log::warn!("{}: request failed: {e}", self.name);
            }
            job.reply.send(answer.map_err(ManagerError::Model));
        }
        None
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_string());
    format!("panic on the worker thread: {detail}")
}
