//! The models a server starts with: a restored snapshot's, or `--models` / `load_models`.

use std::path::Path;

use anyhow::{bail, Context as _};

use super::{wait_ready, Models, RegisterRequest, Registered};
use crate::actors::Registration;
use crate::archive::{self, ArchiveError};
use crate::settings::Overrides;
use crate::snapshot::{self, SnapshotModel};

impl Models {
    /// Registers the `--models` / `load_models` archives and waits for their workers. A model
    /// that cannot be loaded is logged and skipped (its failed workers are retried); the others
    /// are served.
    pub async fn load_startup_models(&self) {
        let config = self.config();
        if config.models.load.is_empty() {
            return;
        }
        let Some(store) = config.models.store.as_deref() else {
            log::error!("--models needs a model store (--model-store or model_store)");
            return;
        };
        let entries = match expand_all(store, &config.models.load) {
            Ok(entries) => entries,
            Err(e) => return log::error!("cannot list the model store: {e}"),
        };
        let mut waits = Vec::new();
        for entry in entries {
            let (name, url) = match entry.split_once('=') {
                Some((name, url)) => (Some(name.to_string()), url.to_string()),
                None => (None, entry.clone()),
            };
            let request = RegisterRequest {
                url,
                name,
                at_startup: true,
                ..RegisterRequest::default()
            };
            match self.register(request).await {
                Ok(Registered::Loading(registration)) => waits.push(log_when_ready(registration)),
                Ok(_) => {}
                Err(e) => log::error!("Failed to load model {entry}: {e}"),
            }
        }
        futures_util::future::join_all(waits).await;
    }

    /// Restores the models of a `model_snapshot`: every archive must be in the store, or the
    /// server does not start (as TorchServe).
    pub async fn restore_snapshot(&self, json: &str) -> anyhow::Result<()> {
        let snapshot = snapshot::parse(json).map_err(anyhow::Error::msg)?;
        let store = self
            .config()
            .models
            .store
            .clone()
            .context("the snapshot names models but no model store is configured")?;
        for (name, versions) in &snapshot.models {
            for (version, model) in versions {
                if !store.join(&model.mar_name).exists() {
                    bail!("Model archive file for model :{name}, version :{version} not found in model store");
                }
            }
        }
        if snapshot.model_count == 0 {
            log::warn!("Model snapshot is empty. Starting tserve without initial models.");
        }
        let mut waits = Vec::new();
        for (name, versions) in &snapshot.models {
            for (version, model) in versions {
                let request = RegisterRequest {
                    url: model.mar_name.clone(),
                    name: Some(name.clone()),
                    overrides: snapshot_overrides(model),
                    make_default: model.default_version,
                    ..RegisterRequest::default()
                };
                let registered = self
                    .register(request)
                    .await
                    .with_context(|| format!("cannot restore model {name} version {version}"))?;
                if let Registered::Loading(registration) = registered {
                    waits.push(log_when_ready(registration));
                }
            }
        }
        futures_util::future::join_all(waits).await;
        Ok(())
    }
}

fn snapshot_overrides(model: &SnapshotModel) -> Overrides {
    let seconds = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
    Overrides {
        workers: Some((model.min_workers, model.max_workers)),
        batch_size: Some(model.batch_size),
        max_batch_delay: Some(std::time::Duration::from_millis(model.max_batch_delay)),
        response_timeout: seconds(model.response_timeout),
        startup_timeout: seconds(model.startup_timeout),
        initial_workers: None,
    }
}

/// `all` stands for every archive in the store.
fn expand_all(store: &Path, entries: &[String]) -> Result<Vec<String>, ArchiveError> {
    if entries.iter().any(|e| e.eq_ignore_ascii_case("all")) {
        archive::list_store(store)
    } else {
        Ok(entries.to_vec())
    }
}

async fn log_when_ready(registration: Registration) {
    let (name, version, wanted) = (registration.name.clone(), registration.version.clone(), registration.workers);
    let health = registration.health.clone();
    if wait_ready(registration).await {
        log::info!("Model {name} version {version} loaded with {wanted} workers");
    } else {
        log::error!(
            "Model {name} version {version}: {} of {wanted} workers loaded; failed loads are retried",
            health.borrow().ready
        );
    }
}
