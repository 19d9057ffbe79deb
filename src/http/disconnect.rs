//! Notices a client that hung up while its request waits for a worker.
//!
//! actix-web drops a handler's future when its client disconnects only once it next reads from or
//! writes to the connection; a handler that is awaiting a queued job does neither, so the job
//! would still run, for nobody. The connection's socket is recorded when it is accepted, and a
//! waiting handler peeks at it every [`POLL_INTERVAL`]: an orderly close (a zero-byte read) or a
//! reset means the client is gone, and dropping the wait makes the manager skip the job.

use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The accepted connection's socket. Valid while any request on that connection is being
/// handled: the connection owns the socket and outlives its handlers.
#[derive(Clone, Copy)]
struct ConnectionSocket(RawFd);

/// `HttpServer::on_connect` hook: remembers each TCP connection's socket.
pub fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<TcpStream>() {
        data.insert(ConnectionSocket(stream.as_raw_fd()));
    }
}

/// Resolves once the request's client has closed or reset its connection; never, when that
/// cannot be known (no socket was recorded).
pub async fn client_gone(request: &HttpRequest) {
    let Some(&ConnectionSocket(socket)) = request.conn_data::<ConnectionSocket>() else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        if peer_closed(socket) {
            return;
        }
    }
}

fn peer_closed(socket: RawFd) -> bool {
    let mut byte = [0u8; 1];
    match recv(socket, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        // End of stream: the client closed its side.
        Ok(0) => true,
        // A pipelined next request waiting to be read: the client is still there.
        Ok(_) => false,
        Err(Errno::EAGAIN | Errno::EINTR) => false,
        Err(_) => true,
    }
}
