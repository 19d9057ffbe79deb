//! One model version's settings, resolved once from every place TorchServe reads them: the
//! server's defaults, the `models=` entry of config.properties, the archive's model-config YAML,
//! and the register call's parameters or a snapshot's values. The actors take the result as it
//! is; snapshots and describe read it back. Pure: no I/O, no actors.
//!
//! Precedence, as TorchServe's code has it (`ModelManager.createModel`, `ApiUtils.handleRegister`):
//! - `batchSize`, `maxBatchDelay`: register parameter, then YAML (when > 0), then `models=`,
//!   then 1 and 100 ms.
//! - `responseTimeout`, `startupTimeout`: YAML (when > 0), then `models=`, then the register
//!   parameter, then the server's `default_response_timeout` / `default_startup_timeout`.
//! - workers: the server's default, then a `models=` min/max pair, then a YAML pair that is valid
//!   (min > 0 and max ≥ min), which also replaces a register call's `initial_workers`; a
//!   snapshot's counts are exact.
//! - `jobQueueSize`, `maxRetryTimeoutInSec`, `clientTimeoutInMills`, `useJobTicket`,
//!   `deviceType`, `deviceIds`: YAML only.

use std::time::Duration;

use crate::archive::{DeviceType, ModelConfig, Opportunistic};

/// TorchServe's defaults for what nothing sets.
pub const DEFAULT_BATCH_SIZE: usize = 1;
pub const DEFAULT_MAX_BATCH_DELAY: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// The server-wide values a model falls back on (from config.properties and the machine).
#[derive(Debug, Clone)]
pub struct ServerDefaults {
    /// Workers a start-up model gets: `default_workers_per_model`, else GPUs, else cores.
    pub workers: usize,
    /// GPUs present and in use (`number_of_gpu`).
    pub gpus: usize,
    pub job_queue_size: usize,
    pub response_timeout: Duration,
    pub startup_timeout: Duration,
}

/// A model version's entry in the `models=` key of config.properties, in TorchServe's units.
/// (The service fills it from the config's entry: settings never read the config itself.)
#[derive(Debug, Clone, Default)]
pub struct ModelOverrides {
    pub min_workers: Option<usize>,
    pub max_workers: Option<usize>,
    pub batch_size: Option<usize>,
    /// Milliseconds.
    pub max_batch_delay: Option<u64>,
    /// Seconds.
    pub response_timeout: Option<u64>,
    /// Seconds.
    pub startup_timeout: Option<u64>,
}

/// Settings given with the model rather than in its archive: a register call's parameters, or a
/// snapshot's values when one is restored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The register call's `initial_workers`.
    pub initial_workers: Option<usize>,
    /// Exact (min, max) worker counts, from a snapshot: nothing overrides them.
    pub workers: Option<(usize, usize)>,
    pub batch_size: Option<usize>,
    pub max_batch_delay: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
}

/// A model version's settings in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Workers kept running; /ping is Unhealthy while fewer are ready.
    pub min_workers: usize,
    /// The most workers the model may be scaled to (never below `min_workers`).
    pub max_workers: usize,
    /// Most jobs run in one batch.
    pub batch_size: usize,
    /// How long a free worker waits for its batch to fill, from its first job.
    pub max_batch_delay: Duration,
    pub job_queue_size: usize,
    /// How long one batch may run; past it the jobs get `Worker died.` and the worker is replaced.
    pub response_timeout: Duration,
    /// How long a worker may take to load the model.
    pub startup_timeout: Duration,
    /// How long failing workers are retried after the first failure.
    pub max_retry_timeout: Duration,
    /// Jobs that waited longer than this in the queue are dropped unrun.
    pub client_timeout: Option<Duration>,
    /// `useJobTicket`: a job is accepted only when a free worker can take it at once.
    pub use_job_ticket: bool,
    /// tserve's opportunistic batching, for backends whose batches are invisible to the
    /// handler (native ones): with `batch_size` 1, a free worker takes up to `max` queued jobs
    /// into one forward without waiting for more. `None` when `batchSize` > 1 keeps its
    /// TorchServe meaning, or the YAML turns it off.
    pub opportunistic: Option<Opportunistic>,
    /// GPUs the workers are spread over, round-robin; empty means CPU.
    pub gpu_ids: Vec<usize>,
}

