//! One ModelManager per model version: it owns the bounded job queue and the worker pool.
//!
//! Jobs arrive as [`Enqueue`]; a full queue is refused at once (503), never waited on. A free
//! worker takes the first queued job and waits at most `max_batch_delay` (from that first job)
//! for up to `batch_size - 1` more, then runs them as one batch. A batch that runs longer than
//! `response_timeout` is answered `Worker died.` and its worker retired and replaced. A worker
//! that dies is replaced after TorchServe's backoff (1, 1, 2, 3, 5, 8, ... s, reset by a
//! successful load) for up to `max_retry_timeout` after the first failure. The number of ready
//! workers is published on a watch channel for /ping and start-up.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, SpawnHandle, Supervised};
use tokio::sync::watch;

use super::worker::{worker_name, Retire, RunBatch, Worker, WorkerEvent, WorkerEventKind, WorkerId};
use super::{Job, ManagerError, ModelSpec, Reply};

/// TorchServe's restart delays in seconds (`WorkerThread.BACK_OFF`, first retry at index 1).
const BACKOFF_SECONDS: [u64; 17] = [
    1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597,
];

/// Worker ids are unique across the process and start at 9000, as TorchServe's worker ports do,
/// so log lines read alike (`W-9000-resnet18_1.0`).
static NEXT_WORKER_ID: AtomicUsize = AtomicUsize::new(9000);

/// Queue one job. `Ok` means accepted: the answer comes on the job's reply channel.
#[derive(Message)]
#[rtype(result = "Result<(), ManagerError>")]
pub struct Enqueue(pub Job);

/// What the manager publishes about its workers, for /ping and start-up waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelHealth {
    /// Workers with a loaded model.
    pub ready: usize,
    /// Workers that died since the manager started (failed loads included).
    pub load_failures: usize,
    /// Workers the model should have; /ping is Unhealthy while fewer are ready.
    pub min_workers: usize,
}

/// Change the worker pool to `min` workers (the most it may grow to is `max`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ScaleWorkers {
    pub min: usize,
    pub max: usize,
}

/// Stop serving: queued jobs are refused, workers retire once their batch is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The live state of a model version, for the describe API.
#[derive(Message)]
#[rtype(result = "ModelStatus")]
pub struct Describe;

#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub spec: Arc<ModelSpec>,
    pub min_workers: usize,
    pub max_workers: usize,
    pub workers: Vec<WorkerStatus>,
    pub pending_jobs: usize,
    pub remaining_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub id: WorkerId,
    pub started_at: chrono::DateTime<chrono::Local>,
    pub ready: bool,
    pub device: tch::Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Loading,
    Idle,
    /// Idle, with a batch forming for it.
    Reserved,
    Busy,
}

struct WorkerSlot {
    addr: Addr<Worker>,
    state: WorkerState,
    started_at: chrono::DateTime<chrono::Local>,
    /// Scaled away: retires as soon as its running batch is answered.
    retiring: bool,
    /// The pool position, which fixes the worker's device; a replacement takes the same one.
    index: usize,
    /// Replies of the batch it runs, so a timeout or death can answer them.
    in_flight: Vec<Reply>,
    /// Fires when the running batch passes `response_timeout`.
    batch_timer: Option<SpawnHandle>,
}

/// Jobs gathered for a reserved worker until the batch is full or its delay is up.
struct FormingBatch {
    worker: WorkerId,
    jobs: Vec<Job>,
    deadline: Instant,
    timer: Option<SpawnHandle>,
}

pub struct ModelManager {
    spec: Arc<ModelSpec>,
    queue: VecDeque<Job>,
    workers: BTreeMap<WorkerId, WorkerSlot>,
    forming: Option<FormingBatch>,
    /// Position in BACKOFF_SECONDS for the next replacement.
    backoff_step: usize,
    /// When the current run of worker failures began; None while workers load fine.
    recovery_started: Option<Instant>,
    /// Pool positions whose replacement is scheduled but not started yet.
    pending_restarts: BTreeSet<usize>,
    health: watch::Sender<ModelHealth>,
    /// Workers wanted now (the scale API changes it).
    min_workers: usize,
    max_workers: usize,
    /// Unregistered: takes no more jobs and starts no more workers.
    shut_down: bool,
}

