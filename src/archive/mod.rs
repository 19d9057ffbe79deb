//! Model archives in the model store: `.mar` files (zip) and unpacked directories, each with a
//! `MAR-INF/MANIFEST.json`. Opening one yields a folder holding the model's files.
//!
//! A `.mar` is unpacked into a private temporary folder that lives as long as the returned
//! [`ModelArchive`]; the model store itself is only read.

mod extract;
mod fetch;
mod manifest;
mod model_config;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Code, ErrorCode};

pub use extract::Limits;
pub use fetch::fetch_into_store;
pub use manifest::{Manifest, ModelSection, Runtime};
pub use model_config::{DeclaredTensor, DeclaredTensors, DeviceType, ModelConfig, Opportunistic};
pub use write::{pack, ArchiveFormat, PackOptions};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// TorchServe's exact words for a register call with `url=`.
    #[error("empty url")]
    EmptyUrl,
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
    #[error("archive {path} expands to {limit}, past the configured limit")]
    TooLarge { path: PathBuf, limit: String },
    #[error("archive {path} has an unsafe entry {entry:?}: a link, a device, or a path outside its folder")]
    UnsafeEntry { path: PathBuf, entry: String },
    #[error("invalid MANIFEST.json in {path}: {message}")]
    InvalidManifest { path: PathBuf, message: String },
    #[error("invalid model config {path}: {message}")]
    InvalidModelConfig { path: PathBuf, message: String },
    #[error("unsupported archive {0}: tserve loads .mar files and unpacked model folders")]
    UnsupportedFormat(PathBuf),
    /// A manifest naming a file outside its archive: refused without looking at the file, so
    /// the answer says nothing about what exists elsewhere.
    #[error("the manifest names {0:?}, which is not a file inside the archive")]
    OutsideArchive(String),
}

impl ErrorCode for ArchiveError {
    fn code(&self) -> Code {
        match self {
            ArchiveError::EmptyUrl
            | ArchiveError::NotFound(_)
            | ArchiveError::PathEscapesStore(_) | ArchiveError::UrlNotAllowed(_) => {
                Code::ModelNotFound
            }
            ArchiveError::AlreadyExists(_) | ArchiveError::Io { .. } => Code::Internal,
            ArchiveError::DownloadFailed { .. } => Code::DownloadFailed,
            ArchiveError::Corrupt { .. }
            | ArchiveError::TooLarge { .. }
            | ArchiveError::UnsafeEntry { .. }
            | ArchiveError::InvalidManifest { .. }
            | ArchiveError::InvalidModelConfig { .. }
            | ArchiveError::UnsupportedFormat(_)
            | ArchiveError::OutsideArchive(_) => Code::InvalidModel,
        }
    }
}

/// An opened model archive: its manifest and the folder holding its files.
#[derive(Debug, Clone)]
pub struct ModelArchive {
    pub manifest: Manifest,
    /// Where the archive's files are: the unpacked copy of a `.mar`/`.tar.gz`, or the store's
    /// own folder.
    pub dir: PathBuf,
    /// Keeps an unpacked archive on disk while the model is in use; removed on drop (shared
    /// by a workflow's function nodes, which all run from its one unpacked `.war`).
    _unpacked: Option<Arc<tempfile::TempDir>>,
}

/// How a file in the store is packed, by its name.
enum Packing {
    Zip,
    TarGz,
}

fn packing(location: &str) -> Option<Packing> {
    if location.ends_with(".mar") || location.ends_with(".model") {
        Some(Packing::Zip)
    } else if location.ends_with(".tar.gz") || location.ends_with(".tgz") {
        Some(Packing::TarGz)
    } else {
        None
    }
}

