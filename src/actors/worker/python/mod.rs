//! The Python backend: a worker whose model runs in a child process of TorchServe's own Python
//! backend (`ts/model_service_worker.py` from the `torchserve` package), driven by tserve as
//! TorchServe's Java frontend drives it. Eager models and custom handlers run there with
//! TorchServe's exact handler semantics.
//!
//! The worker's thread starts the process, waits for its `Torch worker started.` line, connects
//! to its Unix socket, sends the Load command, and then sends each batch as one Inference frame
//! and reads the answer. The process's stdout and stderr become log lines under the worker's
//! name. If the process dies, its batch's clients get `Worker died.` (507 when it was killed by
//! SIGKILL, the OOM killer's signal, as TorchServe answers), and the manager replaces the worker.

mod codec;
mod output;

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Backend, ChildPid, WorkerExit};
use crate::actors::{Job, ManagerError, PythonSpec};
use crate::handlers::ModelError;
use crate::metrics::Metrics;
use crate::request::{Body, Prediction};

/// How long the process may take, once started, to accept the connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a process whose connection broke may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub struct PythonBackend {
    name: String,
    model_name: String,
    model_dir: PathBuf,
    batch_size: usize,
    gpu: Option<usize>,
    spec: PythonSpec,
    /// Where the metrics the handler prints go.
    metrics: Arc<Metrics>,
    child: Option<Child>,
    connection: Option<Connection>,
}

struct Connection {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
}

impl PythonBackend {
    pub fn new(
        name: String,
        model_name: String,
        model_dir: PathBuf,
        batch_size: usize,
        gpu: Option<usize>,
        spec: PythonSpec,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name,
            model_name,
            model_dir,
            batch_size,
            gpu,
            spec,
            metrics,
            child: None,
            connection: None,
        }
    }

    /// Starts `model_service_worker.py` in the model's folder, with TorchServe's environment.
    fn spawn(&self, socket: &Path) -> std::io::Result<Child> {
        let mut python_path = vec![self.model_dir.display().to_string()];
        if let Some((file, _)) = self.spec.handler.split_once(':') {
            if let Some((dir, _)) = file.rsplit_once('/') {
                python_path.push(dir.to_string());
            }
        }
        if let Ok(existing) = std::env::var("PYTHONPATH") {
            python_path.push(existing);
        }
        let mut command = Command::new(&self.spec.python);
        command
            .arg(&self.spec.worker_script)
            .args(["--sock-type", "unix", "--sock-name"])
            .arg(socket)
            .arg("--metrics-config")
            .arg(&self.spec.metrics_config)
            .current_dir(&self.model_dir)
            .env("PYTHONPATH", python_path.join(":"))
            .env("TS_DECODE_INPUT_REQUEST", self.spec.decode_input_request.to_string())
            .env("TS_IPEX_ENABLE", "false")
            .env("TS_IPEX_GPU_ENABLE", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. The child
        // dies with the thread that started it (this worker's), so no worker process outlives
        // its worker or the server.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        command.spawn()
    }

    fn load_failed(&self, message: impl Into<String>) -> WorkerExit {
        WorkerExit::LoadFailed(ModelError::Load {
            path: self.model_dir.display().to_string(),
            message: message.into(),
        })
    }

    /// The connection broke or the process ended mid-batch: answers the batch as TorchServe
    /// does (507 for a process killed by SIGKILL, else `Worker died.`) and says why.
    fn process_failed(&mut self, jobs: Vec<Job>, error: std::io::Error) -> WorkerExit {
        self.connection = None;
        let status = self.child.as_mut().and_then(|child| wait_briefly(child, EXIT_GRACE));
        let killed = status.is_some_and(|s| s.signal() == Some(9) || s.code() == Some(137));
        for job in jobs {
            if killed {
                job.reply.send(Err(ManagerError::Backend {
                    status: 507,
                    message: "Worker died.".into(),
                }));
            }
            // Otherwise dropping the job answers `Worker died.` (500).
        }
        let ended = match status {
            Some(status) => format!("the Python worker process exited ({status})"),
            None => format!("the Python worker's connection broke: {error}"),
        };
        WorkerExit::ProcessEnded(ended)
    }

    fn answer(&self, jobs: Vec<Job>, response: codec::Response) {
        if response.code != 200 {
            // One answer for the whole batch, as TorchServe's frontend sends it; it maps the
            // worker's 413 to 507.
            let status = match response.code {
                413 => 507,
                code => u16::try_from(code).unwrap_or(500),
            };
            log::warn!("{}: batch failed: {} {}", self.name, status, response.message);
            for job in jobs {
                job.reply.send(Err(ManagerError::Backend {
                    status,
                    message: response.message.clone(),
                }));
            }
            return;
        }
        let mut predictions = response.predictions;
        for job in jobs {
            let Some(position) = predictions.iter().position(|p| p.request_id == job.request.id) else {
                job.reply.send(Err(ManagerError::Backend {
                    status: 503,
                    message: "number of batch response mismatched".into(),
                }));
                continue;
            };
            let frame = predictions.swap_remove(position);
            job.reply.send(Ok(Prediction {
                body: Body::Raw(Bytes::from(frame.body)),
                status: u16::try_from(frame.status).unwrap_or(200),
                content_type: Some(frame.content_type).filter(|t| !t.is_empty()),
                headers: frame.headers,
            }));
        }
    }
}

