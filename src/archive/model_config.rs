//! The archive's model-config YAML (`--config-file`, `configFile` in the manifest): the frontend
//! keys TorchServe's `ModelConfig` reads, with its types and clamps. A value of the wrong type is
//! ignored with a warning, as in TorchServe; every other top-level key is kept for the handler.
//! Keys that ask for a TorchServe feature tserve does not have (multi-process parallelism,
//! continuous or sequence batching, per-model venvs) are collected, so registration can refuse
//! the archive instead of serving it differently from what it asks.

use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::ArchiveError;

/// The most queued requests a free native worker takes into one forward when nothing asks for
/// batching. Measured on one CPU thread (`benches/batch_cost.py`): the MLP's forward runs 4.3×
/// the samples per second at batch 8 as at batch 1, ResNet-18's no faster at any batch size; 8
/// keeps most of the gain where batching pays and bounds how long requests in one batch wait for
/// each other where it does not.
pub const DEFAULT_OPPORTUNISTIC_BATCH_MAX: usize = 8;

/// tserve's opportunistic batching of a native model, as its YAML leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opportunistic {
    /// Queued jobs a free worker takes into one batch at most.
    pub max: usize,
    /// Whether a worker back from a batch of several waits, briefly, for as many jobs to
    /// gather before it takes the next (see `JobQueue::refill` in `actors::queue`).
    pub refill: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Cpu,
    Gpu,
}

#[derive(Debug, Clone, Default)]
pub struct ModelConfig {
    /// `minWorkers`, at least 1.
    pub min_workers: Option<usize>,
    /// `maxWorkers`; negative values are ignored.
    pub max_workers: Option<usize>,
    /// `batchSize`, at least 1.
    pub batch_size: Option<usize>,
    /// `maxBatchDelay` in ms; negative values are ignored.
    pub max_batch_delay: Option<Duration>,
    /// `responseTimeout` in s; values ≤ 0 are ignored.
    pub response_timeout: Option<Duration>,
    /// `startupTimeout` in s; values ≤ 0 are ignored.
    pub startup_timeout: Option<Duration>,
    pub device_type: Option<DeviceType>,
    /// `deviceIds`: GPUs the workers use round-robin (checked against the GPUs present later).
    pub device_ids: Option<Vec<i64>>,
    /// `jobQueueSize`; 0 means the server's `job_queue_size`.
    pub job_queue_size: Option<usize>,
    /// `maxRetryTimeoutInSec`: how long a failing worker is retried.
    pub max_retry_timeout: Option<Duration>,
    /// `clientTimeoutInMills`; 0 means none. Jobs that waited longer are dropped unrun.
    pub client_timeout: Option<Duration>,
    /// `useJobTicket`: a request is accepted only when a worker is free to take it at once,
    /// and otherwise refused with 503 rather than queued.
    pub use_job_ticket: bool,
    /// `asyncCommunication`: a Python worker takes requests while others are in flight (its
    /// handler is a coroutine, run by TorchServe's `AsyncService`).
    pub async_communication: bool,
    /// Keys that ask for a feature tserve does not support yet, in the file's order.
    pub unsupported: Vec<String>,
    /// Every other top-level key (`handler:`, `pt2:`, ...), for the handler, untouched.
    pub handler_settings: Mapping,
    /// The input and output tensors `tserve: {inputs: [...], outputs: [...]}` declares, for
    /// OIP model metadata (a TorchScript file records no dtypes or shapes).
    pub tensors: Option<DeclaredTensors>,
}

/// One tensor as a model config declares it, in OIP's terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredTensor {
    pub name: String,
    /// An OIP datatype name (`FP32`, `INT64`, `BYTES`, ...).
    pub datatype: String,
    /// -1 for a dimension of any size.
    pub shape: Vec<i64>,
}

/// A model's declared inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeclaredTensors {
    #[serde(default)]
    pub inputs: Vec<DeclaredTensor>,
    #[serde(default)]
    pub outputs: Vec<DeclaredTensor>,
}