impl ModelManager {
    /// A manager keeping `min_workers` workers (at most `max_workers`).
    pub fn new(
        spec: Arc<ModelSpec>,
        (min_workers, max_workers): (usize, usize),
        health: watch::Sender<ModelHealth>,
    ) -> Self {
        Self {
            // Not pre-allocated: the configured capacity may be far larger than ever used.
            queue: VecDeque::new(),
            spec: spec.clone(),
            workers: BTreeMap::new(),
            forming: None,
            backoff_step: 0,
            recovery_started: None,
            pending_restarts: BTreeSet::new(),
            health,
            min_workers,
            max_workers,
            shut_down: false,
        }
    }

    fn label(&self) -> String {
        format!("{}_{}", self.spec.name, self.spec.version)
    }

    fn start_worker(&mut self, index: usize, ctx: &mut Context<Self>) {
        let id = NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed);
        let device = self.spec.device_for(index);
        let worker = Worker::new(id, self.spec.clone(), device, ctx.address().recipient());
        // A load that never finishes would hold the position forever: past the startup
        // timeout the worker counts as failed.
        ctx.run_later(self.spec.startup_timeout, move |manager, ctx| {
            let still_loading = manager
                .workers
                .get(&id)
                .is_some_and(|slot| slot.state == WorkerState::Loading);
            if still_loading {
                log::error!(
                    "{}: model did not load within {}s",
                    worker_name(id, &manager.spec),
                    manager.spec.startup_timeout.as_secs()
                );
                manager.worker_died(id, true, ctx);
            }
        });
        let slot = WorkerSlot {
            addr: worker.start(),
            state: WorkerState::Loading,
            started_at: chrono::Local::now(),
            retiring: false,
            index,
            in_flight: Vec::new(),
            batch_timer: None,
        };
        self.workers.insert(id, slot);
    }

    /// Starts workers for the free pool positions, up to `min_workers`.
    fn fill_pool(&mut self, ctx: &mut Context<Self>) {
        if self.shut_down {
            return;
        }
        for index in 0..self.min_workers {
            if !self.position_taken(index) {
                self.start_worker(index, ctx);
            }
        }
    }

    /// Whether pool position `index` has a worker, or one coming.
    fn position_taken(&self, index: usize) -> bool {
        self.pending_restarts.contains(&index)
            || self
                .workers
                .values()
                .any(|slot| slot.index == index && !slot.retiring)
    }

    /// Retires the workers at pool positions from `keep` on. An idle or loading one goes at
    /// once; a busy one finishes its batch first, so no accepted job is lost.
    fn shrink_pool(&mut self, keep: usize, ctx: &mut Context<Self>) {
        let forming_worker_leaves = self
            .forming
            .as_ref()
            .and_then(|forming| self.workers.get(&forming.worker))
            .is_some_and(|slot| slot.index >= keep);
        if forming_worker_leaves {
            self.requeue_forming_batch(ctx);
        }
        let leaving: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, slot)| slot.index >= keep)
            .map(|(&id, _)| id)
            .collect();
        for id in leaving {
            let Some(slot) = self.workers.get_mut(&id) else { continue };
            if slot.state == WorkerState::Busy {
                slot.retiring = true;
            } else if let Some(slot) = self.workers.remove(&id) {
                slot.addr.do_send(Retire);
            }
        }
    }

    fn publish_health(&self, died: bool) {
        let ready = self
            .workers
            .values()
            .filter(|slot| slot.state != WorkerState::Loading && !slot.retiring)
            .count();
        let min_workers = if self.shut_down { 0 } else { self.min_workers };
        self.health.send_if_modified(|health| {
            let before = *health;
            health.ready = ready;
            health.load_failures += usize::from(died);
            health.min_workers = min_workers;
            *health != before
        });
    }

    /// The next job worth running: jobs whose clients have gone are skipped, jobs that waited
    /// past the client timeout are answered and skipped.
    fn next_job(&mut self) -> Option<Job> {
        while let Some(job) = self.queue.pop_front() {
            if job.is_abandoned() {
                log::debug!("{}: dropped a job whose client has gone", self.label());
                continue;
            }
            let waited = job.accepted_at.elapsed();
            if let Some(limit) = self.spec.client_timeout.filter(|limit| waited > *limit) {
                log::warn!("{}: dropped a job that waited {waited:?} (client timeout {limit:?})", self.label());
                job.reply.send(Err(ManagerError::Expired {
                    waited_ms: waited.as_millis(),
                    limit_ms: limit.as_millis(),
                }));
                continue;
            }
            return Some(job);
        }
        None
    }

    /// Forms batches for free workers and sends them, as far as queue and workers allow.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        loop {
            let mut forming = match self.forming.take() {
                Some(forming) => forming,
                None => {
                    let Some(worker) = self
                        .workers
                        .iter()
                        .find(|(_, slot)| slot.state == WorkerState::Idle)
                        .map(|(&id, _)| id)
                    else {
                        return;
                    };
                    let Some(first) = self.next_job() else { return };
                    if let Some(slot) = self.workers.get_mut(&worker) {
                        slot.state = WorkerState::Reserved;
                    }
                    FormingBatch {
                        worker,
                        jobs: vec![first],
                        deadline: Instant::now() + self.spec.max_batch_delay,
                        timer: None,
                    }
                }
            };
            while forming.jobs.len() < self.spec.batch_size {
                match self.next_job() {
                    Some(job) => forming.jobs.push(job),
                    None => break,
                }
            }
            let now = Instant::now();
            if forming.jobs.len() < self.spec.batch_size && now < forming.deadline {
                // Wait for more, but no longer than what is left of the delay.
                if forming.timer.is_none() {
                    let wait = forming.deadline - now;
                    forming.timer = Some(ctx.run_later(wait, |manager, ctx| {
                        if let Some(forming) = &mut manager.forming {
                            forming.timer = None;
                        }
                        manager.dispatch(ctx);
                    }));
                }
                self.forming = Some(forming);
                return;
            }
            if let Some(timer) = forming.timer.take() {
                ctx.cancel_future(timer);
            }
            self.send_batch(forming, ctx);
        }
    }

    fn send_batch(&mut self, forming: FormingBatch, ctx: &mut Context<Self>) {
        let jobs: Vec<Job> = forming.jobs.into_iter().filter(|j| !j.is_abandoned()).collect();
        let (label, name) = (self.label(), worker_name(forming.worker, &self.spec));
        let Some(slot) = self.workers.get_mut(&forming.worker) else {
            // The worker died while its batch formed: the jobs go back to the front.
            jobs.into_iter().rev().for_each(|job| self.queue.push_front(job));
            return;
        };
        if jobs.is_empty() {
            slot.state = WorkerState::Idle;
            return;
        }
        if let Some(oldest) = jobs.iter().map(|job| job.accepted_at).min() {
            log::debug!(
                "{label}: batch of {} for {name} (oldest waited {:?})",
                jobs.len(),
                oldest.elapsed()
            );
        }
        slot.state = WorkerState::Busy;
        slot.in_flight = jobs.iter().map(|job| job.reply.clone()).collect();
        let worker = forming.worker;
        slot.batch_timer = Some(ctx.run_later(self.spec.response_timeout, move |manager, ctx| {
            manager.batch_timed_out(worker, ctx)
        }));
        slot.addr.do_send(RunBatch(jobs));
    }

    /// The worker's batch ran past `response_timeout`: its clients get `Worker died.`, as in
    /// TorchServe, and the worker is retired (its thread is never given work again) and replaced
    /// like a dead one, after the backoff.
    fn batch_timed_out(&mut self, worker: WorkerId, ctx: &mut Context<Self>) {
        let Some(slot) = self.workers.remove(&worker) else { return };
        log::error!(
            "{}: batch did not finish within {}s; retiring the worker",
            worker_name(worker, &self.spec),
            self.spec.response_timeout.as_secs_f32()
        );
        slot.addr.do_send(Retire);
        // An overrun is the batch's failure, not a failed load.
        self.remove_worker(worker, slot, false, ctx);
    }

    /// A worker is gone for good (its thread died, or its load timed out): answer what it held
    /// and replace it after the backoff.
    fn worker_died(&mut self, worker: WorkerId, retire: bool, ctx: &mut Context<Self>) {
        if self.forming.as_ref().is_some_and(|f| f.worker == worker) {
            self.requeue_forming_batch(ctx);
        }
        let Some(slot) = self.workers.remove(&worker) else { return };
        if let Some(timer) = slot.batch_timer {
            ctx.cancel_future(timer);
        }
        if retire {
            slot.addr.do_send(Retire);
        }
        self.remove_worker(worker, slot, true, ctx);
    }

    /// What follows a worker leaving the pool: its clients are answered `Worker died.`, it is
    /// replaced unless it was scaled away, and a model left without workers refuses its queue.
    fn remove_worker(&mut self, worker: WorkerId, slot: WorkerSlot, load_failure: bool, ctx: &mut Context<Self>) {
        // Health first, so a client that reads its error and then asks /ping sees the gap.
        self.publish_health(load_failure);
        fail_in_flight(&slot);
        if !slot.retiring && !self.shut_down {
            self.replace_later(worker, slot.index, ctx);
        }
        self.fail_queue_if_unserved();
        self.dispatch(ctx);
    }

    /// Puts the jobs of the batch being formed back at the front of the queue, in order.
    fn requeue_forming_batch(&mut self, ctx: &mut Context<Self>) {
        if let Some(forming) = self.forming.take() {
            if let Some(timer) = forming.timer {
                ctx.cancel_future(timer);
            }
            forming.jobs.into_iter().rev().for_each(|job| self.queue.push_front(job));
        }
    }

    /// Schedules the replacement of a dead worker with backoff, while inside the retry window.
    fn replace_later(&mut self, worker: WorkerId, index: usize, ctx: &mut Context<Self>) {
        let name = worker_name(worker, &self.spec);
        let first_failure = *self.recovery_started.get_or_insert_with(Instant::now);
        if first_failure.elapsed() > self.spec.max_retry_timeout {
            log::error!(
                "{name}: workers kept failing for {}s (maxRetryTimeoutInSec); not retried again",
                self.spec.max_retry_timeout.as_secs()
            );
            self.fail_queue_if_unserved();
            return;
        }
        let delay = BACKOFF_SECONDS[self.backoff_step.min(BACKOFF_SECONDS.len() - 1)];
        self.backoff_step += 1;
        log::warn!("Retry worker: {name} in {delay} seconds.");
        self.pending_restarts.insert(index);
        ctx.run_later(Duration::from_secs(delay), move |manager, ctx| {
            manager.pending_restarts.remove(&index);
            // Scaled down, unregistered or refilled meanwhile: then the position needs nobody.
            if !manager.shut_down && index < manager.min_workers && !manager.position_taken(index) {
                manager.start_worker(index, ctx);
            }
            manager.fail_queue_if_unserved();
        });
    }

    /// No worker now and none coming: nothing in the queue will ever run, so say so at once.
    fn fail_queue_if_unserved(&mut self) {
        if !self.has_no_workers() {
            return;
        }
        for job in self.queue.drain(..) {
            job.reply.send(Err(ManagerError::NoWorkers {
                model: self.spec.name.clone(),
                version: self.spec.version.clone(),
            }));
        }
    }

    fn has_no_workers(&self) -> bool {
        self.workers.values().all(|slot| slot.retiring) && self.pending_restarts.is_empty()
    }
}

