//! What a ModelManager needs to run one model version: its files, its handler, and its worker,
//! batching and queue settings, resolved with TorchServe's precedence: the archive's YAML, then
//! the `models=` entry of config.properties, then the server-wide defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tch::Device;

use super::ManagerError;
use crate::archive::{DeviceType, ModelArchive, ModelConfig};
use crate::config::{Config, ModelOverrides};
use crate::handlers::{self, Handler, HandlerKind, ModelError};

/// Builds a worker's handler on its own thread, from the model folder.
pub type HandlerFactory = Arc<dyn Fn(&Path) -> Result<Box<dyn Handler>, ModelError> + Send + Sync>;

/// TorchServe's defaults for what neither the archive nor the config sets.
pub const DEFAULT_BATCH_SIZE: usize = 1;
pub const DEFAULT_MAX_BATCH_DELAY: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Settings given with the model rather than in its archive: the register call's parameters
/// and snapshot restores. They win over the archive's YAML, except that a valid YAML
/// `minWorkers`/`maxWorkers` pair replaces `initial_workers`, as in TorchServe.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The register call's `initial_workers`.
    pub initial_workers: Option<usize>,
    /// Exact worker counts (min, max), from a snapshot: nothing overrides them.
    pub workers: Option<(usize, usize)>,
    pub batch_size: Option<usize>,
    pub max_batch_delay: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
    /// Replaces the manifest's handler.
    pub handler: Option<String>,
}

pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub origin: ModelOrigin,
    /// The manifest's runtime (`python`, `python3` or `LSP`).
    pub runtime: String,
    /// The TorchScript file each worker loads.
    pub model_file: PathBuf,
    /// The folder with the model's other files (`index_to_name.json`, ...).
    pub model_dir: PathBuf,
    pub handler: HandlerFactory,
    /// Workers kept running; /ping is Unhealthy while fewer are ready.
    pub min_workers: usize,
    /// The most workers the model may be scaled to.
    pub max_workers: usize,
    /// GPUs the workers are spread over, round-robin; empty means CPU.
    pub gpu_ids: Vec<usize>,
    /// libtorch intra-op threads per worker, so that workers × threads stays within the cores.
    pub threads_per_worker: usize,
    /// Most jobs run in one forward.
    pub batch_size: usize,
    /// How long a free worker waits for a batch to fill, from its first job.
    pub max_batch_delay: Duration,
    pub job_queue_size: usize,
    /// How long one batch may run; past it the jobs get `Worker died.` and the worker is retired.
    pub response_timeout: Duration,
    pub startup_timeout: Duration,
    /// How long failed workers are retried after their first failure.
    pub max_retry_timeout: Duration,
    /// Jobs that waited longer than this in the queue are dropped unrun.
    pub client_timeout: Option<Duration>,
    /// Keeps an unpacked `.mar` on disk while the model is registered.
    pub archive: Option<Arc<ModelArchive>>,
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
            .field("model_file", &self.model_file)
            .field("min_workers", &self.min_workers)
            .field("batch_size", &self.batch_size)
            .field("max_batch_delay", &self.max_batch_delay)
            .field("gpu_ids", &self.gpu_ids)
            .finish_non_exhaustive()
    }
}

impl ModelSpec {
    /// Worker `index` runs on `gpu_ids[index % len]`, or on the CPU without GPUs.
    pub fn device_for(&self, index: usize) -> Device {
        match self.gpu_ids.len() {
            0 => Device::Cpu,
            n => Device::Cuda(self.gpu_ids[index % n]),
        }
    }

    pub fn builder(name: &str, version: &str, model_file: PathBuf) -> ModelSpecBuilder {
        ModelSpecBuilder::new(name, version, model_file)
    }

