//! Requests written to hurt: bodies that never end, trickle in, or hide huge headers, and
//! connections that never say anything. Each gets an answer (or a closed connection) within the
//! server's deadlines, and the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helpers::{mlp_cases, TestServer};

/// The server's `host:port` for raw connections.
fn authority(server: &TestServer) -> String {
    server.base_url.trim_start_matches("http://").to_string()
}

/// Sends `head` then `body` on a fresh connection and reads what comes back, for at most
/// `limit`; the response's status line, or "" if the server closed without answering.
fn raw_exchange(server: &TestServer, head: &str, body: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(authority(server)).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    // The client has said all it will say: a server waiting for more would wait forever.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => panic!("no answer within {limit:?}: {e}; got {:?}", String::from_utf8_lossy(&answer)),
        }
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

fn still_serves(server: &TestServer) {
    let (input, _) = &mlp_cases()[0];
    assert_eq!(server.post("/predictions/mlp", input.to_string().as_bytes()).status, 200);
}

#[test]
fn a_multipart_body_that_ends_in_a_partial_boundary_is_answered() {
    let server = TestServer::start(&["mlp.mar"], "request_read_timeout=5");
    // The form's part never meets its boundary: the body ends first.
    let body = b"--B\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n[1.0, 2.0, 3.0, 4.0]\r\n";
    let head = format!(
        "POST /predictions/mlp HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let status = raw_exchange(&server, &head, body, Duration::from_secs(30));
    assert!(status.starts_with("HTTP/1.1 4"), "a client error, not a hang: {status:?}");
    still_serves(&server);
}

#[test]
fn a_chunked_form_with_a_huge_part_header_stops_at_the_size_limit() {
    let server = TestServer::start(&["mlp.mar"], "max_request_size=100000\nrequest_read_timeout=20");
    let mut stream = TcpStream::connect(authority(&server)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
        .write_all(
            b"POST /predictions/mlp HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    let header_start = b"--B\r\nContent-Disposition: form-data; name=\"data\"\r\nX-Filler: ";
    let chunk = |data: &[u8]| [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat();
    stream.write_all(&chunk(header_start)).unwrap();
    // 200 MB of one header line, far past max_request_size, sent until the server stops reading.
    let resident_before = server.resident_kib() / 1024;
    let filler = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 200 << 20 {
        if stream.write_all(&chunk(&filler)).is_err() {
            break;
        }
        sent += filler.len();
    }
    let mut answer = vec![0u8; 256];
    let read = stream.read(&mut answer).unwrap_or(0);
    let status = String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_string();
    assert!(
        status.is_empty() || status.starts_with("HTTP/1.1 4"),
        "refused (or cut off), never buffered: {status:?}"
    );
    let grown = (server.resident_kib() / 1024).saturating_sub(resident_before);
    assert!(grown < 50, "the header was not buffered: resident memory grew by {grown} MB");
    still_serves(&server);
}

#[test]
fn a_body_that_trickles_in_is_cut_off_at_the_read_deadline() {
    let server = TestServer::start(&["mlp.mar"], "request_read_timeout=2");
    let mut stream = TcpStream::connect(authority(&server)).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let body = b"[1.0, 2.0, 3.0, 4.0]";
    let head = format!("POST /predictions/mlp HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // One byte every 300 ms: the whole body would take 6 s.
    for byte in body {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buffer = [0u8; 1024];
        if let Ok(n) = stream.read(&mut buffer) {
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "cut off with 408: {answer:?}");
    assert!(answer.contains("RequestTimeoutException"), "{answer}");
    still_serves(&server);
}

#[test]
fn a_connection_that_sends_nothing_or_half_a_head_is_closed() {
    let server = TestServer::start(&["mlp.mar"], "");
    let silent = TcpStream::connect(authority(&server)).unwrap();
    let mut partial = TcpStream::connect(authority(&server)).unwrap();
    partial.write_all(b"POST /predictions/mlp HTTP/1.1\r\nHost: x\r\n").unwrap();
    for mut stream in [silent, partial] {
        // The idle limit is 5 s; a server that kept the connection would leave this read waiting.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        assert!(read.is_ok(), "closed, not left open: {read:?}");
        assert!(answer.is_empty(), "closed without an answer: {:?}", String::from_utf8_lossy(&answer));
    }
    still_serves(&server);
}
