//! A model version's workers as a pure state machine: which pool positions have a worker and in
//! what state, which wait for a restart and until when, and TorchServe's restart backoff. The
//! manager actor turns what it returns into timers and threads; time is passed in, so the rules
//! are unit-tested without threads, sleeps or libtorch.
//!
//! The pool is generic over the worker handle `H`: it stores handles and gives them back when a
//! worker leaves, but never calls them, so native and Python workers fit alike.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Identifies a worker, as TorchServe's `W-<port>-<model>_<version>` names do.
pub type WorkerId = usize;

/// TorchServe's restart delays in seconds (`WorkerThread.BACK_OFF`, first retry at index 1).
const BACKOFF_SECONDS: [u64; 17] = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597];

/// When to restart failed workers: TorchServe's delays (1, 1, 2, 3, 5, 8 ... s), for as long as
/// `window` after the first failure; a successful load starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: usize,
    recovery_started: Option<Instant>,
    window: Duration,
}

impl Backoff {
    pub fn new(window: Duration) -> Self {
        Self {
            step: 0,
            recovery_started: None,
            window,
        }
    }

    /// The delay before the next restart, or `None` once failures have gone on longer than the
    /// window (then nothing is restarted until the next scale or successful load).
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let started = *self.recovery_started.get_or_insert(now);
        if now.saturating_duration_since(started) > self.window {
            return None;
        }
        let delay = BACKOFF_SECONDS[self.step.min(BACKOFF_SECONDS.len() - 1)];
        self.step += 1;
        Some(Duration::from_secs(delay))
    }

    /// Workers load again: the next failure starts a new window.
    pub fn reset(&mut self) {
        (self.step, self.recovery_started) = (0, None);
    }

    /// Whether recovery was given up: failures outlasted the window.
    pub fn exhausted(&self, now: Instant) -> bool {
        self.recovery_started
            .is_some_and(|started| now.saturating_duration_since(started) > self.window)
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Loading its model since this instant.
    Loading { since: Instant },
    /// Taking batches.
    Ready,
}

/// One worker in the pool.
#[derive(Debug)]
pub struct Slot<H> {
    pub handle: H,
    /// The pool position, which fixes the worker's device; a replacement takes the same one.
    pub index: usize,
    pub state: WorkerState,
    pub started_at: chrono::DateTime<chrono::Local>,
}

/// A worker that left the pool, and what follows.
#[derive(Debug)]
pub struct Departure<H> {
    pub handle: H,
    /// When its replacement is due, if one will come.
    pub restart_in: Option<Duration>,
}

/// What the manager publishes for /ping, readiness and start-up waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelHealth {
    /// Workers with a loaded model.
    pub ready: usize,
    /// Workers loading their model.
    pub starting: usize,
    /// Workers that failed to load or died since the manager started.
    pub failures: usize,
    /// Workers the model should have.
    pub min_workers: usize,
    /// Recovery was given up: workers failed for longer than `maxRetryTimeoutInSec`.
    pub given_up: bool,
}

impl ModelHealth {
    /// Healthy for /ping, as TorchServe counts it: a worker that is starting, or failing but
    /// still inside its `maxRetryTimeoutInSec` window, counts as healthy; only once recovery is
    /// given up with fewer workers ready than the minimum is the model unhealthy. (So a
    /// liveness probe does not kill a server that is restarting a worker.)
    pub fn is_healthy(&self) -> bool {
        self.ready >= self.min_workers || !self.given_up
    }

    /// Every worker the model should have is loaded and serving.
    pub fn is_ready(&self) -> bool {
        self.ready >= self.min_workers
    }
}

pub struct WorkerPool<H> {
    workers: BTreeMap<WorkerId, Slot<H>>,
    /// Pool positions whose replacement is scheduled, and when it is due.
    restarts: BTreeMap<usize, Instant>,
    backoff: Backoff,
    min_workers: usize,
    max_workers: usize,
    failures: usize,
}

