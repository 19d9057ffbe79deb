//! The native backend: a TorchScript model and a built-in handler, run in-process by libtorch on
//! the worker's own thread. This is the one place a model is loaded and `forward` runs.
//!
//! libtorch's intra-op threads are shared out among the native workers alive in the process,
//! so that workers × threads never exceeds the cores; each worker looks at the share before every
//! batch, so scaling (of any model) takes effect at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tch::Device;

use super::{Backend, ChildPid, WorkerExit};
use crate::actors::{HandlerFactory, Job, ManagerError};
use crate::handlers::{LoadedModel, ModelError};
use crate::request::Prediction;

/// Native workers alive in the process: each holds one count while its thread runs.
static NATIVE_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Intra-op threads each of `workers` workers gets on `cores` cores: at least one, and never
/// more than the cores in all.
pub fn threads_per_worker(cores: usize, workers: usize) -> usize {
    (cores / workers.max(1)).max(1)
}

/// The cores this process may use, read once: `available_parallelism` reads cgroup files on
/// every call, far too slow for every batch.
pub(super) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Returns what warm-up left this thread holding but not using, so that an idle worker costs its
/// thread, not a model's working memory (it comes back on the first batch, as it would anyway):
///
/// - MKL's GEMM packing buffers, which MKL keeps per thread for its next call (6.6 MiB of the
///   10.3 MiB that a third DenseNet-161 worker added, found with `heaptrack`);
/// - the activations' pages, freed into this thread's mimalloc heap (mimalloc is malloc for
///   libtorch too), which it would otherwise keep for its purge delay ([`crate::allocator`]).
fn give_back_scratch() {
    if let Some(free_buffers) = mkl_thread_free_buffers() {
        // SAFETY: frees only the calling thread's MKL buffers, and no MKL call runs on this
        // thread meanwhile: this thread is here.
        unsafe { free_buffers() };
    }
    crate::allocator::give_back_free_pages();
}

/// MKL's `mkl_thread_free_buffers` as libtorch exports it, looked up rather than linked:
/// libtorch builds without MKL (ARM, some source builds) lack it.
fn mkl_thread_free_buffers() -> Option<unsafe extern "C" fn()> {
    static FOUND: OnceLock<Option<unsafe extern "C" fn()>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name only reads the loaded objects' symbol tables.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mkl_serv_thread_free_buffers".as_ptr()) };
        // SAFETY: the symbol is MKL's `void mkl_thread_free_buffers(void)`.
        (!symbol.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(symbol) })
    })
}

pub struct NativeBackend {
    name: String,
    serialized_file: PathBuf,
    handler: HandlerFactory,
    model_dir: PathBuf,
    device: Device,
    model: Option<LoadedModel>,
    /// The intra-op thread count set on this thread.
    threads: usize,
    /// Holds this worker's place in [`NATIVE_WORKERS`] from load to exit.
    _counted: Option<Counted>,
    _no_grad: Option<tch::NoGradGuard>,
}

struct Counted;

