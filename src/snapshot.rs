//! Config snapshots, as TorchServe writes them: `$LOG_LOCATION/config/<yyyyMMddHHmmssSSS>-<kind>.cfg`,
//! a properties file holding the server's config plus `model_snapshot`, the JSON of every model
//! version with its worker and batching settings. Written at start, after every management change
//! and at stop; the newest one is restored at start when no config file is named.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Startup,
    Snapshot,
    Shutdown,
}

impl SnapshotKind {
    fn suffix(self) -> &'static str {
        match self {
            SnapshotKind::Startup => "startup",
            SnapshotKind::Snapshot => "snapshot",
            SnapshotKind::Shutdown => "shutdown",
        }
    }
}

/// `model_snapshot`: TorchServe's JSON, keys in its order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSnapshot {
    pub name: String,
    pub model_count: usize,
    /// Absent from hand-written snapshots (TorchServe's KServe config.properties has none).
    #[serde(default)]
    pub created: i64,
    /// Model name → version → settings.
    pub models: BTreeMap<String, BTreeMap<String, SnapshotModel>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotModel {
    pub default_version: bool,
    /// The archive's file name in the model store.
    pub mar_name: String,
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    /// Milliseconds.
    pub max_batch_delay: u64,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub response_timeout: u64,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub startup_timeout: u64,
    #[serde(default = "default_runtime")]
    pub runtime_type: String,
}

impl SnapshotModel {
    /// A model version's entry, from its settings and the worker counts last asked for.
    pub fn new(
        settings: &crate::settings::ModelSettings,
        (min_workers, max_workers): (usize, usize),
        default_version: bool,
        mar_name: &str,
        runtime: &str,
    ) -> Self {
        Self {
            default_version,
            mar_name: mar_name.to_string(),
            min_workers,
            max_workers,
            batch_size: settings.batch_size,
            max_batch_delay: settings.max_batch_delay.as_millis() as u64,
            response_timeout: settings.response_timeout.as_secs(),
            startup_timeout: settings.startup_timeout.as_secs(),
            runtime_type: runtime.to_string(),
        }
    }
}

fn default_timeout() -> u64 {
    120
}

fn default_runtime() -> String {
    "python".to_string()
}

/// Writes snapshot files into one folder, each with the server's config properties.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    dir: PathBuf,
    /// The config properties every snapshot carries (without `model_snapshot`).
    properties: BTreeMap<String, String>,
    /// The last timestamp given out, in ms: each snapshot gets a later one than the last, so
    /// the newest file is always the latest state, even for changes within one millisecond.
    last_stamp: i64,
}

/// A snapshot's name and time, fixed when the change happens; written later.
pub struct SnapshotName {
    kind: SnapshotKind,
    time: chrono::DateTime<chrono::Local>,
}

impl SnapshotWriter {
    pub fn new(dir: PathBuf, mut properties: BTreeMap<String, String>) -> Self {
        properties.remove("model_snapshot");
        Self {
            dir,
            properties,
            last_stamp: 0,
        }
    }

    /// Names the next snapshot, later than every one before.
    pub fn next_name(&mut self, kind: SnapshotKind) -> SnapshotName {
        let mut time = chrono::Local::now();
        if time.timestamp_millis() <= self.last_stamp {
            time += chrono::Duration::milliseconds(self.last_stamp + 1 - time.timestamp_millis());
        }
        self.last_stamp = time.timestamp_millis();
        SnapshotName { kind, time }
    }

    /// Writes `<timestamp>-<kind>.cfg`. Like TorchServe, never overwrites an existing file.
    pub fn write(
        &self,
        name: SnapshotName,
        models: BTreeMap<String, BTreeMap<String, SnapshotModel>>,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let now = name.time;
        let name = format!("{}-{}.cfg", now.format("%Y%m%d%H%M%S%3f"), name.kind.suffix());
        let path = self.dir.join(&name);
        if path.exists() {
            log::warn!("Snapshot {name} already exists. Not saving the snapshot.");
            return Ok(path);
        }
        let snapshot = ModelSnapshot {
            name,
            model_count: models.values().map(BTreeMap::len).sum(),
            created: now.timestamp_millis(),
            models,
        };
        let json = serde_json::to_string_pretty(&snapshot).map_err(std::io::Error::other)?;
        let mut properties = self.properties.clone();
        properties.insert("model_snapshot".into(), json);

        // Written beside and renamed into place, so a reader never sees half a snapshot.
        let partial = self.dir.join(format!(".{}.partial", snapshot.name));
        let file = std::fs::File::create(&partial)?;
        let mut writer = java_properties::PropertiesWriter::new(std::io::BufWriter::new(file));
        let to_io = |e: java_properties::PropertiesError| std::io::Error::other(e.to_string());
        writer.write_comment("Saving snapshot").map_err(to_io)?;
        writer.write_comment(&now.to_rfc2822()).map_err(to_io)?;
        for (key, value) in &properties {
            writer.write(key, value).map_err(to_io)?;
        }
        writer.finish().map_err(to_io)?;
        drop(writer);
        std::fs::rename(&partial, &path)?;
        log::info!("wrote config snapshot {}", path.display());
        Ok(path)
    }
}

/// Parses a `model_snapshot` value.
pub fn parse(json: &str) -> Result<ModelSnapshot, String> {
    serde_json::from_str(json).map_err(|e| format!("invalid model_snapshot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(default_version: bool) -> SnapshotModel {
        SnapshotModel {
            default_version,
            mar_name: "mlp.mar".into(),
            min_workers: 2,
            max_workers: 3,
            batch_size: 4,
            max_batch_delay: 50,
            response_timeout: 30,
            startup_timeout: 60,
            runtime_type: "python".into(),
        }
    }

    #[test]
    fn writes_a_properties_file_that_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let properties = BTreeMap::from([("job_queue_size".to_string(), "7".to_string())]);
        let mut writer = SnapshotWriter::new(dir.path().join("config"), properties);
        let models = BTreeMap::from([(
            "mlp".to_string(),
            BTreeMap::from([("1.0".to_string(), entry(true))]),
        )]);
        let first = writer.next_name(SnapshotKind::Snapshot);
        let second = writer.next_name(SnapshotKind::Snapshot);
        let path = writer.write(second, models.clone()).unwrap();
        let older = writer.write(first, models).unwrap();
        assert!(older < path, "names follow the order of the changes, not of the writes");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.ends_with("-snapshot.cfg") && name.len() == 17 + "-snapshot.cfg".len(), "{name}");

        let read = java_properties::read(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(read["job_queue_size"], "7");
        let snapshot = parse(&read["model_snapshot"]).unwrap();
        assert_eq!(snapshot.name, name);
        assert_eq!(snapshot.model_count, 1);
        assert_eq!(snapshot.models["mlp"]["1.0"], entry(true));
    }

    #[test]
    fn reads_the_snapshot_torchserves_kserve_docs_write_by_hand() {
        let json = r#"{"name":"startup.cfg","modelCount":1,"models":{"mnist":{"1.0":{"defaultVersion":true,
            "marName":"mnist.mar","minWorkers":1,"maxWorkers":5,"batchSize":1,"maxBatchDelay":5000,"responseTimeout":120}}}}"#;
        let snapshot = parse(json).unwrap();
        assert_eq!((snapshot.created, snapshot.model_count), (0, 1));
        let mnist = &snapshot.models["mnist"]["1.0"];
        assert_eq!((mnist.mar_name.as_str(), mnist.max_workers, mnist.response_timeout), ("mnist.mar", 5, 120));
    }
}