impl ModelSettings {
    /// Resolves a model version's settings (see the module's precedence rules).
    pub fn resolve(
        server: &ServerDefaults,
        models_entry: &ModelOverrides,
        yaml: &ModelConfig,
        overrides: &Overrides,
    ) -> Self {
        let (min_workers, max_workers) = workers(server, models_entry, yaml, overrides);
        let positive_yaml = |value: Option<Duration>| value.filter(|d| !d.is_zero());
        let seconds = |s: Option<u64>| s.filter(|&s| s > 0).map(Duration::from_secs);
        let batch_size = overrides
            .batch_size
            .or(yaml.batch_size)
            .or(models_entry.batch_size)
            .unwrap_or(DEFAULT_BATCH_SIZE)
            .max(1);
        Self {
            min_workers,
            max_workers,
            batch_size,
            max_batch_delay: overrides
                .max_batch_delay
                .or(positive_yaml(yaml.max_batch_delay))
                .or(models_entry.max_batch_delay.map(Duration::from_millis))
                .unwrap_or(DEFAULT_MAX_BATCH_DELAY),
            job_queue_size: yaml.job_queue_size.unwrap_or(server.job_queue_size),
            response_timeout: yaml
                .response_timeout
                .or(seconds(models_entry.response_timeout))
                .or(overrides.response_timeout)
                .unwrap_or(server.response_timeout),
            startup_timeout: yaml
                .startup_timeout
                .or(seconds(models_entry.startup_timeout))
                .or(overrides.startup_timeout)
                .unwrap_or(server.startup_timeout),
            max_retry_timeout: yaml.max_retry_timeout.unwrap_or(DEFAULT_MAX_RETRY_TIMEOUT),
            client_timeout: yaml.client_timeout,
            use_job_ticket: yaml.use_job_ticket,
            opportunistic: yaml.opportunistic().filter(|_| batch_size == 1),
            gpu_ids: gpu_ids(yaml, server.gpus),
        }
    }
}

