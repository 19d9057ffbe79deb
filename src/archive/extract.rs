//! Unpacks `.mar` (zip) and `.tar.gz` archives into a folder, refusing anything that could hurt
//! the machine: entries that would land outside the folder (`../`, absolute names), links and
//! device files, and archives that expand past [`Limits`] (zip bombs). Sizes are counted as
//! bytes are written, not taken from headers, which can lie.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::ArchiveError;

/// How much an archive may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    /// Large enough for big TorchScript models, small enough to stop a bomb filling the disk.
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 100_000,
        }
    }
}

/// Counts entries and bytes against the limits while unpacking.
struct Budget<'a> {
    archive: &'a Path,
    limits: Limits,
    entries: usize,
    bytes: u64,
}

impl Budget<'_> {
    fn entry(&mut self) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_large(format!("more than {} entries", self.limits.max_entries)));
        }
        Ok(())
    }

    /// Copies one entry's content, stopping as soon as the archive passes its byte limit.
    fn copy(&mut self, content: &mut impl Read, out_path: &Path) -> Result<(), ArchiveError> {
        let mut out = std::fs::File::create(out_path).map_err(|source| io(self.archive, source))?;
        let allowed = self.limits.max_bytes - self.bytes;
        let copied = std::io::copy(&mut content.take(allowed + 1), &mut out)
            .map_err(|e| corrupt(self.archive, format!("{}: {e}", out_path.display())))?;
        self.bytes += copied;
        if copied > allowed {
            return Err(self.too_large(format!("more than {} bytes", self.limits.max_bytes)));
        }
        Ok(())
    }

    fn too_large(&self, what: String) -> ArchiveError {
        ArchiveError::TooLarge {
            path: self.archive.to_path_buf(),
            limit: what,
        }
    }
}

fn io(archive: &Path, source: std::io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: archive.to_path_buf(),
        source,
    }
}

fn corrupt(archive: &Path, message: String) -> ArchiveError {
    ArchiveError::Corrupt {
        path: archive.to_path_buf(),
        message,
    }
}

fn unsafe_entry(archive: &Path, entry: String) -> ArchiveError {
    ArchiveError::UnsafeEntry {
        path: archive.to_path_buf(),
        entry,
    }
}

/// The entry's path below the target, if it stays below it.
fn enclosed(name: &Path) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!relative.as_os_str().is_empty()).then_some(relative)
}

fn create_parent(archive: &Path, path: &Path) -> Result<(), ArchiveError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| io(archive, source)),
        None => Ok(()),
    }
}

pub fn unzip(archive: &Path, target: &Path, limits: Limits) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(archive).map_err(|source| io(archive, source))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(archive, e.to_string()))?;
    let mut budget = Budget {
        archive,
        limits,
        entries: 0,
        bytes: 0,
    };
    for index in 0..zip.len() {
        budget.entry()?;
        let mut entry = zip
            .by_index(index)
            .map_err(|e| corrupt(archive, e.to_string()))?;
        let relative = match enclosed(Path::new(entry.name())) {
            Some(relative) if !entry.is_symlink() => relative,
            _ => return Err(unsafe_entry(archive, entry.name().to_string())),
        };
        let out_path = target.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&out_path).map_err(|source| io(archive, source))?;
            continue;
        }
        create_parent(archive, &out_path)?;
        budget.copy(&mut entry, &out_path)?;
    }
    Ok(())
}

pub fn untar_gz(archive: &Path, target: &Path, limits: Limits) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(archive).map_err(|source| io(archive, source))?;
    // The tar reader buffers long names and PAX headers whole before an entry is seen, so the
    // decompressed stream itself is capped too.
    let stream = flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .take(limits.max_bytes.saturating_add(64 << 20));
    let mut tar = tar::Archive::new(stream);
    let mut budget = Budget {
        archive,
        limits,
        entries: 0,
        bytes: 0,
    };
    let entries = tar.entries().map_err(|e| corrupt(archive, e.to_string()))?;
    for entry in entries {
        budget.entry()?;
        let mut entry = entry.map_err(|e| corrupt(archive, e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(archive, e.to_string()))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() {
            continue;
        }
        let Some(relative) = enclosed(&name) else {
            return Err(unsafe_entry(archive, name.display().to_string()));
        };
        let out_path = target.join(relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&out_path).map_err(|source| io(archive, source))?;
        } else if kind.is_file() {
            create_parent(archive, &out_path)?;
            budget.copy(&mut entry, &out_path)?;
        } else {
            // Symlinks, hard links and devices could point outside the folder or at the host.
            return Err(unsafe_entry(archive, name.display().to_string()));
        }
    }
    Ok(())
}
