//! A Python worker's stdout and stderr, line by line, into `model_log.log` on a thread named
//! after the worker (`W-9000-mnist_1.0-stdout`), as TorchServe's: stdout lines at INFO, stderr
//! lines at WARN. The stdout reader also spots the worker's start line, and the `[METRICS]` lines
//! a handler prints become model metrics, as TorchServe's frontend reads them.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use crate::logging::MODEL_LOG;
use crate::metrics::format::HandlerMetric;
use crate::metrics::Metrics;

/// How long the reader lets a quiet stream gather lines before it reads again. TorchServe's
/// worker prints three lines a request (`Backend received inference at`, `HandlerTime`,
/// `PredictionTime`), each its own write: read as they come, each woke this thread, three
/// context switches a request. A line waits in the pipe at most this long.
const GATHER: Duration = Duration::from_millis(2);
/// The read buffer. A read that fills it means the process is printing fast: the next read
/// comes at once, so a busy stream never waits on a full pipe (64 KiB) for the gather.
const BUFFER: usize = 16 * 1024;

/// A stream read in gathered bursts: after a read that left the buffer unfilled (the pipe is
/// drained), the next waits [`GATHER`], so lines written meanwhile come in one read.
struct Gathering<R> {
    stream: R,
    drained: bool,
}

impl<R: Read> Gathering<R> {
    fn new(stream: R) -> Self {
        Self { stream, drained: false }
    }
}

impl<R: Read> Read for Gathering<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.drained {
            std::thread::sleep(GATHER);
        }
        let read = self.stream.read(buffer)?;
        self.drained = read < buffer.len();
        Ok(read)
    }
}

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
        for line in BufReader::with_capacity(BUFFER, Gathering::new(stream)).split(b'\n') {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe that gives at most `step` bytes a read, as a pipe drained mid-line does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buffer.len()).min(self.data.len());
            buffer[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn gathered_reads_give_every_line_whole_and_in_order() {
        let text = b"Backend received inference at: 1\n[METRICS]HandlerTime.ms:1.0|#a:b|#hostname:h,1,x\nlast";
        let lines: Vec<Vec<u8>> = BufReader::with_capacity(8, Gathering::new(Trickle { data: text, step: 5 }))
            .split(b'\n')
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        assert_eq!(lines, expected);
    }
}
