//! A model version's job queue as a pure state machine: admission, client-timeout expiry and
//! batch forming, with time passed in, so every rule is unit-tested without threads or sleeps.
//! [`super::model_queue::ModelQueue`] shares it between the HTTP threads that submit jobs and
//! the worker threads that take batches.
//!
//! Batching follows TorchServe's `Model.pollBatch`: a free worker takes the first job waiting,
//! then waits at most `max_batch_delay` (counted from that moment) for the batch to fill up to
//! `batch_size`, and sends whatever it has when the batch is full or the delay is over.
//! tserve's opportunistic batching (native models, `batch_size` 1) takes what is queued without
//! waiting, except that a worker back from a batch of several may wait briefly for its batch to
//! refill (see [`JobQueue::refill`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Job, ManagerError};
use crate::archive::Opportunistic;

/// A worker's refill wait is this share of the time its last batch took ...
const REFILL_SHARE: u32 = 16;
/// ... and never longer than this: clients on a network answer within it, and a job that
/// arrives alone waits no longer.
const MAX_REFILL_WAIT: Duration = Duration::from_millis(10);
/// Below this a refill wait is not worth it: a batch that cheap gains less from company than a
/// timed sleep and its wake-up cost.
const MIN_REFILL_WAIT: Duration = Duration::from_millis(1);

/// What the queue needs to know of its model version.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub model: String,
    pub version: String,
    /// Jobs waiting at most; one more is refused at once (503).
    pub capacity: usize,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    /// Jobs that waited longer than this are answered with an error, unrun.
    pub client_timeout: Option<Duration>,
    /// TorchServe's `useJobTicket`: a job is accepted only when a worker is free to take it
    /// at once (a worker waiting for work holds one ticket); otherwise 503 now, not a queue.
    pub use_job_ticket: bool,
    /// With `batch_size` 1: a free worker takes up to `max` queued jobs at once, without
    /// waiting for more (tserve's opportunistic batching, for native models).
    pub opportunistic: Option<Opportunistic>,
}

/// A batch a worker has just run.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub jobs: usize,
    pub took: Duration,
}

/// A worker's wait for its batch to refill: until `jobs` are queued, or until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refill {
    pub jobs: usize,
    pub until: Instant,
}

impl QueueSettings {
    /// Opportunistic batching, where it applies: a `batch_size` above 1 keeps TorchServe's meaning.
    fn opportunistic(&self) -> Option<Opportunistic> {
        self.opportunistic.filter(|_| self.batch_size == 1)
    }

    /// The batch a free worker forms: at most this many jobs, waiting at most this long for them.
    fn batch_rule(&self) -> (usize, Duration) {
        match self.opportunistic() {
            Some(opportunistic) => (opportunistic.max.max(1), Duration::ZERO),
            None => (self.batch_size, self.max_batch_delay),
        }
    }
}

/// Whether the queue takes new jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// No worker now and none coming: jobs would never run.
    NoWorkers,
    /// The model is being unregistered.
    Closed,
}

/// What a free worker should do next.
#[derive(Debug)]
pub enum Next {
    /// Run these jobs as one batch.
    Batch(Vec<Job>),
    /// A batch is forming: ask again at this instant (or when a job arrives).
    WaitUntil(Instant),
    /// The worker's batch is refilling: ask again at its `until`, or once its jobs are queued.
    Refilling(Refill),
    /// Nothing to do until a job arrives.
    Empty,
}

pub struct JobQueue {
    settings: QueueSettings,
    jobs: VecDeque<Job>,
    /// When a free worker first found jobs waiting: the batch it forms closes at this instant
    /// plus `max_batch_delay`.
    forming_since: Option<Instant>,
    admission: Admission,
    /// Workers waiting for work: parked in an empty queue or for their batch to fill.
    idle_workers: usize,
    /// Of those, how many a wake-up is already on its way to.
    woken: usize,
    /// Workers waiting for their batch to refill, by the jobs each waits for. They are not
    /// idle: a job goes to an idle worker first, and wakes these only once one's refill is due.
    refilling: Vec<usize>,
}

/// Whom a job just queued should wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Nobody,
    /// One worker waiting for work.
    Idle,
    /// The workers waiting for their batch to refill: one's refill is due.
    Refilling,
}

