//! The server's settings, resolved once at start-up from TorchServe's sources in TorchServe's
//! order: `TS_CONFIG_FILE`, then `--ts-config`, then `./config.properties`; CLI flags override the
//! file for the keys TorchServe lets them override.

mod address;
mod properties;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use address::ListenAddress;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--ts-config file not found: {0}")]
    FileNotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Invalid Environment Variable {0}")]
    EnvVar(String),
    #[error("invalid value for {key}: {value:?} ({reason})")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// What the command line contributes to the configuration.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub ts_config: Option<PathBuf>,
    pub model_store: Option<PathBuf>,
    pub models: Vec<String>,
    /// `--enable-model-api`: can only turn the model API on.
    pub enable_model_api: bool,
    /// `--ncs`: neither restore from nor write config snapshots.
    pub no_config_snapshots: bool,
    /// `--log-config`: a log4j2 XML.
    pub log_config: Option<PathBuf>,
    /// `--disable-token-auth`: can only turn token authorization off.
    pub disable_token_auth: bool,
}

/// Where the settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// No file: defaults and the command line.
    Defaults,
    /// `TS_CONFIG_FILE`, `--ts-config` or `./config.properties`.
    File(PathBuf),
    /// The newest snapshot in `$LOG_LOCATION/config`, restored because no file was named.
    Snapshot(PathBuf),
}

/// Resolved settings. Every field holds the value in effect, defaults applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The properties file these settings came from, if any.
    pub source: ConfigSource,
    /// Every key/value of that file, as read: snapshots carry them forward.
    pub properties: BTreeMap<String, String>,
    pub inference_address: ListenAddress,
    /// Where the management API listens.
    pub management_address: ListenAddress,
    /// Whether register and unregister are allowed (TorchServe 0.11.1+: off by default).
    pub enable_model_api: bool,
    /// URL patterns models may be registered from: full-match, case-insensitive regexes.
    pub allowed_urls: Vec<regex::Regex>,
    /// `$LOG_LOCATION` (default `logs`): the access, model and server logs, and snapshots in its
    /// `config` folder.
    pub log_location: PathBuf,
    /// `$METRICS_LOCATION` (default `logs`): the metrics logs.
    pub metrics_location: PathBuf,
    /// `--log-config`: a log4j2 XML whose file names, sizes and levels are honoured.
    pub log_config: Option<PathBuf>,
    /// Where the metrics API listens (`metrics_address`).
    pub metrics_address: ListenAddress,
    /// `enable_metrics_api` (default true): whether the metrics API listens at all.
    pub enable_metrics_api: bool,
    /// `metrics_mode`: `log` (default), `prometheus` or `legacy`.
    pub metrics_mode: crate::metrics::Mode,
    /// `metrics_config`: a metrics.yaml; TorchServe's default list without one.
    pub metrics_config: Option<PathBuf>,
    /// `model_metrics_auto_detect`: handler metrics outside the metrics.yaml are kept.
    pub model_metrics_auto_detect: bool,
    /// `disable_system_metrics`.
    pub disable_system_metrics: bool,
    /// `metric_time_interval`: seconds between system metric readings (default 60).
    pub metric_time_interval: Duration,
    /// Whether config snapshots are written (off with `--ncs`).
    pub snapshots: bool,
    pub model_store: Option<PathBuf>,
    /// `[name=]archive` entries, or `all`, from `--models` or `load_models`.
    pub load_models: Vec<String>,
    /// Workers each start-up model gets (TorchServe: the configured value, else GPUs, else CPUs).
    pub default_workers_per_model: usize,
    /// `default_workers_per_model` as written (0 when unset): the register API's default for
    /// `initial_workers`, as in TorchServe.
    pub configured_workers_per_model: usize,
    /// GPUs in use: min(detected, configured).
    pub number_of_gpu: usize,
    /// Capacity of each model version's job queue; a full queue answers 503 at once.
    pub job_queue_size: usize,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_request_size: usize,
    /// HTTP threads per listener (TorchServe's `number_of_netty_threads`; 0: one per core).
    pub http_threads: usize,
    /// How long a client may take to send a request body (tserve's own key,
    /// `request_read_timeout`, in seconds; TorchServe has none): past it, 408.
    pub request_read_timeout: Duration,
    /// How long a request waits for its prediction before it gets 500 `Worker died.`.
    pub default_response_timeout: Duration,
    /// How long a worker may take to load its model.
    pub default_startup_timeout: Duration,
    /// How far a model archive may expand when unpacked (zip-bomb protection).
    pub archive_limits: crate::archive::Limits,
    /// Per-model settings from the `models=` key: model name → version → settings.
    pub models: BTreeMap<String, BTreeMap<String, ModelOverrides>>,
    /// The Python that runs Python-backend workers (`python`; default: the project's venv).
    pub python: PathBuf,
    /// `install_py_dep_per_model`: pip-install an archive's requirements.txt at registration.
    pub install_py_dep_per_model: bool,
    /// `decode_input_request` (default true): JSON and text inputs reach Python handlers decoded.
    pub decode_input_request: bool,
    /// `limit_max_image_pixels` (default true): Pillow's decompression-bomb limit.
    pub limit_max_image_pixels: bool,
    /// `service_envelope`: the request envelope Python handlers are wrapped in (`json`, `body`,
    /// `kserve`, `kservev2`), empty for none.
    pub service_envelope: String,
    /// Token authorization is off (`disable_token_authorization`, `--disable-token-auth`).
    pub disable_token_authorization: bool,
    /// How long management and inference keys live (`token_expiration_min`, default 60).
    pub token_expiration: Duration,
    /// `cors_allowed_origin`, `cors_allowed_methods`, `cors_allowed_headers`: each, when set,
    /// becomes its `Access-Control-Allow-*` header on every response.
    pub cors: Cors,
    /// What the `https://` listeners serve with.
    pub tls: TlsSettings,
    /// The most workers one model version may have (tserve's own `max_workers_per_model`):
    /// a scale or registration asking for more is refused.
    pub max_workers_per_model: usize,
}

