//! A model version's [`JobQueue`], shared by the threads on both sides of it: HTTP threads submit
//! jobs, and each worker's own thread takes its next batch, waiting while there is none. This is
//! the whole data plane between HTTP and a worker: one lock, no actor message, and a thread is
//! woken only when one is parked (the manager actor keeps to control: scaling, failures,
//! timeouts).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::queue::{Admission, JobQueue, Next, QueueSettings, Ran, Refill, Wake};
use super::{Job, ManagerError};

pub struct ModelQueue {
    state: Mutex<State>,
    /// Signalled when a job arrives for a parked worker, or a worker is told to stop.
    work: Condvar,
    /// Signalled when a refilling worker's refill is due, or a worker is told to stop.
    refilled: Condvar,
}

struct State {
    queue: JobQueue,
}

/// A worker thread's stop signal, set by its manager and seen by its next `take_batch`.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl ModelQueue {
    pub fn new(settings: QueueSettings) -> Self {
        Self {
            state: Mutex::new(State {
                queue: JobQueue::new(settings),
            }),
            work: Condvar::new(),
            refilled: Condvar::new(),
        }
    }

    /// Queues a job for the next free worker; a full or closed queue refuses it at once.
    pub fn submit(&self, job: Job, version_named: bool) -> Result<(), ManagerError> {
        let wake = {
            let mut state = self.lock();
            state.queue.push(job, version_named)?;
            state.queue.wake_for_new_jobs()
        };
        self.wake(wake);
        Ok(())
    }

    /// Each wake-up comes after the lock is released: a worker woken while it is still held
    /// wakes only to wait for it, a second futex wait and wake per hand-off. None is lost: a
    /// worker counted waiting under the lock is already in `wait`, which released the lock for it.
    fn wake(&self, wake: Wake) {
        match wake {
            Wake::Nobody => {}
            Wake::Idle => self.work.notify_one(),
            // Which refilling worker's refill is due is not known to the condition variable;
            // there are at most as many as workers, and they wake once a batch.
            Wake::Refilling => self.refilled.notify_all(),
        }
    }

    /// The next batch for a worker thread, waiting as long as it takes; `None` once `stop` is
    /// set. `ran`: the batch this worker ran last, if it has just run one (its batch may
    /// refill). Blocking: only worker threads call it.
    pub fn take_batch(&self, stop: &StopFlag, ran: Option<Ran>) -> Option<Vec<Job>> {
        let mut state = self.lock();
        let refill = state.queue.refill(ran, Instant::now());
        loop {
            if stop.is_set() {
                return None;
            }
            let now = Instant::now();
            match state.queue.next_batch(now, refill) {
                Next::Batch(jobs) => {
                    // More work left: pass the wake-up on to another parked worker.
                    let pass_on = !state.queue.is_empty() && state.queue.wake_one();
                    drop(state);
                    if pass_on {
                        self.work.notify_one();
                    }
                    return Some(jobs);
                }
                Next::WaitUntil(deadline) => {
                    state.queue.worker_waits();
                    let (woken, _) = self
                        .work
                        .wait_timeout(state, deadline.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner);
                    state = woken;
                    state.queue.worker_wakes();
                }
                Next::Refilling(Refill { jobs, until }) => {
                    state.queue.worker_waits_to_refill(jobs);
                    let (woken, _) = self
                        .refilled
                        .wait_timeout(state, until.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner);
                    state = woken;
                    state.queue.worker_stops_refilling(jobs);
                }
                Next::Empty => {
                    state.queue.worker_waits();
                    state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
                    state.queue.worker_wakes();
                }
            }
        }
    }

    /// Gives back a batch a worker took but could not run; the next free worker takes it first.
    pub fn give_back(&self, jobs: Vec<Job>) {
        let wake = {
            let mut state = self.lock();
            state.queue.put_back(jobs);
            if state.queue.is_empty() { Wake::Nobody } else { state.queue.wake_for_new_jobs() }
        };
        self.wake(wake);
    }

    /// Wakes every parked worker, so those told to stop see it. Taking the lock first means a
    /// worker is either yet to look at its flag or already parked: none misses the wake-up.
    pub fn wake_all(&self) {
        drop(self.lock());
        self.work.notify_all();
        self.refilled.notify_all();
    }

    pub fn set_admission(&self, admission: Admission) {
        self.lock().queue.set_admission(admission);
    }

    pub fn admission(&self) -> Admission {
        self.lock().queue.admission()
    }

    /// Jobs waiting, and room left.
    pub fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        let waiting = state.queue.len();
        (waiting, state.queue.settings().capacity.saturating_sub(waiting))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a whole step of the queue: a panic elsewhere cannot
        // leave it half-done, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::InferenceRequest;
    use std::sync::Arc;
    use std::time::Duration;

    fn queue() -> Arc<ModelQueue> {
        Arc::new(ModelQueue::new(QueueSettings {
            model: "m".into(),
            version: "1".into(),
            capacity: 10,
            batch_size: 1,
            max_batch_delay: Duration::ZERO,
            client_timeout: None,
            use_job_ticket: false,
            opportunistic: None,
        }))
    }

    #[test]
    fn a_parked_worker_takes_a_job_submitted_later_and_stops_when_told() {
        let queue = queue();
        let stop = Arc::new(StopFlag::default());
        let worker = {
            let (queue, stop) = (queue.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut taken = 0;
                while let Some(batch) = queue.take_batch(&stop, None) {
                    taken += batch.len();
                }
                taken
            })
        };
        let (job, _answer) = Job::new(InferenceRequest::from_body("x".into()));
        queue.submit(job, false).unwrap();
        // The job leaves the queue once the worker has it.
        while queue.depth().0 > 0 {
            std::thread::yield_now();
        }
        stop.stop();
        queue.wake_all();
        assert_eq!(worker.join().unwrap(), 1);
    }
}
