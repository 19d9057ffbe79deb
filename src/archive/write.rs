//! Writes model archives as torch-model-archiver 0.12 does: the serialized file, model file,
//! handler, extra files, requirements and config at the archive root, `MAR-INF/MANIFEST.json`
//! last, in one of its four formats. Archives are written beside their final name and renamed
//! into place, so a failed run never leaves half an archive.

use std::path::{Path, PathBuf};

use super::{Manifest, ModelSection, Runtime};

/// torch-model-archiver's release whose archive format this writes.
pub const ARCHIVER_VERSION: &str = "0.12.0";

/// Handlers TorchServe ships, which are named in the manifest but not copied.
const BUILT_IN_HANDLERS: [&str; 8] = [
    "base_handler",
    "text_classifier",
    "image_classifier",
    "object_detector",
    "image_segmenter",
    "dali_image_classifier",
    "vllm_handler",
    "trt_llm_handler",
];
const BUILT_IN_LSP_HANDLERS: [&str; 2] = ["BaseHandler", "TorchScriptHandler"];

const MODEL_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// `.mar`, zip, deflated.
    Default,
    /// `.mar`, zip, stored.
    ZipStore,
    /// `.tar.gz`, every entry under `<model-name>/`.
    Tgz,
    /// A folder `<export-path>/<model-name>/`.
    NoArchive,
}

impl ArchiveFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::Default | Self::ZipStore => ".mar",
            Self::Tgz => ".tar.gz",
            Self::NoArchive => "",
        }
    }
}

/// torch-model-archiver's arguments.
#[derive(Debug, Clone)]
pub struct PackOptions {
    pub model_name: String,
    pub version: String,
    pub serialized_file: Option<PathBuf>,
    pub model_file: Option<PathBuf>,
    pub handler: String,
    /// Comma-separated files, folders and glob patterns.
    pub extra_files: Option<String>,
    pub runtime: Runtime,
    pub export_path: PathBuf,
    pub format: ArchiveFormat,
    pub force: bool,
    pub requirements_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("Model name contains special characters.\nThe allowed regular expression filter for model name is: {MODEL_NAME_PATTERN}")]
    InvalidModelName,
    #[error("Given export-path {0} is not a directory. Point to a valid export-path directory.")]
    ExportPathNotADirectory(String),
    #[error("{0} already exists.\nPlease specify --force/-f option to overwrite the model archive output file.\nSee -h/--help for more details.")]
    AlreadyExists(String),
    #[error("No such file or directory: {0}")]
    MissingFile(String),
    #[error("Is a directory: {0}")]
    IsADirectory(String),
    #[error("Failed to save the model-archive to model-path \"{path}\": {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What a successful run wants to warn about.
#[derive(Debug)]
pub struct PackReport {
    pub warnings: Vec<String>,
}

/// The archive's contents: (name in the archive, file on disk), in order. A later file with the
/// same name replaces an earlier one, as copying into one folder does.
#[derive(Default)]
struct Contents(Vec<(String, PathBuf)>);

impl Contents {
    fn add(&mut self, name: String, source: PathBuf) {
        self.0.retain(|(existing, _)| *existing != name);
        self.0.push((name, source));
    }

    /// Adds a file at the root, by its base name.
    fn add_file(&mut self, path: &Path) -> Result<(), PackError> {
        if path.is_dir() {
            return Err(PackError::IsADirectory(path.display().to_string()));
        }
        if !path.is_file() {
            return Err(PackError::MissingFile(path.display().to_string()));
        }
        self.add(base_name(path), path.to_path_buf());
        Ok(())
    }

