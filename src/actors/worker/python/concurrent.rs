//! TorchServe's asynchronous Python workers (model config `asyncCommunication: true`): the
//! process runs TorchServe's `AsyncService` (`--async`), whose coroutine handler takes requests
//! while others are in flight and answers them in any order. Batches are sent as the queue gives
//! them, without waiting; a reader thread routes each reply frame to its request by id (parts
//! of a streamed answer included), and a watchdog answers `Worker died.` for a request that has
//! waited `responseTimeout` since it was sent or since its last part.

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{codec, prediction};
use crate::actors::{Job, ManagerError};

/// How often the watchdog looks for requests past their response timeout.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The requests a worker has sent and not yet had answered.
pub(super) struct InFlight {
    name: String,
    waiting: Mutex<HashMap<String, Waiting>>,
    /// False once the connection has ended: the worker takes no more.
    alive: AtomicBool,
    response_timeout: Duration,
}

struct Waiting {
    job: Job,
    /// When it was sent, or when its last part came.
    last_sign: Instant,
}

impl InFlight {
    /// Starts routing the replies that `reader` brings; the threads end with the connection.
    pub fn start(name: String, reader: BufReader<UnixStream>, response_timeout: Duration) -> std::io::Result<Arc<Self>> {
        let in_flight = Arc::new(Self {
            name: name.clone(),
            waiting: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            response_timeout,
        });
        let routes = in_flight.clone();
        std::thread::Builder::new()
            .name(format!("{name}-replies"))
            .spawn(move || routes.read_replies(reader))?;
        let watch = in_flight.clone();
        std::thread::Builder::new()
            .name(format!("{name}-watchdog"))
            .spawn(move || watch.expire_overdue())?;
        Ok(in_flight)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Registers jobs about to be sent, so their replies find them.
    pub fn add(&self, jobs: Vec<Job>) {
        let now = Instant::now();
        let mut waiting = self.lock();
        for job in jobs {
            waiting.insert(job.request.id.clone(), Waiting { job, last_sign: now });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_replies(&self, mut reader: BufReader<UnixStream>) {
        loop {
            match codec::read_response(&mut reader) {
                Ok(response) => self.route(response),
                Err(e) => {
                    log::info!("{}: the asynchronous Python worker's connection ended: {e}", self.name);
                    break;
                }
            }
        }
        self.alive.store(false, Ordering::Release);
        // Dropping the jobs still waiting answers them `Worker died.`.
        self.lock().clear();
    }

    /// One reply frame to each request it names: an error, a part, or the answer. A frame for a
    /// request no longer waiting (answered by the watchdog) is dropped.
    fn route(&self, response: codec::Response) {
        for frame in response.predictions {
            let id = frame.request_id.clone();
            if response.code != 200 {
                if let Some(waiting) = self.lock().remove(&id) {
                    let status = if response.code == 413 { 507 } else { u16::try_from(response.code).unwrap_or(500) };
                    waiting.job.reply.send(Err(ManagerError::Backend { status, message: response.message.clone() }));
                }
            } else if frame.is_intermediate() {
                let reply = {
                    let mut waiting = self.lock();
                    waiting.get_mut(&id).map(|w| {
                        w.last_sign = Instant::now();
                        w.job.reply.clone()
                    })
                };
                // Outside the lock: it waits while the client is slow.
                if let Some(reply) = reply {
                    reply.send_part(prediction(frame));
                }
            } else if let Some(waiting) = self.lock().remove(&id) {
                waiting.job.reply.send(Ok(prediction(frame)));
            }
        }
    }

    fn expire_overdue(&self) {
        while self.is_alive() {
            std::thread::sleep(WATCH_EVERY);
            let now = Instant::now();
            let overdue: Vec<Waiting> = {
                let mut waiting = self.lock();
                let ids: Vec<String> = waiting
                    .iter()
                    .filter(|(_, w)| now.saturating_duration_since(w.last_sign) > self.response_timeout)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| waiting.remove(id)).collect()
            };
            for waiting in overdue {
                log::warn!(
                    "{}: request {} had no answer within the response timeout ({:?})",
                    self.name,
                    waiting.job.request.id,
                    self.response_timeout
                );
                waiting.job.reply.send(Err(ManagerError::WorkerDied));
            }
        }
    }
}
