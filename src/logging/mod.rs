//! Logging: the console as before (env_logger, `RUST_LOG`), and TorchServe's log files under
//! `LOG_LOCATION` / `METRICS_LOCATION`, in its line patterns, fed through `log` by target:
//!
//! | target | file | as in TorchServe |
//! |---|---|---|
//! | [`ACCESS_LOG`] | `access_log.log` | one line per HTTP request, every listener |
//! | [`MODEL_LOG`] | `model_log.log` | Python workers' stdout (INFO) and stderr (WARN), thread `W-…-stdout` |
//! | [`MODEL_METRICS`] | `model_metrics.log` | backend metrics (`HandlerTime`, `PredictionTime`, handlers' own) |
//! | [`TS_METRICS`] | `ts_metrics.log` | frontend and system metrics |
//! | anything else | `ts_log.log` | tserve's own log; every record above also lands here once |
//!
//! Files are written by one background thread ([`appender`]): a request only formats its line
//! and hands it over. The per-request targets stay off the console unless `RUST_LOG` asks.

pub mod appender;
pub mod layout;
pub mod log4j;

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, OnceLock};

use log::{LevelFilter, Log, Metadata, Record};

use appender::{Appender, Clock, Entry, LogFile};
pub use log4j::LogConfig;

/// The access log's target: one line per HTTP request.
pub const ACCESS_LOG: &str = "ACCESS_LOG";
/// A Python worker's output lines.
pub const MODEL_LOG: &str = "MODEL_LOG";
/// Backend (model) metrics lines.
pub const MODEL_METRICS: &str = "MODEL_METRICS";
/// Frontend (server) metrics lines.
pub const TS_METRICS: &str = "TS_METRICS";

/// The console's filter when `RUST_LOG` is not set: INFO, without the per-request lines.
const DEFAULT_CONSOLE_FILTER: &str = "info,ACCESS_LOG=warn,TS_METRICS=warn,MODEL_METRICS=warn";

static FILES: OnceLock<FileSink> = OnceLock::new();

struct FileSink {
    appender: Appender,
    levels: Levels,
}

/// Each file's level.
#[derive(Debug, Clone, Copy)]
struct Levels([LevelFilter; 5]);

impl Levels {
    fn of(self, file: LogFile) -> LevelFilter {
        self.0[file as usize]
    }

    /// Whether a record of `target` at `level` reaches any file.
    fn wanted(self, target: &str, level: log::Level) -> bool {
        level <= self.of(LogFile::Ts) || file_of(target).is_some_and(|file| level <= self.of(file))
    }
}

/// The file of a TorchServe logger target; `None` for tserve's own (which go to ts_log.log).
fn file_of(target: &str) -> Option<LogFile> {
    match target {
        ACCESS_LOG => Some(LogFile::Access),
        MODEL_LOG => Some(LogFile::Model),
        MODEL_METRICS => Some(LogFile::ModelMetrics),
        TS_METRICS => Some(LogFile::TsMetrics),
        _ => None,
    }
}

struct Dispatch {
    console: env_logger::Logger,
}

/// Installs the logger with the console only; [`start_files`] adds the files once the server's
/// settings are known.
pub fn init() {
    let console = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_CONSOLE_FILTER))
        .format(|out, record| {
            let time = out.timestamp();
            // A worker's output lines carry their worker's name in the thread's name.
            if matches!(record.target(), MODEL_LOG | MODEL_METRICS) {
                let thread = std::thread::current();
                writeln!(
                    out,
                    "[{time} {:<5} {}] {} - {}",
                    record.level(),
                    record.target(),
                    thread.name().unwrap_or("?"),
                    record.args()
                )
            } else {
                writeln!(out, "[{time} {:<5} {}] {}", record.level(), record.target(), record.args())
            }
        })
        .build();
    let max = console.filter().max(LevelFilter::Info);
    if log::set_boxed_logger(Box::new(Dispatch { console })).is_ok() {
        log::set_max_level(max);
    }
}

/// Opens TorchServe's log files and starts writing them. Fails, naming the path, when a file
/// cannot be written.
pub fn start_files(config: LogConfig) -> Result<(), String> {
    let specs = LogFile::ALL.map(|file| config.files[&file].clone());
    let levels = Levels(LogFile::ALL.map(|file| config.levels.get(&file).copied().unwrap_or(LevelFilter::Info)));
    let appender = Appender::start(specs, Box::new(move |entry, clock, write| route(entry, levels, clock, write)))?;
    if levels.of(LogFile::Ts) > log::max_level() {
        log::set_max_level(levels.of(LogFile::Ts));
    }
    if FILES.set(FileSink { appender, levels }).is_err() {
        log::warn!("log files were already started");
    }
    Ok(())
}

/// Takes a line for a file: the file, and what fills the line into the buffer it gives.
type WriteLine<'a> = dyn FnMut(LogFile, &mut dyn FnMut(&mut String)) + 'a;

/// The lines an entry becomes: its own file's (if its target has one and its level passes),
/// and ts_log.log's, since the root logger writes every record there too, as TorchServe's does.
fn route(entry: &Entry, levels: Levels, clock: &mut Clock, write: &mut WriteLine<'_>) {
    let own = file_of(&entry.logger).filter(|f| entry.level <= levels.of(*f));
    let full = |clock: &mut Clock, out: &mut String| {
        clock.stamp(entry.time, out);
        layout::full_tail(out, entry.level, &entry.thread, &entry.logger, &entry.message);
    };
    match own {
        Some(LogFile::Model) => write(LogFile::Model, &mut |out| full(clock, out)),
        Some(file) => write(file, &mut |out| {
            clock.stamp(entry.time, out);
            layout::message_tail(out, &entry.message);
        }),
        None => {}
    }
    if entry.level <= levels.of(LogFile::Ts) {
        write(LogFile::Ts, &mut |out| full(clock, out));
    }
}

thread_local! {
    /// This thread's name, shared by its entries rather than copied into each.
    static THREAD_NAME: Arc<str> = Arc::from(std::thread::current().name().unwrap_or("main"));
}

impl FileSink {
    fn write(&self, record: &Record<'_>) {
        if !self.levels.wanted(record.target(), record.level()) {
            return;
        }
        let logger = match record.target() {
            ACCESS_LOG => Cow::Borrowed(ACCESS_LOG),
            MODEL_LOG => Cow::Borrowed(MODEL_LOG),
            MODEL_METRICS => Cow::Borrowed(MODEL_METRICS),
            TS_METRICS => Cow::Borrowed(TS_METRICS),
            other => Cow::Owned(other.to_string()),
        };
        let message = match record.args().as_str() {
            Some(text) => text.to_string(),
            None => {
                // Sized for a metric or access line at once: `to_string` would start empty
                // and grow four times.
                let mut message = String::with_capacity(160);
                let _ = std::fmt::Write::write_fmt(&mut message, *record.args());
                message
            }
        };
        self.appender.append(Entry {
            time: std::time::SystemTime::now(),
            level: record.level(),
            thread: THREAD_NAME.with(Arc::clone),
            logger,
            message,
        });
    }
}

impl Log for Dispatch {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.console.enabled(metadata) || FILES.get().is_some_and(|files| files.levels.wanted(metadata.target(), metadata.level()))
    }

    fn log(&self, record: &Record<'_>) {
        if self.console.matches(record) {
            self.console.log(record);
        }
        if let Some(files) = FILES.get() {
            files.write(record);
        }
    }

    fn flush(&self) {
        self.console.flush();
    }
}