impl ModelArchive {
    /// Opens `location` (a file or folder name in `store`). TorchServe refuses names that walk
    /// out of the store, and so does this. Archives are unpacked into a private temporary
    /// folder; the store itself is only read, so a failed open changes nothing there.
    pub fn open(store: &Path, location: &str, limits: Limits) -> Result<Self, ArchiveError> {
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
            let dir = model_root(&path);
            return Ok(Self {
                manifest: Manifest::read_dir(&dir)?,
                dir,
                _unpacked: None,
            });
        }
        if !path.is_file() {
            return Err(ArchiveError::NotFound(location.to_string()));
        }
        let packing = packing(location).ok_or_else(|| ArchiveError::UnsupportedFormat(path.clone()))?;
        let unpacked = unpack_dir().map_err(|source| ArchiveError::Io {
            path: path.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        match packing {
            Packing::Zip => extract::unzip(&path, unpacked.path(), limits)?,
            Packing::TarGz => extract::untar_gz(&path, unpacked.path(), limits)?,
        }
        // Part of a start's time to ready, which the benchmark's start row reads.
        log::info!("{}: unpacked in {:.1} ms", path.display(), started.elapsed().as_secs_f64() * 1e3);
        let dir = model_root(unpacked.path());
        Ok(Self {
            manifest: Manifest::read_dir(&dir)?,
            dir,
            _unpacked: Some(Arc::new(unpacked)),
        })
    }

    /// An archive the server made itself: `manifest` for the files in `dir`, which `keep`
    /// holds on disk (a workflow's function node, run from the workflow's unpacked `.war`).
    pub fn prepared(manifest: Manifest, dir: PathBuf, keep: Arc<tempfile::TempDir>) -> Self {
        Self {
            manifest,
            dir,
            _unpacked: Some(keep),
        }
    }

    /// The archive's model-config YAML, if its manifest names one.
    pub fn model_config(&self) -> Result<ModelConfig, ArchiveError> {
        match &self.manifest.model.config_file {
            Some(file) => ModelConfig::read(&self.file(file)?),
            None => Ok(ModelConfig::default()),
        }
    }

    /// A file the manifest names, which must be inside the archive: no absolute name, no `..`,
    /// and (for a model folder, which may hold links) a resolved path still inside. The path may
    /// not exist; whether it does is not looked at for a name that escapes.
    pub fn file(&self, name: &str) -> Result<PathBuf, ArchiveError> {
        let relative = Path::new(name);
        let plain = !name.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
        if !plain {
            return Err(ArchiveError::OutsideArchive(name.to_string()));
        }
        let path = self.dir.join(relative);
        if let (Ok(resolved), Ok(root)) = (path.canonicalize(), self.dir.canonicalize()) {
            if !resolved.starts_with(&root) {
                return Err(ArchiveError::OutsideArchive(name.to_string()));
            }
        }
        Ok(path)
    }
}

/// Unpacks the file `path` into a private temporary folder: a zip (`.war`, like `.mar`), or
/// else a `.tar.gz`, as TorchServe treats workflow archives. Blocking.
pub fn unpack(path: &Path, limits: Limits) -> Result<tempfile::TempDir, ArchiveError> {
    let unpacked = unpack_dir().map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.to_string_lossy();
    if name.ends_with(".war") || name.ends_with(".mar") || name.ends_with(".zip") {
        extract::unzip(path, unpacked.path(), limits)?;
    } else {
        extract::untar_gz(path, unpacked.path(), limits)?;
    }
    Ok(unpacked)
}

/// Unpacked archives live in `<tmp>/tserve-model-<pid>-<random>`, readable by this user only
/// (the weights may be private); the pid lets a later start clean up after a killed process.
const UNPACK_PREFIX: &str = "tserve-model-";

fn unpack_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{UNPACK_PREFIX}{}-", std::process::id()))
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Removes what killed tserve processes left in the temporary folder: unpacked archives and
/// worker socket folders whose process is gone. Returns how many were removed. (Liveness is
/// `/proc/<pid>`: servers in other pid namespaces sharing one TMPDIR should each have their own.)
pub fn remove_leftovers() -> usize {
    let temp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&temp) else { return 0 };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(UNPACK_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .or_else(|| name.strip_prefix(".tserve-"))
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        // Only this user's own folders (never a link), and only when no process has that pid:
        // a pid in use, even by another program, keeps its folder.
        let ours = entry.path().symlink_metadata().is_ok_and(|meta| {
            use std::os::unix::fs::MetadataExt;
            meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw()
        });
        if !ours {
            continue;
        }
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Where the model's files are: the folder itself, or (as TorchServe does for `.tar.gz`, whose
/// entries sit under `<name>/`) its only subfolder when it has no manifest of its own.
fn model_root(dir: &Path) -> PathBuf {
    if dir.join("MAR-INF").is_dir() {
        return dir.to_path_buf();
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => dir.to_path_buf(),
    }
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
                && ((path.is_file() && packing(&name).is_some())
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
        let archive = ModelArchive::open(store.path(), "mlp.mar", Limits::default()).unwrap();
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
        let err = ModelArchive::open(store.path(), "evil.mar", Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::UnsafeEntry { .. }), "{err}");
    }

    #[test]
    fn refuses_paths_out_of_the_store() {
        let store = tempfile::tempdir().unwrap();
        let err = ModelArchive::open(store.path(), "../x.mar", Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::PathEscapesStore(_)));
    }

    #[test]
    fn corrupt_zip_is_a_clear_error() {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("bad.mar"), b"not a zip at all").unwrap();
        let err = ModelArchive::open(store.path(), "bad.mar", Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn missing_or_malformed_manifest_is_a_clear_error() {
        let store = tempfile::tempdir().unwrap();
        write_mar(&store.path().join("noop.mar"), &[("model.pt", b"w")]);
        let err = ModelArchive::open(store.path(), "noop.mar", Limits::default()).unwrap_err();
        assert!(err.to_string().contains("no MAR-INF/MANIFEST.json"), "{err}");
        write_mar(&store.path().join("bad.mar"), &[("MAR-INF/MANIFEST.json", b"{\"model\": 3")]);
        let err = ModelArchive::open(store.path(), "bad.mar", Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidManifest { .. }), "{err}");
    }

    #[test]
    fn zip_bombs_stop_at_the_limits() {
        let store = tempfile::tempdir().unwrap();
        let zeros = vec![0u8; 1 << 20];
        write_mar(&store.path().join("bomb.mar"), &[("MAR-INF/MANIFEST.json", MANIFEST), ("zeros", &zeros)]);
        let small = Limits { max_bytes: 1000, max_entries: 100 };
        let err = ModelArchive::open(store.path(), "bomb.mar", small).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        let few = Limits { max_bytes: 1 << 30, max_entries: 1 };
        let err = ModelArchive::open(store.path(), "bomb.mar", few).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        assert!(ModelArchive::open(store.path(), "bomb.mar", Limits::default()).is_ok());
    }

    #[test]
    fn tar_gz_with_a_top_folder() {
        let store = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(store.path().join("mlp.tar.gz")).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        for (name, data) in [("mlp/mlp.pt", &b"weights"[..]), ("mlp/MAR-INF/MANIFEST.json", MANIFEST)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        let archive = ModelArchive::open(store.path(), "mlp.tar.gz", Limits::default()).unwrap();
        assert_eq!(archive.manifest.model.model_name, "mlp");
        assert_eq!(std::fs::read(archive.dir.join("mlp.pt")).unwrap(), b"weights");
    }

    #[test]
    fn tar_links_are_refused() {
        let store = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(store.path().join("link.tar.gz")).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_cksum();
        tar.append_link(&mut header, "m/escape", "/etc/passwd").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let err = ModelArchive::open(store.path(), "link.tar.gz", Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::UnsafeEntry { .. }), "{err}");
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