    /// The spec of an archive from the model store. `name` overrides the manifest's model name
    /// (`--models name=file.mar`).
    pub fn from_archive(
        archive: ModelArchive,
        name: Option<&str>,
        config: &Config,
        origin: ModelOrigin,
        overrides: &Overrides,
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
        let kind = HandlerKind::from_manifest(overrides.handler.as_deref().or(model.handler.as_deref()))?;
        let version = model.model_version.clone();
        let runtime = archive.manifest.runtime.clone();
        let yaml = archive.model_config()?;
        let from_config = config
            .model_overrides(&name, &version)
            .cloned()
            .unwrap_or_default();
        // The YAML's other keys go to the handler untouched.
        let handler_settings = yaml.handler_settings.clone();
        Ok(ModelSpecBuilder::new(&name, &version, serialized)
            .model_dir(archive.dir.clone())
            .handler(Arc::new(move |dir| handlers::build_handler(kind, dir, &handler_settings)))
            .config(config)
            .settings(&yaml, &from_config, config)
            .overrides(overrides, &yaml)
            .origin(origin, runtime)
            .archive(archive)
            .build())
    }
}

/// Builds a [`ModelSpec`]; `config` applies the server's defaults, `settings` the model's own.
pub struct ModelSpecBuilder {
    spec: ModelSpec,
}

