//! Typed access to property values, with the key named in every error: the one place that
//! says how TorchServe reads a number, a flag, a duration or an address.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, ListenAddress};

pub struct Properties<'a>(pub &'a BTreeMap<String, String>);

impl Properties<'_> {
    pub fn string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.0.get(key).map(PathBuf::from)
    }

    /// Java's `Boolean.parseBoolean`, as TorchServe reads flags: "true" in any case.
    pub fn boolean(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A flag that is on unless written "false", as TorchServe reads its default-on flags.
    pub fn on_unless_false(&self, key: &str) -> bool {
        !self.0.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    }

    /// Whole seconds, `default` when unset.
    pub fn seconds(&self, key: &str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.parse::<u64>(key)?.unwrap_or(default)))
    }

    /// A non-negative number of minutes, fractions allowed, as a duration.
    pub fn minutes(&self, key: &str, default: f64) -> Result<Duration, ConfigError> {
        let minutes = self.parse::<f64>(key)?.unwrap_or(default);
        Duration::try_from_secs_f64(minutes * 60.0).map_err(|e| ConfigError::InvalidValue {
            key: key.to_string(),
            value: minutes.to_string(),
            reason: e.to_string(),
        })
    }

    /// A listener address: `http://127.0.0.1:<unset_port>` when the key is absent,
    /// `default_port` (or `tls_port` for https) when the value names none.
    pub fn address(&self, key: &str, (default_port, tls_port): (u16, u16), unset_port: u16) -> Result<ListenAddress, ConfigError> {
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

    /// A comma-separated list of patterns, each a full-match, case-insensitive regex.
    pub fn patterns(&self, key: &str, default: &str) -> Result<Vec<regex::Regex>, ConfigError> {
        self.0
            .get(key)
            .map_or(default, String::as_str)
            .split(',')
            .map(str::trim)
            .filter(|pattern| !pattern.is_empty())
            .map(|pattern| {
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ConfigError::InvalidValue {
                        key: key.to_string(),
                        value: pattern.to_string(),
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    /// A JSON value, `None` when unset.
    pub fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.0
            .get(key)
            .map(|json| {
                serde_json::from_str(json).map_err(|e| ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: json.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError>
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