impl Counted {
    fn new() -> Self {
        NATIVE_WORKERS.fetch_add(1, Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        NATIVE_WORKERS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl NativeBackend {
    pub fn new(name: String, serialized_file: PathBuf, handler: HandlerFactory, model_dir: PathBuf, device: Device) -> Self {
        Self {
            name,
            serialized_file,
            handler,
            model_dir,
            device,
            model: None,
            threads: 0,
            _counted: None,
            _no_grad: None,
        }
    }

    /// Applies this worker's current share of the cores to libtorch on this thread.
    fn share_cores(&mut self) {
        let threads = threads_per_worker(cores(), NATIVE_WORKERS.load(Ordering::Relaxed));
        if threads != self.threads {
            tch::set_num_threads(threads as i32);
            self.threads = threads;
        }
    }
}

impl Backend for NativeBackend {
    fn load(&mut self, _in_process: &ChildPid) -> Result<(), WorkerExit> {
        self._counted = Some(Counted::new());
        // No autograd bookkeeping on this thread, ever.
        self._no_grad = Some(tch::no_grad_guard());
        // Without GPUs, TorchScript's profiling executor only delays the first requests (it
        // profiles before it optimizes, and the CPU fuser is off): the simple executor is as
        // fast once warm (measured; see the README). With GPUs its fusions may pay, so it stays.
        if tch::Cuda::device_count() == 0 {
            let _ = tch::jit::f_set_profiling_mode(false);
        }
        self.share_cores();
        let started = Instant::now();
        let handler = (self.handler)(&self.model_dir).map_err(WorkerExit::LoadFailed)?;
        let model = LoadedModel::load(&self.serialized_file, handler, self.device)
            .map_err(WorkerExit::LoadFailed)?;
        give_back_scratch();
        // Both in milliseconds, as the benchmark's start row reads them.
        log::info!(
            "{}: model loaded on {:?} in {:.1} ms, warm-up {:.1} ms of it",
            self.name,
            self.device,
            started.elapsed().as_secs_f64() * 1e3,
            model.warmed_up_in().as_secs_f64() * 1e3
        );
        self.model = Some(model);
        Ok(())
    }

    fn run(&mut self, jobs: Vec<Job>) -> Result<Duration, WorkerExit> {
        self.share_cores();
        let Some(model) = &self.model else {
            return Err(WorkerExit::Panicked("a batch reached a worker with no model".into()));
        };
        let started = Instant::now();
        // Payloads go through the handler, typed tensors (OIP, KServe v1) to `forward` as they
        // are; each kind batched as far as its requests agree.
        let mut answers: Vec<Result<Prediction, ModelError>> = Vec::with_capacity(jobs.len());
        let payloads: Vec<&[u8]> = jobs
            .iter()
            .filter(|job| job.request.tensors.is_none())
            .map(|job| job.request.input())
            .collect();
        let typed: Vec<&[crate::tensor::TensorData]> =
            jobs.iter().filter_map(|job| job.request.tensors.as_deref()).collect();
        let mut handled = model.predict(&payloads).into_iter();
        let mut typed = model.predict_typed(&typed).into_iter();
        let missing = || ModelError::InvalidOutput("no answer".into());
        for job in &jobs {
            answers.push(match &job.request.tensors {
                Some(_) => typed.next().unwrap_or_else(|| Err(missing())).map(Prediction::tensors),
                None => handled.next().unwrap_or_else(|| Err(missing())).map(Prediction::json),
            });
        }
        // The backend call: the handler's pre-processing, forward and post-processing.
        let in_backend = started.elapsed();
        if let Some(fault) = answers.iter().find_map(|a| a.as_ref().err().filter(|e| e.is_fault())) {
            return Err(WorkerExit::Fault(fault.clone()));
        }
        if log::log_enabled!(log::Level::Debug) {
            let waited = jobs
                .iter()
                .map(|job| started.saturating_duration_since(job.accepted_at))
                .max()
                .unwrap_or_default();
            log::debug!(
                "{}: ran batch of {} in {:?} (oldest job waited {waited:?})",
                self.name,
                jobs.len(),
                started.elapsed()
            );
        }
        for (job, answer) in jobs.into_iter().zip(answers) {
            if let Err(e) = &answer {
                log::warn!("{}: request failed: {e}", self.name);
            }
            job.reply.send(answer.map_err(ManagerError::Model));
        }
        Ok(in_backend)
    }
}

#[cfg(test)]
mod tests {
    use super::{give_back_scratch, mkl_thread_free_buffers, threads_per_worker};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_worker_gives_mkl_buffers_back_and_multiplies_as_before() {
        // The x86-64 libtorch wheels carry MKL: if a new one stops exporting this, idle workers
        // silently keep their GEMM buffers again, so say so here.
        assert!(cfg!(not(target_arch = "x86_64")) || mkl_thread_free_buffers().is_some(), "MKL's free-buffers entry point is gone");
        let a = Tensor::arange(256 * 256, (Kind::Float, Device::Cpu)).reshape([256, 256]) / 65536.0;
        let before = a.matmul(&a);
        give_back_scratch();
        let after = a.matmul(&a);
        assert!(before.allclose(&after, 1e-6, 1e-6, false), "the buffers come back when MKL needs them");
    }

    #[test]
    fn cores_are_shared_out_among_workers() {
        assert_eq!(threads_per_worker(8, 1), 8);
        assert_eq!(threads_per_worker(8, 3), 2);
        assert_eq!(threads_per_worker(2, 4), 1, "at least one each");
        assert_eq!(threads_per_worker(4, 0), 4);
    }
}
