//! Shared test set-up: the fixture models, and a real tserve server on a free port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture folder, made by `tests/fixtures/make_models.py` with the venv's PyTorch the first
/// time a test asks (the script itself skips work that is up to date).
pub fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<PathBuf> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let out = repo_root().join("target").join("test-fixtures");
        let python = repo_root().join(".venv").join("bin").join("python");
        let status = Command::new(&python)
            .arg(repo_root().join("tests/fixtures/make_models.py"))
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup.sh)", python.display()));
        assert!(status.success(), "make_models.py failed");
        out
    })
}

/// A port free on loopback now (for a server that must be started on a known port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// A `tserve --foreground` process serving archives from a private model store.
pub struct TestServer {
    child: Child,
    pub base_url: String,
    /// The management API's base URL.
    pub management_url: String,
    /// Everything the server printed (stdout and stderr), for assertions on log lines.
    output: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

/// Config lines that put every listener (the gRPC one too) on free ports.
/// Token authorization is off, as in TorchServe's own test suites; the tests of tokens turn
/// it back on.
pub const FREE_PORTS: &str = "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\n\
     metrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\n";

impl TestServer {
    /// Serves the fixture archives `models` with one worker each, plus `config` lines.
    pub fn start(models: &[&str], config: &str) -> Self {
        Self::launch(models, models, &format!("default_workers_per_model=1\n{config}"))
    }

    /// As [`start`], without the one-worker default.
    pub fn start_with(models: &[&str], config: &str) -> Self {
        Self::launch(models, models, config)
    }

    /// As [`start_with`], with these variables in the server's environment.
    pub fn start_with_env(models: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_with_env(models, models, config, env)
    }

    /// Puts the fixture files `store_files` in a fresh model store and starts
    /// `tserve --foreground --ncs --models <models_arg>` on it.
    pub fn launch(store_files: &[&str], models_arg: &[&str], config: &str) -> Self {
        Self::launch_with_env(store_files, models_arg, config, &[])
    }

    /// As [`launch`], with these variables in the server's environment.
    pub fn launch_with_env(store_files: &[&str], models_arg: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("model_store");
        std::fs::create_dir(&store).unwrap();
        for model in store_files {
            std::fs::hard_link(fixture(model), store.join(model))
                .or_else(|_| std::fs::copy(fixture(model), store.join(model)).map(|_| ()))
                .unwrap();
        }
        let config_path = dir.path().join("config.properties");
        std::fs::write(&config_path, format!("{FREE_PORTS}{config}\n")).unwrap();
        let mut args: Vec<String> = ["--foreground", "--ncs", "--ts-config", "config.properties"]
            .map(String::from)
            .to_vec();
        args.extend(["--model-store".to_string(), "model_store".to_string()]);
        if !models_arg.is_empty() {
            args.push("--models".into());
            args.extend(models_arg.iter().map(|m| m.to_string()));
        }
        match Self::spawn_with_env(dir.path(), &args, env) {
            Ok(mut server) => {
                server._dir = Some(dir);
                server
            }
            Err((_, output)) => panic!("tserve did not bind; output:\n{output}"),
        }
    }

    /// Runs `tserve <args>` in `dir` until it has bound both listeners. If it exits first, gives
    /// back its exit code and output.
    pub fn spawn_in(dir: &Path, args: &[String]) -> Result<Self, (Option<i32>, String)> {
        Self::spawn_with_env(dir, args, &[])
    }

