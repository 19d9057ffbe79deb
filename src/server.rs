//! Starting a server: the actor system, the models of start-up (a snapshot's, or `--models`),
//! the HTTP listeners, snapshots, and a graceful stop on SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::auth::Tokens;
use crate::config::{Config, ConfigSource};
use crate::http::Api;
use crate::logging::{self, LogConfig};
use crate::metrics::definitions::MetricsConfig;
use crate::metrics::{Metrics, MetricsSettings};
use crate::service::Models;
use crate::snapshot::{SnapshotKind, SnapshotWriter};

/// Runs the server on this thread until it is stopped (SIGTERM, SIGINT).
pub fn run(config: Config) -> anyhow::Result<()> {
    start_log_files(&config)?;
    let metrics = start_metrics(&config)?;
    let system = actix::System::new();
    let outcome = system.block_on(serve(Arc::new(config), metrics));
    if outcome.is_err() {
        // A start-up failure (a bad model_snapshot, a port in use) can leave actors that never
        // ran: dropping the System would have actix poll their `started` outside any runtime,
        // which panics. The process is about to exit with the error; nothing needs dropping.
        std::mem::forget(system);
    }
    outcome
}

/// TorchServe's log files, where `--log-config` or `LOG_LOCATION`/`METRICS_LOCATION` say.
fn start_log_files(config: &Config) -> anyhow::Result<()> {
    let log_config = match &config.monitoring.log_config {
        Some(path) => {
            let xml = std::fs::read_to_string(path).with_context(|| format!("cannot read --log-config {}", path.display()))?;
            let parsed = LogConfig::from_log4j2(&xml, &config.monitoring.log_location, &config.monitoring.metrics_location)
                .map_err(|e| anyhow::anyhow!("cannot use --log-config {}: {e}", path.display()))?;
            log::info!(
                "Log config {}: file names, sizes, rollover counts and levels are honoured; layouts \
                 and other appenders are not (tserve writes TorchServe's patterns)",
                path.display()
            );
            parsed
        }
        None => LogConfig::defaults(&config.monitoring.log_location, &config.monitoring.metrics_location),
    };
    logging::start_files(log_config).map_err(anyhow::Error::msg)
}

/// The metrics TorchServe's `metrics.yaml` (or `metrics_config`) defines, in `metrics_mode`, and
/// the system metrics collector.
fn start_metrics(config: &Config) -> anyhow::Result<Arc<Metrics>> {
    let definitions = match &config.monitoring.metrics_config {
        Some(path) => {
            let yaml = std::fs::read_to_string(path).with_context(|| format!("cannot read metrics_config {}", path.display()))?;
            MetricsConfig::parse(&yaml).map_err(|e| anyhow::anyhow!("invalid metrics_config {}: {e}", path.display()))?
        }
        None => MetricsConfig::default_list(),
    };
    let metrics = Metrics::new(MetricsSettings {
        mode: config.monitoring.metrics_mode,
        definitions,
        auto_detect: config.monitoring.model_metrics_auto_detect,
        hostname: crate::metrics::hostname(),
    });
    if !config.monitoring.disable_system_metrics {
        crate::metrics::system::start(metrics.clone(), config.monitoring.metric_time_interval);
    }
    Ok(metrics)
}