impl JobQueue {
    pub fn new(settings: QueueSettings) -> Self {
        Self {
            settings,
            // Not pre-allocated: the configured capacity may be far larger than ever used.
            jobs: VecDeque::new(),
            forming_since: None,
            admission: Admission::Open,
            idle_workers: 0,
            woken: 0,
            refilling: Vec::new(),
        }
    }

    /// How a worker back at `now` from the batch it `ran` waits for the next to refill, if it
    /// does. Clients that wait for their answers (most load generators, most services calling a
    /// model) send their next requests as a batch's answers reach them, one after another
    /// within a fraction of a millisecond. A worker that took the first of them at once would
    /// run it alone and leave the rest to the next free worker, so that under steady load
    /// batches alternate between one and many and a model whose batches pay runs at nearly its
    /// batch-1 rate. So a worker back from `k` jobs waits until those `k` more are queued (up to
    /// the cap), for at most a sixteenth of what its batch took (if nobody comes, at most ~6% of
    /// its time) and at most `MAX_REFILL_WAIT`. A batch of one never waits, so at low load every
    /// request still runs at once; nor does a batch too cheap for a timed wait to pay
    /// (`MIN_REFILL_WAIT`).
    pub fn refill(&self, ran: Option<Ran>, now: Instant) -> Option<Refill> {
        // With job tickets a worker that is not idle refuses clients: it may not wait.
        let opportunistic = self.settings.opportunistic().filter(|o| o.refill && !self.settings.use_job_ticket)?;
        let ran = ran.filter(|ran| ran.jobs > 1)?;
        let wait = (ran.took / REFILL_SHARE).min(MAX_REFILL_WAIT);
        (wait >= MIN_REFILL_WAIT).then(|| Refill {
            jobs: (self.jobs.len() + ran.jobs).min(opportunistic.max),
            until: saturating_later(now, wait),
        })
    }

    /// A worker starts waiting for its batch to refill to `jobs`.
    pub fn worker_waits_to_refill(&mut self, jobs: usize) {
        self.refilling.push(jobs);
    }

    /// A worker waiting for its batch to refill to `jobs` is up.
    pub fn worker_stops_refilling(&mut self, jobs: usize) {
        if let Some(index) = self.refilling.iter().position(|&waits_for| waits_for == jobs) {
            self.refilling.swap_remove(index);
        }
    }

    /// Whom the jobs just queued should wake: an idle worker no wake-up is on its way to (the
    /// wake-up counted), else the refilling workers if one's refill is now due.
    pub fn wake_for_new_jobs(&mut self) -> Wake {
        if self.wake_one() {
            Wake::Idle
        } else if self.refilling.iter().any(|&waits_for| self.jobs.len() >= waits_for) {
            Wake::Refilling
        } else {
            Wake::Nobody
        }
    }

    /// A worker starts waiting for work.
    pub fn worker_waits(&mut self) {
        self.idle_workers += 1;
    }

    /// A waiting worker wakes (to take work, or to stop, or because its batch's wait is over).
    pub fn worker_wakes(&mut self) {
        self.idle_workers = self.idle_workers.saturating_sub(1);
        self.woken = self.woken.saturating_sub(1);
    }

    /// Whether to wake a parked worker for work just queued: one is parked that no wake-up is
    /// already on its way to. Counts the wake-up. Jobs that arrive while a woken worker is still
    /// getting up wake nobody else: it takes them, or passes the wake-up on (a wake-up costs a
    /// system call, and one a request was most of the HTTP threads' futex calls).
    pub fn wake_one(&mut self) -> bool {
        let wake = self.idle_workers > self.woken;
        if wake {
            self.woken += 1;
        }
        wake
    }

