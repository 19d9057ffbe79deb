//! Starting a server: the actor system, the models named at start-up, then the HTTP listeners.

use std::path::Path;

use actix::Addr;
use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::actors::{ManagerError, ModelSpec, Register, Registration, Supervisor};
use crate::archive::{self, ArchiveError, ModelArchive};
use crate::config::Config;

/// Runs the server on this thread until it is stopped (SIGTERM, SIGINT).
pub fn run(config: Config) -> anyhow::Result<()> {
    actix::System::new().block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if let Some(path) = &config.source {
        log::info!("Config file: {}", path.display());
        Config::log_ignored_keys(&Config::read_properties(path)?);
    }
    log::info!(
        "Number of GPUs: {}, default workers per model: {}",
        config.number_of_gpu,
        config.default_workers_per_model
    );
    // Registered before anything is announced, so a stop request can never find the default
    // (fatal) signal action in place.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let supervisor = actix::Supervisor::start(|_| Supervisor::default());
    load_startup_models(&config, &supervisor).await;

    let (server, addresses) = crate::http::bind_inference(&config, supervisor)
        .with_context(|| format!("cannot listen on {}", config.inference_address))?;
    let handle = server.handle();
    actix::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received: stopping"),
            _ = interrupt.recv() => log::info!("SIGINT received: stopping"),
        }
        // Graceful: stop accepting, let requests in flight finish (up to the shutdown timeout).
        handle.stop(true).await;
    });
    for address in addresses {
        // On stdout, whatever the log level: scripts and tests read the bound port from it.
        println!("Inference API bound to http://{address}");
    }
    server.await.context("inference server failed")?;
    log::info!("tserve has stopped serving");
    Ok(())
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
        match register(store, &entry, config, supervisor).await {
            Ok(registration) => waits.push(wait_until_ready(registration)),
            Err(e) => log::error!("Failed to load model {entry}: {e}"),
        }
    }
    futures_util::future::join_all(waits).await;
}

/// `all` stands for every archive in the store.
fn expand_all(store: &Path, entries: &[String]) -> Result<Vec<String>, ArchiveError> {
    if entries.iter().any(|e| e.eq_ignore_ascii_case("all")) {
        archive::list_store(store)
    } else {
        Ok(entries.to_vec())
    }
}

async fn register(
    store: &Path,
    entry: &str,
    config: &Config,
    supervisor: &Addr<Supervisor>,
) -> anyhow::Result<Registration> {
    let (name, location) = match entry.split_once('=') {
        Some((name, location)) => (Some(name.to_string()), location.to_string()),
        None => (None, entry.to_string()),
    };
    let store = store.to_path_buf();
    // Unpacking an archive is blocking file work: keep it off the async threads.
    let archive =
        tokio::task::spawn_blocking(move || ModelArchive::open(&store, &location)).await??;
    let spec = ModelSpec::from_archive(archive, name.as_deref(), config)?;
    let registration: Result<Registration, ManagerError> = supervisor.send(Register(spec)).await?;
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
