//! Registering a model version, the one way for every caller (the management API, `--models` at
//! start-up, a snapshot restore): resolve the URL into the model store (downloading it if it is
//! one), unpack the archive, resolve its settings, start its manager, and, when asked, wait for
//! its workers; a registration that fails is undone, downloaded file included.

use std::path::PathBuf;
use std::sync::Arc;

use super::{wait_ready, Models, ServiceError};
use super::python;
use crate::actors::{BackendSpec, HandlerFactory, ModelOrigin, ModelSpec, PythonSpec, Register, Registration, Unregister};
use crate::archive::{fetch_into_store, ModelArchive, ModelConfig, Runtime};
use crate::config::{Config, ModelDefaults, ModelEntry};
use crate::handlers::{self, HandlerKind};
use crate::metrics::Metrics;
use crate::settings::{ModelOverrides, ModelSettings, Overrides, ServerDefaults};

/// A model version to register.
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    /// A name in the model store, or an http(s)/file URL (checked against `allowed_urls`).
    pub url: String,
    /// Overrides the manifest's model name.
    pub name: Option<String>,
    /// Replaces the manifest's handler.
    pub handler: Option<String>,
    /// Replaces the manifest's runtime.
    pub runtime: Option<Runtime>,
    pub overrides: Overrides,
    /// Wait for the workers (and undo the registration if they fail).
    pub synchronous: bool,
    /// Loaded from `--models`/`load_models` (shown as `loadedAtStartup`).
    pub at_startup: bool,
    /// Make it the model's default version (a snapshot restore says which one was).
    pub make_default: bool,
    /// Write a config snapshot after it (not at start-up: the start-up snapshot covers all).
    pub snapshot: bool,
    /// An archive the server prepared (a workflow's function node) instead of `url`.
    pub prepared: Option<ModelArchive>,
    /// A node of a workflow (kept out of snapshots).
    pub in_workflow: bool,
}

impl RegisterRequest {
    /// A registration asked for through a management API (REST or gRPC), not at start-up: a
    /// snapshot follows it.
    pub fn from_api(url: String, overrides: Overrides, synchronous: bool) -> Self {
        Self {
            url,
            name: None,
            handler: None,
            runtime: None,
            overrides,
            synchronous,
            at_startup: false,
            make_default: false,
            snapshot: true,
            prepared: None,
            in_workflow: false,
        }
    }
}

/// What a registration did.
#[derive(Debug)]
pub enum Registered {
    /// Registered with no workers: nothing to wait for.
    NoWorkers { name: String, version: String },
    /// Registered; its workers are loading (wait on the registration to know when they are up).
    Loading(Registration),
    /// Registered and its workers are up.
    Ready(Registration),
}

impl Models {
    pub async fn register(&self, request: RegisterRequest) -> Result<Registered, ServiceError> {
        let config = self.inner.config.clone();
        let store = config.models.store.clone().ok_or(ServiceError::NoModelStore)?;
        let metrics = self.inner.metrics.clone();
        let (synchronous, make_default, snapshot) = (request.synchronous, request.make_default, request.snapshot);
        // Downloading, unpacking and reading the archive's files block: off the async threads.
        let spec = tokio::task::spawn_blocking(move || build_spec(&store, request, &config, &metrics))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        let downloaded = spec.origin.downloaded.clone();
        let register = Register { spec, make_default, snapshot };
        let registration = match self.control(&self.inner.supervisor, register).await {
            Ok(Ok(registration)) => registration,
            Ok(Err(e)) => {
                remove_download(downloaded).await;
                return Err(e.into());
            }
            Err(e) => {
                remove_download(downloaded).await;
                return Err(e);
            }
        };
        if registration.workers == 0 {
            return Ok(Registered::NoWorkers {
                name: registration.name,
                version: registration.version,
            });
        }
        if !synchronous {
            return Ok(Registered::Loading(registration));
        }
        if wait_ready(registration.clone()).await {
            return Ok(Registered::Ready(registration));
        }
        // As TorchServe: a model whose workers do not start is unregistered again.
        let unregister = Unregister {
            model: registration.name.clone(),
            version: Some(registration.version.clone()),
        };
        if let Ok(Ok(spec)) = self.control(&self.inner.supervisor, unregister).await {
            let downloaded = spec.origin.downloaded.clone();
            drop(spec);
            remove_download(downloaded).await;
        }
        Err(ServiceError::WorkersFailed {
            model: registration.name,
            version: Some(registration.version),
        })
    }
}

