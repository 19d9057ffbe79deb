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
//! A worker whose replies get out of step with its requests ([`step`]) is retired the same way,
//! so one handler can never hand a later client an answer meant for another.
//!
//! Each process gets its share of the cores for its thread pools (`OMP_NUM_THREADS` ...), as
//! native workers do, unless the user sized them in tserve's environment.

mod codec;
mod concurrent;
mod output;
mod step;

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::native::{cores, threads_per_worker};
use super::{Backend, ChildPid, WorkerExit};
use crate::actors::{Job, ManagerError, ModelSpec, PythonSpec};
use crate::handlers::ModelError;
use crate::metrics::Metrics;
use crate::request::{Body, Prediction};

/// How long the process may take, once started, to accept the connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a process whose connection broke may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The variables that size a Python worker's thread pools: OpenMP's (libtorch's intra-op pool),
/// MKL's and OpenBLAS's (BLAS calls, NumPy's too).
const THREAD_VARIABLES: [&str; 3] = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"];

pub struct PythonBackend {
    name: String,
    model_name: String,
    model_dir: PathBuf,
    batch_size: usize,
    gpu: Option<usize>,
    spec: PythonSpec,
    /// The model's worker count when this worker was started, which sets its share of the cores.
    workers: usize,
    /// Where the metrics the handler prints go.
    metrics: Arc<Metrics>,
    child: Option<Child>,
    connection: Option<Connection>,
    /// `asyncCommunication`: the requests in flight, and the connection's writing end.
    concurrent: Option<(Arc<concurrent::InFlight>, BufWriter<UnixStream>)>,
    response_timeout: Duration,
}

struct Connection {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
}

impl PythonBackend {
    /// A worker of `model`, one of `workers` the model has now.
    pub fn new(name: String, model: &ModelSpec, spec: PythonSpec, gpu: Option<usize>, workers: usize) -> Self {
        Self {
            name,
            model_name: model.name.clone(),
            model_dir: model.model_dir.clone(),
            batch_size: model.settings.batch_size,
            gpu,
            spec,
            workers,
            metrics: model.metrics.metrics().clone(),
            child: None,
            connection: None,
            concurrent: None,
            response_timeout: model.settings.response_timeout,
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
            .args(self.spec.async_communication.then_some("--async"))
            .current_dir(&self.model_dir)
            .env("PYTHONPATH", python_path.join(":"))
            .env("TS_DECODE_INPUT_REQUEST", self.spec.decode_input_request.to_string())
            .env("TS_IPEX_ENABLE", "false")
            .env("TS_IPEX_GPU_ENABLE", "false")
            .envs(thread_env(threads_per_worker(cores(), self.workers), |name| std::env::var_os(name).is_some()))
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
            job.reply.send(Ok(prediction(predictions.swap_remove(position))));
        }
    }

    /// Hands a streaming response on: each intermediate frame to its request's client (waiting
    /// while that client is slow), each last one as its request's answer. Gives back the jobs
    /// still waiting for more.
    fn forward(&self, jobs: Vec<Job>, response: codec::Response) -> Vec<Job> {
        let mut waiting = jobs;
        for frame in response.predictions {
            let Some(position) = waiting.iter().position(|job| job.request.id == frame.request_id) else {
                continue;
            };
            if frame.is_intermediate() {
                // A client that has gone gets nothing more; its handler runs on to the end, since
                // its remaining replies must still be read to keep the connection in step.
                waiting[position].reply.send_part(prediction(frame));
            } else {
                waiting.swap_remove(position).reply.send(Ok(prediction(frame)));
            }
        }
        waiting
    }

