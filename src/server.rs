//! Starting a server: the actor system, the models of start-up (a snapshot's, or `--models`),
//! the HTTP listeners, snapshots, and a graceful stop on SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, SignalKind};

use crate::actors::{
    ManagerError, ModelOrigin, ModelSpec, Overrides, Register, Registration, Supervisor,
    TakeSnapshot,
};
use crate::archive::{self, ArchiveError, ModelArchive};
use crate::config::{Config, ConfigSource};
use crate::snapshot::{self, SnapshotKind, SnapshotModel, SnapshotWriter};

/// Runs the server on this thread until it is stopped (SIGTERM, SIGINT).
pub fn run(config: Config) -> anyhow::Result<()> {
    actix::System::new().block_on(serve(Arc::new(config)))
}

async fn serve(config: Arc<Config>) -> anyhow::Result<()> {
    match &config.source {
        ConfigSource::File(path) => log::info!("Config file: {}", path.display()),
        ConfigSource::Snapshot(path) => log::info!("Restoring config snapshot {}", path.display()),
        ConfigSource::Defaults => log::info!("No config file; using defaults"),
    }
    Config::log_ignored_keys(&config.properties);
    log::info!(
        "Number of GPUs: {}, default workers per model: {}",
        config.number_of_gpu,
        config.default_workers_per_model
    );
    // Registered before anything is announced, so a stop request can never find the default
    // (fatal) signal action in place.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let snapshots = config.snapshots.then(|| snapshot_writer(&config));
    let supervisor = actix::Supervisor::start(move |_| Supervisor::new(snapshots));
    match config.model_snapshot() {
        Some(json) => restore_snapshot(json, &config, &supervisor).await?,
        None => load_startup_models(&config, &supervisor).await,
    }

    let inference = crate::http::bind_inference(&config, supervisor.clone())
        .with_context(|| format!("cannot listen on {}", config.inference_address))?;
    let management = crate::http::bind_management(&config, supervisor.clone())
        .with_context(|| format!("cannot listen on {}", config.management_address))?;
    for address in [&config.inference_address, &config.management_address] {
        if !matches!(address.host.as_str(), "127.0.0.1" | "localhost" | "::1") {
            log::warn!(
                "listening on {address}, beyond this machine: tserve has no token authorization \
                 yet, so anyone who can reach this address can use it"
            );
        }
    }
    let handles = [inference.server.handle(), management.server.handle()];
    actix::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received: stopping"),
            _ = interrupt.recv() => log::info!("SIGINT received: stopping"),
        }
        // Graceful: stop accepting, let requests in flight finish (up to the shutdown timeout).
        futures_util::future::join_all(handles.iter().map(|handle| handle.stop(true))).await;
    });
    // On stdout, whatever the log level: scripts and tests read the bound ports from it.
    for address in &inference.addresses {
        println!("Inference API bound to http://{address}");
    }
    for address in &management.addresses {
        println!("Management API bound to http://{address}");
    }
    supervisor.send(TakeSnapshot(SnapshotKind::Startup)).await?;

    let (inference, management) = futures_util::future::join(inference.server, management.server).await;
    inference.context("inference server failed")?;
    management.context("management server failed")?;
    supervisor.send(TakeSnapshot(SnapshotKind::Shutdown)).await?;
    log::info!("tserve has stopped serving");
    Ok(())
}

/// Snapshots carry the config as read plus what the command line decided.
fn snapshot_writer(config: &Config) -> SnapshotWriter {
    let mut properties = config.properties.clone();
    if let Some(store) = &config.model_store {
        properties.insert("model_store".into(), store.display().to_string());
    }
    properties.insert("number_of_gpu".into(), config.number_of_gpu.to_string());
    properties.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    if let ConfigSource::File(path) | ConfigSource::Snapshot(path) = &config.source {
        properties.insert("tsConfigFile".into(), path.display().to_string());
    }
    if config.enable_model_api {
        properties.insert("enable_model_api".into(), "true".into());
    }
    SnapshotWriter::new(config.log_location.join("config"), properties)
}