/// Resolves, fetches and opens the archive and builds the model version's spec. Blocking.
fn build_spec(
    store: &std::path::Path,
    request: RegisterRequest,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<ModelSpec, ServiceError> {
    // A name given with the request is checked before anything is downloaded or unpacked.
    if let Some(name) = &request.name {
        check_name("model name", name)?;
    }
    if let Some(archive) = request.prepared.clone() {
        let origin = ModelOrigin {
            url: request.url.clone(),
            in_workflow: request.in_workflow,
            ..ModelOrigin::default()
        };
        let mut spec = spec_from_archive(archive, &request, origin, config)?;
        spec.metrics = metrics.for_model(&spec.name, &spec.version);
        return Ok(spec);
    }
    let entry = fetch_into_store(store, &request.url, &config.security.allowed_urls, config.models.archive_limits.max_bytes)?;
    let origin = ModelOrigin {
        url: request.url.clone(),
        store_name: entry.name.clone(),
        loaded_at_startup: request.at_startup,
        downloaded: entry.downloaded.clone(),
        in_workflow: request.in_workflow,
    };
    let spec = ModelArchive::open(store, &entry.name, config.models.archive_limits)
        .map_err(ServiceError::from)
        .and_then(|archive| spec_from_archive(archive, &request, origin, config))
        .map(|mut spec| {
            spec.metrics = metrics.for_model(&spec.name, &spec.version);
            spec
        });
    if spec.is_err() {
        remove_file(entry.downloaded.as_deref());
    }
    spec
}

/// The spec of an opened archive: its files, its backend, and its settings resolved with
/// TorchServe's precedence.
fn spec_from_archive(
    archive: ModelArchive,
    request: &RegisterRequest,
    origin: ModelOrigin,
    config: &Config,
) -> Result<ModelSpec, ServiceError> {
    let model = &archive.manifest.model;
    let name = request.name.clone().unwrap_or_else(|| model.model_name.clone());
    let version = model.model_version.clone();
    check_name("model name", &name)?;
    check_name("model version", &version)?;
    let yaml = archive.model_config()?;
    if let Some(key) = yaml.unsupported.first() {
        return Err(ServiceError::UnsupportedModelConfig { model: name, key: key.clone() });
    }
    let models_entry = config.model_overrides(&name, &version).map(models_entry).unwrap_or_default();
    let settings = ModelSettings::resolve(&server_defaults(&config.models), &models_entry, &yaml, &request.overrides);
    check_worker_count(settings.max_workers.max(settings.min_workers), config.models.max_workers)?;
    // Every file the manifest names must be inside the archive; one it lacks is a broken
    // archive, whichever backend would run it.
    if let Some(file) = &model.serialized_file {
        if !archive.file(file)?.is_file() {
            return Err(ServiceError::MissingSerializedFile { model: name });
        }
    }
    for file in [&model.model_file, &model.requirements_file].into_iter().flatten() {
        archive.file(file)?;
    }
    let handler = request.handler.clone().or_else(|| model.handler.clone());
    if let Some(file) = handler.as_deref().and_then(handler_file) {
        archive.file(file)?;
    }
    let max_image_pixels = config.models.limit_max_image_pixels.then_some(crate::handlers::image::MAX_IMAGE_PIXELS);
    let backend = match native_backend(&archive, handler.as_deref(), &yaml, max_image_pixels) {
        Some(backend) => backend,
        None => python_backend(&archive, &name, handler, yaml.async_communication, config)?,
    };
    let mut spec = ModelSpec::with_backend(&name, &version, archive.dir.clone(), backend, settings);
    spec.runtime = request
        .runtime
        .map_or_else(|| archive.manifest.runtime.clone(), |runtime| runtime.as_str().to_string());
    spec.origin = origin;
    spec.tensors = yaml.tensors.clone();
    spec.archive = Some(Arc::new(archive));
    Ok(spec)
}

/// What a model's settings fall back on, from the server's configuration.
fn server_defaults(models: &ModelDefaults) -> ServerDefaults {
    ServerDefaults {
        workers: models.workers,
        gpus: models.gpus,
        job_queue_size: models.job_queue_size,
        response_timeout: models.response_timeout,
        startup_timeout: models.startup_timeout,
    }
}

/// The settings' view of a `models=` entry.
fn models_entry(entry: &ModelEntry) -> ModelOverrides {
    ModelOverrides {
        min_workers: entry.min_workers,
        max_workers: entry.max_workers,
        batch_size: entry.batch_size,
        max_batch_delay: entry.max_batch_delay,
        response_timeout: entry.response_timeout,
        startup_timeout: entry.startup_timeout,
    }
}

/// The in-process backend, when the archive is a TorchScript `.pt` with a handler tserve has
/// natively and its YAML does not ask for Python (`tserve: {backend: python}`).
fn native_backend(
    archive: &ModelArchive,
    handler: Option<&str>,
    yaml: &ModelConfig,
    max_image_pixels: Option<u64>,
) -> Option<BackendSpec> {
    let model = &archive.manifest.model;
    let kind = HandlerKind::native(handler)?;
    if model.model_file.is_some() || yaml.wants_python_backend() {
        return None;
    }
    let serialized_file = archive.file(model.serialized_file.as_ref()?).ok()?;
    let is_torchscript = serialized_file.extension().is_some_and(|ext| ext == "pt") && serialized_file.is_file();
    if !is_torchscript {
        return None;
    }
    // The YAML's other keys go to the handler untouched.
    let handler_settings = yaml.handler_settings.clone();
    let handler: HandlerFactory =
        Arc::new(move |dir| handlers::build_handler(kind, dir, &handler_settings, max_image_pixels));
    Some(BackendSpec::Native { serialized_file, handler })
}

/// TorchServe's Python backend, for every other archive: its Python is checked now (a missing
/// one is an error naming the setting), and its requirements installed when
/// `install_py_dep_per_model` is on.
fn python_backend(
    archive: &ModelArchive,
    name: &str,
    handler: Option<String>,
    async_communication: bool,
    config: &Config,
) -> Result<BackendSpec, ServiceError> {
    let env = python::probe(&config.python.python).map_err(|reason| ServiceError::PythonUnavailable {
        python: config.python.python.display().to_string(),
        reason,
    })?;
    if let Some(requirements) = &archive.manifest.model.requirements_file {
        if config.python.install_py_dep_per_model {
            python::install_requirements(&env.python, &archive.dir, &archive.dir.join(requirements)).map_err(|output| {
                log::error!("Custom pip package installation failed for model {name}:\n{output}");
                ServiceError::DependencyInstallFailed { model: name.to_string() }
            })?;
        }
    }
    Ok(BackendSpec::Python(PythonSpec {
        python: env.python,
        worker_script: env.worker_script,
        metrics_config: env.metrics_config,
        // TorchServe's loader takes the manifest's handler as it is; without one, it would have
        // nothing to run, so base_handler's default applies.
        handler: handler.unwrap_or_else(|| "base_handler".to_string()),
        envelope: config.python.envelope.name().to_string(),
        limit_max_image_pixels: config.models.limit_max_image_pixels,
        decode_input_request: config.python.decode_input_request,
        async_communication,
    }))
}

/// The file part of a handler that names one (`handler.py`, `dir/handler.py:fn`); `None` for a
/// built-in or module name (`image_classifier`, `ts.torch_handler.base_handler`, `module:fn`).
fn handler_file(handler: &str) -> Option<&str> {
    let file = handler.split(':').next().unwrap_or(handler);
    (file.ends_with(".py") || file.contains('/')).then_some(file)
}

/// Model names and versions as torch-model-archiver requires names to be
/// (`^[A-Za-z0-9][A-Za-z0-9_\-.]*$`, at most 256 characters): they become paths, thread names
/// and log fields. (TorchServe's frontend checks nothing; tserve refuses at the door.)
fn check_name(what: &str, value: &str) -> Result<(), ServiceError> {
    let valid = value.len() <= 256
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "Invalid {what} {value:?}: it must match ^[A-Za-z0-9][A-Za-z0-9_\\-.]*$ (at most 256 characters)"
        )))
    }
}

/// Refuses more workers than `max_workers_per_model`.
pub(super) fn check_worker_count(workers: usize, limit: usize) -> Result<(), ServiceError> {
    if workers > limit {
        return Err(ServiceError::BadRequest(format!(
            "{workers} workers is more than max_workers_per_model ({limit}) allows"
        )));
    }
    Ok(())
}

/// Removes an archive downloaded for a registration that is gone, off the async threads.
pub(super) async fn remove_download(path: Option<PathBuf>) {
    if path.is_some() {
        let _ = tokio::task::spawn_blocking(move || remove_file(path.as_deref())).await;
    }
}

fn remove_file(path: Option<&std::path::Path>) {
    if let Some(path) = path {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove downloaded archive {}: {e}", path.display());
        }
    }
}
