//! Every config.properties key tserve knows, in one table: whether tserve reads it, accepts it
//! without effect, or refuses it; whether a `TS_*` variable may set it; whether it is a secret
//! that never reaches a snapshot. The environment reader, the start-up notices, snapshots and
//! the property tests all iterate over this table, so a new key is one row.

/// What tserve does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Read and applied.
    Read,
    /// A TorchServe key tserve accepts and does not act on yet: a TorchServe config file works
    /// unchanged, and its owner is told at start-up what is not in effect.
    Accepted,
    /// Refused at start-up with this reason, because serving without it would be worse than
    /// not starting (the reason names the way forward).
    Refused(&'static str),
}

/// Whether `enable_envvars_config=true` lets `TS_<KEY>` set the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromEnv {
    /// `TS_<KEY>` sets it, and wins over the file and the command line.
    Yes,
    /// TorchServe has no `TS_` variable for it.
    No,
    /// Whether or not `enable_envvars_config` is on (TorchServe reads
    /// `TS_OPEN_INFERENCE_PROTOCOL` so, as KServe's runtime sets it).
    Always,
    /// Only with `use_env_allowed_urls=true`: a URL allow-list set from the environment is a
    /// way around the file.
    WithUseEnvAllowedUrls,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub effect: Effect,
    pub from_env: FromEnv,
    /// A secret: kept out of snapshots (which are plain files beside the logs).
    pub secret: bool,
}

const fn read(name: &'static str) -> Key {
    Key { name, effect: Effect::Read, from_env: FromEnv::Yes, secret: false }
}

const fn no_effect(name: &'static str) -> Key {
    Key { name, effect: Effect::Accepted, from_env: FromEnv::Yes, secret: false }
}

impl Key {
    const fn not_from_env(self) -> Self {
        Key { from_env: FromEnv::No, ..self }
    }

    const fn secret(self) -> Self {
        Key { secret: true, ..self }
    }
}

/// TorchServe's keys (ConfigManager), and tserve's own few, in the order of the README.
pub const KEYS: &[Key] = &[
    // Listeners.
    read("inference_address"),
    read("management_address"),
    read("metrics_address"),
    read("enable_metrics_api"),
    read("number_of_netty_threads"),
    read("max_request_size"),
    read("request_read_timeout"),
    read("cors_allowed_origin"),
    read("cors_allowed_methods"),
    read("cors_allowed_headers"),
    // Models and their defaults.
    read("model_store"),
    read("load_models"),
    read("models").not_from_env(),
    read("default_workers_per_model"),
    read("number_of_gpu"),
    read("job_queue_size"),
    read("default_response_timeout"),
    read("default_startup_timeout"),
    read("max_workers_per_model"),
    read("archive_max_bytes"),
    read("archive_max_entries"),
    // Logs and metrics.
    read("metrics_mode"),
    read("metrics_config"),
    read("model_metrics_auto_detect"),
    read("disable_system_metrics"),
    read("metric_time_interval").not_from_env(),
    // The Python backend.
    read("python").not_from_env(),
    read("install_py_dep_per_model"),
    read("decode_input_request"),
    read("limit_max_image_pixels"),
    read("service_envelope"),
    // gRPC and the Open Inference Protocol.
    read("grpc_inference_address"),
    read("grpc_inference_port"),
    read("grpc_inference_max_connection_age_ms"),
    read("grpc_inference_max_connection_age_grace_ms"),
    read("grpc_management_address"),
    read("grpc_management_port"),
    read("grpc_management_max_connection_age_ms"),
    read("grpc_management_max_connection_age_grace_ms"),
    read("enable_grpc_ssl"),
    read("workflow_store"),
    Key { from_env: FromEnv::Always, ..read("ts_open_inference_protocol") },
    // Security.
    read("enable_model_api"),
    Key { from_env: FromEnv::WithUseEnvAllowedUrls, ..read("allowed_urls") },
    read("use_env_allowed_urls").not_from_env(),
    read("enable_envvars_config").not_from_env(),
    read("disable_token_authorization"),
    read("token_expiration_min"),
    read("private_key_file"),
    read("certificate_file"),
    Key {
        effect: Effect::Refused(
            "(PKCS#12) is not supported: convert it to PEM, `openssl pkcs12 -in <keystore> -nocerts -nodes \
             -out key.pem` and `openssl pkcs12 -in <keystore> -nokeys -out certs.pem`, and set \
             private_key_file and certificate_file",
        ),
        ..read("keystore")
    },
    no_effect("keystore_pass").secret(),
    no_effect("keystore_type"),
    // Snapshots: what a restored snapshot carries.
    read("model_snapshot").not_from_env(),
    read("tsConfigFile"),
    read("version"),
    // TorchServe keys not in effect yet.
    no_effect("netty_client_threads"),
    no_effect("max_response_size"),
    no_effect("unregister_model_timeout"),
    no_effect("system_metrics_cmd").not_from_env(),
    no_effect("async_logging"),
    no_effect("blacklist_env_vars"),
    no_effect("default_service_handler"),
    no_effect("prefer_direct_buffer"),
    no_effect("initial_worker_port"),
    no_effect("initial_distribution_port"),
    no_effect("ts_header_key_sequence_id"),
    no_effect("ts_header_key_sequence_start"),
    no_effect("ts_header_key_sequence_end"),
    no_effect("ipex_enable"),
    no_effect("ipex_gpu_enable"),
    no_effect("cpu_launcher_enable"),
    no_effect("cpu_launcher_args"),
    no_effect("use_native_io").not_from_env(),
    no_effect("io_ratio").not_from_env(),
    no_effect("debug"),
    no_effect("model_server_home"),
    no_effect("plugins_path"),
    no_effect("vmargs"),
];

/// The row for `name`, if tserve knows the key.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// What a key found in the properties means for this start, in the table's order of concern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A TorchServe key tserve accepts without effect.
    NotInEffect(String),
    /// A key neither TorchServe nor tserve knows (a typo, usually).
    Unknown(String),
}

/// The notices for a set of keys: every key that is not read, once each.
pub fn notices<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<Notice> {
    keys.into_iter()
        .filter_map(|name| match find(name).map(|key| key.effect) {
            Some(Effect::Read | Effect::Refused(_)) => None,
            Some(Effect::Accepted) => Some(Notice::NotInEffect(name.clone())),
            None => Some(Notice::Unknown(name.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_the_table_once() {
        let mut names: Vec<_> = KEYS.iter().map(|key| key.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a key appears twice");
    }

    #[test]
    fn notices_name_what_is_not_read() {
        let keys = ["job_queue_size", "async_logging", "job_queue_sise"].map(String::from);
        assert_eq!(
            notices(&keys),
            vec![Notice::NotInEffect("async_logging".into()), Notice::Unknown("job_queue_sise".into())]
        );
    }

    #[test]
    fn secrets_are_marked() {
        assert!(find("keystore_pass").is_some_and(|key| key.secret));
        assert!(KEYS.iter().filter(|key| key.secret).count() == 1);
    }
}