    /// Answers the batch whose reply showed the worker out of step, which is then retired: a
    /// request with a final reply of its own in a successful response gets it; every other gets
    /// a 500 saying why, since its answer, if one comes, is behind replies that are never read.
    fn answer_out_of_step(&self, jobs: Vec<Job>, response: codec::Response, why: &step::OutOfStep) {
        log::error!("{}: {why}; retiring the worker", self.name);
        let message = "The Python worker's replies got out of step with its requests; the worker is replaced";
        let mut predictions = if response.code == 200 { response.predictions } else { Vec::new() };
        for job in jobs {
            let own = predictions
                .iter()
                .position(|p| p.request_id == job.request.id && !p.is_intermediate());
            match own {
                Some(position) => job.reply.send(Ok(prediction(predictions.swap_remove(position)))),
                None => job.reply.send(Err(ManagerError::Backend {
                    status: 500,
                    message: message.into(),
                })),
            }
        }
    }
}

/// A request's answer, from its frame.
fn prediction(frame: codec::PredictionFrame) -> Prediction {
    Prediction {
        body: Body::Raw(Bytes::from(frame.body)),
        status: u16::try_from(frame.status).unwrap_or(200),
        content_type: Some(frame.content_type).filter(|t| !t.is_empty()),
        headers: frame.headers,
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
        if self.spec.async_communication {
            let Connection { reader, writer } = connection;
            let in_flight = concurrent::InFlight::start(self.name.clone(), reader, self.response_timeout)
                .map_err(|e| self.load_failed(format!("cannot start the reply reader: {e}")))?;
            self.concurrent = Some((in_flight, writer));
        } else {
            self.connection = Some(connection);
        }
        Ok(())
    }

    fn run(&mut self, jobs: Vec<Job>) -> Result<Duration, WorkerExit> {
        if let Some((in_flight, writer)) = self.concurrent.as_mut() {
            // Sent and left in flight: the reader answers them as their replies come.
            let frame = codec::encode_inference(jobs.iter().map(|job| &job.request));
            in_flight.add(jobs);
            return match codec::send(writer, &frame) {
                Ok(()) => Ok(Duration::ZERO),
                Err(error) => Err(WorkerExit::ProcessEnded(format!("the Python worker's connection broke: {error}"))),
            };
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(WorkerExit::ProcessEnded("no connection to the Python worker".into()));
        };
        let frame = codec::encode_inference(jobs.iter().map(|job| &job.request));
        // The backend call is the round trip to the process: encoding the frame before it and
        // answering the jobs after it are the worker thread's own time.
        let sent = Instant::now();
        if let Err(error) = codec::send(&mut connection.writer, &frame) {
            return Err(self.process_failed(jobs, error));
        }
        let mut jobs = jobs;
        // Responses until none is intermediate: a streaming handler's parts, then its answers.
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Err(WorkerExit::ProcessEnded("no connection to the Python worker".into()));
            };
            let response = match codec::read_response(&mut connection.reader) {
                Ok(response) => response,
                Err(error) => return Err(self.process_failed(jobs, error)),
            };
            let waiting: Vec<&str> = jobs.iter().map(|job| job.request.id.as_str()).collect();
            match step::check(&waiting, &response) {
                Ok(step::Progress::Answered) => {
                    self.answer(jobs, response);
                    return Ok(sent.elapsed());
                }
                Ok(step::Progress::Streaming) => jobs = self.forward(jobs, response),
                Err(why) => {
                    // Never read again: the manager kills the process and starts another.
                    self.connection = None;
                    self.answer_out_of_step(jobs, response, &why);
                    return Err(WorkerExit::OutOfStep(why.to_string()));
                }
            }
        }
    }

    /// Before a batch is sent: anything the process wrote since its last reply was asked by no
    /// request (a handler writing to its socket itself), and a closed connection means the
    /// process ended while idle. Either way the batch, not yet sent, goes to another worker.
    fn ready(&mut self) -> Result<(), WorkerExit> {
        if let Some((in_flight, _)) = &self.concurrent {
            return match in_flight.is_alive() {
                true => Ok(()),
                false => Err(WorkerExit::ProcessEnded("the asynchronous Python worker's connection ended".into())),
            };
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(WorkerExit::ProcessEnded("no connection to the Python worker".into()));
        };
        match unread(connection) {
            Ok(Unread::Nothing) => Ok(()),
            Ok(Unread::Bytes) => {
                self.connection = None;
                log::error!("{}: {}; retiring the worker", self.name, step::OutOfStep::Unsolicited);
                Err(WorkerExit::OutOfStep(step::OutOfStep::Unsolicited.to_string()))
            }
            Ok(Unread::Closed) => {
                self.connection = None;
                Err(WorkerExit::ProcessEnded("the Python worker closed its connection while idle".into()))
            }
            Err(error) => {
                self.connection = None;
                Err(WorkerExit::ProcessEnded(format!("the Python worker's connection broke: {error}")))
            }
        }
    }
}