    /// Adds a folder's contents at the root, keeping their relative paths. Folders named
    /// `__MACOSX`, `__pycache__` or starting with `.` are left out, as torch-model-archiver does.
    fn add_folder_contents(&mut self, folder: &Path) -> Result<(), PackError> {
        let mut pending = vec![folder.to_path_buf()];
        let mut files = Vec::new();
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|_| PackError::MissingFile(dir.display().to_string()))?;
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    if !(name == "__MACOSX" || name == "__pycache__" || name.starts_with('.')) {
                        pending.push(path);
                    }
                } else if path.is_file() {
                    files.push(path);
                }
            }
        }
        files.sort();
        for path in files {
            let relative = path.strip_prefix(folder).unwrap_or(&path);
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            self.add(name, path);
        }
        Ok(())
    }
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes the archive `options` describe.
pub fn pack(options: &PackOptions) -> Result<PackReport, PackError> {
    let created_on = chrono::Local::now().format("%d/%m/%Y %H:%M:%S").to_string();
    let name_ok = regex::Regex::new(MODEL_NAME_PATTERN)
        .map(|pattern| pattern.is_match(&options.model_name))
        .unwrap_or(false);
    if !name_ok {
        return Err(PackError::InvalidModelName);
    }
    if !options.export_path.is_dir() {
        return Err(PackError::ExportPathNotADirectory(options.export_path.display().to_string()));
    }
    let output = options
        .export_path
        .join(format!("{}{}", options.model_name, options.format.extension()));
    let mut warnings = Vec::new();
    if output.exists() {
        if !options.force {
            return Err(PackError::AlreadyExists(output.display().to_string()));
        }
        warnings.push(format!("Overwriting {} ...", output.display()));
    }

    let mut contents = Contents::default();
    if let Some(model_file) = &options.model_file {
        contents.add_file(model_file)?;
    }
    if let Some(serialized) = &options.serialized_file {
        contents.add_file(serialized)?;
    }
    if let Some(handler_file) = handler_file(&options.handler, options.runtime) {
        contents.add_file(&handler_file)?;
    }
    if let Some(extra) = &options.extra_files {
        add_extra_files(&mut contents, extra, &mut warnings)?;
    }
    if let Some(requirements) = &options.requirements_file {
        contents.add_file(requirements)?;
    }
    if let Some(config) = &options.config_file {
        contents.add_file(config)?;
    }

    let manifest = Manifest {
        created_on: Some(created_on),
        runtime: options.runtime.as_str().to_string(),
        description: None,
        model: ModelSection {
            model_name: options.model_name.clone(),
            serialized_file: options.serialized_file.as_deref().map(base_name),
            handler: Some(base_name(Path::new(&options.handler))),
            model_file: options.model_file.as_deref().map(base_name),
            model_version: options.version.clone(),
            requirements_file: options.requirements_file.as_deref().map(base_name),
            config_file: options.config_file.as_deref().map(base_name),
            description: None,
        },
        archiver_version: Some(ARCHIVER_VERSION.to_string()),
    };
    write_archive(options, &output, &contents, &manifest.to_json()).map_err(|source| PackError::Write {
        path: options.export_path.display().to_string(),
        source,
    })?;
    Ok(PackReport { warnings })
}

/// The handler file to copy, if the handler is not built in: `x.py`, or `x` / `x:fn` for
/// `x.py` (`.so` for the LSP runtime).
fn handler_file(handler: &str, runtime: Runtime) -> Option<PathBuf> {
    let file = handler.split(':').next().unwrap_or(handler);
    if runtime == Runtime::Lsp {
        return (!BUILT_IN_LSP_HANDLERS.contains(&handler)).then(|| PathBuf::from(format!("{file}.so")));
    }
    if BUILT_IN_HANDLERS.contains(&handler) {
        return None;
    }
    Some(PathBuf::from(if file.ends_with(".py") {
        file.to_string()
    } else {
        format!("{file}.py")
    }))
}

fn add_extra_files(contents: &mut Contents, extra: &str, warnings: &mut Vec<String>) -> Result<(), PackError> {
    for item in extra.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let is_pattern = item.contains(['*', '?']) || (item.contains('[') && item.contains(']'));
        let matches: Vec<PathBuf> = if is_pattern {
            let mut found: Vec<PathBuf> = glob::glob(item)
                .map(|paths| paths.filter_map(Result::ok).collect())
                .unwrap_or_default();
            found.sort();
            if found.is_empty() {
                warnings.push(format!("Given wildcard pattern did not match any file: {item}"));
            }
            found
        } else {
            vec![PathBuf::from(item)]
        };
        for path in matches {
            if path.is_dir() {
                contents.add_folder_contents(&path)?;
            } else {
                contents.add_file(&path)?;
            }
        }
    }
    Ok(())
}

