//! What a ModelManager needs to run one model version: its files, its handler and its worker and
//! queue settings, resolved from the archive and the server config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tch::Device;

use super::ManagerError;
use crate::archive::ModelArchive;
use crate::config::Config;
use crate::handlers::{self, Handler, HandlerKind, ModelError};

/// Builds a worker's handler on its own thread, from the model folder.
pub type HandlerFactory =
    Arc<dyn Fn(&std::path::Path) -> Result<Box<dyn Handler>, ModelError> + Send + Sync>;

pub struct ModelSpec {
    pub name: String,
    pub version: String,
    /// The TorchScript file each worker loads.
    pub model_file: PathBuf,
    /// The folder with the model's other files (`index_to_name.json`, ...).
    pub model_dir: PathBuf,
    pub handler: HandlerFactory,
    /// Workers kept running; /ping is Unhealthy while fewer are live.
    pub workers: usize,
    /// GPUs the workers are spread over, round-robin; 0 means CPU.
    pub gpus: usize,
    /// libtorch intra-op threads per worker, so that workers × threads stays within the cores.
    pub threads_per_worker: usize,
    pub batch_size: usize,
    pub job_queue_size: usize,
    pub response_timeout: Duration,
    pub startup_timeout: Duration,
    /// Keeps an unpacked `.mar` on disk while the model is registered.
    pub archive: Option<Arc<ModelArchive>>,
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("model_file", &self.model_file)
            .field("workers", &self.workers)
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

impl ModelSpec {
    /// Worker `index` of this model runs on GPU `index % gpus`, or on the CPU without GPUs.
    pub fn device_for(&self, index: usize) -> Device {
        if self.gpus == 0 {
            Device::Cpu
        } else {
            Device::Cuda(index % self.gpus)
        }
    }

    pub fn builder(name: &str, version: &str, model_file: PathBuf) -> ModelSpecBuilder {
        ModelSpecBuilder::new(name, version, model_file)
    }

    /// The spec of an archive from the model store, with the server's defaults. `name` overrides
    /// the manifest's model name (`--models name=file.mar`).
    pub fn from_archive(
        archive: ModelArchive,
        name: Option<&str>,
        config: &Config,
    ) -> Result<Self, ManagerError> {
        let model = &archive.manifest.model;
        let name = name.unwrap_or(&model.model_name).to_string();
        if let Some(model_file) = &model.model_file {
            return Err(ManagerError::EagerModel {
                model: name,
                model_file: model_file.clone(),
            });
        }
        let serialized = model
            .serialized_file
            .as_ref()
            .map(|file| archive.dir.join(file))
            .filter(|path| path.is_file())
            .ok_or_else(|| ManagerError::MissingSerializedFile { model: name.clone() })?;
        let kind = HandlerKind::from_manifest(model.handler.as_deref())?;
        let version = model.model_version.clone();
        let model_dir = archive.dir.clone();
        Ok(ModelSpecBuilder::new(&name, &version, serialized)
            .model_dir(model_dir)
            .handler(Arc::new(move |dir| handlers::build_handler(kind, dir)))
            .config(config)
            .archive(archive)
            .build())
    }
}

/// Builds a [`ModelSpec`] field by field; `config` applies the server's defaults.
pub struct ModelSpecBuilder {
    spec: ModelSpec,
}

impl ModelSpecBuilder {
    fn new(name: &str, version: &str, model_file: PathBuf) -> Self {
        let model_dir = model_file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        Self {
            spec: ModelSpec {
                name: name.to_string(),
                version: version.to_string(),
                model_file,
                model_dir,
                handler: Arc::new(|dir| handlers::build_handler(HandlerKind::Base, dir)),
                workers: 1,
                gpus: 0,
                threads_per_worker: 1,
                batch_size: 1,
                job_queue_size: 100,
                response_timeout: Duration::from_secs(120),
                startup_timeout: Duration::from_secs(120),
                archive: None,
            },
        }
    }

    pub fn model_dir(mut self, dir: PathBuf) -> Self {
        self.spec.model_dir = dir;
        self
    }

    pub fn handler(mut self, handler: HandlerFactory) -> Self {
        self.spec.handler = handler;
        self
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.spec.workers = workers;
        self.spec.threads_per_worker = threads_per_worker(workers);
        self
    }

    pub fn job_queue_size(mut self, size: usize) -> Self {
        self.spec.job_queue_size = size;
        self
    }

    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.spec.response_timeout = timeout;
        self
    }

    /// The server-wide defaults: worker count, GPUs, queue size and timeouts.
    pub fn config(mut self, config: &Config) -> Self {
        self = self.workers(config.default_workers_per_model);
        self.spec.gpus = config.number_of_gpu;
        self.spec.job_queue_size = config.job_queue_size;
        self.spec.response_timeout = config.default_response_timeout;
        self.spec.startup_timeout = config.default_startup_timeout;
        self
    }

    fn archive(mut self, archive: ModelArchive) -> Self {
        self.spec.archive = Some(Arc::new(archive));
        self
    }

    pub fn build(self) -> ModelSpec {
        self.spec
    }
}

/// Splits the machine's cores between a model's workers: each gets at least one intra-op
/// thread, and together they do not oversubscribe the cores.
fn threads_per_worker(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / workers.max(1)).max(1)
}
