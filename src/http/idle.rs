//! Closes connections left idle, counting only the time the server ran.
//!
//! actix-web's own limits, its keep-alive timeout and the deadline for a first request's head,
//! are timers its dispatcher looks at *before* it reads the socket. When the process is paused
//! (SIGSTOP, a debugger, a frozen VM or a cgroup freeze) and resumed, every such timer has
//! expired: a keep-alive connection whose next request arrived during the pause was closed
//! unanswered, and a new connection's first request was answered 408. Both timers are off (see
//! `bind` in the parent module) and this watch takes their place.
//!
//! Each connection is looked at once every [`TICK`]; one that has had no request in flight,
//! none started, and no byte waiting in its socket to be read or sent, at more than
//! [`IDLE_TICKS`] looks in a row, is shut down. The ticks are counted, not the clock: a pause
//! is one late tick (`MissedTickBehavior::Delay`), not a burst of them, and a request sent
//! during it waits in the socket, so its connection is kept and the request answered. A client
//! that connects and sends nothing, or only part of a head, is still cut off after about
//! [`IDLE_LIMIT`], as actix-web did (with a close rather than a 408).

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tokio::time::MissedTickBehavior;

/// How often a connection is looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long a connection may stay idle: actix-web's keep-alive and head defaults.
pub const IDLE_LIMIT: Duration = Duration::from_secs(5);
const IDLE_TICKS: u32 = (IDLE_LIMIT.as_secs() / TICK.as_secs()) as u32;

/// What the watch knows of one connection. Everything touching it runs on the connection's own
/// actix worker thread, so plain cells do.
#[derive(Default)]
struct Activity {
    /// Requests being handled now.
    in_flight: Cell<u32>,
    /// Requests started so far.
    started: Cell<u64>,
    /// The connection is gone: its socket number may already belong to another one.
    closed: Cell<bool>,
}

/// The connection's hold on its watch, in its connection data: dropped with the connection,
/// on the same thread as the watch, so the watch never acts on a socket number after its
/// connection has let it go.
struct Watched(Rc<Activity>);

impl Drop for Watched {
    fn drop(&mut self) {
        self.0.closed.set(true);
    }
}

/// Puts a newly accepted connection under the watch. Called from `on_connect`, on the worker
/// thread that will serve the connection.
pub fn watch(socket: RawFd, data: &mut Extensions) {
    let activity = Rc::new(Activity::default());
    data.insert(Watched(activity.clone()));
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await; // The first tick is at once.
        let mut idle = 0u32;
        let mut started = activity.started.get();
        loop {
            ticks.tick().await;
            if activity.closed.get() {
                return;
            }
            let busy = activity.in_flight.get() > 0 || activity.started.get() != started || has_bytes_queued(socket);
            started = activity.started.get();
            idle = if busy { 0 } else { idle + 1 };
            if idle > IDLE_TICKS {
                // The dispatcher reads end-of-stream and drops the connection; the client sees
                // it closed, as after actix-web's keep-alive timeout.
                let _ = nix::sys::socket::shutdown(socket, nix::sys::socket::Shutdown::Both);
                return;
            }
        }
    });
}

/// Middleware: tells the watch that a request is being handled, until its response is made
/// (writing it out shows as bytes queued in the socket).
pub async fn track(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let _busy = request.conn_data::<Watched>().map(|watched| Busy::new(&watched.0));
    next.call(request).await
}

/// One request in flight; dropped when it is answered or abandoned.
struct Busy(Rc<Activity>);

impl Busy {
    fn new(activity: &Rc<Activity>) -> Self {
        activity.in_flight.set(activity.in_flight.get() + 1);
        activity.started.set(activity.started.get() + 1);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get().saturating_sub(1));
    }
}

/// Whether bytes wait in the socket: received and not yet read, or written and not yet sent
/// (or acknowledged), as while a slow client reads a large answer.
fn has_bytes_queued(socket: RawFd) -> bool {
    [libc::FIONREAD, libc::TIOCOUTQ].into_iter().any(|request| {
        let mut count: libc::c_int = 0;
        // SAFETY: both requests write one `int` to the pointer given.
        let done = unsafe { libc::ioctl(socket, request, &mut count) };
        done == 0 && count > 0
    })
}
