//! The server's settings, resolved once at start-up from TorchServe's sources in TorchServe's
//! order (see `sources`), read through one key table (`keys`) into groups by consumer
//! (`groups`). A leaf of the crate: it imports nothing from the rest of tserve.

mod address;
mod cloud;
mod groups;
pub mod keys;
mod properties;
mod reader;
mod sources;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use address::ListenAddress;
pub use cloud::CloudRoutes;
pub use groups::{
    ArchiveLimits, ConnectionAge, Cors, Listeners, MetricsMode, ModelDefaults, ModelEntry, Monitoring, PythonBackend,
    Security, TlsSettings,
};

use keys::{Effect, Notice};
use reader::Properties;

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
    #[error("{key} {value} {reason}")]
    Refused {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// What the command line contributes to the configuration.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub ts_config: Option<PathBuf>,
    pub model_store: Option<PathBuf>,
    /// `--workflow-store`.
    pub workflow_store: Option<PathBuf>,
    pub models: Vec<String>,
    /// `--enable-model-api`: can only turn the model API on.
    pub enable_model_api: bool,
    /// `--ncs`: neither restore from nor write config snapshots.
    pub no_config_snapshots: bool,
    /// `--log-config`: a log4j2 XML.
    pub log_config: Option<PathBuf>,
    /// `--disable-token-auth`: can only turn token authorization off.
    pub disable_token_auth: bool,
    /// TorchServe flags given that tserve accepts without effect (`--plugins-path`, ...).
    pub flags_without_effect: Vec<&'static str>,
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

/// Resolved settings, grouped by who consumes them.
#[derive(Debug, Clone)]
pub struct Config {
    /// The properties file these settings came from, if any.
    pub source: ConfigSource,
    pub listeners: Listeners,
    pub models: ModelDefaults,
    pub monitoring: Monitoring,
    pub python: PythonBackend,
    pub security: Security,
    /// Paths a cloud platform asked for in the environment (Vertex AI's).
    pub cloud: CloudRoutes,
    /// Whether config snapshots are written (off with `--ncs`).
    pub snapshots: bool,
    /// The `model_snapshot` JSON to restore, when the settings carry one.
    pub model_snapshot: Option<String>,
    /// What start-up should say about keys and flags that are not in effect.
    pub notices: Vec<Notice>,
    pub flags_without_effect: Vec<&'static str>,
    /// Every key/value as read, secrets left out: snapshots carry them forward. Nothing else
    /// reads it; every setting in effect is a typed field above.
    snapshot_properties: BTreeMap<String, String>,
}

impl Config {
    /// Resolves the settings. `detected_gpus` is what the runtime sees, so this module stays
    /// free of libtorch.
    pub fn resolve(cli: &CliOverrides, detected_gpus: usize) -> Result<Self, ConfigError> {
        let log_location = sources::log_location();
        let source = sources::config_source(cli, &log_location)?;
        let mut props = match &source {
            ConfigSource::File(path) | ConfigSource::Snapshot(path) => properties::read_file(path)?,
            ConfigSource::Defaults => BTreeMap::new(),
        };
        // TorchServe's order: the file, then the command line, then (when enabled) the
        // environment, which wins over both.
        sources::apply_command_line(&mut props, cli);
        sources::apply_environment(&mut props, |name| std::env::var(name).ok());
        cloud::apply_vertex_port(&mut props, |name| std::env::var(name).ok());
        let mut config = Self::from_properties(&props, detected_gpus)?;
        config.source = source;
        config.cloud = CloudRoutes::from_environment(|name| std::env::var(name).ok());
        config.monitoring.log_location = log_location;
        config.monitoring.metrics_location = sources::metrics_location();
        config.monitoring.log_config = cli.log_config.clone();
        config.snapshots = !cli.no_config_snapshots;
        config.flags_without_effect = cli.flags_without_effect.clone();
        Ok(config)
    }

    /// Builds settings from parsed properties, defaults applied; a refused key is an error.
    pub fn from_properties(props: &BTreeMap<String, String>, detected_gpus: usize) -> Result<Self, ConfigError> {
        refuse_keys(props)?;
        let reader = Properties(props);
        Ok(Self {
            source: ConfigSource::Defaults,
            listeners: Listeners::read(&reader)?,
            models: ModelDefaults::read(&reader, detected_gpus)?,
            monitoring: Monitoring::read(&reader)?,
            python: PythonBackend::read(&reader)?,
            security: Security::read(&reader)?,
            cloud: CloudRoutes::default(),
            snapshots: true,
            model_snapshot: reader.string("model_snapshot"),
            notices: keys::notices(props.keys()),
            flags_without_effect: Vec::new(),
            snapshot_properties: props
                .iter()
                .filter(|(name, _)| !keys::find(name).is_some_and(|key| key.secret))
                .filter(|(name, _)| *name != "model_snapshot")
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        })
    }

    /// The `models=` entry for a model version, if any.
    pub fn model_overrides(&self, name: &str, version: &str) -> Option<&ModelEntry> {
        self.models.per_model.get(name).and_then(|versions| versions.get(version))
    }

    /// Logs, once, each key and flag that tserve does not act on.
    pub fn log_notices(&self) {
        for notice in &self.notices {
            match notice {
                Notice::NotInEffect(key) => {
                    log::warn!("config key {key} is a TorchServe setting tserve does not apply yet; ignored")
                }
                Notice::Unknown(key) => log::warn!("unknown config key {key}; ignored"),
            }
        }
        if !self.flags_without_effect.is_empty() {
            log::warn!(
                "accepted for compatibility, without effect in tserve: {}",
                self.flags_without_effect.join(", ")
            );
        }
    }

    /// What every snapshot carries: the config as read (secrets left out) plus what the
    /// command line and the machine decided.
    pub fn snapshot_properties(&self) -> BTreeMap<String, String> {
        let mut properties = self.snapshot_properties.clone();
        if let Some(store) = &self.models.store {
            properties.insert("model_store".into(), store.display().to_string());
        }
        properties.insert("number_of_gpu".into(), self.models.gpus.to_string());
        properties.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        if let ConfigSource::File(path) | ConfigSource::Snapshot(path) = &self.source {
            properties.insert("tsConfigFile".into(), path.display().to_string());
        }
        if self.security.enable_model_api {
            properties.insert("enable_model_api".into(), "true".into());
        }
        properties
    }
}

/// A key the table refuses stops start-up, with the reason and the way forward.
fn refuse_keys(props: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (name, value) in props {
        if let Some(Effect::Refused(reason)) = keys::find(name).map(|key| key.effect) {
            return Err(ConfigError::Refused {
                key: name.clone(),
                value: value.clone(),
                reason,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use groups::Envelope;
    use std::path::Path;
    use std::time::Duration;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_torchserve() {
        let config = Config::from_properties(&props(&[]), 0).unwrap();
        assert_eq!(config.listeners.inference, ListenAddress::new("127.0.0.1", 8080));
        assert_eq!(config.models.job_queue_size, 100);
        assert_eq!(config.listeners.max_request_size, 6_553_500);
        assert_eq!(config.models.response_timeout, Duration::from_secs(120));
        assert_eq!(config.models.gpus, 0);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.models.workers, cpus);
    }

    #[test]
    fn default_workers_follow_gpus_then_config() {
        let config = Config::from_properties(&props(&[]), 4).unwrap();
        assert_eq!(config.models.workers, 4);
        let config = Config::from_properties(&props(&[("number_of_gpu", "2")]), 4).unwrap();
        assert_eq!((config.models.gpus, config.models.workers), (2, 2));
        let config =
            Config::from_properties(&props(&[("default_workers_per_model", "3")]), 4).unwrap();
        assert_eq!(config.models.workers, 3);
    }

    #[test]
    fn number_of_gpu_cannot_exceed_detected() {
        let config = Config::from_properties(&props(&[("number_of_gpu", "8")]), 1).unwrap();
        assert_eq!(config.models.gpus, 1);
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
    fn a_refused_key_stops_start_up_with_the_way_forward() {
        let err = Config::from_properties(&props(&[("keystore", "ks.p12")]), 0).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("keystore ks.p12 (PKCS#12) is not supported") && message.contains("openssl pkcs12"), "{message}");
    }

    #[test]
    fn snapshots_never_carry_secrets_and_notices_name_what_is_not_read() {
        let config = Config::from_properties(
            &props(&[("keystore_pass", "hunter2"), ("job_queue_size", "7"), ("async_logging", "true"), ("typo_key", "1")]),
            0,
        )
        .unwrap();
        let snapshot = config.snapshot_properties();
        assert_eq!(snapshot.get("job_queue_size").map(String::as_str), Some("7"));
        assert!(!snapshot.contains_key("keystore_pass"));
        assert_eq!(
            config.notices,
            vec![Notice::NotInEffect("async_logging".into()), Notice::NotInEffect("keystore_pass".into()), Notice::Unknown("typo_key".into())]
        );
    }

    #[test]
    fn the_envelope_is_one_of_torchserves() {
        let config = Config::from_properties(&props(&[("service_envelope", "kservev2")]), 0).unwrap();
        assert_eq!(config.python.envelope, Envelope::KserveV2);
        assert_eq!(config.python.envelope.name(), "kservev2");
        let err = Config::from_properties(&props(&[("service_envelope", "soap")]), 0).unwrap_err();
        assert!(err.to_string().contains("service_envelope"), "{err}");
        let empty = Config::from_properties(&props(&[("service_envelope", "")]), 0).unwrap();
        assert_eq!(empty.python.envelope, Envelope::None, "KServe's unset label renders as empty");
    }

    #[test]
    fn model_lists_split_on_commas_and_args() {
        let models = groups::split_model_list(&["a.mar,b=c.mar".into(), " d.mar ".into()]);
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
                entries in prop::collection::vec((prop::sample::select(keys::KEYS.iter().map(|key| key.name).collect::<Vec<_>>()), any_value()), 0..12),
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