async fn serve(config: Arc<Config>, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    match &config.source {
        ConfigSource::File(path) => log::info!("Config file: {}", path.display()),
        ConfigSource::Snapshot(path) => log::info!("Restoring config snapshot {}", path.display()),
        ConfigSource::Defaults => log::info!("No config file; using defaults"),
    }
    config.log_notices();
    log::info!(
        "Number of GPUs: {}, default workers per model: {}",
        config.models.gpus,
        config.models.workers
    );
    // Registered before anything is announced, so a stop request can never find the default
    // (fatal) signal action in place.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let snapshots = config.snapshots.then(|| snapshot_writer(&config));
    let models = Models::start(config.clone(), snapshots, metrics);
    match config.model_snapshot.as_deref() {
        Some(json) => models.restore_snapshot(json).await?,
        None => models.load_startup_models().await,
    }

    let leftovers = tokio::task::spawn_blocking(crate::archive::remove_leftovers).await.unwrap_or(0);
    if leftovers > 0 {
        log::info!("removed {leftovers} unpacked archives left by tserve processes that were killed");
    }
    // The key file is written off the async thread the actors share.
    let tokens = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || start_token_authorization(&config))
            .await
            .context("Token Authorization setup unsuccessful")??
    };
    warn_about_exposure(&config);
    // One listener for both APIs when their addresses are equal, as TorchServe does.
    let shared = config.listeners.inference.same_listener(&config.listeners.management);
    if shared && config.listeners.inference.tls != config.listeners.management.tls {
        anyhow::bail!(
            "inference_address and management_address are the same port, {}, but only one of them is https",
            config.listeners.inference
        );
    }
    let apis: &[Api] = match (shared, config.listeners.metrics_api) {
        (true, true) => &[Api::Both, Api::Metrics],
        (true, false) => &[Api::Both],
        (false, true) => &[Api::Inference, Api::Management, Api::Metrics],
        (false, false) => &[Api::Inference, Api::Management],
    };
    let mut listeners = Vec::with_capacity(apis.len());
    for &api in apis {
        let listener = crate::http::bind_api(&models, api, tokens.clone()).map_err(anyhow::Error::msg)?;
        listeners.push((api, listener));
    }
    // gRPC, as TorchServe: inference and management listeners beside the REST ones.
    let grpc = [
        ("Inference", crate::grpc::bind_inference(&models, tokens.clone()).map_err(anyhow::Error::msg)?),
        ("Management", crate::grpc::bind_management(&models, tokens.clone()).map_err(anyhow::Error::msg)?),
    ];
    let grpc_lines: Vec<String> = grpc
        .iter()
        .map(|(name, listener)| format!("gRPC {name} API bound to {}://{}", listener.scheme, listener.address))
        .collect();
    let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel();
    let handles: Vec<_> = listeners.iter().map(|(_, listener)| listener.server.handle()).collect();
    actix::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received: stopping"),
            _ = interrupt.recv() => log::info!("SIGINT received: stopping"),
        }
        // Graceful: stop accepting, let requests in flight finish (up to the shutdown timeout).
        let http = futures_util::future::join_all(handles.iter().map(|handle| handle.stop(true)));
        // gRPC calls in flight get as long as actix gives HTTP requests (its 30 s default).
        let grpc = futures_util::future::join_all(grpc.into_iter().map(|(_, listener)| async {
            tokio::time::timeout(std::time::Duration::from_secs(30), listener.stop())
                .await
                .unwrap_or(Err("gRPC calls were still running 30 s after the stop".into()))
        }));
        let (_, grpc) = futures_util::future::join(http, grpc).await;
        let _ = grpc_stop.send(grpc.into_iter().collect::<Result<Vec<()>, String>>());
    });
    // On stdout, whatever the log level: scripts and tests read the bound ports from it.
    for (api, listener) in &listeners {
        let names: &[&str] = match api {
            Api::Inference => &["Inference"],
            Api::Management => &["Management"],
            Api::Both => &["Inference", "Management"],
            Api::Metrics => &["Metrics"],
        };
        for name in names {
            for address in &listener.addresses {
                println!("{name} API bound to {}://{address}", listener.scheme);
            }
        }
    }
    for line in &grpc_lines {
        println!("{line}");
    }
    models.snapshot(SnapshotKind::Startup).await?;

    let served = futures_util::future::join_all(listeners.into_iter().map(|(_, listener)| listener.server)).await;
    for outcome in served {
        outcome.context("a listener failed")?;
    }
    if let Ok(Err(e)) = grpc_stopped.await {
        anyhow::bail!("the gRPC listener failed: {e}");
    }
    models.snapshot(SnapshotKind::Shutdown).await?;
    log::info!("tserve has stopped serving");
    Ok(())
}

/// Token authorization, unless it is turned off: the keys, written to `key_file.json` here.
fn start_token_authorization(config: &Config) -> anyhow::Result<Option<Arc<Tokens>>> {
    if config.security.disable_token_authorization {
        return Ok(None);
    }
    let tokens = Tokens::start(Path::new("."), config.security.token_expiration).context("Token Authorization setup unsuccessful")?;
    log::info!(
        "\n######\ntserve enforces token authorization by default, as TorchServe 0.12 does.\n\
         This requires the correct token to be provided when calling an API.\n\
         Key file located at {}\n\
         Send it as `Authorization: Bearer <key>`; turn it off with --disable-token-auth.\n######",
        std::fs::canonicalize(tokens.file()).unwrap_or_else(|_| tokens.file().to_path_buf()).display()
    );
    Ok(Some(tokens))
}

/// TorchServe's warning about `allowed_urls`, and a louder one of tserve's own for a listener
/// beyond this machine without token authorization.
fn warn_about_exposure(config: &Config) {
    if !config.security.allowed_urls_configured {
        log::warn!(
            "Your tserve instance can access any URL to load models. When deploying to production, \
             make sure to limit the set of allowed_urls in config.properties (for example \
             allowed_urls=https://models\\.example\\.com/.*)"
        );
    }
    if config.security.disable_token_authorization {
        for address in [&config.listeners.inference, &config.listeners.management] {
            if !matches!(address.host.as_str(), "127.0.0.1" | "localhost" | "::1") {
                log::warn!(
                    "\n!!!!!!\nlistening on {address}, beyond this machine, with token authorization \
                     OFF: anyone who can reach this address can run and register models.\n!!!!!!"
                );
            }
        }
    }
}

/// Snapshots carry the config as read plus what the command line decided.
fn snapshot_writer(config: &Config) -> SnapshotWriter {
    SnapshotWriter::new(config.monitoring.log_location.join("config"), config.snapshot_properties())
}