impl Backend for PythonBackend {
    fn load(&mut self, child_pid: &ChildPid) -> Result<(), WorkerExit> {
        let started = Instant::now();
        let socket = socket_path(&self.name);
        let _ = std::fs::remove_file(&socket);
        let mut child = self
            .spawn(&socket)
            .map_err(|e| self.load_failed(format!("cannot start {}: {e}", self.spec.python.display())))?;
        child_pid.set(child.id());
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        if let Some(stdout) = child.stdout.take() {
            output::forward(stdout, format!("{}-stdout", self.name), output::Stream::Stdout, Some(started_tx), self.metrics.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            output::forward(stderr, format!("{}-stderr", self.name), output::Stream::Stderr, None, self.metrics.clone());
        }
        self.child = Some(child);
        // Returns once the start line is seen, or when stdout closes (the process has ended).
        if started_rx.recv().is_err() {
            let status = self.child.as_mut().and_then(|child| wait_briefly(child, EXIT_GRACE));
            let status = status.map_or_else(|| "is unresponsive".to_string(), |s| format!("exited ({s})"));
            return Err(self.load_failed(format!("the Python worker {status} before it started; its output is in the log")));
        }
        let stream = connect(&socket, CONNECT_DEADLINE).map_err(|e| self.load_failed(format!("cannot connect to the Python worker: {e}")))?;
        let _ = std::fs::remove_file(&socket);
        let reader = stream.try_clone().map_err(|e| self.load_failed(e.to_string()))?;
        let mut connection = Connection {
            reader: BufReader::new(reader),
            writer: BufWriter::new(stream),
        };
        let model_dir = self.model_dir.display().to_string();
        let load = codec::encode_load(&codec::LoadCommand {
            model_name: &self.model_name,
            model_dir: &model_dir,
            batch_size: self.batch_size,
            handler: &self.spec.handler,
            gpu: self.gpu,
            envelope: &self.spec.envelope,
            limit_max_image_pixels: self.spec.limit_max_image_pixels,
        });
        let response = codec::send(&mut connection.writer, &load)
            .and_then(|()| codec::read_response(&mut connection.reader))
            .map_err(|e| self.load_failed(format!("the Python worker failed while loading: {e}")))?;
        if response.code != 200 {
            return Err(self.load_failed(format!("{} {}", response.code, response.message)));
        }
        log::info!("{}: model loaded by Python worker pid {} in {:?}", self.name, child_pid_of(&self.child), started.elapsed());
        self.connection = Some(connection);
        Ok(())
    }

    fn run(&mut self, jobs: Vec<Job>) -> Result<Duration, WorkerExit> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(WorkerExit::ProcessEnded("no connection to the Python worker".into()));
        };
        let frame = codec::encode_inference(jobs.iter().map(|job| &job.request));
        // The backend call is the round trip to the process: encoding the frame before it and
        // answering the jobs after it are the worker thread's own time.
        let sent = Instant::now();
        let response = codec::send(&mut connection.writer, &frame).and_then(|()| codec::read_response(&mut connection.reader));
        let in_backend = sent.elapsed();
        match response {
            Ok(response) => {
                self.answer(jobs, response);
                Ok(in_backend)
            }
            Err(error) => Err(self.process_failed(jobs, error)),
        }
    }
}

impl Drop for PythonBackend {
    /// The worker is done: its process goes with it (TorchServe kills it with SIGKILL too).
    fn drop(&mut self) {
        self.connection = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn child_pid_of(child: &Option<Child>) -> u32 {
    child.as_ref().map_or(0, Child::id)
}

/// The worker's socket: `<tmp>/.tserve-<server pid>/.ts.sock.<worker id>` (TorchServe's worker
/// wants a name ending in `.<number>`), in a folder only this user can enter.
fn socket_path(worker_name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(".tserve-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    // The worker id is the second field of `W-<id>-<model>_<version>`.
    let id = worker_name.split('-').nth(1).unwrap_or("0");
    dir.join(format!(".ts.sock.{id}"))
}

fn connect(socket: &Path, deadline: Duration) -> std::io::Result<UnixStream> {
    let until = Instant::now() + deadline;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The child's exit status, waiting at most `grace`; a child still running then is killed.
fn wait_briefly(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}