/// The `inputs`/`outputs` of the `tserve:` section, checked: known datatypes, dimensions of -1
/// or more.
fn declared_tensors(tserve: &Value) -> Result<Option<DeclaredTensors>, String> {
    if tserve.get("inputs").is_none() && tserve.get("outputs").is_none() {
        return Ok(None);
    }
    let mut section = Mapping::new();
    for key in ["inputs", "outputs"] {
        if let Some(list) = tserve.get(key) {
            section.insert(Value::String(key.into()), list.clone());
        }
    }
    let declared: DeclaredTensors = serde_yaml_ng::from_value(Value::Mapping(section))
        .map_err(|e| format!("tserve inputs/outputs: {e}"))?;
    for tensor in declared.inputs.iter().chain(&declared.outputs) {
        if crate::tensor::DataType::parse(&tensor.datatype).is_none() {
            return Err(format!("tensor '{}': unknown datatype '{}'", tensor.name, tensor.datatype));
        }
        if tensor.shape.iter().any(|&dim| dim < -1) {
            return Err(format!("tensor '{}': dimensions are -1 (any size) or more", tensor.name));
        }
    }
    Ok(Some(declared))
}

/// Whether a key TorchServe acts on asks for a feature tserve lacks, for this value: a value
/// that leaves the feature off (`continuousBatching: false`, `parallelLevel: 1`) is harmless.
fn asks_for_unsupported_feature(name: &str, value: &Value) -> bool {
    let on = |value: &Value| value.as_bool().unwrap_or(false);
    let above = |value: &Value, default: i64| value.as_i64().is_some_and(|n| n > default);
    match name {
        "parallelType" => value.as_str().is_some_and(|kind| !kind.trim().is_empty()),
        "torchrun" => !value.is_null(),
        "parallelLevel" => above(value, 1),
        "continuousBatching" | "sequenceBatching" | "useVenv" => on(value),
        "sequenceMaxIdleMSec" | "sequenceTimeoutMSec" => above(value, 0),
        "maxSequenceJobQueueSize" | "maxNumSequence" => above(value, 1),
        _ => false,
    }
}

impl ModelConfig {
    /// tserve's per-model switch to TorchServe's Python backend for a model tserve could serve
    /// natively: `tserve: {backend: python}` (for TorchServe's exact Python pre-processing).
    pub fn wants_python_backend(&self) -> bool {
        self.handler_settings
            .get("tserve")
            .and_then(|tserve| tserve.get("backend"))
            .and_then(Value::as_str)
            .is_some_and(|backend| backend.eq_ignore_ascii_case("python"))
    }

    /// tserve's opportunistic batching for native models (`tserve: {opportunistic_batching:
    /// false}` turns it off; `opportunistic_batch_max: N` caps it; `batch_refill: false` stops
    /// a worker waiting for its batch to refill): `None` when off.
    pub fn opportunistic(&self) -> Option<Opportunistic> {
        let tserve = self.handler_settings.get("tserve");
        let setting = |key: &str| tserve.and_then(|tserve| tserve.get(key));
        if setting("opportunistic_batching").and_then(Value::as_bool) == Some(false) {
            return None;
        }
        let max = setting("opportunistic_batch_max").and_then(Value::as_u64).map_or(DEFAULT_OPPORTUNISTIC_BATCH_MAX, |n| n as usize);
        let refill = setting("batch_refill").and_then(Value::as_bool) != Some(false);
        (max > 1).then_some(Opportunistic { max, refill })
    }