/// Answers the jobs a worker holds with `Worker died.`.
fn fail_in_flight(slot: &WorkerSlot) {
    for reply in &slot.in_flight {
        reply.send(Err(ManagerError::WorkerDied));
    }
}

impl Actor for ModelManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Room for every job the queue can hold plus worker events, so a send waits only when
        // the queue is full anyway.
        ctx.set_mailbox_capacity(
            self.spec
                .job_queue_size
                .saturating_add(self.max_workers.saturating_mul(2))
                .saturating_add(16),
        );
        self.fill_pool(ctx);
        self.publish_health(false);
        self.dispatch(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        log::info!("{}: model manager stopped", self.label());
    }
}

/// Restarted by actix's Supervisor if it ever stops while still addressed: the queue and the
/// workers are kept; timers died with the old context, so they are re-armed here and in
/// `started`.
impl Supervised for ModelManager {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        log::warn!("{}: model manager restarting", self.label());
        // The batch is formed again. Its timer died with the old context, and that context's
        // handle must not be cancelled in the new one, where the id may mean another future.
        if let Some(forming) = self.forming.take() {
            forming.jobs.into_iter().rev().for_each(|job| self.queue.push_front(job));
        }
        for (&worker, slot) in &mut self.workers {
            match slot.state {
                WorkerState::Reserved => slot.state = WorkerState::Idle,
                WorkerState::Busy => {
                    slot.batch_timer =
                        Some(ctx.run_later(self.spec.response_timeout, move |manager, ctx| {
                            manager.batch_timed_out(worker, ctx)
                        }))
                }
                WorkerState::Loading | WorkerState::Idle => {}
            }
        }
    }
}