/// What waits on a connection between replies.
#[derive(Debug, PartialEq, Eq)]
enum Unread {
    Nothing,
    Bytes,
    /// The process closed its end.
    Closed,
}

/// Looks at the connection without waiting: bytes already read into the buffer count, else the
/// socket is peeked at once (`MSG_PEEK | MSG_DONTWAIT`: nothing is taken from it). One system
/// call before each batch, where switching the socket to non-blocking mode and back took three.
fn unread(connection: &Connection) -> std::io::Result<Unread> {
    use nix::errno::Errno;
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    if !connection.reader.buffer().is_empty() {
        return Ok(Unread::Bytes);
    }
    let mut byte = [0u8; 1];
    match recv(connection.reader.get_ref().as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Ok(Unread::Closed),
        Ok(_) => Ok(Unread::Bytes),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(Unread::Nothing),
        Err(errno) => Err(errno.into()),
    }
}

/// What to add to a Python worker's environment so that its pools use `threads` threads: each
/// of [`THREAD_VARIABLES`], unless the user set any of them in tserve's environment (`is_set`).
/// They are read together (torch sizes its pool by MKL's variable over OpenMP's), so one set by
/// hand means the user sizes the pools, and each passes through as the user left it.
fn thread_env(threads: usize, is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, String)> {
    if THREAD_VARIABLES.iter().any(|name| is_set(name)) {
        return Vec::new();
    }
    THREAD_VARIABLES.iter().map(|&name| (name, threads.to_string())).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pool_gets_the_share_unless_the_user_sized_any() {
        let ours = thread_env(3, |_| false);
        assert_eq!(
            ours,
            [("OMP_NUM_THREADS", "3".to_string()), ("MKL_NUM_THREADS", "3".to_string()), ("OPENBLAS_NUM_THREADS", "3".to_string())]
        );
        assert!(thread_env(3, |name| name == "OMP_NUM_THREADS").is_empty());
        assert!(thread_env(3, |name| name == "MKL_NUM_THREADS").is_empty());
    }

    fn pair() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let connection = Connection {
            reader: BufReader::new(ours.try_clone().unwrap()),
            writer: BufWriter::new(ours),
        };
        (connection, theirs)
    }

    #[test]
    fn unread_bytes_and_a_closed_connection_are_seen_without_waiting() {
        use std::io::{Read, Write};
        let (mut connection, mut theirs) = pair();
        assert_eq!(unread(&connection).unwrap(), Unread::Nothing);
        theirs.write_all(b"stray").unwrap();
        assert_eq!(unread(&connection).unwrap(), Unread::Bytes);
        assert_eq!(unread(&connection).unwrap(), Unread::Bytes, "still there: looking reads nothing away");
        let mut first = [0u8; 2];
        connection.reader.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"st", "the bytes looked at are read whole");
        assert_eq!(unread(&connection).unwrap(), Unread::Bytes, "the rest, in the reader's buffer, counts");
        let (connection, theirs) = pair();
        drop(theirs);
        assert_eq!(unread(&connection).unwrap(), Unread::Closed);
    }
}