/// TorchServe's CORS keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    pub allowed_origin: Option<String>,
    pub allowed_methods: Option<String>,
    pub allowed_headers: Option<String>,
}

impl Cors {
    pub fn enabled(&self) -> bool {
        self.allowed_origin.is_some() || self.allowed_methods.is_some() || self.allowed_headers.is_some()
    }
}

/// TorchServe's TLS keys: a PEM private key and certificate chain, or a keystore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub private_key_file: Option<PathBuf>,
    pub certificate_file: Option<PathBuf>,
    /// `keystore` (PKCS#12): refused with a way forward (see the README).
    pub keystore: Option<PathBuf>,
}

/// One model version's entry in the `models=` JSON of config.properties (TorchServe's keys).
/// The archive's YAML wins over these; these win over the server-wide defaults.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
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
    pub default_version: Option<bool>,
    pub mar_name: Option<String>,
}

impl Config {
    /// What a model's settings fall back on.
    pub fn server_defaults(&self) -> crate::settings::ServerDefaults {
        crate::settings::ServerDefaults {
            workers: self.default_workers_per_model,
            gpus: self.number_of_gpu,
            job_queue_size: self.job_queue_size,
            response_timeout: self.default_response_timeout,
            startup_timeout: self.default_startup_timeout,
        }
    }

    /// The `models=` entry for a model version, if any.
    pub fn model_overrides(&self, name: &str, version: &str) -> Option<&ModelOverrides> {
        self.models.get(name).and_then(|versions| versions.get(version))
    }
}

/// Keys of TorchServe's config.properties that tserve reads.
const SUPPORTED_KEYS: &[&str] = &[
    "inference_address",
    "management_address",
    "enable_model_api",
    "allowed_urls",
    "model_snapshot",
    "tsConfigFile",
    "version",
    "model_store",
    "load_models",
    "default_workers_per_model",
    "number_of_gpu",
    "job_queue_size",
    "max_request_size",
    "number_of_netty_threads",
    "request_read_timeout",
    "default_response_timeout",
    "default_startup_timeout",
    "models",
    "archive_max_bytes",
    "archive_max_entries",
    "python",
    "cors_allowed_origin",
    "cors_allowed_methods",
    "cors_allowed_headers",
    "enable_envvars_config",
    "use_env_allowed_urls",
    "keystore",
    "keystore_pass",
    "keystore_type",
    "private_key_file",
    "certificate_file",
    "disable_token_authorization",
    "token_expiration_min",
    "max_workers_per_model",
    "metrics_address",
    "enable_metrics_api",
    "metrics_mode",
    "metrics_config",
    "model_metrics_auto_detect",
    "disable_system_metrics",
    "metric_time_interval",
    "install_py_dep_per_model",
    "decode_input_request",
    "limit_max_image_pixels",
    "service_envelope",
];

