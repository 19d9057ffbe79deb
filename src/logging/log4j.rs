//! Where TorchServe's log files go, how big they grow and at which level each logs: TorchServe's
//! defaults, or what a `--log-config` log4j2 XML says. tserve honours from such a file the
//! `RollingFile` appenders named as TorchServe's (`access_log`, `model_log`, `model_metrics`,
//! `ts_log`, `ts_metrics`): their `fileName` (with `${env:NAME:-default}`), their
//! `SizeBasedTriggeringPolicy size` and `DefaultRolloverStrategy max`; and the levels of the
//! loggers `ACCESS_LOG`, `MODEL_LOG`, `MODEL_METRICS`, `TS_METRICS`, `org.pytorch.serve` (tserve's
//! own log) and `Root`. Layout patterns, other appenders and filters are not honoured: tserve
//! writes TorchServe's patterns, and says so at start-up. A file that is not such XML is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use log::LevelFilter;
use quick_xml::events::{BytesStart, Event};

use super::appender::{FileSpec, LogFile};

const DEFAULT_MAX_BYTES: u64 = 100 << 20;
const DEFAULT_KEEP: usize = 5;

/// The files and levels in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub files: HashMap<LogFile, FileSpec>,
    pub levels: HashMap<LogFile, LevelFilter>,
}

impl LogConfig {
    /// TorchServe's defaults: `$LOG_LOCATION` (access, model, server logs) and
    /// `$METRICS_LOCATION` (metrics logs), both `logs` by default; 100 MB; 5 kept.
    pub fn defaults(log_location: &Path, metrics_location: &Path) -> Self {
        let files = LogFile::ALL
            .into_iter()
            .map(|file| {
                let dir = match file {
                    LogFile::ModelMetrics | LogFile::TsMetrics => metrics_location,
                    _ => log_location,
                };
                let spec = FileSpec {
                    path: dir.join(format!("{}.log", file.name())),
                    max_bytes: DEFAULT_MAX_BYTES,
                    keep: DEFAULT_KEEP,
                };
                (file, spec)
            })
            .collect();
        let levels = LogFile::ALL
            .into_iter()
            .map(|file| (file, if file == LogFile::Ts { LevelFilter::Info } else { LevelFilter::Trace }))
            .collect();
        Self { files, levels }
    }

    /// The defaults, changed by what `xml` (a log4j2 configuration) says.
    pub fn from_log4j2(xml: &str, log_location: &Path, metrics_location: &Path) -> Result<Self, String> {
        let mut config = Self::defaults(log_location, metrics_location);
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut appender: Option<LogFile> = None;
        let mut saw_configuration = false;
        loop {
            let event = reader.read_event().map_err(|e| format!("not a log4j2 XML file: {e}"))?;
            match event {
                Event::Eof => break,
                Event::Start(element) | Event::Empty(element) => {
                    let name = String::from_utf8_lossy(element.name().as_ref()).into_owned();
                    let attribute = |key: &str| attribute(&element, key);
                    match name.as_str() {
                        "Configuration" => saw_configuration = true,
                        "RollingFile" => {
                            appender = attribute("name").and_then(|n| LogFile::ALL.into_iter().find(|f| f.name() == n));
                            if let (Some(file), Some(path)) = (appender, attribute("fileName")) {
                                if let Some(spec) = config.files.get_mut(&file) {
                                    spec.path = PathBuf::from(substitute_env(&path));
                                }
                            }
                        }
                        "SizeBasedTriggeringPolicy" => {
                            if let (Some(file), Some(size)) = (appender, attribute("size")) {
                                let bytes = parse_size(&size).ok_or_else(|| format!("invalid size {size:?}"))?;
                                if let Some(spec) = config.files.get_mut(&file) {
                                    spec.max_bytes = bytes;
                                }
                            }
                        }
                        "DefaultRolloverStrategy" => {
                            if let (Some(file), Some(max)) = (appender, attribute("max")) {
                                let keep = max.trim().parse().map_err(|_| format!("invalid max {max:?}"))?;
                                if let Some(spec) = config.files.get_mut(&file) {
                                    spec.keep = keep;
                                }
                            }
                        }
                        "Logger" | "Root" => {
                            let logger = if name == "Root" { Some("org.pytorch.serve".to_string()) } else { attribute("name") };
                            let file = logger.as_deref().and_then(logger_file);
                            if let (Some(file), Some(level)) = (file, attribute("level")) {
                                let level = parse_level(&level).ok_or_else(|| format!("invalid level {level:?}"))?;
                                config.levels.insert(file, level);
                            }
                        }
                        _ => {}
                    }
                }
                Event::End(element) if element.name().as_ref() == b"RollingFile" => appender = None,
                _ => {}
            }
        }
        if !saw_configuration {
            return Err("not a log4j2 configuration: no <Configuration> element".into());
        }
        Ok(config)
    }
}

