//! Where a register call's `url` points: an archive already in the model store, or an
//! http(s)/file URL, checked against `allowed_urls` and downloaded into the store (TorchServe's
//! behaviour; the downloaded file is removed again when the model is unregistered).

use std::io::Read;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::ArchiveError;


/// An archive's place in the model store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// Its name in the store, as `ModelArchive::open` takes it.
    pub name: String,
    /// Set when it was downloaded for this registration, so unregistering removes it.
    pub downloaded: Option<PathBuf>,
}

/// Resolves `url` to an archive in `store`, downloading it when it is a URL (at most
/// `max_bytes`, checked as the bytes arrive). Blocking.
pub fn fetch_into_store(store: &Path, url: &str, allowed: &[Regex], max_bytes: u64) -> Result<StoreEntry, ArchiveError> {
    if url.is_empty() {
        return Err(ArchiveError::EmptyUrl);
    }
    let lower = url.to_ascii_lowercase();
    // `%2e` too: the URL parser decodes `%2e%2e` to `..` and resolves it, which would walk out
    // of the folder that `allowed_urls` names. No archive URL needs an encoded dot.
    if url.contains("..") || lower.contains("%2e") {
        return Err(ArchiveError::PathEscapesStore(url.to_string()));
    }
    let is_url = ["http://", "https://", "file://"].iter().any(|scheme| lower.starts_with(scheme));
    if !is_url {
        // Checked before looking at the disk, so nothing outside the store can be probed.
        let inside = Path::new(url)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(ArchiveError::PathEscapesStore(url.to_string()));
        }
        if !store.join(url).exists() {
            return Err(ArchiveError::NotFound(url.to_string()));
        }
        return Ok(StoreEntry {
            name: url.to_string(),
            downloaded: None,
        });
    }
    if !allowed.iter().any(|pattern| pattern.is_match(url)) {
        return Err(ArchiveError::UrlNotAllowed(url.to_string()));
    }
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|path| path.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ArchiveError::DownloadFailed {
            url: url.to_string(),
            reason: "the URL names no file".into(),
        })?
        .to_string();
    let target = store.join(&name);
    if target.exists() {
        return Err(ArchiveError::AlreadyExists(name));
    }
    download(url, &target, max_bytes)?;
    Ok(StoreEntry {
        name,
        downloaded: Some(target),
    })
}

fn download(url: &str, target: &Path, max_bytes: u64) -> Result<(), ArchiveError> {
    let failed = |reason: String| ArchiveError::DownloadFailed {
        url: url.to_string(),
        reason,
    };
    let mut source: Box<dyn Read> = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file://") => {
            let path = Path::new(&url[7..]);
            // Only a regular file: a FIFO or a device would block the call or never end.
            if !std::fs::metadata(path).map_err(|e| failed(e.to_string()))?.is_file() {
                return Err(failed("not a regular file".into()));
            }
            Box::new(std::fs::File::open(path).map_err(|e| failed(e.to_string()))?)
        }
        _ => {
            // No redirects: allowed_urls was checked against this URL, not wherever a redirect
            // would lead. Timeouts, so a stalled server cannot hold the register call forever.
            let agent = ureq::AgentBuilder::new()
                .redirects(0)
                .timeout_connect(std::time::Duration::from_secs(30))
                .timeout_read(std::time::Duration::from_secs(120))
                .build();
            Box::new(agent.get(url).call().map_err(|e| failed(e.to_string()))?.into_reader())
        }
    };
    let store = target.parent().unwrap_or(Path::new("."));
    // Into a private hidden file first, so a failed download never leaves an archive in the
    // store, and two downloads of the same name cannot mix; the first to finish wins.
    let mut partial = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(store)
        .map_err(|e| failed(e.to_string()))?;
    let free = nix::sys::statvfs::statvfs(store)
        .map(|fs| fs.blocks_available().saturating_mul(fs.fragment_size()))
        .map_err(|e| failed(format!("cannot read the free space of the model store: {e}")))?;
    let limit = download_limit(max_bytes, free);
    // Stops one byte past the limit: a larger archive is refused, and the partial file (a
    // temporary file) goes with the error.
    let copied = std::io::copy(&mut (&mut source).take(limit.bytes.saturating_add(1)), partial.as_file_mut())
        .map_err(|e| failed(e.to_string()))?;
    if copied > limit.bytes {
        return Err(failed(limit.refusal()));
    }
    partial.as_file().sync_all().map_err(|e| failed(e.to_string()))?;
    partial.persist_noclobber(target).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            ArchiveError::AlreadyExists(target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        } else {
            failed(e.error.to_string())
        }
    })?;
    Ok(())
}

