//! The `tserve` command line: TorchServe's flags, under the same names, so existing scripts run
//! with one word changed.

use std::path::PathBuf;

use clap::{ArgGroup, Parser};

use crate::config::CliOverrides;

#[derive(Debug, Parser)]
#[command(
    name = "tserve",
    about = "A TorchServe-compatible model server for TorchScript models",
    disable_version_flag = true,
    group(ArgGroup::new("action").args(["version", "start", "stop"]))
)]
pub struct Args {
    /// Print the version and exit.
    #[arg(short = 'v', long)]
    pub version: bool,
    /// Start the model server (the default action).
    #[arg(long)]
    pub start: bool,
    /// Stop the running model server.
    #[arg(long)]
    pub stop: bool,
    /// Configuration file (config.properties); TS_CONFIG_FILE takes precedence.
    #[arg(long = "ts-config", value_name = "TS_CONFIG")]
    pub ts_config: Option<PathBuf>,
    /// Model store folder holding the archives to serve.
    #[arg(long = "model-store", value_name = "MODEL_STORE")]
    pub model_store: Option<PathBuf>,
    /// Workflow store folder holding `.war` archives (default: the model store).
    #[arg(long = "workflow-store", value_name = "WORKFLOW_STORE")]
    pub workflow_store: Option<PathBuf>,
    /// Models to load at start-up: `file.mar`, `name=file.mar`, or `all`.
    #[arg(long, num_args = 1.., value_name = "MODEL_PATH1 MODEL_NAME=MODEL_PATH2")]
    pub models: Vec<String>,
    /// Logging configuration: a log4j2 XML whose file names, sizes, rollover counts and levels
    /// are honoured (tserve writes TorchServe's line patterns).
    #[arg(long = "log-config", value_name = "LOG_CONFIG")]
    pub log_config: Option<PathBuf>,
    /// C++ backend logging configuration (accepted for compatibility, without effect: tserve has
    /// no C++ backend; start-up says so).
    #[arg(long = "cpp-log-config", value_name = "CPP_LOG_CONFIG")]
    pub cpp_log_config: Option<PathBuf>,
    /// Stay attached to the terminal instead of running in the background.
    #[arg(long)]
    pub foreground: bool,
    /// Neither write config snapshots nor restore from them.
    #[arg(long = "no-config-snapshots", visible_alias = "ncs")]
    pub no_config_snapshots: bool,
    /// Plugin folder (accepted for compatibility, without effect: tserve has no Java plugins;
    /// start-up says so).
    #[arg(long = "plugins-path", visible_alias = "ppath", value_name = "PLUGINS_PATH")]
    pub plugins_path: Option<PathBuf>,
    /// Turn token authorization off.
    #[arg(long = "disable-token-auth", visible_alias = "dt")]
    pub disable_token_auth: bool,
    /// Enable the model register/unregister API.
    #[arg(long = "enable-model-api")]
    pub enable_model_api: bool,
}

impl Args {
    pub fn config_overrides(&self) -> CliOverrides {
        CliOverrides {
            ts_config: self.ts_config.clone(),
            model_store: self.model_store.clone(),
            workflow_store: self.workflow_store.clone(),
            models: self.models.clone(),
            enable_model_api: self.enable_model_api,
            no_config_snapshots: self.no_config_snapshots,
            log_config: self.log_config.clone(),
            disable_token_auth: self.disable_token_auth,
            flags_without_effect: self.flags_without_effect(),
        }
    }

    /// The TorchServe flags given that tserve accepts without effect, for one start-up warning.
    fn flags_without_effect(&self) -> Vec<&'static str> {
        [
            ("--cpp-log-config", self.cpp_log_config.is_some()),
            ("--plugins-path", self.plugins_path.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_torchserve_flags() {
        let args = Args::try_parse_from([
            "tserve", "--start", "--ncs", "--model-store", "store", "--models", "a.mar",
            "b=c.mar", "--disable-token-auth", "--enable-model-api", "--foreground",
            "--log-config", "log4j2.xml", "--ppath", "plugins",
        ])
        .unwrap();
        assert!(args.start && args.no_config_snapshots && args.foreground);
        assert_eq!(args.models, vec!["a.mar", "b=c.mar"]);
        assert!(Args::try_parse_from(["tserve", "--dt"]).unwrap().disable_token_auth);
        assert_eq!(args.config_overrides().flags_without_effect, vec!["--plugins-path"]);
    }

    #[test]
    fn start_stop_and_version_exclude_each_other() {
        assert!(Args::try_parse_from(["tserve", "--start", "--stop"]).is_err());
        assert!(Args::try_parse_from(["tserve", "-v"]).unwrap().version);
    }
}
