//! The resolved settings, grouped by who consumes them, each group read from the properties
//! with TorchServe's defaults applied. Every field holds the value in effect.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::Properties;
use super::{ConfigError, ListenAddress};

/// The HTTP listeners: where they listen and what a request may cost them.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub inference: ListenAddress,
    pub management: ListenAddress,
    /// Where the metrics API listens (`metrics_address`).
    pub metrics: ListenAddress,
    /// `enable_metrics_api` (default true): whether the metrics API listens at all.
    pub metrics_api: bool,
    /// HTTP threads per listener (TorchServe's `number_of_netty_threads`; 0: one per core).
    pub http_threads: usize,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_request_size: usize,
    /// How long a client may take to send a request body (tserve's own key,
    /// `request_read_timeout`, in seconds; TorchServe has none): past it, 408.
    pub request_read_timeout: Duration,
    /// The gRPC inference listener: `grpc_inference_address` (a bare host) and
    /// `grpc_inference_port` (default 7070); TLS with `enable_grpc_ssl`.
    pub grpc_inference: ListenAddress,
    /// The gRPC management listener: `grpc_management_address` and `grpc_management_port`
    /// (default 7071); TLS with `enable_grpc_ssl`.
    pub grpc_management: ListenAddress,
    /// `grpc_inference_max_connection_age_ms` and `..._grace_ms`: unset, connections live on.
    pub grpc_inference_age: ConnectionAge,
    /// `grpc_management_max_connection_age_ms` and `..._grace_ms`.
    pub grpc_management_age: ConnectionAge,
    /// Whether the Open Inference Protocol's own routes are served (`/v2`, health, metadata, and
    /// `inference.GRPCInferenceService`). TorchServe's switch, with tserve's default: on unless
    /// `ts_open_inference_protocol` is written other than `true`/`oip` (or the environment's
    /// `TS_OPEN_INFERENCE_PROTOCOL`, which TorchServe always reads, is set other than `oip`).
    pub open_inference_protocol: bool,
}

impl Listeners {
    pub fn read(props: &Properties) -> Result<Self, ConfigError> {
        // TorchServe's defaults: with no port, inference gets 80 (https 443), management 8081
        // (8444), metrics 8082 (8445).
        Ok(Self {
            inference: props.address("inference_address", (80, 443), 8080)?,
            management: props.address("management_address", (8081, 8444), 8081)?,
            metrics: props.address("metrics_address", (8082, 8445), 8082)?,
            metrics_api: props.on_unless_false("enable_metrics_api"),
            http_threads: match props.parse::<usize>("number_of_netty_threads")?.unwrap_or(0) {
                0 => cores(),
                n => n,
            },
            max_request_size: props.parse("max_request_size")?.unwrap_or(6_553_500),
            request_read_timeout: props.seconds("request_read_timeout", 60)?,
            grpc_inference: grpc_address(props, "inference", 7070)?,
            grpc_management: grpc_address(props, "management", 7071)?,
            grpc_inference_age: ConnectionAge::read(props, "inference")?,
            grpc_management_age: ConnectionAge::read(props, "management")?,
            open_inference_protocol: props
                .string("ts_open_inference_protocol")
                .is_none_or(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "oip")),
        })
    }
}

/// A gRPC listener's `grpc_<api>_address` (a bare host, default 127.0.0.1) and
/// `grpc_<api>_port`, with TLS when `enable_grpc_ssl=true`.
fn grpc_address(props: &Properties, api: &str, default_port: u16) -> Result<ListenAddress, ConfigError> {
    let host = props.string(&format!("grpc_{api}_address")).unwrap_or_else(|| "127.0.0.1".into());
    let port = props.parse(&format!("grpc_{api}_port"))?.unwrap_or(default_port);
    Ok(ListenAddress {
        tls: props.boolean("enable_grpc_ssl"),
        ..ListenAddress::new(&host, port)
    })
}