impl ModelSpecBuilder {
    fn new(name: &str, version: &str, model_file: PathBuf) -> Self {
        let model_dir = model_file.parent().map(PathBuf::from).unwrap_or_default();
        Self {
            spec: ModelSpec {
                name: name.to_string(),
                version: version.to_string(),
                origin: ModelOrigin::default(),
                runtime: "python".to_string(),
                model_file,
                model_dir,
                handler: Arc::new(|dir| {
                    handlers::build_handler(HandlerKind::Base, dir, &Default::default())
                }),
                min_workers: 1,
                max_workers: 1,
                gpu_ids: Vec::new(),
                threads_per_worker: threads_per_worker(1),
                batch_size: DEFAULT_BATCH_SIZE,
                max_batch_delay: DEFAULT_MAX_BATCH_DELAY,
                job_queue_size: 100,
                response_timeout: Duration::from_secs(120),
                startup_timeout: Duration::from_secs(120),
                max_retry_timeout: DEFAULT_MAX_RETRY_TIMEOUT,
                client_timeout: None,
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

    /// Starts and keeps `workers` workers (min = max).
    pub fn workers(mut self, workers: usize) -> Self {
        self.spec.min_workers = workers;
        self.spec.max_workers = workers;
        self.spec.threads_per_worker = threads_per_worker(workers);
        self
    }

    pub fn batching(mut self, batch_size: usize, max_batch_delay: Duration) -> Self {
        self.spec.batch_size = batch_size.max(1);
        self.spec.max_batch_delay = max_batch_delay;
        self
    }

    pub fn job_queue_size(mut self, size: usize) -> Self {
        self.spec.job_queue_size = size;
        self
    }

    /// The server-wide defaults: worker count, GPUs, queue size and timeouts.
    pub fn config(mut self, config: &Config) -> Self {
        self = self.workers(config.default_workers_per_model);
        self.spec.gpu_ids = (0..config.number_of_gpu).collect();
        self.spec.job_queue_size = config.job_queue_size;
        self.spec.response_timeout = config.default_response_timeout;
        self.spec.startup_timeout = config.default_startup_timeout;
        self
    }

    /// The model's own settings: the archive's YAML wins over the `models=` entry.
    fn settings(mut self, yaml: &ModelConfig, overrides: &ModelOverrides, config: &Config) -> Self {
        let spec = &mut self.spec;
        if let (Some(min), Some(max)) = (overrides.min_workers, overrides.max_workers) {
            (spec.min_workers, spec.max_workers) = (min, max.max(min));
        }
        // As TorchServe: the YAML's worker counts apply only as a consistent pair.
        if let (Some(min), Some(max)) = (yaml.min_workers, yaml.max_workers) {
            if min > 0 && max >= min {
                (spec.min_workers, spec.max_workers) = (min, max);
            }
        }
        spec.threads_per_worker = threads_per_worker(spec.min_workers);
        spec.batch_size = yaml
            .batch_size
            .or(overrides.batch_size)
            .unwrap_or(DEFAULT_BATCH_SIZE)
            .max(1);
        spec.max_batch_delay = yaml
            .max_batch_delay
            .or(overrides.max_batch_delay.map(Duration::from_millis))
            .unwrap_or(DEFAULT_MAX_BATCH_DELAY);
        let seconds = |s: Option<u64>| s.filter(|&s| s > 0).map(Duration::from_secs);
        spec.response_timeout = yaml
            .response_timeout
            .or(seconds(overrides.response_timeout))
            .unwrap_or(config.default_response_timeout);
        spec.startup_timeout = yaml
            .startup_timeout
            .or(seconds(overrides.startup_timeout))
            .unwrap_or(config.default_startup_timeout);
        if let Some(size) = yaml.job_queue_size {
            spec.job_queue_size = size;
        }
        spec.max_retry_timeout = yaml.max_retry_timeout.unwrap_or(DEFAULT_MAX_RETRY_TIMEOUT);
        spec.client_timeout = yaml.client_timeout;
        spec.gpu_ids = gpu_ids(yaml, config.number_of_gpu);
        self
    }

    /// The register call's or snapshot's settings, over the archive's (see [`Overrides`]).
    fn overrides(mut self, overrides: &Overrides, yaml: &ModelConfig) -> Self {
        let spec = &mut self.spec;
        let yaml_pair_valid = matches!(
            (yaml.min_workers, yaml.max_workers),
            (Some(min), Some(max)) if min > 0 && max >= min
        );
        if let (Some(workers), false) = (overrides.initial_workers, yaml_pair_valid) {
            (spec.min_workers, spec.max_workers) = (workers, workers);
        }
        if let Some((min, max)) = overrides.workers {
            (spec.min_workers, spec.max_workers) = (min, max.max(min));
        }
        spec.threads_per_worker = threads_per_worker(spec.min_workers);
        if let Some(size) = overrides.batch_size {
            spec.batch_size = size.max(1);
        }
        if let Some(delay) = overrides.max_batch_delay {
            spec.max_batch_delay = delay;
        }
        if let Some(timeout) = overrides.response_timeout {
            spec.response_timeout = timeout;
        }
        if let Some(timeout) = overrides.startup_timeout {
            spec.startup_timeout = timeout;
        }
        self
    }

    fn origin(mut self, origin: ModelOrigin, runtime: String) -> Self {
        self.spec.origin = origin;
        self.spec.runtime = runtime;
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

/// The GPUs a model's workers use: none for `deviceType: cpu` or without GPUs; the YAML's
/// `deviceIds` when every id exists (TorchServe ignores the whole list otherwise); else all.
fn gpu_ids(yaml: &ModelConfig, gpus: usize) -> Vec<usize> {
    if gpus == 0 || yaml.device_type == Some(DeviceType::Cpu) {
        return Vec::new();
    }
    match &yaml.device_ids {
        Some(ids) if !ids.is_empty() && ids.iter().all(|&id| id >= 0 && (id as usize) < gpus) => {
            ids.iter().map(|&id| id as usize).collect()
        }
        Some(ids) => {
            log::warn!("deviceIds {ids:?} name GPUs that are not present ({gpus}); using all GPUs");
            (0..gpus).collect()
        }
        None => (0..gpus).collect(),
    }
}

/// Splits the machine's cores between a model's workers: each gets at least one intra-op
/// thread, and together they do not oversubscribe the cores.
fn threads_per_worker(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / workers.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(gpus: usize) -> Config {
        let mut config = Config::from_properties(&BTreeMap::new(), gpus).unwrap();
        config.default_workers_per_model = 2;
        config
    }

    fn spec(yaml: &str, overrides: ModelOverrides, config: &Config) -> ModelSpec {
        let yaml = ModelConfig::parse(yaml).unwrap();
        ModelSpec::builder("m", "1.0", PathBuf::from("m.pt"))
            .config(config)
            .settings(&yaml, &overrides, config)
            .build()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let spec = spec("", ModelOverrides::default(), &config(0));
        assert_eq!((spec.min_workers, spec.max_workers), (2, 2));
        assert_eq!((spec.batch_size, spec.max_batch_delay), (1, Duration::from_millis(100)));
        assert_eq!(spec.response_timeout, Duration::from_secs(120));
        assert_eq!(spec.max_retry_timeout, Duration::from_secs(300));
        assert_eq!(spec.job_queue_size, 100);
        assert!(spec.gpu_ids.is_empty());
    }

    #[test]
    fn yaml_wins_over_models_json() {
        let overrides = ModelOverrides {
            batch_size: Some(4),
            max_batch_delay: Some(50),
            response_timeout: Some(30),
            min_workers: Some(3),
            max_workers: Some(3),
            ..Default::default()
        };
        let spec = spec("batchSize: 8\nminWorkers: 1\nmaxWorkers: 4\n", overrides, &config(0));
        assert_eq!(spec.batch_size, 8, "YAML");
        assert_eq!(spec.max_batch_delay, Duration::from_millis(50), "models=");
        assert_eq!(spec.response_timeout, Duration::from_secs(30), "models=");
        assert_eq!((spec.min_workers, spec.max_workers), (1, 4), "YAML pair");
    }

    #[test]
    fn inconsistent_yaml_worker_counts_are_ignored() {
        let spec = spec("minWorkers: 3\nmaxWorkers: 2\n", ModelOverrides::default(), &config(0));
        assert_eq!((spec.min_workers, spec.max_workers), (2, 2));
    }

    #[test]
    fn register_parameters_win_over_yaml_but_yaml_workers_replace_initial_workers() {
        let yaml = ModelConfig::parse("batchSize: 8\nminWorkers: 2\nmaxWorkers: 3\n").unwrap();
        let overrides = Overrides {
            initial_workers: Some(1),
            batch_size: Some(4),
            response_timeout: Some(Duration::from_secs(9)),
            ..Default::default()
        };
        let spec = ModelSpec::builder("m", "1.0", PathBuf::from("m.pt"))
            .config(&config(0))
            .settings(&yaml, &ModelOverrides::default(), &config(0))
            .overrides(&overrides, &yaml)
            .build();
        assert_eq!(spec.batch_size, 4);
        assert_eq!(spec.response_timeout, Duration::from_secs(9));
        assert_eq!((spec.min_workers, spec.max_workers), (2, 3));
        let snapshot = Overrides { workers: Some((1, 1)), ..Default::default() };
        let spec = ModelSpec::builder("m", "1.0", PathBuf::from("m.pt"))
            .settings(&yaml, &ModelOverrides::default(), &config(0))
            .overrides(&snapshot, &yaml)
            .build();
        assert_eq!((spec.min_workers, spec.max_workers), (1, 1), "a snapshot's counts are exact");
    }

    #[test]
    fn gpus_follow_device_settings() {
        let all = spec("", ModelOverrides::default(), &config(2));
        assert_eq!(all.gpu_ids, vec![0, 1]);
        assert_eq!(all.device_for(3), Device::Cuda(1));
        let chosen = spec("deviceIds: [1]\n", ModelOverrides::default(), &config(2));
        assert_eq!(chosen.gpu_ids, vec![1]);
        let invalid = spec("deviceIds: [0, 5]\n", ModelOverrides::default(), &config(2));
        assert_eq!(invalid.gpu_ids, vec![0, 1]);
        let cpu = spec("deviceType: cpu\n", ModelOverrides::default(), &config(2));
        assert_eq!(cpu.device_for(0), Device::Cpu);
    }
}
