//! Where the properties come from and in which order they win, as in TorchServe's
//! ConfigManager: the file (`TS_CONFIG_FILE`, `--ts-config`, the newest snapshot, or
//! `./config.properties`), then the command line, then, when enabled, `TS_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::{FromEnv, KEYS};
use super::{CliOverrides, ConfigError, ConfigSource};

/// `$LOG_LOCATION`, default `logs`.
pub fn log_location() -> PathBuf {
    std::env::var_os("LOG_LOCATION").map_or_else(|| PathBuf::from("logs"), PathBuf::from)
}

/// `$METRICS_LOCATION`, default `logs`.
pub fn metrics_location() -> PathBuf {
    std::env::var_os("METRICS_LOCATION").map_or_else(|| PathBuf::from("logs"), PathBuf::from)
}

/// TorchServe's order: `TS_CONFIG_FILE`, then `--ts-config`, then (unless `--ncs`) the newest
/// snapshot, then `./config.properties`.
pub fn config_source(cli: &CliOverrides, log_location: &Path) -> Result<ConfigSource, ConfigError> {
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
        if let Some(snapshot) = newest_snapshot(&log_location.join("config")) {
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

/// The newest snapshot in `dir`: the largest `yyyyMMddHHmmssSSS` prefix among `*.cfg` files.
/// Files whose names do not start with such a timestamp are skipped (TorchServe crashes on them).
pub fn newest_snapshot(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_suffix(".cfg")?.split('-').next()?.to_string();
            (stamp.len() == 17 && stamp.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (stamp, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// The keys the command line sets, as TorchServe's ConfigManager sets them: the model store and
/// models replace the file's; the model API and token switches can only turn things on/off.
pub fn apply_command_line(props: &mut BTreeMap<String, String>, cli: &CliOverrides) {
    if let Some(store) = &cli.model_store {
        props.insert("model_store".into(), store.to_string_lossy().into_owned());
    }
    if let Some(store) = &cli.workflow_store {
        props.insert("workflow_store".into(), store.to_string_lossy().into_owned());
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

/// `enable_envvars_config=true`: each key the table allows can be set by the environment as
/// `TS_<KEY>` (`TS_INFERENCE_ADDRESS`, `TS_DISABLE_TOKEN_AUTHORIZATION`, ...), and the
/// environment wins, as in TorchServe. `TS_OPEN_INFERENCE_PROTOCOL` counts whatever that key
/// says, and as TorchServe reads it: set and not empty, only `oip` turns the protocol on.
pub fn apply_environment(props: &mut BTreeMap<String, String>, lookup: impl Fn(&str) -> Option<String>) {
    for key in KEYS.iter().filter(|key| key.from_env == FromEnv::Always) {
        // The key already starts with `ts_`: its variable is the key in capitals.
        if let Some(value) = lookup(&key.name.to_ascii_uppercase()).filter(|v| !v.is_empty()) {
            let on = value.trim() == "oip";
            props.insert(key.name.to_string(), if on { "oip" } else { "false" }.to_string());
        }
    }
    let enabled = |props: &BTreeMap<String, String>, key: &str| {
        props.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    if !enabled(props, "enable_envvars_config") {
        return;
    }
    let env_allowed_urls = enabled(props, "use_env_allowed_urls");
    for key in KEYS {
        let allowed = match key.from_env {
            FromEnv::Yes => true,
            FromEnv::No | FromEnv::Always => false,
            FromEnv::WithUseEnvAllowedUrls => env_allowed_urls,
        };
        if !allowed {
            continue;
        }
        if let Some(value) = lookup(&format!("TS_{}", key.name.to_ascii_uppercase())) {
            props.insert(key.name.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
    fn the_open_inference_protocol_variable_needs_no_switch_and_only_oip_turns_it_on() {
        for (value, expected) in [("oip", Some("oip")), ("true", Some("false")), ("", None)] {
            let mut props = props(&[]);
            apply_environment(&mut props, |name| (name == "TS_OPEN_INFERENCE_PROTOCOL").then(|| value.to_string()));
            assert_eq!(props.get("ts_open_inference_protocol").map(String::as_str), expected, "{value:?}");
        }
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
    fn newest_snapshot_skips_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["20240101000000000-startup.cfg", "20240102000000000-snapshot.cfg", "notes-x.cfg", "2025.cfg"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(
            newest_snapshot(dir.path()).unwrap().file_name().unwrap(),
            "20240102000000000-snapshot.cfg"
        );
    }
}