/// How long a gRPC connection may live, and the grace its calls then get
/// (`grpc_<api>_max_connection_age_ms`, `..._grace_ms`); unset, connections live on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionAge {
    pub max: Option<Duration>,
    pub grace: Option<Duration>,
}

impl ConnectionAge {
    fn read(props: &Properties, api: &str) -> Result<Self, ConfigError> {
        let millis = |key: String| -> Result<Option<Duration>, ConfigError> { Ok(props.parse(&key)?.map(Duration::from_millis)) };
        Ok(Self {
            max: millis(format!("grpc_{api}_max_connection_age_ms"))?,
            grace: millis(format!("grpc_{api}_max_connection_age_grace_ms"))?,
        })
    }
}

/// What models are served and what each falls back on.
#[derive(Debug, Clone)]
pub struct ModelDefaults {
    pub store: Option<PathBuf>,
    /// Where workflow archives are (`workflow_store`, `--workflow-store`; default the model store).
    pub workflow_store: Option<PathBuf>,
    /// `[name=]archive` entries, or `all`, from `--models` or `load_models`.
    pub load: Vec<String>,
    /// Workers each start-up model gets (TorchServe: the configured value, else GPUs, else CPUs).
    pub workers: usize,
    /// `default_workers_per_model` as written (0 when unset): the register API's default for
    /// `initial_workers`, as in TorchServe.
    pub configured_workers: usize,
    /// GPUs in use: min(detected, configured).
    pub gpus: usize,
    /// Capacity of each model version's job queue; a full queue answers 503 at once.
    pub job_queue_size: usize,
    /// How long a request waits for its prediction before it gets 500 `Worker died.`.
    pub response_timeout: Duration,
    /// How long a worker may take to load its model.
    pub startup_timeout: Duration,
    /// The most workers one model version may have (tserve's own `max_workers_per_model`):
    /// a scale or registration asking for more is refused.
    pub max_workers: usize,
    /// How far a model archive may expand when unpacked, and how large a download may be.
    pub archive_limits: ArchiveLimits,
    /// `limit_max_image_pixels` (default true): Pillow's decompression-bomb limit, which the
    /// native image handlers apply too.
    pub limit_max_image_pixels: bool,
    /// Per-model settings from the `models=` key: model name → version → entry.
    pub per_model: BTreeMap<String, BTreeMap<String, ModelEntry>>,
}

impl ModelDefaults {
    pub fn read(props: &Properties, detected_gpus: usize) -> Result<Self, ConfigError> {
        let gpus = match props.parse::<usize>("number_of_gpu")? {
            Some(configured) => configured.min(detected_gpus),
            None => detected_gpus,
        };
        let configured_workers = props.parse::<usize>("default_workers_per_model")?.unwrap_or(0);
        let workers = match configured_workers {
            n if n > 0 => n,
            _ if gpus > 0 => gpus,
            _ => cores(),
        };
        let limits = ArchiveLimits::default();
        Ok(Self {
            store: props.path("model_store"),
            workflow_store: props.path("workflow_store").or_else(|| props.path("model_store")),
            load: props.string("load_models").map(|v| split_model_list(&[v])).unwrap_or_default(),
            workers,
            configured_workers,
            gpus,
            job_queue_size: props.parse("job_queue_size")?.unwrap_or(100),
            response_timeout: props.seconds("default_response_timeout", 120)?,
            startup_timeout: props.seconds("default_startup_timeout", 120)?,
            max_workers: props.parse("max_workers_per_model")?.unwrap_or_else(|| 4 * cores().max(4)),
            archive_limits: ArchiveLimits {
                max_bytes: props.parse("archive_max_bytes")?.unwrap_or(limits.max_bytes),
                max_entries: props.parse("archive_max_entries")?.unwrap_or(limits.max_entries),
            },
            limit_max_image_pixels: props.on_unless_false("limit_max_image_pixels"),
            per_model: props.json("models")?.unwrap_or_default(),
        })
    }
}