/// Registers the `--models` / `load_models` archives and waits for their workers to load. A
/// model that cannot be loaded is logged and skipped; the others are served.
async fn load_startup_models(config: &Config, supervisor: &Addr<Supervisor>) {
    if config.load_models.is_empty() {
        return;
    }
    let Some(store) = config.model_store.as_deref() else {
        log::error!("--models needs a model store (--model-store or model_store)");
        return;
    };
    let entries = match expand_all(store, &config.load_models) {
        Ok(entries) => entries,
        Err(e) => return log::error!("cannot list the model store: {e}"),
    };
    let mut waits = Vec::new();
    for entry in entries {
        let (name, location) = match entry.split_once('=') {
            Some((name, location)) => (Some(name.to_string()), location.to_string()),
            None => (None, entry.clone()),
        };
        let model = StartupModel {
            origin: ModelOrigin {
                url: location.clone(),
                store_name: location,
                loaded_at_startup: true,
                downloaded: None,
            },
            name,
            overrides: Overrides::default(),
            make_default: false,
        };
        match register(store, model, config, supervisor).await {
            Ok(registration) => waits.push(wait_until_ready(registration)),
            Err(e) => log::error!("Failed to load model {entry}: {e}"),
        }
    }
    futures_util::future::join_all(waits).await;
}

/// Restores the models of a `model_snapshot`: every archive must be in the store, or the
/// server does not start (as TorchServe).
async fn restore_snapshot(json: &str, config: &Config, supervisor: &Addr<Supervisor>) -> anyhow::Result<()> {
    let snapshot = snapshot::parse(json).map_err(anyhow::Error::msg)?;
    let store = config
        .model_store
        .as_deref()
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
            let restored = StartupModel {
                origin: ModelOrigin {
                    url: model.mar_name.clone(),
                    store_name: model.mar_name.clone(),
                    loaded_at_startup: false,
                    downloaded: None,
                },
                name: Some(name.clone()),
                overrides: snapshot_overrides(model),
                make_default: model.default_version,
            };
            let registered = register(store, restored, config, supervisor)
                .await
            .with_context(|| format!("cannot restore model {name} version {version}"))?;
            waits.push(wait_until_ready(registered));
        }
    }
    futures_util::future::join_all(waits).await;
    Ok(())
}

fn snapshot_overrides(model: &SnapshotModel) -> Overrides {
    let seconds = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
    Overrides {
        workers: Some((model.min_workers, model.max_workers)),
        batch_size: Some(model.batch_size),
        max_batch_delay: Some(std::time::Duration::from_millis(model.max_batch_delay)),
        response_timeout: seconds(model.response_timeout),
        startup_timeout: seconds(model.startup_timeout),
        ..Overrides::default()
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

/// A model to load at start-up, from `--models` or from a snapshot.
struct StartupModel {
    /// Where it comes from; `origin.store_name` is the archive in the store.
    origin: ModelOrigin,
    /// Overrides the manifest's model name.
    name: Option<String>,
    overrides: Overrides,
    make_default: bool,
}

async fn register(
    store: &Path,
    model: StartupModel,
    config: &Config,
    supervisor: &Addr<Supervisor>,
) -> anyhow::Result<Registration> {
    let (store, location, limits) =
        (store.to_path_buf(), model.origin.store_name.clone(), config.archive_limits);
    // Unpacking an archive is blocking file work: keep it off the async threads.
    let archive =
        tokio::task::spawn_blocking(move || ModelArchive::open(&store, &location, limits)).await??;
    let spec = ModelSpec::from_archive(archive, model.name.as_deref(), config, model.origin, &model.overrides)?;
    let registration: Result<Registration, ManagerError> =
        supervisor.send(Register::at_startup(spec, model.make_default)).await?;
    Ok(registration?)
}

async fn wait_until_ready(mut registration: Registration) {
    let wanted = registration.workers;
    let waited = registration
        .health
        .wait_for(|health| health.ready >= wanted || health.load_failures > 0);
    // Copy the health out at once: the watch guard must not be held.
    let _ = tokio::time::timeout(registration.startup_timeout, async {
        waited.await.map(|health| *health)
    })
    .await;
    let health = *registration.health.borrow();
    match health {
        health if health.ready >= wanted => log::info!(
            "Model {} version {} loaded with {wanted} workers",
            registration.name,
            registration.version
        ),
        _ => log::error!(
            "Model {} version {}: {} of {wanted} workers loaded; failed loads are retried",
            registration.name,
            registration.version,
            health.ready
        ),
    }
}