/// (min, max) workers; max is never below min.
fn workers(
    server: &ServerDefaults,
    models_entry: &ModelOverrides,
    yaml: &ModelConfig,
    overrides: &Overrides,
) -> (usize, usize) {
    if let Some((min, max)) = overrides.workers {
        return (min, max.max(min));
    }
    let yaml_pair = match (yaml.min_workers, yaml.max_workers) {
        (Some(min), Some(max)) if min > 0 && max >= min => Some((min, max)),
        _ => None,
    };
    if let Some(pair) = yaml_pair {
        return pair;
    }
    if let Some(initial) = overrides.initial_workers {
        return (initial, initial);
    }
    match (models_entry.min_workers, models_entry.max_workers) {
        (Some(min), Some(max)) => (min, max.max(min)),
        _ => (server.workers, server.workers),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(gpus: usize) -> ServerDefaults {
        ServerDefaults {
            workers: 2,
            gpus,
            job_queue_size: 100,
            response_timeout: Duration::from_secs(120),
            startup_timeout: Duration::from_secs(120),
        }
    }

    fn resolve(yaml: &str, models_entry: ModelOverrides, overrides: Overrides) -> ModelSettings {
        let yaml = ModelConfig::parse(yaml).unwrap();
        ModelSettings::resolve(&server(0), &models_entry, &yaml, &overrides)
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let settings = resolve("", ModelOverrides::default(), Overrides::default());
        assert_eq!((settings.min_workers, settings.max_workers), (2, 2));
        assert_eq!((settings.batch_size, settings.max_batch_delay), (1, Duration::from_millis(100)));
        assert_eq!(settings.response_timeout, Duration::from_secs(120));
        assert_eq!(settings.max_retry_timeout, Duration::from_secs(300));
        assert_eq!(settings.job_queue_size, 100);
        assert_eq!(settings.client_timeout, None);
        assert!(settings.gpu_ids.is_empty());
    }

    #[test]
    fn yaml_wins_over_the_models_entry() {
        let models_entry = ModelOverrides {
            batch_size: Some(4),
            max_batch_delay: Some(50),
            response_timeout: Some(30),
            min_workers: Some(3),
            max_workers: Some(3),
            ..Default::default()
        };
        let settings = resolve(
            "batchSize: 8\nminWorkers: 1\nmaxWorkers: 4\n",
            models_entry,
            Overrides::default(),
        );
        assert_eq!(settings.batch_size, 8, "YAML");
        assert_eq!(settings.max_batch_delay, Duration::from_millis(50), "models=");
        assert_eq!(settings.response_timeout, Duration::from_secs(30), "models=");
        assert_eq!((settings.min_workers, settings.max_workers), (1, 4), "YAML pair");
    }

    #[test]
    fn an_inconsistent_yaml_worker_pair_is_ignored() {
        let settings = resolve("minWorkers: 3\nmaxWorkers: 2\n", ModelOverrides::default(), Overrides::default());
        assert_eq!((settings.min_workers, settings.max_workers), (2, 2));
    }

    #[test]
    fn register_parameters_win_for_batching_but_not_for_timeouts_set_in_yaml() {
        let overrides = Overrides {
            initial_workers: Some(1),
            batch_size: Some(4),
            max_batch_delay: Some(Duration::from_millis(7)),
            response_timeout: Some(Duration::from_secs(9)),
            startup_timeout: Some(Duration::from_secs(9)),
            ..Default::default()
        };
        let settings = resolve(
            "batchSize: 8\nmaxBatchDelay: 20\nstartupTimeout: 30\nminWorkers: 2\nmaxWorkers: 3\n",
            ModelOverrides::default(),
            overrides,
        );
        assert_eq!(settings.batch_size, 4, "the register call's batch size");
        assert_eq!(settings.max_batch_delay, Duration::from_millis(7));
        assert_eq!(settings.response_timeout, Duration::from_secs(9), "no YAML value: the call's");
        assert_eq!(settings.startup_timeout, Duration::from_secs(30), "YAML wins, as in TorchServe");
        assert_eq!((settings.min_workers, settings.max_workers), (2, 3), "a valid YAML pair wins");
    }

    #[test]
    fn initial_workers_apply_without_a_yaml_pair_and_may_be_zero() {
        let overrides = Overrides { initial_workers: Some(0), ..Default::default() };
        let settings = resolve("", ModelOverrides::default(), overrides);
        assert_eq!((settings.min_workers, settings.max_workers), (0, 0));
    }

    #[test]
    fn a_snapshots_counts_are_exact() {
        let overrides = Overrides { workers: Some((1, 0)), ..Default::default() };
        let settings = resolve("minWorkers: 2\nmaxWorkers: 3\n", ModelOverrides::default(), overrides);
        assert_eq!((settings.min_workers, settings.max_workers), (1, 1), "max is clamped to min");
    }

    #[test]
    fn a_zero_startup_timeout_from_the_call_is_kept() {
        let overrides = Overrides { startup_timeout: Some(Duration::ZERO), ..Default::default() };
        let settings = resolve("", ModelOverrides::default(), overrides);
        assert_eq!(settings.startup_timeout, Duration::ZERO);
    }

    #[test]
    fn opportunistic_batching_only_where_torchserve_batching_is_not_asked_for() {
        let settings = resolve("", ModelOverrides::default(), Overrides::default());
        assert_eq!(settings.opportunistic, Some(Opportunistic { max: 8, refill: true }), "the default");
        let batched = resolve("batchSize: 4\n", ModelOverrides::default(), Overrides::default());
        assert_eq!(batched.opportunistic, None, "batchSize > 1 keeps TorchServe's meaning");
        let off = resolve("tserve:\n  opportunistic_batching: false\n", ModelOverrides::default(), Overrides::default());
        assert_eq!(off.opportunistic, None);
    }

    #[test]
    fn yaml_queue_retry_and_client_timeout() {
        let settings = resolve(
            "jobQueueSize: 7\nmaxRetryTimeoutInSec: 2\nclientTimeoutInMills: 400\n",
            ModelOverrides::default(),
            Overrides::default(),
        );
        assert_eq!(settings.job_queue_size, 7);
        assert_eq!(settings.max_retry_timeout, Duration::from_secs(2));
        assert_eq!(settings.client_timeout, Some(Duration::from_millis(400)));
    }

    #[test]
    fn gpus_follow_device_settings() {
        let with = |yaml: &str| {
            let yaml = ModelConfig::parse(yaml).unwrap();
            ModelSettings::resolve(&server(2), &ModelOverrides::default(), &yaml, &Overrides::default()).gpu_ids
        };
        assert_eq!(with(""), vec![0, 1]);
        assert_eq!(with("deviceIds: [1]\n"), vec![1]);
        assert_eq!(with("deviceIds: [0, 5]\n"), vec![0, 1], "an unknown id voids the list");
        assert!(with("deviceType: cpu\n").is_empty());
    }
}
