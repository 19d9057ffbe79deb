//! Replicas behind a real load balancer: tserve servers behind nginx (Debian's), configured as
//! `deploy/nginx/nginx.conf`. Requests spread over the replicas; one killed with SIGKILL under
//! load costs at most the requests it held; a rolling restart with SIGTERM under load loses
//! nothing; every replica answers the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{assert_close, free_port, mlp_cases, repo_root, TestServer};

/// Clients sending predictions at once: at most this many can be in a replica when it dies.
const CLIENTS: usize = 6;

/// Each replica's `server` line ends with these (as deploy/nginx/nginx.conf says): one failure
/// takes a replica out of the rotation for 2 s, after which nginx tries it again.
const SERVER_PARAMETERS: &str = "max_fails=1 fail_timeout=2s";

/// nginx in front of `replicas`, from deploy/nginx/nginx.conf, on a free port of its own.
struct Balancer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(replicas: &[String]) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("nginx is needed (Debian: apt-get install nginx-light; scripts/test.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["logs", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let port = free_port();
        let servers: String = replicas
            .iter()
            .map(|url| format!("server {} {SERVER_PARAMETERS};\n        ", url.trim_start_matches("http://")))
            .collect();
        let template = std::fs::read_to_string(repo_root().join("deploy/nginx/nginx.conf")).unwrap();
        let config = template.replace("@LISTEN@", &format!("127.0.0.1:{port}")).replace("@SERVERS@", &servers);
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            // Not inherited: nginx's workers would hold the test's output open.
            .stderr(std::fs::File::create(dir.path().join("logs/stderr.log")).unwrap())
            .spawn()
            .expect("start nginx");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "nginx exited; {}", error_log(dir.path()));
            assert!(Instant::now() < deadline, "nginx did not listen; {}", error_log(dir.path()));
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, url, _dir: dir }
    }
}

fn error_log(dir: &Path) -> String {
    ["logs/stderr.log", "logs/error.log"].map(|log| std::fs::read_to_string(dir.join(log)).unwrap_or_default()).join("")
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// What the clients saw: answers per replica (nginx's `X-Upstream`), and failures.
#[derive(Default)]
struct Tally {
    by_replica: BTreeMap<String, usize>,
    wrong: usize,
    failed: Vec<String>,
}

impl Tally {
    fn answered(&self) -> usize {
        self.by_replica.values().sum::<usize>() + self.wrong
    }

    fn answered_by(&self, url: &str) -> usize {
        self.by_replica.get(url.trim_start_matches("http://")).copied().unwrap_or(0)
    }
}

/// Counts, and the distinct failures with how often each happened (not every one of them).
impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in &self.failed {
            *failures.entry(failure.as_str()).or_default() += 1;
        }
        write!(f, "answered by {:?}, {} wrong, failed: {failures:?}", self.by_replica, self.wrong)
    }
}

/// Clients sending the MLP's reference cases through `url` until `stop`; each answer is checked
/// against PyTorch's output.
fn load(url: &str, stop: Arc<AtomicBool>) -> (Arc<Mutex<Tally>>, Vec<std::thread::JoinHandle<()>>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let cases: Arc<Vec<(Value, Value)>> = Arc::new(mlp_cases());
    let handles = (0..CLIENTS)
        .map(|client| {
            let (url, stop, tally, cases) = (format!("{url}/predictions/mlp"), stop.clone(), tally.clone(), cases.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let (input, expected) = &cases[i % cases.len()];
                    i += 1;
                    let outcome = agent.post(&url).send_string(&input.to_string());
                    let mut tally = tally.lock().unwrap();
                    match outcome {
                        Ok(response) => {
                            let replica = response.header("X-Upstream").unwrap_or("?").to_string();
                            let body: Value = response.into_json().unwrap_or(Value::Null);
                            let right = std::panic::catch_unwind(|| assert_close(&body, expected, 1e-5)).is_ok();
                            if right {
                                *tally.by_replica.entry(replica).or_default() += 1;
                            } else {
                                tally.wrong += 1;
                            }
                        }
                        Err(e) => tally.failed.push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    (tally, handles)
}

fn finish(stop: &AtomicBool, handles: Vec<std::thread::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().unwrap();
    }
}

fn replica_on(port: Option<u16>) -> TestServer {
    let address = port.map_or_else(String::new, |port| format!("inference_address=http://127.0.0.1:{port}\n"));
    TestServer::start(&["mlp.mar"], &address)
}

fn port_of(server: &TestServer) -> u16 {
    server.base_url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn requests_spread_and_a_killed_replica_costs_at_most_what_it_held() {
    let replicas: Vec<TestServer> = (0..3).map(|_| replica_on(None)).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.base_url.clone()).collect();
    let balancer = Balancer::start(&urls);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handles) = load(&balancer.url, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = std::mem::take(&mut *tally.lock().unwrap());

    let mut replicas = replicas;
    let killed = replicas.remove(1);
    let killed_address = killed.base_url.trim_start_matches("http://").to_string();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed.pid() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    finish(&stop, handles);
    let after_kill = std::mem::take(&mut *tally.lock().unwrap());
    drop(killed);

    println!("before the kill: {before_kill:?}\nafter: {} answered, {} failed", after_kill.answered(), after_kill.failed.len());
    for url in &urls {
        let address = url.trim_start_matches("http://");
        let share = before_kill.answered_by(address);
        assert!(share * 6 >= before_kill.answered(), "{address} took {share} of {}: {before_kill:?}", before_kill.answered());
    }
    assert_eq!((before_kill.wrong, before_kill.failed.len()), (0, 0), "{before_kill:?}");
    assert_eq!(after_kill.wrong, 0);
    assert!(after_kill.failed.len() <= CLIENTS, "more failures than requests in flight: {after_kill:?}");
    assert!(after_kill.answered() > 50, "{after_kill:?}");
    let survivors: usize = replicas.iter().map(|r| after_kill.answered_by(&r.base_url)).sum();
    assert!(survivors + 2 * CLIENTS >= after_kill.answered(), "the killed {killed_address} still answered: {after_kill:?}");
}

#[test]
fn a_rolling_restart_under_load_loses_nothing() {
    let mut replicas: Vec<Option<TestServer>> = (0..2).map(|_| Some(replica_on(None))).collect();
    let urls: Vec<String> = replicas.iter().flatten().map(|r| r.base_url.clone()).collect();
    let balancer = Balancer::start(&urls);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handles) = load(&balancer.url, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    for slot in replicas.iter_mut() {
        // SIGTERM: the replica drains (answers what it holds) and exits; its successor starts on
        // the same port, and the next replica goes only once nginx sends to the new one, as a
        // Deployment's rolling update waits for a new pod's readiness.
        let old = slot.take().unwrap();
        let port = port_of(&old);
        assert_eq!(old.stop().and_then(|s| s.code()), Some(0), "a drained replica exits 0");
        let new = replica_on(Some(port));
        let seen = tally.lock().unwrap().answered_by(&new.base_url);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tally.lock().unwrap().answered_by(&new.base_url) < seen + 10 {
            assert!(Instant::now() < deadline, "nginx never sent to the restarted replica: {:?}", tally.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        *slot = Some(new);
    }
    std::thread::sleep(Duration::from_millis(500));
    finish(&stop, handles);
    let tally = tally.lock().unwrap();
    println!("rolling restart: {tally:?}");
    assert!(tally.answered() > 100, "{tally:?}");
    assert_eq!((tally.wrong, tally.failed.len()), (0, 0), "{tally:?}");
}