/// Keys TorchServe knows that tserve accepts but does not act on yet: they are logged, so a
/// TorchServe config file works unchanged and its owner learns what is not in effect.
const TORCHSERVE_KEYS_NOT_IN_EFFECT: &[&str] = &[
    "grpc_inference_address",
    "grpc_management_address",
    "grpc_inference_port",
    "grpc_management_port",
    "enable_grpc_ssl",
    "ts_open_inference_protocol",
    "netty_client_threads",
    "workflow_store",
    "max_response_size",
    "unregister_model_timeout",
    "system_metrics_cmd",
    "async_logging",
    "blacklist_env_vars",
    "default_service_handler",
    "prefer_direct_buffer",
    "initial_worker_port",
    "initial_distribution_port",
    "ts_header_key_sequence_id",
    "ts_header_key_sequence_start",
    "ts_header_key_sequence_end",
    "ipex_enable",
    "ipex_gpu_enable",
    "cpu_launcher_enable",
    "cpu_launcher_args",
    "use_native_io",
    "io_ratio",
    "debug",
    "model_server_home",
    "plugins_path",
    "vmargs",
];

impl Config {
    /// Resolves the settings. `detected_gpus` is what the runtime sees, so this module stays
    /// free of libtorch.
    pub fn resolve(cli: &CliOverrides, detected_gpus: usize) -> Result<Self, ConfigError> {
        let log_location = log_location();
        let source = config_source(cli, &log_location)?;
        let mut props = match &source {
            ConfigSource::File(path) | ConfigSource::Snapshot(path) => properties::read_file(path)?,
            ConfigSource::Defaults => BTreeMap::new(),
        };
        // TorchServe's order: the file, then the command line, then (when enabled) the
        // environment, which wins over both.
        apply_command_line(&mut props, cli);
        apply_environment(&mut props, |name| std::env::var(name).ok());
        let mut config = Self::from_properties(&props, detected_gpus)?;
        config.source = source;
        config.log_location = log_location;
        config.metrics_location =
            std::env::var_os("METRICS_LOCATION").map_or_else(|| PathBuf::from("logs"), PathBuf::from);
        config.log_config = cli.log_config.clone();
        config.snapshots = !cli.no_config_snapshots;
        Ok(config)
    }

    /// The `model_snapshot` JSON to restore, if the settings carry one.
    pub fn model_snapshot(&self) -> Option<&str> {
        self.properties.get("model_snapshot").map(String::as_str)
    }

