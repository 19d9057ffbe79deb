//! A Python worker's stdout and stderr, line by line, into `model_log.log` on a thread named
//! after the worker (`W-9000-mnist_1.0-stdout`), as TorchServe's: stdout lines at INFO, stderr
//! lines at WARN. The stdout reader also spots the worker's start line, and the `[METRICS]` lines
//! a handler prints become model metrics, as TorchServe's frontend reads them.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::logging::MODEL_LOG;
use crate::metrics::format::HandlerMetric;
use crate::metrics::Metrics;

/// What TorchServe's worker prints once it listens on its socket.
const STARTED: &str = "Torch worker started.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Reads `stream` on its own thread until it closes. `started` hears once when the start line
/// goes by; it is dropped when the stream ends, which tells a waiter the process is gone.
pub fn forward(
    stream: impl Read + Send + 'static,
    thread: String,
    kind: Stream,
    mut started: Option<SyncSender<()>>,
    metrics: Arc<Metrics>,
) {
    let spawned = std::thread::Builder::new().name(thread.replace('\0', "?")).spawn(move || {
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            if let Some(metric) = line.strip_prefix("[METRICS]") {
                match HandlerMetric::parse(metric) {
                    Some(metric) => metrics.handler_metric(&metric),
                    None => log::error!("Failed to parse metrics line: \"{line}\"."),
                }
                continue;
            }
            match kind {
                Stream::Stdout => log::info!(target: MODEL_LOG, "{line}"),
                Stream::Stderr => log::warn!(target: MODEL_LOG, "{line}"),
            }
            if line.ends_with(STARTED) {
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("{thread}: cannot read the worker's output: {e}");
    }
}