/// How large a download may be: at most `archive_max_bytes` (an archive expands to at least
/// its own size, so a larger one could never be unpacked), and at most half the free space of
/// the model store's file system when the download starts, so one registration can never fill
/// the disk the logs, snapshots and its own unpacked archive also need.
#[derive(Debug, PartialEq, Eq)]
struct DownloadLimit {
    bytes: u64,
    /// Which of the two bounds it is.
    by_free_space: bool,
}

fn download_limit(archive_max_bytes: u64, free_bytes: u64) -> DownloadLimit {
    let half_free = free_bytes / 2;
    DownloadLimit {
        bytes: archive_max_bytes.min(half_free),
        by_free_space: half_free < archive_max_bytes,
    }
}

impl DownloadLimit {
    fn refusal(&self) -> String {
        let bytes = self.bytes;
        if self.by_free_space {
            format!("the archive is larger than half the free space of the model store ({bytes} bytes)")
        } else {
            format!("the archive is larger than archive_max_bytes ({bytes} bytes)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_may_take_at_most_half_the_free_space() {
        let gib = 1u64 << 30;
        assert_eq!(download_limit(32 * gib, 10 * gib), DownloadLimit { bytes: 5 * gib, by_free_space: true });
        assert_eq!(download_limit(gib, 100 * gib), DownloadLimit { bytes: gib, by_free_space: false });
        assert!(download_limit(32 * gib, 0).refusal().contains("free space"));
        assert!(download_limit(1000, u64::MAX).refusal().contains("archive_max_bytes (1000 bytes)"));
    }

    fn default_allowed() -> Vec<Regex> {
        vec![Regex::new("(?i)^(?:file://.*|http(s)?://.*)$").unwrap()]
    }

    #[test]
    fn store_names_and_errors() {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("a.mar"), b"x").unwrap();
        let entry = fetch_into_store(store.path(), "a.mar", &default_allowed(), u64::MAX).unwrap();
        assert_eq!(entry, StoreEntry { name: "a.mar".into(), downloaded: None });
        assert!(matches!(fetch_into_store(store.path(), "b.mar", &default_allowed(), u64::MAX), Err(ArchiveError::NotFound(_))));
        assert!(matches!(fetch_into_store(store.path(), "", &default_allowed(), u64::MAX), Err(ArchiveError::EmptyUrl)));
        assert!(matches!(
            fetch_into_store(store.path(), "../a.mar", &default_allowed(), u64::MAX),
            Err(ArchiveError::PathEscapesStore(_))
        ));
    }

    #[test]
    fn file_urls_are_copied_into_the_store_once() {
        let store = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let source = elsewhere.path().join("m.mar");
        std::fs::write(&source, b"archive").unwrap();
        let url = format!("file://{}", source.display());
        let entry = fetch_into_store(store.path(), &url, &default_allowed(), u64::MAX).unwrap();
        assert_eq!(entry.name, "m.mar");
        assert_eq!(std::fs::read(store.path().join("m.mar")).unwrap(), b"archive");
        assert!(matches!(
            fetch_into_store(store.path(), &url, &default_allowed(), u64::MAX),
            Err(ArchiveError::AlreadyExists(_))
        ));
    }

    #[test]
    fn urls_must_be_allowed() {
        let store = tempfile::tempdir().unwrap();
        let only_local = vec![Regex::new("(?i)^(?:http://127\\.0\\.0\\.1.*)$").unwrap()];
        let err = fetch_into_store(store.path(), "https://example.com/m.mar", &only_local, u64::MAX).unwrap_err();
        assert_eq!(err.to_string(), "Given URL https://example.com/m.mar does not match any allowed URL(s)");
    }

    #[test]
    fn encoded_dots_and_special_files_are_refused_before_any_download() {
        let store = tempfile::tempdir().unwrap();
        let public = vec![Regex::new("(?i)^(?:https://models\\.example\\.com/public/.*)$").unwrap()];
        for url in [
            "https://models.example.com/public/%2e%2e/private/m.mar",
            "https://models.example.com/public/.%2E/private/m.mar",
            "https://models.example.com/public/../private/m.mar",
        ] {
            let err = fetch_into_store(store.path(), url, &public, u64::MAX).unwrap_err();
            assert!(matches!(err, ArchiveError::PathEscapesStore(_)), "{url}: {err}");
        }
        let fifo = tempfile::tempdir().unwrap();
        let path = fifo.path().join("pipe.mar");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = fetch_into_store(store.path(), &format!("file://{}", path.display()), &default_allowed(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0);
    }
}