fn write_archive(options: &PackOptions, output: &Path, contents: &Contents, manifest: &str) -> std::io::Result<()> {
    let partial = output.with_file_name(format!(".{}.partial", base_name(output)));
    let written = match options.format {
        ArchiveFormat::Default | ArchiveFormat::ZipStore => write_zip(&partial, options.format, contents, manifest),
        ArchiveFormat::Tgz => write_tgz(&partial, &options.model_name, contents, manifest),
        ArchiveFormat::NoArchive => write_folder(&partial, contents, manifest),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial).or_else(|_| std::fs::remove_dir_all(&partial));
        return Err(e);
    }
    if output.is_dir() {
        std::fs::remove_dir_all(output)?;
    }
    std::fs::rename(&partial, output)
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

/// A zip timestamp (local time, 2 s resolution, as Python's zipfile writes it).
fn zip_time(time: std::time::SystemTime) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    let local: chrono::DateTime<chrono::Local> = time.into();
    zip::DateTime::from_date_and_time(
        local.year().clamp(1980, 2107) as u16,
        local.month() as u8,
        local.day() as u8,
        local.hour() as u8,
        local.minute() as u8,
        local.second() as u8,
    )
    .unwrap_or_default()
}

fn write_zip(path: &Path, format: ArchiveFormat, contents: &Contents, manifest: &str) -> std::io::Result<()> {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let method = if format == ArchiveFormat::ZipStore {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    for (name, source) in &contents.0 {
        let metadata = std::fs::metadata(source)?;
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(file_mode(source))
            .last_modified_time(zip_time(metadata.modified()?))
            .large_file(metadata.len() >= u32::MAX as u64);
        zip.start_file(name.as_str(), options)?;
        std::io::copy(&mut std::fs::File::open(source)?, &mut zip)?;
    }
    let options = SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(0o600)
        .last_modified_time(zip_time(std::time::SystemTime::now()));
    zip.start_file("MAR-INF/MANIFEST.json", options)?;
    zip.write_all(manifest.as_bytes())?;
    zip.finish()?.sync_all()
}

fn write_tgz(path: &Path, model_name: &str, contents: &Contents, manifest: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gzip);
    for (name, source) in &contents.0 {
        tar.append_path_with_name(source, format!("{model_name}/{name}"))?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("{model_name}/MAR-INF/MANIFEST.json"), manifest.as_bytes())?;
    tar.into_inner()?.finish()?.sync_all()
}

fn write_folder(path: &Path, contents: &Contents, manifest: &str) -> std::io::Result<()> {
    for (name, source) in &contents.0 {
        let target = path.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(source, target)?;
    }
    std::fs::create_dir_all(path.join("MAR-INF"))?;
    std::fs::write(path.join("MAR-INF").join("MANIFEST.json"), manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_files_follow_torch_model_archiver() {
        assert_eq!(handler_file("image_classifier", Runtime::Python), None);
        assert_eq!(handler_file("in/h.py", Runtime::Python), Some(PathBuf::from("in/h.py")));
        assert_eq!(handler_file("in/h:handle", Runtime::Python), Some(PathBuf::from("in/h.py")));
        assert_eq!(handler_file("in/h.py:handle", Runtime::Python), Some(PathBuf::from("in/h.py")));
        assert_eq!(handler_file("BaseHandler", Runtime::Lsp), None);
        assert_eq!(handler_file("lib/h", Runtime::Lsp), Some(PathBuf::from("lib/h.so")));
    }

    #[test]
    fn manifest_escapes_non_ascii_and_has_no_newline() {
        let manifest = Manifest {
            created_on: Some("01/02/2024 10:00:00".into()),
            runtime: "python".into(),
            description: None,
            model: ModelSection {
                model_name: "caf\u{e9}".into(),
                serialized_file: None,
                handler: Some("base_handler".into()),
                model_file: None,
                model_version: "1.0".into(),
                requirements_file: None,
                config_file: None,
                description: None,
            },
            archiver_version: Some(ARCHIVER_VERSION.into()),
        };
        let json = manifest.to_json();
        assert!(json.contains("\"caf\\u00e9\""), "{json}");
        assert!(json.starts_with("{\n  \"createdOn\": \"01/02/2024 10:00:00\",\n  \"runtime\": \"python\",\n  \"model\": {\n    \"modelName\""), "{json}");
        assert!(json.ends_with("\"archiverVersion\": \"0.12.0\"\n}"), "{json}");
    }
}
