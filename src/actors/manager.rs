//! One ModelManager per model version: a thin actor over its [`ModelQueue`] and its pure
//! [`WorkerPool`]. Jobs never pass through it: HTTP threads submit them to the queue and worker
//! threads take them from it. The manager keeps the pool whole: it starts workers, hears when
//! they load or die, replaces them after TorchServe's backoff, answers `Worker died.` for a batch
//! that overruns `response_timeout`, opens or closes the queue as workers come and go, and
//! publishes the model's health on a watch channel for /ping and registration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use tokio::sync::watch;

use super::model_queue::ModelQueue;
use super::pool::{ModelHealth, WorkerId, WorkerPool, WorkerState};
use super::queue::Admission;
use super::spec::BackendSpec;
use super::worker::native::NativeBackend;
use super::worker::python::PythonBackend;
use super::worker::{worker_name, WorkerEvent, WorkerHandle, WorkerStart};
use super::{ManagerError, ModelSpec};

/// Worker ids are unique across the process and start at 9000, as TorchServe's worker ports do,
/// so log lines read alike (`W-9000-resnet18_1.0`).
static NEXT_WORKER_ID: AtomicUsize = AtomicUsize::new(9000);

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
    /// The GPU it runs on; `None` on the CPU.
    pub gpu: Option<usize>,
    /// The process that runs its model.
    pub pid: u32,
}

pub struct ModelManager {
    spec: Arc<ModelSpec>,
    queue: Arc<ModelQueue>,
    pool: WorkerPool<WorkerHandle>,
    health: watch::Sender<ModelHealth>,
    /// Unregistered: takes no more jobs and starts no more workers.
    shut_down: bool,
}

impl ModelManager {
    pub fn new(
        spec: Arc<ModelSpec>,
        queue: Arc<ModelQueue>,
        (min_workers, max_workers): (usize, usize),
        health: watch::Sender<ModelHealth>,
    ) -> Self {
        let retry_window = spec.settings.max_retry_timeout;
        Self {
            spec,
            queue,
            pool: WorkerPool::new(min_workers, max_workers, retry_window),
            health,
            shut_down: false,
        }
    }

    fn name(&self, id: WorkerId) -> String {
        worker_name(id, &self.spec.name, &self.spec.version)
    }