impl Handler<Enqueue> for ModelManager {
    type Result = Result<(), ManagerError>;

    fn handle(&mut self, Enqueue(job): Enqueue, ctx: &mut Context<Self>) -> Self::Result {
        if self.shut_down {
            return Err(ManagerError::Stopped(self.spec.name.clone()));
        }
        if self.has_no_workers() {
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
        self.dispatch(ctx);
        Ok(())
    }
}

impl Handler<WorkerEvent> for ModelManager {
    type Result = ();

    fn handle(&mut self, event: WorkerEvent, ctx: &mut Context<Self>) {
        match event.kind {
            WorkerEventKind::Ready | WorkerEventKind::Idle => {
                if let Some(slot) = self.workers.get_mut(&event.worker) {
                    if slot.state == WorkerState::Loading {
                        self.backoff_step = 0;
                        self.recovery_started = None;
                    }
                    if let Some(timer) = slot.batch_timer.take() {
                        ctx.cancel_future(timer);
                    }
                    slot.in_flight.clear();
                    slot.state = WorkerState::Idle;
                    if slot.retiring {
                        slot.addr.do_send(Retire);
                        self.workers.remove(&event.worker);
                    }
                }
                self.publish_health(false);
            }
            WorkerEventKind::Died(_) => return self.worker_died(event.worker, false, ctx),
        }
        self.dispatch(ctx);
    }
}

impl Handler<ScaleWorkers> for ModelManager {
    type Result = ();

