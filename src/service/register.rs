//! Registering a model version, the one way for every caller (the management API, `--models` at
//! start-up, a snapshot restore): resolve the URL into the model store (downloading it if it is
//! one), unpack the archive, resolve its settings, start its manager, and, when asked, wait for
//! its workers; a registration that fails is undone, downloaded file included.

use std::path::PathBuf;
use std::sync::Arc;

use super::{wait_ready, Models, ServiceError};
use crate::actors::{HandlerFactory, ModelOrigin, ModelSpec, Register, Registration, Unregister};
use crate::archive::{fetch_into_store, ModelArchive, Runtime};
use crate::config::Config;
use crate::handlers::{self, HandlerKind};
use crate::settings::{ModelSettings, Overrides};

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
        let store = config.model_store.clone().ok_or(ServiceError::NoModelStore)?;
        let (synchronous, make_default, snapshot) = (request.synchronous, request.make_default, request.snapshot);
        // Downloading, unpacking and reading the archive's files block: off the async threads.
        let spec = tokio::task::spawn_blocking(move || build_spec(&store, request, &config))
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
fn build_spec(store: &std::path::Path, request: RegisterRequest, config: &Config) -> Result<ModelSpec, ServiceError> {
    let entry = fetch_into_store(store, &request.url, &config.allowed_urls)?;
    let origin = ModelOrigin {
        url: request.url.clone(),
        store_name: entry.name.clone(),
        loaded_at_startup: request.at_startup,
        downloaded: entry.downloaded.clone(),
    };
    let spec = ModelArchive::open(store, &entry.name, config.archive_limits)
        .map_err(ServiceError::from)
        .and_then(|archive| spec_from_archive(archive, &request, origin, config));
    if spec.is_err() {
        remove_file(entry.downloaded.as_deref());
    }
    spec
}

/// The spec of an opened archive: its files, its handler, and its settings resolved with
/// TorchServe's precedence.
fn spec_from_archive(
    archive: ModelArchive,
    request: &RegisterRequest,
    origin: ModelOrigin,
    config: &Config,
) -> Result<ModelSpec, ServiceError> {
    let model = &archive.manifest.model;
    let name = request.name.clone().unwrap_or_else(|| model.model_name.clone());
    if let Some(model_file) = &model.model_file {
        return Err(ServiceError::EagerModel {
            model: name,
            model_file: model_file.clone(),
        });
    }
    let serialized_file = model
        .serialized_file
        .as_ref()
        .map(|file| archive.dir.join(file))
        .filter(|path| path.is_file())
        .ok_or_else(|| ServiceError::MissingSerializedFile { model: name.clone() })?;
    let kind = HandlerKind::from_manifest(request.handler.as_deref().or(model.handler.as_deref()))?;
    let version = model.model_version.clone();
    let yaml = archive.model_config()?;
    let models_entry = config.model_overrides(&name, &version).cloned().unwrap_or_default();
    let settings = ModelSettings::resolve(&config.server_defaults(), &models_entry, &yaml, &request.overrides);
    // The YAML's other keys go to the handler untouched.
    let handler_settings = yaml.handler_settings.clone();
    let handler: HandlerFactory = Arc::new(move |dir| handlers::build_handler(kind, dir, &handler_settings));
    let mut spec = ModelSpec::new(&name, &version, serialized_file, handler, settings);
    spec.model_dir = archive.dir.clone();
    spec.runtime = request
        .runtime
        .map_or_else(|| archive.manifest.runtime.clone(), |runtime| runtime.as_str().to_string());
    spec.origin = origin;
    spec.archive = Some(Arc::new(archive));
    Ok(spec)
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
