//! Unpacks a zip archive into a folder, refusing entries that would land outside it.

use std::path::Path;

use super::ArchiveError;

pub fn unzip(archive: &Path, target: &Path) -> Result<(), ArchiveError> {
    let io_error = |source| ArchiveError::Io {
        path: archive.to_path_buf(),
        source,
    };
    let corrupt = |e: zip::result::ZipError| ArchiveError::Corrupt {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(archive).map_err(io_error)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(corrupt)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(corrupt)?;
        // enclosed_name() is None for absolute names and for names that climb out with `..`.
        let relative = match entry.enclosed_name() {
            Some(relative) if !entry.is_symlink() => relative,
            _ => {
                return Err(ArchiveError::UnsafeEntry {
                    path: archive.to_path_buf(),
                    entry: entry.name().to_string(),
                })
            }
        };
        let out_path = target.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&out_path).map_err(io_error)?;
            continue;
        }
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut out = std::fs::File::create(&out_path).map_err(io_error)?;
        std::io::copy(&mut entry, &mut out).map_err(|e| ArchiveError::Corrupt {
            path: archive.to_path_buf(),
            message: format!("{}: {e}", entry.name()),
        })?;
    }
    Ok(())
}