    fn handle(&mut self, scale: ScaleWorkers, ctx: &mut Context<Self>) {
        if self.shut_down {
            return;
        }
        log::info!("{}: scaling to {} workers (max {})", self.label(), scale.min, scale.max);
        (self.min_workers, self.max_workers) = (scale.min, scale.max.max(scale.min));
        // An operator's scale is a fresh start for failing workers too.
        (self.recovery_started, self.backoff_step) = (None, 0);
        self.shrink_pool(scale.min, ctx);
        self.fill_pool(ctx);
        self.publish_health(false);
        self.fail_queue_if_unserved();
        self.dispatch(ctx);
    }
}

impl Handler<Shutdown> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        log::info!("{}: unregistered; retiring its workers", self.label());
        self.shut_down = true;
        self.shrink_pool(0, ctx);
        for job in self.queue.drain(..) {
            job.reply.send(Err(ManagerError::Stopped(self.spec.name.clone())));
        }
        self.publish_health(false);
    }
}

impl Handler<Describe> for ModelManager {
    type Result = actix::MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _ctx: &mut Context<Self>) -> Self::Result {
        let workers = self
            .workers
            .iter()
            .filter(|(_, slot)| !slot.retiring)
            .map(|(&id, slot)| WorkerStatus {
                id,
                started_at: slot.started_at,
                ready: slot.state != WorkerState::Loading,
                device: self.spec.device_for(slot.index),
            })
            .collect();
        actix::MessageResult(ModelStatus {
            spec: self.spec.clone(),
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            workers,
            pending_jobs: self.queue.len(),
            remaining_capacity: self.spec.job_queue_size.saturating_sub(self.queue.len()),
        })
    }
}