    #[cfg(test)]
    pub fn idle_workers(&self) -> usize {
        self.idle_workers
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Accepts a job, or says why not. A refused job is dropped, which its client never sees:
    /// the caller answers with the error instead.
    pub fn push(&mut self, job: Job, version_named: bool) -> Result<(), ManagerError> {
        match self.admission {
            Admission::Open => {}
            Admission::NoWorkers => return Err(self.no_workers(version_named)),
            Admission::Closed => return Err(ManagerError::Stopped(self.settings.model.clone())),
        }
        // With job tickets, each waiting job must have its own idle worker (TorchServe answers
        // with its no-worker message then).
        if self.settings.use_job_ticket && self.jobs.len() >= self.idle_workers {
            return Err(self.no_workers(version_named));
        }
        if self.jobs.len() >= self.settings.capacity {
            // Callers that gave up still hold places; free them before refusing a live one.
            self.jobs.retain(|job| !job.is_abandoned());
            if self.jobs.len() >= self.settings.capacity {
                return Err(ManagerError::QueueFull {
                    model: self.settings.model.clone(),
                    version: self.settings.version.clone(),
                    capacity: self.settings.capacity,
                });
            }
        }
        self.jobs.push_back(job);
        Ok(())
    }

    /// What a free worker does at `now`: take a batch, wait for one to fill or refill, or wait
    /// for work. Jobs whose client has gone are dropped and jobs past the client timeout
    /// answered, as they come to the front, so neither ever reaches a worker.
    pub fn next_batch(&mut self, now: Instant, refill: Option<Refill>) -> Next {
        loop {
            while let Some(front) = self.jobs.pop_front() {
                if let Some(job) = self.alive(front, now) {
                    self.jobs.push_front(job);
                    break;
                }
            }
            // Before the empty queue's answer: a refilling worker is not idle (see `refilling`).
            if let Some(refill) = refill.filter(|refill| now < refill.until && self.jobs.len() < refill.jobs) {
                return Next::Refilling(refill);
            }
            if self.jobs.is_empty() {
                self.forming_since = None;
                return Next::Empty;
            }
            let (batch_size, delay) = self.settings.batch_rule();
            let deadline = saturating_later(*self.forming_since.get_or_insert(now), delay);
            if self.jobs.len() < batch_size && now < deadline {
                return Next::WaitUntil(deadline);
            }
            self.forming_since = None;
            let mut batch = Vec::with_capacity(batch_size.min(self.jobs.len()));
            while batch.len() < batch_size {
                let Some(job) = self.jobs.pop_front() else { break };
                batch.extend(self.alive(job, now));
            }
            if !batch.is_empty() {
                return Next::Batch(batch);
            }
        }
    }

    /// Puts back, at the front and in their order, jobs a worker took but never ran (its backend
    /// could not take them: a Python worker found out of step or gone while idle), so the next
    /// worker runs them first. They were admitted already, so the capacity does not apply; a
    /// queue that has closed since answers them as it answered the jobs that waited.
    pub fn put_back(&mut self, jobs: Vec<Job>) {
        match self.admission {
            Admission::Open => {
                for job in jobs.into_iter().rev() {
                    self.jobs.push_front(job);
                }
            }
            Admission::NoWorkers => {
                for job in jobs {
                    job.reply.send(Err(self.no_workers(job.version_named)));
                }
            }
            Admission::Closed => {
                for job in jobs {
                    job.reply.send(Err(ManagerError::Stopped(self.settings.model.clone())));
                }
            }
        }
    }

    /// Answers every waiting job with `error` (the model lost its workers or is going away).
    pub fn fail_all(&mut self, error: impl Fn() -> ManagerError) {
        self.forming_since = None;
        for job in self.jobs.drain(..) {
            job.reply.send(Err(error()));
        }
    }

    /// Opens or closes the queue. Closing it answers what waits.
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
        match admission {
            Admission::Open => {}
            Admission::NoWorkers => {
                let settings = self.settings.clone();
                self.fail_all(|| no_workers_error(&settings, false));
            }
            Admission::Closed => {
                let model = self.settings.model.clone();
                self.fail_all(|| ManagerError::Stopped(model.clone()));
            }
        }
    }

    pub fn admission(&self) -> Admission {
        self.admission
    }

    fn no_workers(&self, version_named: bool) -> ManagerError {
        no_workers_error(&self.settings, version_named)
    }

    /// The job, if it should still run: one whose client has gone is dropped, one past the
    /// client timeout is answered with an error.
    fn alive(&self, job: Job, now: Instant) -> Option<Job> {
        let label = || format!("{}_{}", self.settings.model, self.settings.version);
        if job.is_abandoned() {
            log::debug!("{}: dropped a job whose client has gone", label());
            return None;
        }
        let waited = now.saturating_duration_since(job.accepted_at);
        if let Some(limit) = self.settings.client_timeout.filter(|limit| waited > *limit) {
            log::warn!("{}: dropped a job that waited {waited:?} (client timeout {limit:?})", label());
            job.reply.send(Err(ManagerError::Expired {
                waited_ms: waited.as_millis(),
                limit_ms: limit.as_millis(),
            }));
            return None;
        }
        Some(job)
    }
}