impl<H> WorkerPool<H> {
    pub fn new(min_workers: usize, max_workers: usize, retry_window: Duration) -> Self {
        Self {
            workers: BTreeMap::new(),
            restarts: BTreeMap::new(),
            backoff: Backoff::new(retry_window),
            min_workers,
            max_workers: max_workers.max(min_workers),
            failures: 0,
        }
    }

    pub fn min_workers(&self) -> usize {
        self.min_workers
    }

    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Positions below `min_workers` with neither a worker nor a restart coming: each needs a
    /// worker started now.
    pub fn vacant_positions(&self) -> Vec<usize> {
        (0..self.min_workers).filter(|&index| !self.position_taken(index)).collect()
    }

    /// Records a worker just started at `index`.
    pub fn add(&mut self, id: WorkerId, index: usize, handle: H, now: Instant) {
        self.restarts.remove(&index);
        self.workers.insert(
            id,
            Slot {
                handle,
                index,
                state: WorkerState::Loading { since: now },
                started_at: chrono::Local::now(),
            },
        );
    }

    /// The worker loaded its model. False when it is no longer in the pool.
    pub fn loaded(&mut self, id: WorkerId) -> bool {
        let Some(slot) = self.workers.get_mut(&id) else { return false };
        slot.state = WorkerState::Ready;
        self.backoff.reset();
        true
    }

    /// The worker is gone (it died, failed to load, or overran a batch): it leaves the pool and
    /// its position gets a replacement after the backoff, while the retry window lasts.
    pub fn remove_failed(&mut self, id: WorkerId, now: Instant) -> Option<Departure<H>> {
        let slot = self.workers.remove(&id)?;
        let restart_in = self.schedule_restart(slot.index, now);
        Some(Departure {
            handle: slot.handle,
            restart_in,
        })
    }

    /// A worker could not even be started at `index`: it counts as a failure, and the position
    /// is tried again after the backoff.
    pub fn failed_to_start(&mut self, index: usize, now: Instant) -> Option<Duration> {
        self.schedule_restart(index, now)
    }

    fn schedule_restart(&mut self, index: usize, now: Instant) -> Option<Duration> {
        self.failures += 1;
        if index >= self.min_workers {
            return None;
        }
        let delay = self.backoff.next_delay(now)?;
        self.restarts.insert(index, now + delay);
        Some(delay)
    }

