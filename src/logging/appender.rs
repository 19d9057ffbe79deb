//! TorchServe's log files, written off the request path: callers hand finished lines to one
//! writer thread over a bounded channel (no lock, no file I/O on the caller's thread); the thread
//! appends them to their files and rolls a file over when it passes its size limit, keeping the
//! newest `keep` rolled files gzip-compressed beside it, as TorchServe's log4j2 setup does
//! (`access_log.<dd-MMM>.<n>.log.gz`). When the writer falls behind, lines are dropped and
//! counted rather than making a request wait; the count is logged once it catches up.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines waiting for the writer at most.
const CHANNEL_CAPACITY: usize = 65_536;
/// How long the writer lets lines gather after each write: a line reaches its file within this.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// One of TorchServe's log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFile {
    Access,
    Model,
    ModelMetrics,
    Ts,
    TsMetrics,
}

impl LogFile {
    pub const ALL: [LogFile; 5] = [LogFile::Access, LogFile::Model, LogFile::ModelMetrics, LogFile::Ts, LogFile::TsMetrics];

    /// The appender's name in log4j2.xml, which is also the file's stem.
    pub fn name(self) -> &'static str {
        match self {
            LogFile::Access => "access_log",
            LogFile::Model => "model_log",
            LogFile::ModelMetrics => "model_metrics",
            LogFile::Ts => "ts_log",
            LogFile::TsMetrics => "ts_metrics",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a file goes and when it rolls over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    /// Roll over past this many bytes.
    pub max_bytes: u64,
    /// Rolled files kept.
    pub keep: usize,
}

/// A log record on its way to the writer, which formats it: the caller's thread only fills this
/// in (the message it must render anyway, a shared thread name) and hands it over.
pub struct Entry {
    pub time: std::time::SystemTime,
    pub level: log::Level,
    /// The thread that logged it (`%t`).
    pub thread: Arc<str>,
    /// The logger (`%c`): one of the TorchServe targets, or a module path.
    pub logger: std::borrow::Cow<'static, str>,
    pub message: String,
}

/// What the writer does with an entry: the lines it becomes, for which files. Lines are written
/// into the buffer the writer lends, so the writer allocates nothing per line.
pub type Router = Box<dyn Fn(&Entry, &mut Clock, &mut dyn FnMut(LogFile, &mut dyn FnMut(&mut String))) + Send>;

/// log4j's ISO8601 time of an entry, with the date-and-seconds part kept from the last entry
/// (consecutive lines mostly share it): formatting a time is a real cost at thousands of lines
/// a second.
#[derive(Default)]
pub struct Clock {
    second: i64,
    prefix: String,
}

impl Clock {
    /// Appends `2024-05-30T21:46:03,625` (local time) for `time`.
    pub fn stamp(&mut self, time: std::time::SystemTime, out: &mut String) {
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs() as i64;
        if second != self.second || self.prefix.is_empty() {
            let local: chrono::DateTime<chrono::Local> = time.into();
            self.prefix = local.format("%Y-%m-%dT%H:%M:%S").to_string();
            self.second = second;
        }
        out.push_str(&self.prefix);
        let _ = std::fmt::Write::write_fmt(out, format_args!(",{:03}", since.subsec_millis()));
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Appender {
    entries: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl Appender {
    /// Opens (creates) every file and starts the writer thread, which turns each entry into
    /// lines with `route`. Fails, naming the path, when a file cannot be written.
    pub fn start(files: [FileSpec; 5], route: Router) -> Result<Self, String> {
        let mut writers = Vec::with_capacity(files.len());
        for spec in files {
            writers.push(RollingFile::open(spec)?);
        }
        let (entries, receiver) = sync_channel(CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(receiver, writers, &route, &counter))
            .map_err(|e| format!("cannot start the log writer: {e}"))?;
        Ok(Self { entries, dropped })
    }

    /// Queues an entry for the writer; dropped (and counted) when the writer is far behind.
    pub fn append(&self, entry: Entry) {
        if let Err(TrySendError::Full(_)) = self.entries.try_send(entry) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_lines(entries: Receiver<Entry>, mut files: Vec<RollingFile>, route: &Router, dropped: &AtomicU64) {
    let mut clock = Clock::default();
    let mut line = String::with_capacity(512);
    let mut write = |files: &mut Vec<RollingFile>, entry: &Entry| {
        route(entry, &mut clock, &mut |file, fill| {
            line.clear();
            fill(&mut line);
            files[file.index()].write(&line);
        });
    };
    while let Ok(entry) = entries.recv() {
        write(&mut files, &entry);
        // Everything already queued goes out before the flush, so a burst costs one flush.
        while let Ok(entry) = entries.try_recv() {
            write(&mut files, &entry);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = format!("{} [WARN ] log-writer tserve::logging - {lost} log lines were dropped: the log writer fell behind\n", super::layout::timestamp(chrono::Local::now()));
            files[LogFile::Ts.index()].write(&note);
        }
        for file in &mut files {
            file.flush();
        }
        // Lines that arrive meanwhile wait here, in the channel, and go out together: one
        // wake-up and one write per file every few milliseconds under load, instead of a
        // wake-up (a futex call on the request's thread, a context switch) per line.
        std::thread::sleep(GATHER);
    }
}

struct RollingFile {
    spec: FileSpec,
    out: BufWriter<File>,
    written: u64,
}

impl RollingFile {
    fn open(spec: FileSpec) -> Result<Self, String> {
        if let Some(dir) = spec.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the log folder {}: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)
            .map_err(|e| format!("cannot write the log file {}: {e}", spec.path.display()))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            spec,
            out: BufWriter::new(file),
            written,
        })
    }

    fn write(&mut self, line: &str) {
        if self.written > 0 && self.written + line.len() as u64 > self.spec.max_bytes {
            self.roll_over();
        }
        if self.out.write_all(line.as_bytes()).is_ok() {
            self.written += line.len() as u64;
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// Moves the full file aside and starts an empty one; the moved file is compressed on a
    /// thread of its own, and the oldest rolled files beyond `keep` are removed.
    fn roll_over(&mut self) {
        self.flush();
        let rolled = rolled_name(&self.spec.path, chrono::Local::now());
        if std::fs::rename(&self.spec.path, &rolled).is_err() {
            return;
        }
        match OpenOptions::new().create(true).append(true).open(&self.spec.path) {
            Ok(file) => {
                self.out = BufWriter::new(file);
                self.written = 0;
            }
            Err(e) => eprintln!("cannot reopen {}: {e}", self.spec.path.display()),
        }
        let (path, keep) = (self.spec.path.clone(), self.spec.keep);
        let _ = std::thread::Builder::new().name("log-compress".into()).spawn(move || {
            compress(&rolled);
            prune(&path, keep);
        });
    }
}

/// `<dir>/<stem>.<dd-MMM>.<n>.log` for the first free `n`.
fn rolled_name(path: &Path, now: chrono::DateTime<chrono::Local>) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let day = now.format("%d-%b");
    let dir = path.parent().unwrap_or(Path::new("."));
    (1..)
        .map(|n| dir.join(format!("{stem}.{day}.{n}.log")))
        .find(|candidate| !candidate.exists() && !gz(candidate).exists())
        .unwrap_or_else(|| dir.join(format!("{stem}.{day}.log")))
}

fn gz(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// Gzips a rolled file. At the fastest level: a busy server rolls a 100 MB file every few seconds
/// and this runs on the cores that serve; level 1 is several times faster than the default
/// for a somewhat larger file (log text still shrinks about tenfold).
fn compress(path: &Path) {
    let compressed = (|| -> std::io::Result<()> {
        let mut input = File::open(path)?;
        let output = File::create(gz(path))?;
        let mut encoder = flate2::write::GzEncoder::new(std::io::BufWriter::new(output), flate2::Compression::fast());
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?;
        Ok(())
    })();
    if compressed.is_ok() {
        let _ = std::fs::remove_file(path);
    }
}

/// Keeps the newest `keep` rolled files of `path`.
fn prune(path: &Path, keep: usize) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut rolled: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{stem}.")) && name.ends_with(".log.gz")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    rolled.sort();
    let excess = rolled.len().saturating_sub(keep);
    for (_, old) in rolled.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_roll_over_at_their_size_and_keep_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FileSpec {
            path: dir.path().join("ts_log.log"),
            max_bytes: 100,
            keep: 2,
        };
        let mut file = RollingFile::open(spec).unwrap();
        for i in 0..40 {
            file.write(&format!("line {i:03} of the log, long enough\n"));
            file.flush();
        }
        // Compression runs on its own threads: wait for them to settle.
        let count = |suffix: &str| {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while (count(".log.gz") != 2 || count(".log") != 1) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            prune(&dir.path().join("ts_log.log"), 2);
        }
        assert_eq!(count(".log.gz"), 2, "kept two rolled files");
        assert_eq!(count(".log"), 1, "and the live one");
        let live = std::fs::read_to_string(dir.path().join("ts_log.log")).unwrap();
        assert!(live.len() <= 100 && live.ends_with("line 039 of the log, long enough\n"), "{live:?}");
    }

    #[test]
    fn a_folder_that_cannot_be_written_is_named_in_the_error() {
        let spec = FileSpec {
            path: PathBuf::from("/proc/tserve-cannot-write/ts_log.log"),
            max_bytes: 100,
            keep: 1,
        };
        let err = RollingFile::open(spec).err().unwrap();
        assert!(err.contains("/proc/tserve-cannot-write"), "{err}");
    }
}