/// `instant + by`, or a year on for a `by` no clock can represent (a YAML's `maxBatchDelay` is
/// any integer, and an overflow here would panic under the queue's lock).
fn saturating_later(instant: Instant, by: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    instant.checked_add(by.min(FAR)).unwrap_or(instant)
}

fn no_workers_error(settings: &QueueSettings, version_named: bool) -> ManagerError {
    ManagerError::NoWorkers {
        model: settings.model.clone(),
        version: version_named.then(|| settings.version.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::{JobResult, Prediction};
    use crate::request::InferenceRequest;
    use tokio::sync::oneshot::{error::TryRecvError, Receiver};

    fn settings(batch_size: usize, delay_ms: u64) -> QueueSettings {
        QueueSettings {
            model: "m".into(),
            version: "1.0".into(),
            capacity: 3,
            batch_size,
            max_batch_delay: Duration::from_millis(delay_ms),
            client_timeout: None,
            use_job_ticket: false,
            opportunistic: None,
        }
    }

    fn job(tag: &str, at: Instant) -> (Job, Receiver<JobResult>) {
        let (mut job, answer) = Job::new(InferenceRequest::from_body(tag.as_bytes().to_vec().into()));
        job.accepted_at = at;
        (job, answer)
    }

    fn tags(batch: &[Job]) -> Vec<String> {
        batch
            .iter()
            .map(|job| String::from_utf8_lossy(job.request.input()).into_owned())
            .collect()
    }

    fn batch(next: Next) -> Vec<Job> {
        match next {
            Next::Batch(jobs) => jobs,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn batch_of_one_goes_at_once() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 100));
        let (a, _ra) = job("a", t0);
        let (b, _rb) = job("b", t0);
        queue.push(a, false).unwrap();
        queue.push(b, false).unwrap();
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["a"]);
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["b"]);
        assert!(matches!(queue.next_batch(t0, None), Next::Empty));
    }

    #[test]
    fn a_batch_waits_for_company_at_most_the_delay_from_its_first_job() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(3, 100));
        let (a, _ra) = job("a", t0);
        queue.push(a, false).unwrap();
        let ms = Duration::from_millis;
        // The free worker finds one job at t0 + 10 ms: it may wait until t0 + 110 ms.
        match queue.next_batch(t0 + ms(10), None) {
            Next::WaitUntil(at) => assert_eq!(at, t0 + ms(110)),
            other => panic!("{other:?}"),
        }
        let (b, _rb) = job("b", t0 + ms(50));
        queue.push(b, false).unwrap();
        assert!(matches!(queue.next_batch(t0 + ms(50), None), Next::WaitUntil(at) if at == t0 + ms(110)));
        // The delay is over: whatever is there goes.
        assert_eq!(tags(&batch(queue.next_batch(t0 + ms(110), None))), ["a", "b"]);
        // The next batch's delay starts with its own first job.
        let (c, _rc) = job("c", t0 + ms(200));
        queue.push(c, false).unwrap();
        assert!(matches!(queue.next_batch(t0 + ms(200), None), Next::WaitUntil(at) if at == t0 + ms(300)));
    }

    #[test]
    fn a_full_batch_goes_before_the_delay() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(QueueSettings { capacity: 10, ..settings(2, 1000) });
        let receivers: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|tag| {
                let (job, answer) = job(tag, t0);
                queue.push(job, false).unwrap();
                answer
            })
            .collect();
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["a", "b"]);
        assert!(matches!(queue.next_batch(t0, None), Next::WaitUntil(_)), "c waits for company");
        drop(receivers);
    }

    #[test]
    fn opportunistic_batches_take_what_waits_up_to_the_cap_and_never_wait() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueSettings { capacity: 10, opportunistic: Some(Opportunistic { max: 3, refill: true }), ..settings(1, 100) });
        let (a, _a) = job("a", t0);
        q.push(a, false).unwrap();
        assert_eq!(tags(&batch(q.next_batch(t0, None))), ["a"], "alone at low load, at once");
        let mut answers = Vec::new();
        for tag in ["b", "c", "d", "e"] {
            let (j, answer) = job(tag, t0);
            q.push(j, false).unwrap();
            answers.push(answer);
        }
        assert_eq!(tags(&batch(q.next_batch(t0, None))), ["b", "c", "d"], "under load, up to the cap");
        assert_eq!(tags(&batch(q.next_batch(t0, None))), ["e"], "the rest at once, not after a delay");
        let mut exact = JobQueue::new(QueueSettings { opportunistic: Some(Opportunistic { max: 3, refill: true }), ..settings(2, 100) });
        let (f, _f) = job("f", t0);
        exact.push(f, false).unwrap();
        assert!(matches!(exact.next_batch(t0, None), Next::WaitUntil(_)), "batchSize > 1 keeps TorchServe's wait");
    }

    fn refilling(max: usize) -> QueueSettings {
        QueueSettings { capacity: 10, opportunistic: Some(Opportunistic { max, refill: true }), ..settings(1, 0) }
    }

    #[test]
    fn a_worker_back_from_a_batch_waits_briefly_for_as_many_jobs() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = JobQueue::new(refilling(8));
        // A batch of 4 that took 48 ms: wait for 4 jobs, a sixteenth of 48 ms at most.
        let refill = q.refill(Some(Ran { jobs: 4, took: ms(48) }), t0);
        assert_eq!(refill, Some(Refill { jobs: 4, until: t0 + ms(3) }));
        assert!(matches!(q.next_batch(t0, refill), Next::Refilling(Refill { until, .. }) if until == t0 + ms(3)), "not idle while empty");
        let mut answers = Vec::new();
        for (tag, wakes) in [("a", Wake::Nobody), ("b", Wake::Nobody), ("c", Wake::Nobody), ("d", Wake::Refilling)] {
            q.worker_waits_to_refill(4);
            let (j, answer) = job(tag, t0);
            q.push(j, false).unwrap();
            answers.push(answer);
            assert_eq!(q.wake_for_new_jobs(), wakes, "after {tag}");
            q.worker_stops_refilling(4);
            if tag != "d" {
                assert!(matches!(q.next_batch(t0 + ms(1), refill), Next::Refilling(_)));
            }
        }
        assert_eq!(tags(&batch(q.next_batch(t0 + ms(1), refill))), ["a", "b", "c", "d"], "refilled: at once");
        // Nobody else comes in time: whatever is there goes when the wait is over.
        let (e, _e) = job("e", t0);
        q.push(e, false).unwrap();
        assert!(matches!(q.next_batch(t0 + ms(2), refill), Next::Refilling(_)));
        assert_eq!(tags(&batch(q.next_batch(t0 + ms(3), refill))), ["e"]);
        assert!(matches!(q.next_batch(t0 + ms(3), refill), Next::Empty), "after the wait: idle");
    }

    #[test]
    fn only_a_costly_batch_of_several_refills_and_never_for_long() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let refill = |settings: QueueSettings, jobs, took| JobQueue::new(settings).refill(Some(Ran { jobs, took: ms(took) }), t0);
        assert_eq!(JobQueue::new(refilling(8)).refill(None, t0), None, "no batch yet");
        assert_eq!(refill(refilling(8), 1, 400), None, "a batch of one: low load runs at once");
        assert_eq!(refill(refilling(8), 8, 15), None, "under a millisecond's wait does not pay");
        assert_eq!(refill(refilling(8), 8, 16), Some(Refill { jobs: 8, until: t0 + ms(1) }));
        assert_eq!(refill(refilling(8), 8, 400), Some(Refill { jobs: 8, until: t0 + ms(10) }), "at most 10 ms");
        assert_eq!(refill(refilling(4), 8, 400).map(|r| r.jobs), Some(4), "never more than the cap");
        let off = QueueSettings { opportunistic: Some(Opportunistic { max: 8, refill: false }), ..refilling(8) };
        assert_eq!(refill(off, 8, 400), None, "turned off");
        assert_eq!(refill(QueueSettings { batch_size: 2, ..refilling(8) }, 8, 400), None, "TorchServe batching");
        assert_eq!(refill(QueueSettings { use_job_ticket: true, ..refilling(8) }, 8, 400), None, "job tickets");
    }

    #[test]
    fn a_refill_counts_the_jobs_already_waiting() {
        // A job came while the batch of 3 ran: the worker waits for the 3 clients it answered
        // as well, or a batch one short of theirs would repeat for as long as the load lasts.
        let t0 = Instant::now();
        let mut q = JobQueue::new(refilling(8));
        let (early, _early) = job("early", t0);
        q.push(early, false).unwrap();
        let refill = q.refill(Some(Ran { jobs: 3, took: Duration::from_millis(100) }), t0);
        assert_eq!(refill.map(|r| r.jobs), Some(4));
        let mut answers = Vec::new();
        for tag in ["a", "b"] {
            let (j, answer) = job(tag, t0);
            q.push(j, false).unwrap();
            answers.push(answer);
            assert!(matches!(q.next_batch(t0, refill), Next::Refilling(_)));
        }
        let (c, _c) = job("c", t0);
        q.push(c, false).unwrap();
        assert_eq!(tags(&batch(q.next_batch(t0, refill))), ["early", "a", "b", "c"]);
    }

    #[test]
    fn a_job_wakes_an_idle_worker_before_a_refilling_one() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(refilling(8));
        q.worker_waits_to_refill(2);
        q.worker_waits();
        let (a, _a) = job("a", t0);
        q.push(a, false).unwrap();
        assert_eq!(q.wake_for_new_jobs(), Wake::Idle);
        let (b, _b) = job("b", t0);
        q.push(b, false).unwrap();
        assert_eq!(q.wake_for_new_jobs(), Wake::Refilling, "the idle one is already getting up; a refill of 2 is due");
    }

    #[test]
    fn a_delay_past_any_clock_waits_instead_of_overflowing() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(settings(2, u64::MAX));
        let (first, _a) = job("a", t0);
        q.push(first, false).unwrap();
        assert!(matches!(q.next_batch(t0, None), Next::WaitUntil(deadline) if deadline > t0));
    }

    #[test]
    fn a_parked_worker_is_woken_once_however_many_jobs_come_before_it_is_up() {
        let mut q = JobQueue::new(settings(1, 0));
        assert!(!q.wake_one(), "nobody is parked");
        q.worker_waits();
        q.worker_waits();
        assert!(q.wake_one());
        assert!(q.wake_one());
        assert!(!q.wake_one(), "both parked workers already have a wake-up on its way");
        q.worker_wakes();
        assert!(!q.wake_one(), "the other is still getting up");
        q.worker_waits();
        assert!(q.wake_one(), "parked again: a new job wakes it");
        q.worker_wakes();
        q.worker_wakes();
        assert_eq!(q.idle_workers(), 0);
        assert!(!q.wake_one());
    }

    #[test]
    fn a_worker_up_on_its_own_leaves_the_next_job_a_wake_up() {
        // A worker whose batch wait ran out (or that woke spuriously) was not the one woken: the
        // count of wake-ups on their way never outlasts the parked workers.
        let mut q = JobQueue::new(settings(1, 0));
        q.worker_waits();
        q.worker_wakes();
        q.worker_waits();
        assert!(q.wake_one());
    }

    #[test]
    fn with_job_tickets_only_an_idle_worker_admits_a_job() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueSettings { use_job_ticket: true, ..settings(1, 0) });
        let (first, _a) = job("a", t0);
        assert!(
            matches!(q.push(first, false), Err(ManagerError::NoWorkers { .. })),
            "no worker waits: refused at once, not queued"
        );
        q.worker_waits();
        let (second, _b) = job("b", t0);
        q.push(second, false).unwrap();
        let (third, _c) = job("c", t0);
        assert!(
            matches!(q.push(third, true), Err(ManagerError::NoWorkers { version: Some(_), .. })),
            "the one idle worker's ticket is taken"
        );
        q.worker_wakes();
        assert_eq!(tags(&batch(q.next_batch(t0, None))), ["b"]);
        assert_eq!(q.idle_workers(), 0);
        q.worker_waits();
        let (fourth, _d) = job("d", t0);
        q.push(fourth, false).unwrap();
    }

    #[test]
    fn a_full_queue_refuses_at_once_but_makes_room_for_live_clients() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let mut answers = Vec::new();
        for tag in ["a", "b", "c"] {
            let (job, answer) = job(tag, t0);
            queue.push(job, false).unwrap();
            answers.push(answer);
        }
        let (d, _rd) = job("d", t0);
        let refused = queue.push(d, false).unwrap_err();
        assert!(matches!(refused, ManagerError::QueueFull { capacity: 3, .. }), "{refused}");
        // "b"'s client hangs up: its place goes to the next live job.
        drop(answers.remove(1));
        let (e, _re) = job("e", t0);
        queue.push(e, false).unwrap();
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["a"]);
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["c"]);
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["e"]);
    }

    #[test]
    fn abandoned_jobs_never_reach_a_worker() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let (a, ra) = job("a", t0);
        let (b, _rb) = job("b", t0);
        queue.push(a, false).unwrap();
        queue.push(b, false).unwrap();
        drop(ra);
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["b"]);
    }

    #[test]
    fn jobs_past_the_client_timeout_are_answered_not_run() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(QueueSettings {
            client_timeout: Some(Duration::from_millis(400)),
            ..settings(1, 0)
        });
        let (old, mut old_answer) = job("old", t0);
        let (new, _rn) = job("new", t0 + Duration::from_millis(300));
        queue.push(old, false).unwrap();
        queue.push(new, false).unwrap();
        assert_eq!(tags(&batch(queue.next_batch(t0 + Duration::from_millis(500), None))), ["new"]);
        match old_answer.try_recv() {
            Ok(Err(ManagerError::Expired { waited_ms: 500, limit_ms: 400 })) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn closing_answers_what_waits_and_refuses_more() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let (a, mut ra) = job("a", t0);
        queue.push(a, false).unwrap();
        queue.set_admission(Admission::NoWorkers);
        assert!(matches!(ra.try_recv(), Ok(Err(ManagerError::NoWorkers { version: None, .. }))));
        let (b, _rb) = job("b", t0);
        let refused = queue.push(b, true).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Model \"m\" Version 1.0\" has no worker to serve inference request. Please use scale \
             workers API to add workers. If this is a sequence inference, please check if it is \
             closed, or expired; or exceeds maxSequenceJobQueueSize"
        );
        queue.set_admission(Admission::Open);
        let (c, mut rc) = job("c", t0);
        queue.push(c, false).unwrap();
        queue.set_admission(Admission::Closed);
        assert!(matches!(rc.try_recv(), Ok(Err(ManagerError::Stopped(_)))));
        assert!(matches!(rc.try_recv(), Err(TryRecvError::Closed)));
    }

    #[test]
    fn jobs_put_back_go_first_in_their_order_even_past_the_capacity() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(2, 0));
        let mut answers = Vec::new();
        for tag in ["a", "b", "c"] {
            let (job, answer) = job(tag, t0);
            queue.push(job, false).unwrap();
            answers.push(answer);
        }
        let taken = batch(queue.next_batch(t0, None));
        assert_eq!(tags(&taken), ["a", "b"]);
        let (d, _rd) = job("d", t0);
        queue.push(d, false).unwrap();
        queue.put_back(taken);
        assert_eq!(queue.len(), 4, "a full queue still takes back what it gave out");
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["a", "b"]);
        assert_eq!(tags(&batch(queue.next_batch(t0, None))), ["c", "d"]);
    }

    #[test]
    fn jobs_put_back_into_a_closed_queue_are_answered() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let (a, mut ra) = job("a", t0);
        queue.push(a, false).unwrap();
        let taken = batch(queue.next_batch(t0, None));
        queue.set_admission(Admission::NoWorkers);
        queue.put_back(taken);
        assert!(matches!(ra.try_recv(), Ok(Err(ManagerError::NoWorkers { .. }))));
        assert!(queue.is_empty());
    }

    #[test]
    fn a_job_dropped_unanswered_answers_worker_died() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let (a, mut ra) = job("a", t0);
        queue.push(a, false).unwrap();
        drop(batch(queue.next_batch(t0, None)));
        assert!(matches!(ra.try_recv(), Ok(Err(ManagerError::WorkerDied))));
    }

    #[test]
    fn answers_reach_the_client() {
        let t0 = Instant::now();
        let mut queue = JobQueue::new(settings(1, 0));
        let (a, mut ra) = job("a", t0);
        queue.push(a, false).unwrap();
        for job in batch(queue.next_batch(t0, None)) {
            job.reply.send(Ok(Prediction::json(serde_json::json!([1]))));
        }
        assert!(matches!(ra.try_recv(), Ok(Ok(_))));
    }
}