    /// Positions whose restart is due at `now` and that still need a worker; each is
    /// taken off the schedule.
    pub fn take_due_restarts(&mut self, now: Instant) -> Vec<usize> {
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&index, _)| index)
            .collect();
        due.into_iter()
            .filter(|index| {
                self.restarts.remove(index);
                *index < self.min_workers && !self.position_taken(*index)
            })
            .collect()
    }

    /// Changes the pool's size. Returns the handles of the workers that must go (positions at
    /// `min` and above); the caller then fills [`vacant_positions`](Self::vacant_positions).
    /// An operator's scale is a fresh start for failing workers too.
    pub fn scale(&mut self, min: usize, max: usize) -> Vec<H> {
        (self.min_workers, self.max_workers) = (min, max.max(min));
        self.backoff.reset();
        self.restarts.retain(|&index, _| index < min);
        let leaving: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, slot)| slot.index >= min)
            .map(|(&id, _)| id)
            .collect();
        leaving
            .into_iter()
            .filter_map(|id| self.workers.remove(&id).map(|slot| slot.handle))
            .collect()
    }

    /// Every worker's handle, for a shutdown; nothing is restarted after it.
    pub fn drain(&mut self) -> Vec<H> {
        self.min_workers = 0;
        self.restarts.clear();
        std::mem::take(&mut self.workers).into_values().map(|slot| slot.handle).collect()
    }

    /// No worker now and none coming: nothing queued will ever run.
    pub fn has_no_workers(&self) -> bool {
        self.workers.is_empty() && self.restarts.is_empty()
    }

    pub fn get(&self, id: WorkerId) -> Option<&Slot<H>> {
        self.workers.get(&id)
    }

    pub fn workers(&self) -> impl Iterator<Item = (WorkerId, &Slot<H>)> {
        self.workers.iter().map(|(&id, slot)| (id, slot))
    }

    /// Workers still loading since before `deadline`: they have run out of start-up time.
    pub fn loading_since_before(&self, deadline: Instant) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, slot)| matches!(slot.state, WorkerState::Loading { since } if since <= deadline))
            .map(|(&id, _)| id)
            .collect()
    }

    pub fn health(&self, now: Instant) -> ModelHealth {
        ModelHealth {
            ready: self
                .workers
                .values()
                .filter(|slot| slot.state == WorkerState::Ready)
                .count(),
            starting: self
                .workers
                .values()
                .filter(|slot| matches!(slot.state, WorkerState::Loading { .. }))
                .count(),
            failures: self.failures,
            min_workers: self.min_workers,
            given_up: self.backoff.exhausted(now) && self.restarts.is_empty(),
        }
    }

    fn position_taken(&self, index: usize) -> bool {
        self.restarts.contains_key(&index) || self.workers.values().any(|slot| slot.index == index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_follows_torchserve_and_gives_up_after_the_window() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(S(10));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay(t0).unwrap().as_secs()).collect();
        assert_eq!(delays, [1, 1, 2, 3, 5]);
        assert_eq!(backoff.next_delay(t0 + S(10)), Some(S(8)), "still inside the window");
        assert_eq!(backoff.next_delay(t0 + S(11)), None, "past it");
        assert!(backoff.exhausted(t0 + S(11)));
        backoff.reset();
        assert_eq!(backoff.next_delay(t0 + S(20)), Some(S(1)), "a load starts over");
    }

    #[test]
    fn backoff_stays_at_its_longest_delay() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(S(u64::MAX / 4));
        let last = (0..30).map(|_| backoff.next_delay(t0).unwrap()).last();
        assert_eq!(last, Some(S(1597)));
    }

    fn pool(min: usize) -> (WorkerPool<&'static str>, Instant) {
        let t0 = Instant::now();
        let mut pool = WorkerPool::new(min, min, S(300));
        for (index, name) in ["w0", "w1", "w2"].into_iter().take(min).enumerate() {
            pool.add(9000 + index, index, name, t0);
        }
        (pool, t0)
    }

    #[test]
    fn a_new_pool_has_every_position_vacant() {
        let pool: WorkerPool<()> = WorkerPool::new(3, 1, S(300));
        assert_eq!(pool.vacant_positions(), [0, 1, 2]);
        assert_eq!(pool.max_workers(), 3, "max is never below min");
        assert!(pool.has_no_workers());
    }

    #[test]
    fn workers_count_as_ready_once_loaded() {
        let (mut pool, t0) = pool(2);
        assert_eq!(pool.health(t0), ModelHealth { ready: 0, starting: 2, failures: 0, min_workers: 2, given_up: false });
        assert!(pool.loaded(9000));
        assert!(!pool.health(t0).is_ready());
        assert!(pool.health(t0).is_healthy(), "starting workers count as healthy");
        assert!(pool.loaded(9001));
        assert!(pool.health(t0).is_ready());
        assert!(!pool.loaded(4242), "unknown workers are ignored");
    }

    #[test]
    fn a_dead_worker_is_replaced_at_its_position_after_the_backoff() {
        let (mut pool, t0) = pool(2);
        pool.loaded(9000);
        pool.loaded(9001);
        let gone = pool.remove_failed(9001, t0).unwrap();
        let health = pool.health(t0);
        assert!(!health.is_ready() && health.is_healthy(), "in its retry window: still healthy");
        assert_eq!((gone.handle, gone.restart_in), ("w1", Some(S(1))));
        assert!(pool.vacant_positions().is_empty(), "the restart holds the position");
        assert!(pool.take_due_restarts(t0).is_empty(), "not yet");
        assert_eq!(pool.take_due_restarts(t0 + S(1)), [1]);
        pool.add(9002, 1, "w1'", t0 + S(1));
        assert!(pool.loaded(9002));
        assert_eq!(pool.health(t0 + S(1)).failures, 1);
        assert!(pool.remove_failed(9001, t0).is_none(), "already gone");
    }

    #[test]
    fn failures_back_off_then_give_up() {
        let t0 = Instant::now();
        let mut pool = WorkerPool::new(1, 1, S(2));
        let mut now = t0;
        let mut delays = Vec::new();
        for id in 0.. {
            pool.add(id, 0, (), now);
            match pool.remove_failed(id, now).unwrap().restart_in {
                Some(delay) => {
                    delays.push(delay.as_secs());
                    now += delay;
                    assert_eq!(pool.take_due_restarts(now), [0]);
                }
                None => break,
            }
        }
        assert_eq!(delays, [1, 1, 2]);
        assert!(pool.has_no_workers(), "no worker and none coming");
        assert!(pool.health(now).given_up);
        assert!(!pool.health(now).is_healthy(), "unhealthy once recovery is given up");
        // An operator's scale starts over.
        assert!(pool.scale(1, 1).is_empty());
        assert_eq!(pool.vacant_positions(), [0]);
        assert!(!pool.health(now).given_up);
    }

    #[test]
    fn scaling_down_hands_back_the_highest_positions() {
        let (mut pool, t0) = pool(3);
        let mut leaving = pool.scale(1, 2);
        leaving.sort();
        assert_eq!(leaving, ["w1", "w2"]);
        assert_eq!((pool.min_workers(), pool.max_workers()), (1, 2));
        assert!(pool.vacant_positions().is_empty());
        assert_eq!(pool.workers().count(), 1);
        // Scaling up again fills the positions in order.
        assert!(pool.scale(3, 3).is_empty());
        assert_eq!(pool.vacant_positions(), [1, 2]);
        let _ = t0;
    }

    #[test]
    fn a_restart_for_a_position_scaled_away_never_happens() {
        let (mut pool, t0) = pool(2);
        pool.remove_failed(9001, t0).unwrap();
        pool.scale(1, 1);
        assert!(pool.take_due_restarts(t0 + S(5)).is_empty());
        assert!(pool.vacant_positions().is_empty());
    }

    #[test]
    fn workers_scaled_away_are_not_replaced_when_they_fail() {
        let t0 = Instant::now();
        let mut pool = WorkerPool::new(1, 1, S(300));
        pool.add(1, 0, (), t0);
        pool.add(2, 3, (), t0);
        assert_eq!(pool.remove_failed(2, t0).unwrap().restart_in, None);
    }

    #[test]
    fn a_worker_that_cannot_start_is_retried_like_a_dead_one() {
        let t0 = Instant::now();
        let mut pool: WorkerPool<()> = WorkerPool::new(1, 1, S(300));
        assert_eq!(pool.failed_to_start(0, t0), Some(S(1)));
        assert!(pool.vacant_positions().is_empty());
        assert_eq!(pool.take_due_restarts(t0 + S(1)), [0]);
        assert_eq!(pool.health(t0).failures, 1);
    }

    #[test]
    fn loads_that_take_too_long_are_found() {
        let (mut pool, t0) = pool(2);
        pool.loaded(9000);
        assert_eq!(pool.loading_since_before(t0), [9001]);
        assert!(pool.loading_since_before(t0 - S(1)).is_empty());
    }

    #[test]
    fn drain_hands_back_everyone_and_restarts_nothing() {
        let (mut pool, t0) = pool(2);
        pool.remove_failed(9000, t0);
        assert_eq!(pool.drain(), ["w1"]);
        assert!(pool.take_due_restarts(t0 + S(60)).is_empty());
        assert!(pool.has_no_workers());
    }
}
