//! One ModelManager per model version: it owns the bounded job queue and the worker pool.
//!
//! Jobs arrive as [`Enqueue`]; a full queue is refused at once (503), never waited on. Idle
//! workers get batches of up to `batch_size` queued jobs. A worker that dies is replaced after
//! TorchServe's backoff (1, 1, 2, 3, 5, 8, ... s, reset by a successful load); the number of
//! ready workers is published on a watch channel for health checks and start-up waits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message};
use tokio::sync::watch;

use super::worker::{RunBatch, Worker, WorkerEvent, WorkerEventKind, WorkerId};
use super::{Job, ManagerError, ModelSpec};

/// TorchServe's restart delays in seconds (`WorkerThread.BACK_OFF`, first retry at index 1).
const BACKOFF_SECONDS: [u64; 17] = [
    1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597,
];

/// Worker ids are unique across the process and start at 9000, as TorchServe's worker ports do,
/// so log lines read alike (`W-9000-resnet18_1.0`).
static NEXT_WORKER_ID: AtomicUsize = AtomicUsize::new(9000);

/// What the manager publishes about its workers, for /ping and start-up waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelHealth {
    /// Workers with a loaded model.
    pub ready: usize,
    /// Workers that died since the manager started (failed loads included).
    pub load_failures: usize,
}

/// Queue one job. `Ok` means accepted: the answer comes on the job's reply channel.
#[derive(Message)]
#[rtype(result = "Result<(), ManagerError>")]
pub struct Enqueue(pub Job);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Loading,
    Idle,
    Busy,
}

struct WorkerSlot {
    addr: Addr<Worker>,
    state: WorkerState,
    /// The pool position, which fixes the worker's device; a replacement takes the same one.
    index: usize,
}

pub struct ModelManager {
    spec: Arc<ModelSpec>,
    queue: VecDeque<Job>,
    workers: BTreeMap<WorkerId, WorkerSlot>,
    /// Position in BACKOFF_SECONDS for the next replacement.
    backoff_step: usize,
    health: watch::Sender<ModelHealth>,
}

impl ModelManager {
    pub fn new(spec: ModelSpec, health: watch::Sender<ModelHealth>) -> Self {
        Self {
            queue: VecDeque::with_capacity(spec.job_queue_size),
            spec: Arc::new(spec),
            workers: BTreeMap::new(),
            backoff_step: 0,
            health,
        }
    }

    fn start_worker(&mut self, index: usize, ctx: &mut Context<Self>) {
        let id = NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed);
        let device = self.spec.device_for(index);
        let worker = Worker::new(id, self.spec.clone(), device, ctx.address().recipient());
        let slot = WorkerSlot {
            addr: worker.start(),
            state: WorkerState::Loading,
            index,
        };
        self.workers.insert(id, slot);
    }

    fn publish_health(&self, died: bool) {
        let ready = self
            .workers
            .values()
            .filter(|slot| slot.state != WorkerState::Loading)
            .count();
        self.health.send_if_modified(|health| {
            let before = *health;
            health.ready = ready;
            health.load_failures += usize::from(died);
            *health != before
        });
    }

    /// Hands queued jobs to idle workers, skipping jobs whose callers have gone.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(slot) = self
                .workers
                .values_mut()
                .find(|slot| slot.state == WorkerState::Idle)
            else {
                return;
            };
            let mut batch = Vec::with_capacity(self.spec.batch_size);
            while batch.len() < self.spec.batch_size {
                match self.queue.pop_front() {
                    Some(job) if job.is_abandoned() => {
                        log::debug!("{}: dropped a job whose client has gone", self.spec.name);
                    }
                    Some(job) => batch.push(job),
                    None => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            slot.state = WorkerState::Busy;
            slot.addr.do_send(RunBatch(batch));
        }
    }

    fn replace_later(&mut self, index: usize, ctx: &mut Context<Self>) {
        let delay = BACKOFF_SECONDS[self.backoff_step.min(BACKOFF_SECONDS.len() - 1)];
        self.backoff_step += 1;
        log::info!(
            "{}_{}: Retry worker {index} in {delay} seconds.",
            self.spec.name,
            self.spec.version
        );
        ctx.run_later(Duration::from_secs(delay), move |manager, ctx| {
            manager.start_worker(index, ctx)
        });
    }
}

impl Actor for ModelManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Room for every job the queue can hold plus worker events, so a send waits only when
        // the queue is full anyway.
        ctx.set_mailbox_capacity(self.spec.job_queue_size + 2 * self.spec.workers + 16);
        for index in 0..self.spec.workers {
            self.start_worker(index, ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Jobs still queued are dropped with the queue: their callers read `Worker died.`.
        log::info!("{}_{}: model manager stopped", self.spec.name, self.spec.version);
    }
}

impl Handler<Enqueue> for ModelManager {
    type Result = Result<(), ManagerError>;

    fn handle(&mut self, Enqueue(job): Enqueue, _ctx: &mut Context<Self>) -> Self::Result {
        if self.spec.workers == 0 {
            return Err(ManagerError::NoWorkers {
                model: self.spec.name.clone(),
                version: self.spec.version.clone(),
            });
        }
        if self.queue.len() >= self.spec.job_queue_size {
            // Callers that gave up still hold places; free them before refusing a live one.
            self.queue.retain(|job| !job.is_abandoned());
            if self.queue.len() >= self.spec.job_queue_size {
                return Err(ManagerError::QueueFull {
                    model: self.spec.name.clone(),
                    version: self.spec.version.clone(),
                    capacity: self.spec.job_queue_size,
                });
            }
        }
        self.queue.push_back(job);
        self.dispatch();
        Ok(())
    }
}

impl Handler<WorkerEvent> for ModelManager {
    type Result = ();

    fn handle(&mut self, event: WorkerEvent, ctx: &mut Context<Self>) {
        let died = matches!(event.kind, WorkerEventKind::Died(_));
        match event.kind {
            WorkerEventKind::Ready | WorkerEventKind::Idle => {
                if let Some(slot) = self.workers.get_mut(&event.worker) {
                    if slot.state == WorkerState::Loading {
                        self.backoff_step = 0;
                    }
                    slot.state = WorkerState::Idle;
                }
            }
            WorkerEventKind::Died(_) => {
                if let Some(slot) = self.workers.remove(&event.worker) {
                    self.replace_later(slot.index, ctx);
                }
            }
        }
        self.publish_health(died);
        self.dispatch();
    }
}