    fn start_worker(&mut self, index: usize, ctx: &mut Context<Self>) {
        let id = NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed);
        let name = self.name(id);
        let start = WorkerStart {
            id,
            name: name.clone(),
            queue: self.queue.clone(),
            events: ctx.address().recipient(),
            metrics: self.spec.metrics.clone(),
            reports_handler_time: matches!(self.spec.backend, BackendSpec::Native { .. }),
        };
        let device = self.spec.device_for(index);
        let spec = &self.spec;
        let spawned = match &spec.backend {
            BackendSpec::Native { serialized_file, handler } => {
                let backend = NativeBackend::new(name.clone(), serialized_file.clone(), handler.clone(), spec.model_dir.clone(), device);
                WorkerHandle::spawn(start, backend)
            }
            BackendSpec::Python(python) => {
                let gpu = match device {
                    tch::Device::Cuda(gpu) => Some(gpu),
                    _ => None,
                };
                // Its share of the cores is set from the model's worker count now; workers already
                // running keep theirs (a process's pools are sized at its start) until replaced.
                let backend = PythonBackend::new(name.clone(), spec, python.clone(), gpu, self.pool.min_workers());
                WorkerHandle::spawn(start, backend)
            }
        };
        let now = Instant::now();
        match spawned {
            Ok(handle) => self.pool.add(id, index, handle, now),
            Err(e) => {
                log::error!("{name}: cannot start its thread: {e}");
                let retry = self.pool.failed_to_start(index, now);
                self.log_retry(&name, retry, now);
            }
        }
    }

    /// Starts workers for the free pool positions, up to `min_workers`.
    fn fill_pool(&mut self, ctx: &mut Context<Self>) {
        if self.shut_down {
            return;
        }
        for index in self.pool.vacant_positions() {
            self.start_worker(index, ctx);
        }
    }

    /// A worker is gone for good: it leaves the pool, is stopped (a child process at once),
    /// and is replaced after the backoff.
    fn worker_failed(&mut self, id: WorkerId, now: Instant) {
        if let Some(departure) = self.pool.remove_failed(id, now) {
            departure.handle.abort();
            self.log_retry(&self.name(id), departure.restart_in, now);
        }
    }

    fn log_retry(&self, name: &str, retry: Option<Duration>, now: Instant) {
        match retry {
            Some(delay) => log::warn!("Retry worker: {name} in {} seconds.", delay.as_secs()),
            None if self.pool.health(now).given_up => log::error!(
                "{name}: workers kept failing for {}s (maxRetryTimeoutInSec); not retried again",
                self.spec.settings.max_retry_timeout.as_secs()
            ),
            None => {}
        }
    }

    /// The periodic check: batches past `response_timeout`, loads past `startup_timeout`, and
    /// restarts that are due.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.shut_down {
            // Restarted by its supervisor while something still addressed it: stop again.
            return ctx.stop();
        }
        let now = Instant::now();
        let response_timeout = self.spec.settings.response_timeout;
        let overruns: Vec<(WorkerId, Vec<super::Reply>)> = self
            .pool
            .workers()
            .filter_map(|(id, slot)| slot.handle.take_overrun(now, response_timeout).map(|r| (id, r)))
            .collect();
        for (id, replies) in overruns {
            // As TorchServe: the batch's clients get `Worker died.`, and the worker is retired
            // (never given work again) and replaced like a dead one.
            log::error!(
                "{}: batch did not finish within {}s; retiring the worker",
                self.name(id),
                response_timeout.as_secs_f32()
            );
            for reply in replies {
                reply.send(Err(ManagerError::WorkerDied));
            }
            self.worker_failed(id, now);
        }
        let startup_timeout = self.spec.settings.startup_timeout;
        if let Some(started_before) = now.checked_sub(startup_timeout) {
            for id in self.pool.loading_since_before(started_before) {
                log::error!("{}: model did not load within {}s", self.name(id), startup_timeout.as_secs());
                self.worker_failed(id, now);
            }
        }
        if !self.shut_down {
            for index in self.pool.take_due_restarts(now) {
                self.start_worker(index, ctx);
            }
        }
        self.settle();
    }

    /// Opens or closes the queue to match the pool, and publishes the model's health. Called
    /// after every change.
    fn settle(&mut self) {
        let admission = if self.shut_down {
            Admission::Closed
        } else if self.pool.has_no_workers() {
            // No worker now and none coming: what waits would never run, so say so at once.
            Admission::NoWorkers
        } else {
            Admission::Open
        };
        if self.queue.admission() != admission {
            self.queue.set_admission(admission);
        }
        let health = self.pool.health(Instant::now());
        self.health.send_if_modified(|published| {
            let changed = *published != health;
            *published = health;
            changed
        });
    }

    /// How often to look for overruns and due restarts: a tenth of the response timeout, kept
    /// between 10 ms and 250 ms.
    fn tick_interval(&self) -> Duration {
        (self.spec.settings.response_timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}

impl Actor for ModelManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.fill_pool(ctx);
        self.settle();
        ctx.run_interval(self.tick_interval(), |manager, ctx| manager.tick(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        log::debug!("{}: model manager stopped", self.spec.label());
    }
}

impl Handler<WorkerEvent> for ModelManager {
    type Result = ();

    fn handle(&mut self, event: WorkerEvent, _ctx: &mut Context<Self>) {
        match event {
            WorkerEvent::Loaded(id) => {
                let now = Instant::now();
                let startup_timeout = self.spec.settings.startup_timeout;
                let late = self.pool.get(id).is_some_and(|slot| {
                    matches!(slot.state, WorkerState::Loading { since } if now.saturating_duration_since(since) > startup_timeout)
                });
                if late {
                    // Loaded, but after its time was up (the periodic check had not come by yet):
                    // a failed start, as TorchServe counts it.
                    log::error!("{}: model did not load within {}s", self.name(id), startup_timeout.as_secs());
                    self.worker_failed(id, now);
                } else {
                    self.pool.loaded(id);
                }
            }
            WorkerEvent::Died(id, exit) => {
                log::error!("{}: worker died: {exit}", self.name(id));
                self.worker_failed(id, Instant::now());
            }
        }
        self.settle();
    }
}

impl Handler<ScaleWorkers> for ModelManager {
    type Result = ();

    fn handle(&mut self, scale: ScaleWorkers, ctx: &mut Context<Self>) {
        if self.shut_down {
            return;
        }
        log::info!("{}: scaling to {} workers (max {})", self.spec.label(), scale.min, scale.max);
        // Workers scaled away finish the batch in hand, then exit.
        drop(self.pool.scale(scale.min, scale.max));
        self.fill_pool(ctx);
        self.settle();
    }
}

impl Handler<Shutdown> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        log::info!("{}: unregistered; retiring its workers", self.spec.label());
        self.shut_down = true;
        drop(self.pool.drain());
        self.settle();
        // Stopped, so its spec (and the unpacked archive it keeps) goes as soon as nothing
        // else addresses it; its periodic check would keep it alive for ever otherwise.
        ctx.stop();
    }
}

impl Handler<Describe> for ModelManager {
    type Result = actix::MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _ctx: &mut Context<Self>) -> Self::Result {
        let workers = self
            .pool
            .workers()
            .map(|(id, slot)| WorkerStatus {
                id,
                started_at: slot.started_at,
                ready: slot.state == WorkerState::Ready,
                gpu: match self.spec.device_for(slot.index) {
                    tch::Device::Cuda(gpu) => Some(gpu),
                    _ => None,
                },
                pid: slot.handle.pid(),
            })
            .collect();
        let (pending_jobs, remaining_capacity) = self.queue.depth();
        actix::MessageResult(ModelStatus {
            min_workers: self.pool.min_workers(),
            max_workers: self.pool.max_workers(),
            workers,
            pending_jobs,
            remaining_capacity,
        })
    }
}