    /// As [`spawn_in`], with these environment variables set.
    pub fn spawn_with_env(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Self, (Option<i32>, String)> {
        let mut command = tserve_command(dir);
        command.envs(env.iter().copied()).args(args);
        Self::spawn(command)
    }

    /// Runs `command` (tserve, or whatever starts it: an entrypoint, the wheel's launcher) until
    /// the server has bound both listeners; as [`spawn_in`] otherwise.
    pub fn spawn(mut command: Command) -> Result<Self, (Option<i32>, String)> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tserve");
        let output = Arc::new(Mutex::new(String::new()));
        let (bound_tx, bound_rx) = mpsc::channel();
        collect_lines(child.stdout.take().unwrap(), output.clone(), Some(bound_tx));
        collect_lines(child.stderr.take().unwrap(), output.clone(), None);
        let mut urls = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while urls.len() < 2 {
            match bound_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) => urls.push(url),
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        let output = output.lock().unwrap().clone();
                        return Err((status.code(), output));
                    }
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        return Err((None, output.lock().unwrap().clone()));
                    }
                }
            }
        }
        Ok(Self {
            child,
            management_url: urls.pop().unwrap_or_default(),
            base_url: urls.pop().unwrap_or_default(),
            output,
            _dir: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The metrics API's base URL, from its bind line.
    pub fn metrics_url(&self) -> String {
        let output = self.output_when(|o| o.contains("Metrics API bound to "));
        output
            .lines()
            .find_map(|line| line.strip_prefix("Metrics API bound to "))
            .unwrap_or_else(|| panic!("no metrics listener:\n{output}"))
            .trim()
            .to_string()
    }

    /// The gRPC inference listener's `host:port`, from its bind line.
    pub fn grpc_address(&self) -> String {
        self.grpc_api_address("Inference")
    }

    /// A gRPC listener's `host:port` (`api`: `Inference` or `Management`), from its bind line.
    pub fn grpc_api_address(&self, api: &str) -> String {
        let prefix = format!("gRPC {api} API bound to ");
        let output = self.output_when(|o| o.contains(&prefix));
        output
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|url| url.split_once("://"))
            .map(|(_, address)| address.trim().to_string())
            .unwrap_or_else(|| panic!("no gRPC {api} listener:\n{output}"))
    }

    /// The folder the server runs in (its logs are under `logs/`).
    pub fn dir(&self) -> &Path {
        self._dir.as_ref().map(|d| d.path()).unwrap_or_else(|| Path::new("."))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The server's output once `ready` holds for it, or after 10 s whatever there is. Log lines
    /// come through reader threads, so they can arrive a little after the HTTP answer that
    /// followed them.
    pub fn output_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.output();
            if ready(&output) || std::time::Instant::now() > deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        Reply::from(ureq::post(&self.url(path)).send_bytes(body))
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(ureq::get(&self.url(path)).call())
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        Reply::from(ureq::request(method, &self.url(path)).send_bytes(body))
    }

    /// The model store of a server started with [`TestServer::launch`].
    pub fn store_path(&self) -> std::path::PathBuf {
        self._dir.as_ref().map(|d| d.path().join("model_store")).unwrap_or_default()
    }

    /// A request to the management API.
    pub fn manage(&self, method: &str, path: &str) -> Reply {
        Reply::from(ureq::request(method, &format!("{}{path}", self.management_url)).call())
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(40))
    }

    /// The process id, for signalling it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident memory in KiB (`VmRSS` in /proc).
    pub fn resident_kib(&self) -> u64 {
        resident_kib(self.pid()).unwrap()
    }

    /// [`resident_kib`] once two readings 200 ms apart agree within 64 KiB (or after 5 s): a
    /// server that has just bound its listeners, or just added a worker, is still starting threads.
    pub fn settled_resident_kib(&self) -> u64 {
        settled(|| self.resident_kib())
    }

    /// What one step of scaling costs in memory: the settled resident KiB with the workers `model`
    /// has now, and what scaling it to `workers` (synchronously) adds once settled again.
    pub fn resident_kib_scaling(&self, model: &str, workers: usize) -> (u64, u64) {
        let before = self.settled_resident_kib();
        let reply = self.manage("PUT", &format!("/models/{model}?min_worker={workers}&synchronous=true"));
        assert_eq!(reply.status, 200, "scaling {model} to {workers}: {}", reply.body);
        (before, self.settled_resident_kib().saturating_sub(before))
    }

    /// Waits for the process to exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory in KiB (`VmRSS` in /proc); `None` once it is gone.
pub fn resident_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// A reading once two readings 200 ms apart agree within 64 (or after 5 s).
pub fn settled(read: impl Fn() -> u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        if now.abs_diff(last) < 64 || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The tserve binary, run in `dir` with `TMPDIR` there too, so its pid file and any
/// `./config.properties` lookup are private to the test.
pub fn tserve_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tserve"));
    command
        .current_dir(dir)
        .env("TMPDIR", dir)
        .env_remove("TS_CONFIG_FILE")
        // Python workers' thread pools follow these when set; a test that wants them sets them.
        .env_remove("OMP_NUM_THREADS")
        .env_remove("MKL_NUM_THREADS")
        .env_remove("OPENBLAS_NUM_THREADS")
        // Benchmarks set TSERVE_TEST_LOG=info: per-batch debug lines would cost them dearly.
        .env(
            "RUST_LOG",
            std::env::var("TSERVE_TEST_LOG").unwrap_or_else(|_| "info,tserve::actors=debug".into()),
        );
    command
}

/// Copies a child's output into `output`; sends each base URL as its bind line shows
/// (inference first, then management).
pub fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
    output: Arc<Mutex<String>>,
    bound: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let url = line
                .strip_prefix("Inference API bound to ")
                .or_else(|| line.strip_prefix("Management API bound to "));
            // (Servers that listen with TLS print https:// addresses; the tests that use them
            // build their own clients.)
            if let (Some(sender), Some(url)) = (&bound, url) {
                let _ = sender.send(url.trim().to_string());
            }
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// An HTTP answer, whatever its status.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts TorchServe's error shape and returns its `type` and `message`.
    pub fn error(&self, status: u16) -> (String, String) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let json = self.json();
        assert_eq!(json["code"], status, "{json}");
        (
            json["type"].as_str().unwrap().to_string(),
            json["message"].as_str().unwrap().to_string(),
        )
    }
}

impl From<Result<ureq::Response, ureq::Error>> for Reply {
    fn from(result: Result<ureq::Response, ureq::Error>) -> Self {
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("request failed: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| response.header(&name).map(|v| (name.clone(), v.to_string())))
            .collect();
        let body = response.into_string().unwrap_or_default();
        Self {
            status,
            headers,
            body,
        }
    }
}

/// Asserts two nested JSON arrays of numbers agree within `tolerance`.
pub fn assert_close(actual: &Value, expected: &Value, tolerance: f64) {
    match (actual, expected) {
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{actual} vs {expected}");
            a.iter().zip(e).for_each(|(a, e)| assert_close(a, e, tolerance));
        }
        (Value::Object(a), Value::Object(e)) => {
            assert!(a.keys().eq(e.keys()), "{actual} vs {expected}");
            a.values().zip(e.values()).for_each(|(a, e)| assert_close(a, e, tolerance));
        }
        (a, e) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() <= tolerance, "{a} vs {e} (tolerance {tolerance})");
        }
    }
}

/// The MLP's reference cases: inputs and the outputs PyTorch computed for them.
pub fn mlp_cases() -> Vec<(Value, Value)> {
    let text = std::fs::read_to_string(fixture("mlp_expected.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .map(|case| (case["input"].clone(), case["output"].clone()))
        .collect()
}