/// One model version's entry in the `models=` JSON of config.properties, as TorchServe spells
/// its keys and units. The archive's YAML wins over these; these win over the server defaults.
/// (Its `defaultVersion` and `marName` are what snapshots write; a restore reads them from
/// `model_snapshot`, so here they are accepted and not needed.)
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
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

/// How far a model archive may expand when unpacked (`archive_max_bytes`,
/// `archive_max_entries`), and so how large a downloaded archive may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for ArchiveLimits {
    /// Large enough for big TorchScript models, small enough to stop a bomb filling the disk.
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 100_000,
        }
    }
}

/// TorchServe's log files and metrics.
#[derive(Debug, Clone)]
pub struct Monitoring {
    /// `$LOG_LOCATION` (default `logs`): the access, model and server logs, and snapshots in its
    /// `config` folder.
    pub log_location: PathBuf,
    /// `$METRICS_LOCATION` (default `logs`): the metrics logs.
    pub metrics_location: PathBuf,
    /// `--log-config`: a log4j2 XML whose file names, sizes and levels are honoured.
    pub log_config: Option<PathBuf>,
    /// `metrics_mode`: `log` (default), `prometheus` or `legacy`.
    pub metrics_mode: MetricsMode,
    /// `metrics_config`: a metrics.yaml; TorchServe's default list without one.
    pub metrics_config: Option<PathBuf>,
    /// `model_metrics_auto_detect`: handler metrics outside the metrics.yaml are kept.
    pub model_metrics_auto_detect: bool,
    pub disable_system_metrics: bool,
    /// `metric_time_interval`: seconds between system metric readings (default 60).
    pub metric_time_interval: Duration,
}

impl Monitoring {
    /// The properties' part; the locations and `--log-config` come from the environment and
    /// the command line (see `Config::resolve`).
    pub fn read(props: &Properties) -> Result<Self, ConfigError> {
        Ok(Self {
            log_location: PathBuf::from("logs"),
            metrics_location: PathBuf::from("logs"),
            log_config: None,
            metrics_mode: match props.string("metrics_mode") {
                Some(mode) => MetricsMode::parse(&mode).ok_or_else(|| ConfigError::InvalidValue {
                    key: "metrics_mode".into(),
                    value: mode.clone(),
                    reason: "expected log, prometheus or legacy".into(),
                })?,
                None => MetricsMode::Log,
            },
            metrics_config: props.path("metrics_config"),
            model_metrics_auto_detect: props.boolean("model_metrics_auto_detect"),
            disable_system_metrics: props.boolean("disable_system_metrics"),
            metric_time_interval: Duration::from_secs(props.parse::<u64>("metric_time_interval")?.unwrap_or(60).max(1)),
        })
    }
}

/// `metrics_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsMode {
    Log,
    Prometheus,
    Legacy,
}

impl MetricsMode {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "log" => Some(Self::Log),
            "prometheus" => Some(Self::Prometheus),
            "legacy" => Some(Self::Legacy),
            _ => None,
        }
    }
}

/// TorchServe's Python backend, which serves every archive tserve does not run natively.
#[derive(Debug, Clone)]
pub struct PythonBackend {
    /// The Python that runs the workers (`python`; default: the project's venv).
    pub python: PathBuf,
    /// `install_py_dep_per_model`: pip-install an archive's requirements.txt at registration.
    pub install_py_dep_per_model: bool,
    /// `decode_input_request` (default true): JSON and text inputs reach Python handlers decoded.
    pub decode_input_request: bool,
    /// `service_envelope`: the request envelope Python handlers are wrapped in.
    pub envelope: Envelope,
}

/// The Python when config.properties names none: the one that installed tserve, which the
/// wheel's launcher passes as `TSERVE_PYTHON` (its `sys.executable`, whose `torchserve` is a
/// dependency of the wheel), else the build's venv Python (a source build).
fn default_python() -> PathBuf {
    std::env::var_os("TSERVE_PYTHON")
        .filter(|python| !python.is_empty())
        .map_or_else(|| PathBuf::from(env!("TSERVE_DEFAULT_PYTHON")), PathBuf::from)
}