    /// Builds settings from parsed properties, defaults applied.
    pub fn from_properties(
        props: &BTreeMap<String, String>,
        detected_gpus: usize,
    ) -> Result<Self, ConfigError> {
        let reader = Properties(props);
        let number_of_gpu = match reader.parse::<usize>("number_of_gpu")? {
            Some(configured) => configured.min(detected_gpus),
            None => detected_gpus,
        };
        let configured_workers_per_model =
            reader.parse::<usize>("default_workers_per_model")?.unwrap_or(0);
        let default_workers_per_model = match configured_workers_per_model {
            n if n > 0 => n,
            _ if number_of_gpu > 0 => number_of_gpu,
            _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // TorchServe's defaults: with no port, inference gets 80 (https 443), management 8081
        // (8444), metrics 8082 (8445).
        let inference_address = reader.address("inference_address", (80, 443), 8080)?;
        let management_address = reader.address("management_address", (8081, 8444), 8081)?;
        let allowed_urls = props
            .get("allowed_urls")
            .map_or(DEFAULT_ALLOWED_URLS, String::as_str)
            .split(',')
            .map(str::trim)
            .filter(|pattern| !pattern.is_empty())
            .map(|pattern| {
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ConfigError::InvalidValue {
                        key: "allowed_urls".into(),
                        value: pattern.to_string(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seconds = |key: &str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(reader.parse::<u64>(key)?.unwrap_or(120)))
        };
        Ok(Self {
            source: ConfigSource::Defaults,
            properties: props.clone(),
            inference_address,
            management_address,
            enable_model_api: reader.boolean("enable_model_api"),
            allowed_urls,
            log_location: PathBuf::from("logs"),
            metrics_location: PathBuf::from("logs"),
            log_config: None,
            metrics_address: reader.address("metrics_address", (8082, 8445), 8082)?,
            enable_metrics_api: !props.get("enable_metrics_api").is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
            metrics_mode: match props.get("metrics_mode") {
                Some(mode) => crate::metrics::Mode::parse(mode).ok_or_else(|| ConfigError::InvalidValue {
                    key: "metrics_mode".into(),
                    value: mode.clone(),
                    reason: "expected log, prometheus or legacy".into(),
                })?,
                None => crate::metrics::Mode::Log,
            },
            metrics_config: props.get("metrics_config").map(PathBuf::from),
            model_metrics_auto_detect: reader.boolean("model_metrics_auto_detect"),
            disable_system_metrics: reader.boolean("disable_system_metrics"),
            metric_time_interval: Duration::from_secs(reader.parse::<u64>("metric_time_interval")?.unwrap_or(60).max(1)),
            snapshots: true,
            configured_workers_per_model,
            model_store: props.get("model_store").map(PathBuf::from),
            load_models: props
                .get("load_models")
                .map(|v| split_model_list(std::slice::from_ref(v)))
                .unwrap_or_default(),
            default_workers_per_model,
            number_of_gpu,
            job_queue_size: reader.parse("job_queue_size")?.unwrap_or(100),
            max_request_size: reader.parse("max_request_size")?.unwrap_or(6_553_500),
            http_threads: match reader.parse::<usize>("number_of_netty_threads")?.unwrap_or(0) {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            request_read_timeout: Duration::from_secs(reader.parse("request_read_timeout")?.unwrap_or(60)),
            default_response_timeout: seconds("default_response_timeout")?,
            default_startup_timeout: seconds("default_startup_timeout")?,
            archive_limits: {
                let defaults = crate::archive::Limits::default();
                crate::archive::Limits {
                    max_bytes: reader.parse("archive_max_bytes")?.unwrap_or(defaults.max_bytes),
                    max_entries: reader.parse("archive_max_entries")?.unwrap_or(defaults.max_entries),
                }
            },
            python: props.get("python").map_or_else(|| PathBuf::from(env!("TSERVE_DEFAULT_PYTHON")), PathBuf::from),
            install_py_dep_per_model: reader.boolean("install_py_dep_per_model"),
            decode_input_request: !props.get("decode_input_request").is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
            limit_max_image_pixels: !props.get("limit_max_image_pixels").is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
            service_envelope: props.get("service_envelope").cloned().unwrap_or_default(),
            disable_token_authorization: reader.boolean("disable_token_authorization"),
            token_expiration: reader.minutes("token_expiration_min", 60.0)?,
            cors: Cors {
                allowed_origin: props.get("cors_allowed_origin").cloned(),
                allowed_methods: props.get("cors_allowed_methods").cloned(),
                allowed_headers: props.get("cors_allowed_headers").cloned(),
            },
            tls: TlsSettings {
                private_key_file: props.get("private_key_file").map(PathBuf::from),
                certificate_file: props.get("certificate_file").map(PathBuf::from),
                keystore: props.get("keystore").map(PathBuf::from),
            },
            max_workers_per_model: reader
                .parse("max_workers_per_model")?
                .unwrap_or_else(|| 4 * std::thread::available_parallelism().map_or(1, |n| n.get()).max(4)),
            models: match props.get("models") {
                Some(json) => serde_json::from_str(json).map_err(|e| ConfigError::InvalidValue {
                    key: "models".into(),
                    value: json.clone(),
                    reason: e.to_string(),
                })?,
                None => BTreeMap::new(),
            },
        })
    }

    /// Logs, once, each key that tserve does not act on.
    pub fn log_ignored_keys(props: &BTreeMap<String, String>) {
        for key in props.keys() {
            if SUPPORTED_KEYS.contains(&key.as_str()) {
                continue;
            }
            if TORCHSERVE_KEYS_NOT_IN_EFFECT.contains(&key.as_str()) {
                log::warn!("config key {key} is a TorchServe setting tserve does not apply yet; ignored");
            } else {
                log::warn!("unknown config key {key}; ignored");
            }
        }
    }
}

/// `enable_envvars_config=true`: each key can be set by the environment as `TS_<KEY>`
/// (`TS_INFERENCE_ADDRESS`, `TS_DISABLE_TOKEN_AUTHORIZATION`, ...), and the environment wins, as
/// in TorchServe; `TS_ALLOWED_URLS` only with `use_env_allowed_urls=true`, since a URL
/// allow-list set from the environment is a way around the file.
/// The keys the command line sets, as TorchServe's ConfigManager sets them: the model store and
/// models replace the file's; the model API and token switches can only turn things on/off.
fn apply_command_line(props: &mut BTreeMap<String, String>, cli: &CliOverrides) {
    if let Some(store) = &cli.model_store {
        props.insert("model_store".into(), store.to_string_lossy().into_owned());
    }
    if !cli.models.is_empty() {
        props.insert("load_models".into(), cli.models.join(","));
    }
    if cli.enable_model_api {
        props.insert("enable_model_api".into(), "true".into());
    }
    if cli.disable_token_auth {
        props.insert("disable_token_authorization".into(), "true".into());
    }
}

/// TorchServe keys that have no `TS_` variable in TorchServe, so the environment cannot set them.
const NOT_FROM_ENVIRONMENT: &[&str] = &[
    "enable_envvars_config",
    "use_env_allowed_urls",
    "model_snapshot",
    "models",
    "python",
    "metric_time_interval",
    "system_metrics_cmd",
    "use_native_io",
    "io_ratio",
];

fn apply_environment(props: &mut BTreeMap<String, String>, lookup: impl Fn(&str) -> Option<String>) {
    let enabled = |props: &BTreeMap<String, String>, key: &str| {
        props.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    if !enabled(props, "enable_envvars_config") {
        return;
    }
    let env_allowed_urls = enabled(props, "use_env_allowed_urls");
    for key in SUPPORTED_KEYS.iter().chain(TORCHSERVE_KEYS_NOT_IN_EFFECT) {
        if (*key == "allowed_urls" && !env_allowed_urls) || NOT_FROM_ENVIRONMENT.contains(key) {
            continue;
        }
        if let Some(value) = lookup(&format!("TS_{}", key.to_ascii_uppercase())) {
            props.insert(key.to_string(), value);
        }
    }
}

/// TorchServe's default: any file or http(s) URL.
const DEFAULT_ALLOWED_URLS: &str = "file://.*|http(s)?://.*";

/// `$LOG_LOCATION`, default `logs`.
fn log_location() -> PathBuf {
    std::env::var_os("LOG_LOCATION").map_or_else(|| PathBuf::from("logs"), PathBuf::from)
}

/// TorchServe's order: `TS_CONFIG_FILE`, then `--ts-config`, then (unless `--ncs`) the newest
/// snapshot, then `./config.properties`.
fn config_source(cli: &CliOverrides, log_location: &Path) -> Result<ConfigSource, ConfigError> {
    let explicit = std::env::var_os("TS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| cli.ts_config.clone());
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(ConfigSource::File(path))
        } else {
            Err(ConfigError::FileNotFound(path))
        };
    }
    if !cli.no_config_snapshots {
        if let Some(snapshot) = crate::snapshot::latest(&log_location.join("config")) {
            return Ok(ConfigSource::Snapshot(snapshot));
        }
    }
    let local = PathBuf::from("config.properties");
    Ok(if local.is_file() {
        ConfigSource::File(local)
    } else {
        ConfigSource::Defaults
    })
}

/// `--models a.mar b=c.mar` and `load_models=a.mar,b=c.mar` both become one list of entries.
fn split_model_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// Typed access to property values, with the key named in every error.
struct Properties<'a>(&'a BTreeMap<String, String>);

impl Properties<'_> {
    /// A non-negative number of minutes, fractions allowed, as a duration.
    fn minutes(&self, key: &str, default: f64) -> Result<Duration, ConfigError> {
        let minutes = self.parse::<f64>(key)?.unwrap_or(default);
        Duration::try_from_secs_f64(minutes * 60.0).map_err(|e| ConfigError::InvalidValue {
            key: key.to_string(),
            value: minutes.to_string(),
            reason: e.to_string(),
        })
    }

    /// Java's `Boolean.parseBoolean`, as TorchServe reads flags: "true" in any case.
    fn boolean(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A listener address: `http://127.0.0.1:<unset_port>` when the key is absent,
    /// `default_port` when the value names none.
    fn address(&self, key: &str, (default_port, tls_port): (u16, u16), unset_port: u16) -> Result<ListenAddress, ConfigError> {
        match self.0.get(key) {
            Some(value) => ListenAddress::parse(value, default_port, tls_port).map_err(|reason| {
                ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: value.clone(),
                    reason,
                }
            }),
            None => Ok(ListenAddress::new("127.0.0.1", unset_port)),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(key)
            .map(|value| {
                value.trim().parse().map_err(|e: T::Err| ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: value.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_torchserve() {
        let config = Config::from_properties(&props(&[]), 0).unwrap();
        assert_eq!(config.inference_address, ListenAddress::new("127.0.0.1", 8080));
        assert_eq!(config.job_queue_size, 100);
        assert_eq!(config.max_request_size, 6_553_500);
        assert_eq!(config.default_response_timeout, Duration::from_secs(120));
        assert_eq!(config.number_of_gpu, 0);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.default_workers_per_model, cpus);
    }

    #[test]
    fn default_workers_follow_gpus_then_config() {
        let config = Config::from_properties(&props(&[]), 4).unwrap();
        assert_eq!(config.default_workers_per_model, 4);
        let config = Config::from_properties(&props(&[("number_of_gpu", "2")]), 4).unwrap();
        assert_eq!((config.number_of_gpu, config.default_workers_per_model), (2, 2));
        let config =
            Config::from_properties(&props(&[("default_workers_per_model", "3")]), 4).unwrap();
        assert_eq!(config.default_workers_per_model, 3);
    }

    #[test]
    fn number_of_gpu_cannot_exceed_detected() {
        let config = Config::from_properties(&props(&[("number_of_gpu", "8")]), 1).unwrap();
        assert_eq!(config.number_of_gpu, 1);
    }

    #[test]
    fn bad_number_names_the_key() {
        let err = Config::from_properties(&props(&[("job_queue_size", "lots")]), 0).unwrap_err();
        assert!(err.to_string().contains("job_queue_size"), "{err}");
    }

    #[test]
    fn models_json_gives_per_model_settings() {
        let json = r#"{"mlp": {"1.0": {"batchSize": 8, "maxBatchDelay": 5, "minWorkers": 2,
                       "maxWorkers": 2, "defaultVersion": true, "marName": "mlp.mar"}}}"#;
        let config = Config::from_properties(&props(&[("models", json)]), 0).unwrap();
        let mlp = config.model_overrides("mlp", "1.0").unwrap();
        assert_eq!((mlp.batch_size, mlp.max_batch_delay, mlp.min_workers), (Some(8), Some(5), Some(2)));
        assert!(config.model_overrides("mlp", "2.0").is_none());
        let err = Config::from_properties(&props(&[("models", "{broken")]), 0).unwrap_err();
        assert!(err.to_string().contains("models"), "{err}");
    }

    #[test]
    fn the_environment_sets_keys_only_when_enabled() {
        let env = |name: &str| match name {
            "TS_INFERENCE_ADDRESS" => Some("http://0.0.0.0:9999".to_string()),
            "TS_ALLOWED_URLS" => Some("http://evil/.*".to_string()),
            "TS_DISABLE_TOKEN_AUTHORIZATION" => Some("true".to_string()),
            _ => None,
        };
        let mut off = props(&[]);
        apply_environment(&mut off, env);
        assert!(off.is_empty());
        let mut on = props(&[("enable_envvars_config", "true"), ("inference_address", "http://127.0.0.1:1")]);
        apply_environment(&mut on, env);
        assert_eq!(on["inference_address"], "http://0.0.0.0:9999", "the environment wins");
        assert_eq!(on["disable_token_authorization"], "true");
        assert!(!on.contains_key("allowed_urls"), "not without use_env_allowed_urls");
        let mut snapshot = props(&[("enable_envvars_config", "true")]);
        apply_environment(&mut snapshot, |name| (name == "TS_MODEL_SNAPSHOT").then(|| "{}".to_string()));
        assert!(!snapshot.contains_key("model_snapshot"), "TorchServe has no TS_MODEL_SNAPSHOT");
        let mut urls = props(&[("enable_envvars_config", "true"), ("use_env_allowed_urls", "true")]);
        apply_environment(&mut urls, env);
        assert_eq!(urls["allowed_urls"], "http://evil/.*");
    }

    #[test]
    fn the_environment_wins_over_the_command_line_as_in_torchserve() {
        let cli = CliOverrides {
            disable_token_auth: true,
            model_store: Some(PathBuf::from("/cli/store")),
            models: vec!["a.mar".into(), "b.mar".into()],
            ..CliOverrides::default()
        };
        let mut plain = props(&[("model_store", "/file/store")]);
        apply_command_line(&mut plain, &cli);
        apply_environment(&mut plain, |_| Some("x".into()));
        assert_eq!(plain["model_store"], "/cli/store", "the command line over the file");
        assert_eq!(plain["load_models"], "a.mar,b.mar");
        let mut enabled = props(&[("enable_envvars_config", "true")]);
        apply_command_line(&mut enabled, &cli);
        apply_environment(&mut enabled, |name| (name == "TS_DISABLE_TOKEN_AUTHORIZATION").then(|| "false".into()));
        assert_eq!(enabled["disable_token_authorization"], "false", "the environment over the command line");
    }

    #[test]
    fn model_lists_split_on_commas_and_args() {
        let models = split_model_list(&["a.mar,b=c.mar".into(), " d.mar ".into()]);
        assert_eq!(models, vec!["a.mar", "b=c.mar", "d.mar"]);
    }

    mod arbitrary_input {
        //! Arbitrary config.properties text and arbitrary values for every key tserve reads: each
        //! gives settings or a `ConfigError`, never a panic. `PROPTEST_CASES` raises the count.
        use super::*;
        use proptest::prelude::*;

        /// Values a user (or a fuzzer) might put anywhere: text, numbers at the edges, addresses.
        fn any_value() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,24}",
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| n.to_string()),
                prop::sample::select(vec![
                    "inf", "-inf", "NaN", "1e300", "-1", "0", "true", "FALSE", "", " ",
                    "http://0.0.0.0:99999", "https://[::1]:0", "unix:/tmp/x", "http://:80",
                    "{\"a\": {\"1.0\": {\"batchSize\": -3}}}", "(", "a{99999999}",
                ])
                .prop_map(str::to_string),
            ]
        }

        proptest! {
            #![proptest_config(crate::property_tests::config())]
            #[test]
            fn arbitrary_properties_text_never_panics(text in prop::collection::vec(any::<u8>(), 0..512)) {
                let parsed = properties::parse(text.as_slice(), Path::new("config.properties"), |name| {
                    (name.len() % 2 == 0).then(|| name.to_string())
                });
                if let Ok(props) = parsed {
                    let _ = Config::from_properties(&props, 0);
                }
            }

            #[test]
            fn arbitrary_values_for_every_key_never_panic(
                entries in prop::collection::vec((prop::sample::select(SUPPORTED_KEYS), any_value()), 0..12),
                gpus in 0usize..3,
            ) {
                let props: BTreeMap<String, String> =
                    entries.into_iter().map(|(key, value)| (key.to_string(), value)).collect();
                if let Err(e) = Config::from_properties(&props, gpus) {
                    // An error names the key it is about.
                    let message = e.to_string();
                    prop_assert!(props.keys().any(|key| message.contains(key.as_str())), "{}", message);
                }
            }
        }
    }
}
