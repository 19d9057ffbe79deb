//! What a ModelManager needs to run one model version: its identity, its files, how to build its
//! handler, and its resolved [`ModelSettings`]. Built once, at registration, by the service layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::Device;

use super::queue::QueueSettings;
use super::worker::WorkerExit;
use crate::archive::ModelArchive;
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
}

pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub origin: ModelOrigin,
    /// The manifest's runtime (`python`, `python3` or `LSP`).
    pub runtime: String,
    /// The TorchScript file each worker loads.
    pub serialized_file: PathBuf,
    /// The folder with the model's other files (`index_to_name.json`, ...).
    pub model_dir: PathBuf,
    pub handler: HandlerFactory,
    pub settings: ModelSettings,
    /// Keeps an unpacked archive on disk while the model is registered.
    pub archive: Option<Arc<ModelArchive>>,
}

impl ModelSpec {
    /// A spec with the given settings; origin and runtime take their defaults.
    pub fn new(
        name: &str,
        version: &str,
        serialized_file: PathBuf,
        handler: HandlerFactory,
        settings: ModelSettings,
    ) -> Self {
        let model_dir = serialized_file.parent().map(PathBuf::from).unwrap_or_default();
        Self {
            name: name.to_string(),
            version: version.to_string(),
            origin: ModelOrigin::default(),
            runtime: "python".to_string(),
            serialized_file,
            model_dir,
            handler,
            settings,
            archive: None,
        }
    }

    /// Worker `index` runs on `gpu_ids[index % len]`, or on the CPU without GPUs.
    pub fn device_for(&self, index: usize) -> Device {
        match self.settings.gpu_ids.len() {
            0 => Device::Cpu,
            n => Device::Cuda(self.settings.gpu_ids[index % n]),
        }
    }

    /// Builds the handler; called on the worker's thread.
    pub fn handler(&self) -> Result<Box<dyn Handler>, WorkerExit> {
        (self.handler)(&self.model_dir).map_err(WorkerExit::LoadFailed)
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
            .field("serialized_file", &self.serialized_file)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