    pub fn read(path: &Path) -> Result<Self, ArchiveError> {
        let text = std::fs::read_to_string(path).map_err(|source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ArchiveError::InvalidModelConfig {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mapping = match root {
            Value::Mapping(mapping) => mapping,
            Value::Null => Mapping::new(),
            _ => return Err("expected a mapping of keys to values".into()),
        };
        let mut config = Self::default();
        for (key, value) in mapping {
            let Some(name) = key.as_str() else { continue };
            if asks_for_unsupported_feature(name, &value) {
                config.unsupported.push(name.to_string());
                continue;
            }
            match name {
                "minWorkers" => config.min_workers = int(name, &value).map(|v| v.max(1) as usize),
                "maxWorkers" => config.max_workers = non_negative(name, &value),
                "batchSize" => config.batch_size = int(name, &value).map(|v| v.max(1) as usize),
                "maxBatchDelay" => {
                    config.max_batch_delay = non_negative(name, &value).map(|ms| millis(ms as u64))
                }
                "responseTimeout" => config.response_timeout = positive_seconds(name, &value),
                "startupTimeout" => config.startup_timeout = positive_seconds(name, &value),
                "deviceType" => config.device_type = device_type(&value),
                "deviceIds" => config.device_ids = int_list(name, &value),
                "jobQueueSize" => {
                    config.job_queue_size = non_negative(name, &value).filter(|&n| n > 0)
                }
                "maxRetryTimeoutInSec" => {
                    config.max_retry_timeout =
                        non_negative(name, &value).map(|s| Duration::from_secs(s as u64))
                }
                "useJobTicket" => config.use_job_ticket = value.as_bool().unwrap_or(false),
                "asyncCommunication" => config.async_communication = value.as_bool().unwrap_or(false),
                "clientTimeoutInMills" => {
                    config.client_timeout =
                        non_negative(name, &value).filter(|&ms| ms > 0).map(|ms| millis(ms as u64))
                }
                _ => {
                    config.handler_settings.insert(Value::String(name.to_string()), value);
                }
            }
        }
        if let Some(tserve) = config.handler_settings.get("tserve") {
            config.tensors = declared_tensors(tserve)?;
        }
        Ok(config)
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn int(name: &str, value: &Value) -> Option<i64> {
    let parsed = value.as_i64();
    if parsed.is_none() {
        log::warn!("model config: {name} must be an integer, got {value:?}; ignored");
    }
    parsed
}

fn non_negative(name: &str, value: &Value) -> Option<usize> {
    int(name, value).and_then(|v| usize::try_from(v).ok())
}

fn positive_seconds(name: &str, value: &Value) -> Option<Duration> {
    int(name, value)
        .filter(|&s| s > 0)
        .map(|s| Duration::from_secs(s as u64))
}

fn device_type(value: &Value) -> Option<DeviceType> {
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("cpu") => Some(DeviceType::Cpu),
        Some("gpu") => Some(DeviceType::Gpu),
        _ => {
            log::warn!("model config: deviceType must be cpu or gpu, got {value:?}; ignored");
            None
        }
    }
}

fn int_list(name: &str, value: &Value) -> Option<Vec<i64>> {
    let list: Option<Vec<i64>> = value
        .as_sequence()
        .and_then(|items| items.iter().map(Value::as_i64).collect());
    if list.is_none() {
        log::warn!("model config: {name} must be a list of integers, got {value:?}; ignored");
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_tensors_are_read_and_checked() {
        let config = ModelConfig::parse(
            "tserve:\n  inputs:\n    - {name: x, datatype: FP32, shape: [-1, 64]}\n  outputs:\n    - {name: y, datatype: INT64, shape: [-1]}\n",
        )
        .unwrap();
        let tensors = config.tensors.unwrap();
        assert_eq!(tensors.inputs, vec![DeclaredTensor { name: "x".into(), datatype: "FP32".into(), shape: vec![-1, 64] }]);
        assert_eq!(tensors.outputs[0].datatype, "INT64");
        assert!(ModelConfig::parse("tserve:\n  backend: python\n").unwrap().tensors.is_none());
        for (yaml, words) in [
            ("tserve:\n  inputs: [{name: x, datatype: FP8, shape: [1]}]\n", "unknown datatype 'FP8'"),
            ("tserve:\n  inputs: [{name: x, datatype: FP32, shape: [-2]}]\n", "-1 (any size)"),
            ("tserve:\n  outputs: [{name: x, datatype: FP32}]\n", "shape"),
        ] {
            let err = ModelConfig::parse(yaml).unwrap_err();
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn reads_frontend_keys_with_torchserve_clamps() {
        let config = ModelConfig::parse(
            "minWorkers: 0\nmaxWorkers: 4\nbatchSize: 0\nmaxBatchDelay: 5\nresponseTimeout: 0\n\
             startupTimeout: 30\ndeviceType: GPU\ndeviceIds: [0, 1]\njobQueueSize: 0\n\
             maxRetryTimeoutInSec: 60\nclientTimeoutInMills: 250\n",
        )
        .unwrap();
        assert_eq!(config.min_workers, Some(1), "minWorkers is at least 1");
        assert_eq!(config.max_workers, Some(4));
        assert_eq!(config.batch_size, Some(1), "batchSize is at least 1");
        assert_eq!(config.max_batch_delay, Some(Duration::from_millis(5)));
        assert_eq!(config.response_timeout, None, "responseTimeout ≤ 0 is ignored");
        assert_eq!(config.startup_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.device_type, Some(DeviceType::Gpu));
        assert_eq!(config.device_ids, Some(vec![0, 1]));
        assert_eq!(config.job_queue_size, None, "0 means the global job_queue_size");
        assert_eq!(config.max_retry_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.client_timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn wrong_types_are_ignored_and_other_keys_kept() {
        let config = ModelConfig::parse(
            "batchSize: eight\nmaxWorkers: -2\nhandler:\n  topk: 3\npt2: {compile: true}\n",
        )
        .unwrap();
        assert_eq!(config.batch_size, None);
        assert_eq!(config.max_workers, None);
        assert_eq!(config.handler_settings.len(), 2);
        assert_eq!(config.handler_settings["handler"]["topk"].as_i64(), Some(3));
    }

    #[test]
    fn features_tserve_lacks_are_collected_only_when_asked_for() {
        let config = ModelConfig::parse(
            "parallelType: pp\nparallelLevel: 1\ncontinuousBatching: false\nuseVenv: true\n\
             torchrun:\n  nproc-per-node: 4\nsequenceMaxIdleMSec: 10\nmaxSequenceJobQueueSize: 1\n\
             useJobTicket: true\n",
        )
        .unwrap();
        assert_eq!(config.unsupported, vec!["parallelType", "useVenv", "torchrun", "sequenceMaxIdleMSec"]);
        assert!(config.use_job_ticket);
        assert!(!config.handler_settings.contains_key("parallelType"), "a refused key is not handler settings");
        let plain = ModelConfig::parse("continuousBatching: false\nparallelLevel: 1\n").unwrap();
        assert!(plain.unsupported.is_empty() && !plain.use_job_ticket);
    }

    #[test]
    fn opportunistic_batching_is_on_with_a_cap_unless_turned_off() {
        let opportunistic = |yaml: &str| ModelConfig::parse(yaml).unwrap().opportunistic();
        let default = Opportunistic { max: DEFAULT_OPPORTUNISTIC_BATCH_MAX, refill: true };
        assert_eq!(opportunistic(""), Some(default));
        assert_eq!(opportunistic("tserve:\n  opportunistic_batch_max: 32\n"), Some(Opportunistic { max: 32, ..default }));
        assert_eq!(opportunistic("tserve:\n  batch_refill: false\n"), Some(Opportunistic { refill: false, ..default }));
        assert_eq!(opportunistic("tserve:\n  opportunistic_batching: false\n"), None);
        assert_eq!(opportunistic("tserve:\n  opportunistic_batch_max: 1\n"), None);
    }

    #[test]
    fn the_python_backend_can_be_asked_for() {
        assert!(ModelConfig::parse("tserve:\n  backend: python\n").unwrap().wants_python_backend());
        assert!(!ModelConfig::parse("tserve:\n  backend: native\n").unwrap().wants_python_backend());
        assert!(!ModelConfig::parse("batchSize: 2\n").unwrap().wants_python_backend());
    }

    #[test]
    fn not_yaml_is_an_error() {
        assert!(ModelConfig::parse("- just\n- a list\n").is_err());
        assert!(ModelConfig::parse("key: [unclosed\n").is_err());
        assert!(ModelConfig::parse("").unwrap().batch_size.is_none());
    }

    mod arbitrary_input {
        //! Arbitrary model-config YAML, and the frontend keys with arbitrary values: each gives
        //! settings or an error, never a panic. `PROPTEST_CASES` raises the case count.
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout",
            "deviceType", "deviceIds", "jobQueueSize", "maxRetryTimeoutInSec", "clientTimeoutInMills", "handler",
        ];

        fn any_scalar() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| n.to_string()),
                "[a-z0-9 :\\[\\]{},.-]{0,16}",
            ]
        }

        proptest! {
            #![proptest_config(crate::property_tests::config())]
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,256}") {
                let _ = ModelConfig::parse(&text);
            }

            #[test]
            fn arbitrary_values_never_panic(
                entries in prop::collection::vec((prop::sample::select(KEYS), any_scalar()), 0..8),
            ) {
                let text: String = entries.iter().map(|(key, value)| format!("{key}: {value}\n")).collect();
                if let Ok(config) = ModelConfig::parse(&text) {
                    prop_assert!(config.batch_size.is_none_or(|n| n >= 1));
                    prop_assert!(config.min_workers.is_none_or(|n| n >= 1));
                }
            }
        }
    }
}