/// The file a TorchServe logger name writes to.
fn logger_file(logger: &str) -> Option<LogFile> {
    match logger {
        "ACCESS_LOG" => Some(LogFile::Access),
        "MODEL_LOG" => Some(LogFile::Model),
        "MODEL_METRICS" => Some(LogFile::ModelMetrics),
        "TS_METRICS" => Some(LogFile::TsMetrics),
        "org.pytorch.serve" => Some(LogFile::Ts),
        _ => None,
    }
}

fn attribute(element: &BytesStart<'_>, key: &str) -> Option<String> {
    element
        .attributes()
        .filter_map(Result::ok)
        .find(|a| a.key.as_ref() == key.as_bytes())
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
}

/// log4j2's `${env:NAME:-default}` lookups.
fn substitute_env(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${env:") {
        let Some(end) = rest[start..].find('}') else { break };
        let inner = &rest[start + 6..start + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(&rest[..start]);
        out.push_str(&std::env::var(name).unwrap_or_else(|_| default.to_string()));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// `100 MB`, `10KB`, `2 GB`, or plain bytes.
fn parse_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let split = size.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(size.len());
    let (number, unit) = size.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let scale = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    Some((number * scale as f64) as u64)
}

fn parse_level(level: &str) -> Option<LevelFilter> {
    match level.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "fatal" | "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" | "all" => Some(LevelFilter::Trace),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <RollingFile name="access_log" fileName="${env:TSERVE_TEST_UNSET:-elsewhere}/access_log.log"
                 filePattern="x.log.gz">
      <PatternLayout pattern="%d{ISO8601} - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="10 KB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
    <Console name="STDOUT" target="SYSTEM_OUT"/>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off"/>
    <Logger name="org.pytorch.serve" level="debug"/>
  </Loggers>
</Configuration>"#;

    #[test]
    fn file_names_sizes_counts_and_levels_are_honoured() {
        let config = LogConfig::from_log4j2(XML, Path::new("logs"), Path::new("metrics")).unwrap();
        let access = &config.files[&LogFile::Access];
        assert_eq!(access.path, PathBuf::from("elsewhere/access_log.log"));
        assert_eq!((access.max_bytes, access.keep), (10 << 10, 2));
        assert_eq!(config.files[&LogFile::TsMetrics].path, PathBuf::from("metrics/ts_metrics.log"));
        assert_eq!(config.files[&LogFile::Ts].max_bytes, 100 << 20, "unchanged: TorchServe's default");
        assert_eq!(config.levels[&LogFile::Access], LevelFilter::Off);
        assert_eq!(config.levels[&LogFile::Ts], LevelFilter::Debug);
    }

    #[test]
    fn what_is_not_log4j2_is_refused() {
        assert!(LogConfig::from_log4j2("<Configuration><Broken></Configuration>", Path::new("l"), Path::new("m")).is_err());
        assert!(LogConfig::from_log4j2("<log4j:configuration/>", Path::new("l"), Path::new("m")).is_err());
        let bad_size = XML.replace("10 KB", "ten");
        assert!(LogConfig::from_log4j2(&bad_size, Path::new("l"), Path::new("m")).is_err());
    }

    #[test]
    fn sizes_read_as_log4j_writes_them() {
        assert_eq!(parse_size("100 MB"), Some(100 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5KB"), Some(1536));
        assert_eq!(parse_size("big"), None);
    }
}
