//! Notices a client that hung up while its request waits for a worker.
//!
//! actix-web drops a handler's future when its client disconnects only once it next reads from or
//! writes to the connection; a handler that is awaiting a queued job does neither, so the job
//! would still run, for nobody. The connection's TCP socket is recorded when it is accepted
//! (under TLS too: the socket beneath the TLS stream), and a waiting handler looks at it every
//! [`POLL_INTERVAL`]: the client having closed its side (a FIN) or reset the connection means it
//! is gone, and dropping the wait makes the manager skip the job.
//!
//! The check asks the kernel whether the peer has shut down (`POLLRDHUP`) rather than reading:
//! on a TLS connection a departing client's last bytes (its `close_notify` alert) sit in the
//! socket ahead of the FIN, and a read, even a peek, would see those bytes and not the FIN.

use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The accepted connection's socket. Valid while any request on that connection is being
/// handled: the connection owns the socket and outlives its handlers.
#[derive(Clone, Copy)]
struct ConnectionSocket(RawFd);

/// `HttpServer::on_connect` hook: remembers each connection's TCP socket, plain or TLS, and
/// puts the connection under the idle watch.
pub fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    if let Some(socket) = socket_of(connection) {
        data.insert(ConnectionSocket(socket));
        super::idle::watch(socket, data);
    }
}

/// The TCP socket under an accepted connection: the stream itself, or the one a TLS stream
/// wraps (the type `bind_rustls_0_23` hands to `on_connect`).
fn socket_of(connection: &dyn Any) -> Option<RawFd> {
    if let Some(stream) = connection.downcast_ref::<TcpStream>() {
        return Some(stream.as_raw_fd());
    }
    let tls = connection.downcast_ref::<TlsStream<TcpStream>>()?;
    let (stream, _session) = tls.get_ref();
    Some(stream.as_raw_fd())
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

/// Whether the peer has shut down its side of `socket` or the connection has failed, whatever
/// data is still waiting to be read.
pub(super) fn peer_closed(socket: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: socket,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, and a zero timeout: the call only reports, never waits.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(test)]
mod tests {
    use super::peer_closed;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_close_is_seen_even_behind_unread_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!peer_closed(server.as_raw_fd()), "connected");
        // As a TLS client's close_notify: bytes the server has not read, then the FIN.
        client.write_all(b"\x15\x03\x03\x00\x02\x01\x00").unwrap();
        assert!(!peer_closed(server.as_raw_fd()), "bytes alone are not a close");
        client.shutdown(Shutdown::Write).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !peer_closed(server.as_raw_fd()) {
            assert!(std::time::Instant::now() < deadline, "the FIN was never seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
