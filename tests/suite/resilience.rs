//! Faults and overload, end to end: models that run too long, fail to load or are swamped; clients
//! that give up, over http and https; a stop with requests in flight; a pause of the whole
//! process. The server must answer each request correctly and
//! keep serving everything else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::helpers::{assert_close, fixture, mlp_cases, Reply, TestServer};

/// The sleepy model's input for a run of at least about `seconds` on this machine (calibrated
/// at its fastest; a loaded machine only makes it longer).
fn busy_for(seconds: f64) -> Vec<u8> {
    let calibration: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sleepy.json")).unwrap()).unwrap();
    let iterations = calibration["iterations_per_second"].as_f64().unwrap() * seconds;
    format!("[{:.1}]", iterations.round()).into_bytes()
}

/// Polls `/ping` until it answers `status`, for at most `limit`.
fn wait_for_ping(server: &TestServer, status: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.get("/ping").status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn an_overrunning_batch_gets_worker_died_and_the_worker_is_replaced() {
    let server = TestServer::start(&["sleepy.mar", "mlp.mar"], "default_response_timeout=1");
    // The model would answer 200 after 4 s: a 500 means the timeout answered first.
    let (kind, message) = server.post("/predictions/sleepy", &busy_for(4.0)).error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Worker died."));

    // The worker is retired; until its replacement has loaded (after a 1 s backoff) the model is
    // not ready, but /ping stays Healthy, as in TorchServe: the worker is inside its retry
    // window, and a liveness probe must not kill a server that is recovering.
    let ping = server.get("/ping");
    assert_eq!((ping.status, ping.json()), (200, json!({"status": "Healthy"})));
    assert_eq!(server.manage("GET", "/v1/models/sleepy").json(), json!({"name": "sleepy", "ready": false}));
    let (input, expected) = &mlp_cases()[0];
    assert_close(&server.post("/predictions/mlp", input.to_string().as_bytes()).json(), expected, 1e-5);

    let deadline = Instant::now() + Duration::from_secs(10);
    while server.manage("GET", "/v1/models/sleepy").json()["ready"] != json!(true) {
        assert!(Instant::now() < deadline, "ready again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = server.post("/predictions/sleepy", b"[0.0, 5.0]");
    assert_eq!((reply.status, reply.json()), (200, json!([0.0, 5.0])));
    let output = server.output_when(|o| o.contains("retiring the worker") && o.contains("Retry worker: W-"));
    assert!(output.contains("batch did not finish within 1s; retiring the worker"), "{output}");
    assert!(output.contains("Retry worker: W-"), "{output}");
}

#[test]
fn a_model_that_fails_to_load_is_retried_then_given_up() {
    let server = TestServer::start(&["broken.mar", "mlp.mar"], "");
    assert_eq!(server.get("/ping").status, 200, "broken is retrying: healthy, as TorchServe counts it");
    let (input, expected) = &mlp_cases()[0];
    assert_close(&server.post("/predictions/mlp", input.to_string().as_bytes()).json(), expected, 1e-5);

    // Retried with TorchServe's backoff until maxRetryTimeoutInSec (2 s in its YAML) is spent;
    // then requests are refused at once instead of waiting for a worker that will not come.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = server.output();
        if output.contains("not retried again") {
            break;
        }
        assert!(Instant::now() < deadline, "gave up retrying in time:\n{output}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = server.output_when(|o| o.contains("failed to load model"));
    assert!(output.contains("Retry worker: W-") && output.contains("in 1 seconds."), "{output}");
    assert!(output.contains("failed to load model"), "the reason is logged:\n{output}");
    let (kind, _) = server.post("/predictions/broken", b"[1.0]").error(503);
    assert_eq!(kind, "ServiceUnavailableException");
    assert!(wait_for_ping(&server, 500, Duration::from_secs(5)), "Unhealthy once recovery is given up");
    assert_eq!(server.get("/ping").json(), json!({"status": "Unhealthy"}));
}

#[test]
fn a_full_queue_answers_503_at_once_with_retry_after() {
    // jobQueueSize 1 in the archive's YAML: one job running, one queued, the next refused.
    let server = TestServer::start(&["sleepy_impatient.mar"], "");
    std::thread::scope(|scope| {
        let running = scope.spawn(|| server.post("/predictions/sleepy_impatient", &busy_for(2.0)));
        std::thread::sleep(Duration::from_millis(300));
        let queued = scope.spawn(|| server.post("/predictions/sleepy_impatient", b"[0.0]"));
        std::thread::sleep(Duration::from_millis(100));
        // Refused while the running job still has seconds to go: not waited on.
        let refused = server.post("/predictions/sleepy_impatient", b"[0.0]");
        let (kind, message) = refused.error(503);
        assert_eq!(kind, "ServiceUnavailableException");
        assert!(message.contains("queue is full"), "{message}");
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(running.join().unwrap().status, 200);
        // The queued job waited longer than clientTimeoutInMills (400 ms): dropped, not run.
        let (kind, message) = queued.join().unwrap().error(503);
        assert_eq!(kind, "ServiceUnavailableException");
        assert!(message.contains("clientTimeoutInMills"), "{message}");
    });
    assert_eq!(server.post("/predictions/sleepy_impatient", b"[0.0]").status, 200);
}

#[test]
fn with_use_job_ticket_a_request_no_worker_is_free_for_gets_503_at_once() {
    // useJobTicket in the archive's YAML, one worker: while it runs a job, the next request is
    // refused at once with TorchServe's words instead of waiting in the queue.
    let server = TestServer::start(&["sleepy_ticket.mar"], "");
    assert_eq!(server.post("/predictions/sleepy_ticket", b"[0.0]").status, 200, "an idle worker takes it");
    std::thread::scope(|scope| {
        // The long job, retried if a probe happens to hold the one ticket when it arrives.
        let running = scope.spawn(|| loop {
            let reply = server.post("/predictions/sleepy_ticket", &busy_for(3.0));
            if reply.status != 503 {
                break reply;
            }
        });
        // Probe until the long job holds the worker (on a loaded machine it may take a moment
        // to get there; a probe before that is simply served).
        let refused = loop {
            let probe = server.post("/predictions/sleepy_ticket", b"[0.0]");
            if probe.status != 200 || running.is_finished() {
                break probe;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!running.is_finished(), "a probe was refused while the worker was busy: not queued");
        let (kind, message) = refused.error(503);
        assert_eq!(kind, "ServiceUnavailableException");
        assert!(message.starts_with("Model \"sleepy_ticket\" has no worker to serve inference request."), "{message}");
        assert_eq!(running.join().unwrap().status, 200);
    });
    // Free again once the worker is back waiting (it parks a moment after its answer).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = server.post("/predictions/sleepy_ticket", b"[0.0, 1.0]");
        if reply.status == 200 {
            assert_eq!(reply.json(), json!([0.0, 1.0]));
            break;
        }
        assert!(Instant::now() < deadline, "the worker takes requests again: {}", reply.body);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_job_whose_client_disconnected_is_not_run() {
    let server = TestServer::start(&["sleepy.mar"], "");
    std::thread::scope(|scope| {
        let running = scope.spawn(|| server.post("/predictions/sleepy", &busy_for(3.0)));
        std::thread::sleep(Duration::from_millis(300));
        // This client gives up while its job is still queued behind the running one.
        let impatient = ureq::AgentBuilder::new().timeout(Duration::from_millis(300)).build();
        let gave_up = impatient.post(&server.url("/predictions/sleepy")).send_bytes(b"[7.0]");
        assert!(matches!(gave_up, Err(ureq::Error::Transport(_))), "the client timed out");
        assert_eq!(running.join().unwrap().status, 200);
    });
    // The next request runs at once, and the abandoned one never reached the model.
    let reply = server.post("/predictions/sleepy", b"[0.0]");
    assert_eq!(reply.status, 200);
    assert_the_abandoned_job_was_dropped_unrun(&server);
}

/// The server's log shows the abandoned job dropped and only the two live jobs run.
fn assert_the_abandoned_job_was_dropped_unrun(server: &TestServer) {
    server.output_when(|o| o.contains("dropped a job whose client has gone") && o.matches("ran batch of 1 ").count() >= 2);
    // Had the abandoned job run, its line would come before the last one's: give the reader a
    // moment to deliver everything, then count.
    std::thread::sleep(Duration::from_millis(300));
    let output = server.output();
    assert!(output.contains("dropped a job whose client has gone"), "{output}");
    assert_eq!(output.matches("ran batch of 1 ").count(), 2, "two jobs ran:\n{output}");
}

#[test]
fn a_job_whose_client_disconnected_is_not_run_on_https_either() {
    let (certificate, key) = crate::security::certificate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::copy(fixture("sleepy.mar"), dir.path().join("model_store/sleepy.mar")).unwrap();
    std::fs::write(dir.path().join("cert.pem"), &certificate).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let config = "inference_address=https://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\n\
                  metrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\n\
                  private_key_file=key.pem\ncertificate_file=cert.pem\ndefault_workers_per_model=1\n";
    std::fs::write(dir.path().join("config.properties"), config).unwrap();
    let args: Vec<String> = "--foreground --ncs --ts-config config.properties --model-store model_store --models sleepy.mar"
        .split(' ')
        .map(String::from)
        .collect();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    let port = server.base_url.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/predictions/sleepy");
    let tls = crate::security::tls_config(&certificate);
    let agent = ureq::AgentBuilder::new().tls_config(tls.clone()).build();
    std::thread::scope(|scope| {
        let running = scope.spawn(|| Reply::from(agent.post(&url).send_bytes(&busy_for(3.0))));
        std::thread::sleep(Duration::from_millis(300));
        // This client gives up while its job is still queued behind the running one, and
        // leaves as a well-behaved TLS client does: close_notify, then its FIN. (The server reads
        // that as a clean end of stream, not an error, so only the disconnect check can tell.)
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut session = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let mut socket = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let request = b"POST /predictions/sleepy HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n[7.0]";
        rustls::Stream::new(&mut session, &mut socket).write_all(request).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        session.send_close_notify();
        while session.wants_write() {
            session.write_tls(&mut socket).unwrap();
        }
        drop(socket);
        assert_eq!(running.join().unwrap().status, 200);
    });
    let reply = Reply::from(agent.post(&url).send_bytes(b"[0.0]"));
    assert_eq!(reply.status, 200);
    assert_the_abandoned_job_was_dropped_unrun(&server);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let mut server = TestServer::start(&["sleepy.mar"], "");
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    let in_flight = {
        let url = server.url("/predictions/sleepy");
        let body = busy_for(1.5);
        std::thread::spawn(move || Reply::from(ureq::post(&url).send_bytes(&body)))
    };
    std::thread::sleep(Duration::from_millis(400));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "the request in flight was finished: {}", reply.body);
    let status = server.wait_exit(Duration::from_secs(40)).expect("exited");
    assert_eq!(status.code(), Some(0));
    let refused = ureq::get(&server.url("/ping")).call();
    assert!(matches!(refused, Err(ureq::Error::Transport(_))), "no longer accepting");
}

#[test]
fn scaling_to_zero_answers_queued_requests_instead_of_leaving_them_waiting() {
    let server = TestServer::start(&["sleepy.mar"], "");
    std::thread::scope(|scope| {
        let running = scope.spawn(|| server.post("/predictions/sleepy", &busy_for(1.5)));
        std::thread::sleep(Duration::from_millis(300));
        let queued = scope.spawn(|| server.post("/predictions/sleepy", b"[0.0]"));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(server.manage("PUT", "/models/sleepy?min_worker=0").status, 202);
        // The queued request is answered at once; the running one finishes its batch.
        let (kind, _) = queued.join().unwrap().error(503);
        assert_eq!(kind, "ServiceUnavailableException");
        assert_eq!(running.join().unwrap().status, 200);
    });
    assert_eq!(server.post("/predictions/sleepy", b"[0.0]").error(503).0, "ServiceUnavailableException");
    assert_eq!(server.manage("PUT", "/models/sleepy?min_worker=1&synchronous=true").status, 200);
    assert_eq!(server.post("/predictions/sleepy", b"[0.0]").status, 200);
}

/// Sends one prediction for the MLP on `stream`, keeping the connection open.
fn send_prediction(stream: &mut TcpStream) {
    let (input, _) = &mlp_cases()[0];
    let body = input.to_string();
    let head = format!("POST /predictions/mlp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
}

/// Reads one response from `reader`: its status and body; `None` when the server closed the
/// connection without one.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<(u16, String)> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Resumes a stopped process when dropped, so a failing test never leaves it stopped.
struct Resume(Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_paused_server_answers_on_resume_what_it_was_sent_during_the_pause() {
    let server = TestServer::start(&["mlp.mar"], "");
    let address = server.base_url.trim_start_matches("http://").to_string();
    let connect = || {
        let stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    };
    // 64 keep-alive connections, each answered once and then idle, as a client pool holds them.
    let mut pool: Vec<(TcpStream, BufReader<TcpStream>)> = (0..64)
        .map(|_| {
            let mut stream = connect();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            send_prediction(&mut stream);
            assert_eq!(read_response(&mut reader).map(|(status, _)| status), Some(200));
            (stream, reader)
        })
        .collect();
    // And one accepted by the server that has not sent its first request yet.
    let mut fresh = connect();
    let mut fresh_reader = BufReader::new(fresh.try_clone().unwrap());
    std::thread::sleep(Duration::from_millis(300));

    // Paused for longer than actix-web's 5 s keep-alive and first-request timeouts, with every
    // request sent in full while the server cannot read it.
    let pid = Pid::from_raw(server.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let resume = Resume(pid);
    for (stream, _) in &mut pool {
        send_prediction(stream);
    }
    send_prediction(&mut fresh);
    std::thread::sleep(Duration::from_secs(6));
    drop(resume);

    let (_, expected) = &mlp_cases()[0];
    let mut answers: Vec<_> = pool.iter_mut().map(|(_, reader)| read_response(reader)).collect();
    answers.push(read_response(&mut fresh_reader));
    let unanswered = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(unanswered, 0, "connections closed without an answer: {answers:?}");
    for (status, body) in answers.into_iter().flatten() {
        assert_eq!(status, 200, "{body}");
        assert_close(&serde_json::from_str(&body).unwrap(), expected, 1e-5);
    }
    // The connections are still usable afterwards.
    let (stream, reader) = &mut pool[0];
    send_prediction(stream);
    assert_eq!(read_response(reader).map(|(status, _)| status), Some(200));
}
