//! Model archives in the model store: `.mar` files (zip) and unpacked directories, each with a
//! `MAR-INF/MANIFEST.json`. Opening one yields a folder holding the model's files.
//!
//! A `.mar` is unpacked into a private temporary folder that lives as long as the returned
//! [`ModelArchive`]; the model store itself is only read.

mod extract;
mod fetch;
mod manifest;
mod model_config;

use std::path::{Path, PathBuf};

pub use fetch::{fetch_into_store, StoreEntry};
pub use manifest::{Manifest, ModelSection};
pub use model_config::{DeviceType, ModelConfig};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("Model not found at: {0}")]
    NotFound(String),
    #[error("Given URL {0} does not match any allowed URL(s)")]
    UrlNotAllowed(String),
    #[error("Model file already exists {0}")]
    AlreadyExists(String),
    #[error("Failed to download archive from: {url} ({reason})")]
    DownloadFailed { url: String, reason: String },
    #[error("Relative path is not allowed in url: {0}")]
    PathEscapesStore(String),
    #[error("cannot read archive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt archive {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("archive {path} has an unsafe entry {entry:?}: it would be written outside its folder")]
    UnsafeEntry { path: PathBuf, entry: String },
    #[error("invalid MANIFEST.json in {path}: {message}")]
    InvalidManifest { path: PathBuf, message: String },
    #[error("invalid model config {path}: {message}")]
    InvalidModelConfig { path: PathBuf, message: String },
    #[error("unsupported archive {0}: tserve loads .mar files and unpacked model folders")]
    UnsupportedFormat(PathBuf),
}

/// An opened model archive: its manifest and the folder holding its files.
#[derive(Debug)]
pub struct ModelArchive {
    pub manifest: Manifest,
    /// Where the archive's files are: the unpacked copy of a `.mar`, or the store's own folder.
    pub dir: PathBuf,
    /// Keeps an unpacked `.mar` on disk while the model is in use; removed on drop.
    _unpacked: Option<tempfile::TempDir>,
}

impl ModelArchive {
    /// Opens `location` (a file or folder name in `store`). TorchServe refuses names that walk
    /// out of the store, and so does this.
    pub fn open(store: &Path, location: &str) -> Result<Self, ArchiveError> {
        let relative = Path::new(location);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(ArchiveError::PathEscapesStore(location.to_string()));
        }
        let path = store.join(relative);
        if path.is_dir() {
            let manifest = Manifest::read_dir(&path, default_name(location))?;
            return Ok(Self {
                manifest,
                dir: path,
                _unpacked: None,
            });
        }
        if !path.is_file() {
            return Err(ArchiveError::NotFound(location.to_string()));
        }
        if !location.ends_with(".mar") {
            return Err(ArchiveError::UnsupportedFormat(path));
        }
        let unpacked = tempfile::Builder::new()
            .prefix("tserve-model-")
            .tempdir()
            .map_err(|source| ArchiveError::Io {
                path: path.clone(),
                source,
            })?;
        extract::unzip(&path, unpacked.path())?;
        let manifest = Manifest::read_dir(unpacked.path(), default_name(location))?;
        Ok(Self {
            manifest,
            dir: unpacked.path().to_path_buf(),
            _unpacked: Some(unpacked),
        })
    }

    /// The archive's model-config YAML, if its manifest names one.
    pub fn model_config(&self) -> Result<ModelConfig, ArchiveError> {
        match &self.manifest.model.config_file {
            Some(file) => ModelConfig::read(&self.dir.join(file)),
            None => Ok(ModelConfig::default()),
        }
    }
}

/// The name TorchServe gives a model whose archive has no manifest: the file name without its
/// extension.
fn default_name(location: &str) -> &str {
    let file = location.rsplit('/').next().unwrap_or(location);
    file.strip_suffix(".mar").unwrap_or(file)
}

/// The archives `load_models=all` picks up: `.mar` files and folders, sorted for a stable order.
pub fn list_store(store: &Path) -> Result<Vec<String>, ArchiveError> {
    let entries = std::fs::read_dir(store).map_err(|source| ArchiveError::Io {
        path: store.to_path_buf(),
        source,
    })?;
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.')
                && ((path.is_file() && name.ends_with(".mar"))
                    || path.join("MAR-INF").join("MANIFEST.json").is_file())
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_mar(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, data) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    const MANIFEST: &[u8] = br#"{"createdOn": "01/02/2024 10:00:00", "runtime": "python",
        "model": {"modelName": "mlp", "serializedFile": "mlp.pt", "handler": "base_handler",
        "modelVersion": "2.0"}, "archiverVersion": "0.12.0"}"#;

    #[test]
    fn opens_a_mar() {
        let store = tempfile::tempdir().unwrap();
        write_mar(
            &store.path().join("mlp.mar"),
            &[("MAR-INF/MANIFEST.json", MANIFEST), ("mlp.pt", b"weights")],
        );
        let archive = ModelArchive::open(store.path(), "mlp.mar").unwrap();
        assert_eq!(archive.manifest.model.model_name, "mlp");
        assert_eq!(archive.manifest.model.model_version, "2.0");
        assert_eq!(std::fs::read(archive.dir.join("mlp.pt")).unwrap(), b"weights");
        let dir = archive.dir.clone();
        drop(archive);
        assert!(!dir.exists(), "the unpacked copy is removed with the archive");
    }

    #[test]
    fn refuses_zip_slip() {
        let store = tempfile::tempdir().unwrap();
        write_mar(
            &store.path().join("evil.mar"),
            &[("MAR-INF/MANIFEST.json", MANIFEST), ("../../escaped.txt", b"x")],
        );
        let err = ModelArchive::open(store.path(), "evil.mar").unwrap_err();
        assert!(matches!(err, ArchiveError::UnsafeEntry { .. }), "{err}");
    }

    #[test]
    fn refuses_paths_out_of_the_store() {
        let store = tempfile::tempdir().unwrap();
        let err = ModelArchive::open(store.path(), "../x.mar").unwrap_err();
        assert!(matches!(err, ArchiveError::PathEscapesStore(_)));
    }

    #[test]
    fn corrupt_zip_is_a_clear_error() {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("bad.mar"), b"not a zip at all").unwrap();
        let err = ModelArchive::open(store.path(), "bad.mar").unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn missing_manifest_defaults_like_torchserve() {
        let store = tempfile::tempdir().unwrap();
        write_mar(&store.path().join("noop.mar"), &[("model.pt", b"w")]);
        let archive = ModelArchive::open(store.path(), "noop.mar").unwrap();
        assert_eq!(archive.manifest.model.model_name, "noop");
        assert_eq!(archive.manifest.model.model_version, "1.0");
    }

    #[test]
    fn lists_mars_and_model_folders() {
        let store = tempfile::tempdir().unwrap();
        write_mar(&store.path().join("b.mar"), &[("MAR-INF/MANIFEST.json", MANIFEST)]);
        std::fs::create_dir_all(store.path().join("a/MAR-INF")).unwrap();
        std::fs::write(store.path().join("a/MAR-INF/MANIFEST.json"), MANIFEST).unwrap();
        std::fs::write(store.path().join("README.md"), b"").unwrap();
        assert_eq!(list_store(store.path()).unwrap(), vec!["a", "b.mar"]);
    }
}