impl PythonBackend {
    pub fn read(props: &Properties) -> Result<Self, ConfigError> {
        Ok(Self {
            python: props.path("python").unwrap_or_else(default_python),
            install_py_dep_per_model: props.boolean("install_py_dep_per_model"),
            decode_input_request: props.on_unless_false("decode_input_request"),
            // Empty is unset: KServe's runtime template renders an unset label as "".
            envelope: match props.string("service_envelope").filter(|name| !name.trim().is_empty()) {
                Some(name) => Envelope::parse(&name).ok_or_else(|| ConfigError::InvalidValue {
                    key: "service_envelope".into(),
                    value: name.clone(),
                    reason: "expected json, body, kserve or kservev2".into(),
                })?,
                None => Envelope::None,
            },
        })
    }
}

/// TorchServe's request envelopes (`ts/torch_handler/request_envelope/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Requests reach the handler as TorchServe's frontend sends them.
    None,
    Json,
    Body,
    Kserve,
    KserveV2,
}

impl Envelope {
    fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "" => Some(Self::None),
            "json" => Some(Self::Json),
            "body" => Some(Self::Body),
            "kserve" => Some(Self::Kserve),
            "kservev2" => Some(Self::KserveV2),
            _ => None,
        }
    }

    /// The name the Python backend loads the envelope by; empty for none.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Json => "json",
            Self::Body => "body",
            Self::Kserve => "kserve",
            Self::KserveV2 => "kservev2",
        }
    }
}

/// Who may call what, and over which transport.
#[derive(Debug, Clone)]
pub struct Security {
    /// Whether register and unregister are allowed (TorchServe 0.11.1+: off by default).
    pub enable_model_api: bool,
    /// URL patterns models may be registered from: full-match, case-insensitive regexes.
    pub allowed_urls: Vec<regex::Regex>,
    /// Whether `allowed_urls` was written, rather than TorchServe's allow-everything default.
    pub allowed_urls_configured: bool,
    /// Token authorization is off (`disable_token_authorization`, `--disable-token-auth`).
    pub disable_token_authorization: bool,
    /// How long management and inference keys live (`token_expiration_min`, default 60).
    pub token_expiration: Duration,
    /// `cors_allowed_origin`, `cors_allowed_methods`, `cors_allowed_headers`: each, when set,
    /// becomes its `Access-Control-Allow-*` header on every response.
    pub cors: Cors,
    /// What the `https://` listeners serve with.
    pub tls: TlsSettings,
}

/// TorchServe's default: any file or http(s) URL.
const DEFAULT_ALLOWED_URLS: &str = "file://.*|http(s)?://.*";

impl Security {
    pub fn read(props: &Properties) -> Result<Self, ConfigError> {
        Ok(Self {
            enable_model_api: props.boolean("enable_model_api"),
            allowed_urls: props.patterns("allowed_urls", DEFAULT_ALLOWED_URLS)?,
            allowed_urls_configured: props.string("allowed_urls").is_some(),
            disable_token_authorization: props.boolean("disable_token_authorization"),
            token_expiration: props.minutes("token_expiration_min", 60.0)?,
            cors: Cors {
                allowed_origin: props.string("cors_allowed_origin"),
                allowed_methods: props.string("cors_allowed_methods"),
                allowed_headers: props.string("cors_allowed_headers"),
            },
            tls: TlsSettings {
                private_key_file: props.path("private_key_file"),
                certificate_file: props.path("certificate_file"),
            },
        })
    }
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

/// TorchServe's TLS keys: a PEM private key and certificate chain. (Its PKCS#12 `keystore` is
/// refused by the key table, with the way to convert it.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub private_key_file: Option<PathBuf>,
    pub certificate_file: Option<PathBuf>,
}

/// The machine's cores, at least 1.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--models a.mar b=c.mar` and `load_models=a.mar,b=c.mar` both become one list of entries.
pub fn split_model_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}
