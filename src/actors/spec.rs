//! What a ModelManager needs to run one model version: its identity, its files, how to build its
//! handler, and its resolved [`ModelSettings`]. Built once, at registration, by the service layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::Device;

use super::queue::QueueSettings;
use crate::archive::{DeclaredTensors, ModelArchive};
use crate::metrics::ModelMetrics;
use crate::handlers::{Handler, ModelError};
use crate::settings::ModelSettings;

/// Builds a worker's handler on its own thread, from the model folder.
pub type HandlerFactory = Arc<dyn Fn(&Path) -> Result<Box<dyn Handler>, ModelError> + Send + Sync>;

/// Where a model version came from, for describe, list, unregister and snapshots.
#[derive(Debug, Clone, Default)]
pub struct ModelOrigin {
    /// The `url` it was registered with (or the `--models` entry), shown as `modelUrl`.
    pub url: String,
    /// The archive's name in the model store (`marName` in snapshots).
    pub store_name: String,
    /// Loaded from `--models`/`load_models`.
    pub loaded_at_startup: bool,
    /// An archive downloaded into the store for this model, removed when it is unregistered.
    pub downloaded: Option<PathBuf>,
    /// A node of a workflow: the workflow owns it, and snapshots leave it out (as TorchServe's).
    pub in_workflow: bool,
}

/// Which kind of worker serves a model, decided once at registration.
#[derive(Clone)]
pub enum BackendSpec {
    /// A TorchScript file run in-process by libtorch with a built-in handler.
    Native {
        /// The TorchScript file each worker loads.
        serialized_file: PathBuf,
        handler: HandlerFactory,
    },
    /// TorchServe's own Python backend in a child process per worker: eager models and
    /// custom handlers, with TorchServe's exact handler semantics.
    Python(PythonSpec),
}

/// How to start a model's Python workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonSpec {
    /// The Python that runs `ts.model_service_worker` (with the `torchserve` package).
    pub python: PathBuf,
    /// `ts/model_service_worker.py` of that Python's `torchserve` package.
    pub worker_script: PathBuf,
    /// The metrics YAML the worker reads (`--metrics-config`).
    pub metrics_config: PathBuf,
    /// The handler as TorchServe's loader takes it: a built-in name, `file.py` or
    /// `file.py:function`.
    pub handler: String,
    pub envelope: String,
    /// `limit_max_image_pixels`: Pillow's decompression-bomb limit stays on.
    pub limit_max_image_pixels: bool,
    /// `decode_input_request`: JSON and text inputs reach the handler decoded.
    pub decode_input_request: bool,
    /// The model config's `asyncCommunication`: the worker runs TorchServe's `--async` service
    /// and holds many requests at once.
    pub async_communication: bool,
}

pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub origin: ModelOrigin,
    /// The manifest's runtime (`python`, `python3` or `LSP`).
    pub runtime: String,
    /// The folder with the model's files (`index_to_name.json`, ...).
    pub model_dir: PathBuf,
    pub backend: BackendSpec,
    pub settings: ModelSettings,
    /// Its metrics, resolved once.
    pub metrics: Arc<ModelMetrics>,
    /// Keeps an unpacked archive on disk while the model is registered.
    pub archive: Option<Arc<ModelArchive>>,
    /// The inputs and outputs its model config declares, for OIP model metadata.
    pub tensors: Option<DeclaredTensors>,
}

impl ModelSpec {
    /// A native model's spec; origin and runtime take their defaults.
    pub fn new(
        name: &str,
        version: &str,
        serialized_file: PathBuf,
        handler: HandlerFactory,
        settings: ModelSettings,
    ) -> Self {
        let model_dir = serialized_file.parent().map(PathBuf::from).unwrap_or_default();
        Self::with_backend(name, version, model_dir, BackendSpec::Native { serialized_file, handler }, settings)
    }

    pub fn with_backend(
        name: &str,
        version: &str,
        model_dir: PathBuf,
        backend: BackendSpec,
        settings: ModelSettings,
    ) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            origin: ModelOrigin::default(),
            runtime: "python".to_string(),
            model_dir,
            backend,
            settings,
            metrics: ModelMetrics::detached(name, version),
            archive: None,
            tensors: None,
        }
    }

    /// Worker `index` runs on `gpu_ids[index % len]`, or on the CPU without GPUs.
    pub fn device_for(&self, index: usize) -> Device {
        match self.settings.gpu_ids.len() {
            0 => Device::Cpu,
            n => Device::Cuda(self.settings.gpu_ids[index % n]),
        }
    }

    pub fn label(&self) -> String {
        format!("{}_{}", self.name, self.version)
    }

    pub fn queue_settings(&self) -> QueueSettings {
        QueueSettings {
            model: self.name.clone(),
            version: self.version.clone(),
            capacity: self.settings.job_queue_size,
            batch_size: self.settings.batch_size,
            max_batch_delay: self.settings.max_batch_delay,
            client_timeout: self.settings.client_timeout,
            use_job_ticket: self.settings.use_job_ticket,
            // Only where batches are invisible: native handlers pre- and post-process each
            // request alone; a Python handler sees its batch, so it keeps TorchServe's rules.
            opportunistic: match self.backend {
                BackendSpec::Native { .. } => self.settings.opportunistic,
                BackendSpec::Python(_) => None,
            },
        }
    }
}

/// An unpacked archive can hold gigabytes; removing it would stall the actor or HTTP thread
/// that drops the last reference, so the removal runs on the blocking pool when there is one.
impl Drop for ModelSpec {
    fn drop(&mut self) {
        let Some(archive) = self.archive.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(archive))),
            Err(_) => drop(archive),
        }
    }
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", match &self.backend {
                BackendSpec::Native { .. } => &"native",
                BackendSpec::Python(_) => &"python",
            })
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
