//! TorchServe's log line patterns (its `log4j2.xml`): `%d{ISO8601} - %m%n` for the access and
//! metrics logs, `%d{ISO8601} [%-5p] %t %c - %m%n` for the server and model logs. ISO8601 is
//! log4j's, local time with a comma before the milliseconds: `2024-05-30T21:46:03,625`.

use chrono::{DateTime, Local};

/// log4j2's `%d{ISO8601}`.
pub fn timestamp(time: DateTime<Local>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S,%3f").to_string()
}

/// `%d{ISO8601} - %m%n`.
pub fn message_line(time: DateTime<Local>, message: &str) -> String {
    let mut line = timestamp(time);
    message_tail(&mut line, message);
    line
}

/// What follows the time in `%d{ISO8601} - %m%n`.
pub fn message_tail(out: &mut String, message: &str) {
    out.push_str(" - ");
    out.push_str(message);
    out.push('\n');
}

/// `%d{ISO8601} [%-5p] %t %c - %m%n`: level padded to five, then thread and logger names.
pub fn full_line(time: DateTime<Local>, level: log::Level, thread: &str, logger: &str, message: &str) -> String {
    let mut line = timestamp(time);
    full_tail(&mut line, level, thread, logger, message);
    line
}

/// What follows the time in `%d{ISO8601} [%-5p] %t %c - %m%n`.
pub fn full_tail(out: &mut String, level: log::Level, thread: &str, logger: &str, message: &str) {
    let _ = std::fmt::Write::write_fmt(out, format_args!(" [{:<5}] {thread} {logger} - {message}\n", level.as_str()));
}

/// The client as TorchServe's access log names it: `/127.0.0.1:53514`, or `unknown`.
pub struct Peer(pub Option<std::net::SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(peer) => write!(out, "/{}:{}", peer.ip(), peer.port()),
            None => out.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Local> {
        Local.with_ymd_and_hms(2024, 5, 30, 21, 46, 3).unwrap() + chrono::Duration::milliseconds(625)
    }

    #[test]
    fn lines_read_as_torchserves() {
        assert_eq!(
            message_line(at(), "/127.0.0.1:53514 \"POST /models?url=x.mar HTTP/1.1\" 405 0"),
            "2024-05-30T21:46:03,625 - /127.0.0.1:53514 \"POST /models?url=x.mar HTTP/1.1\" 405 0\n"
        );
        assert_eq!(
            full_line(at(), log::Level::Info, "W-9000-mnist_1.0-stdout", "MODEL_LOG", "Torch worker started."),
            "2024-05-30T21:46:03,625 [INFO ] W-9000-mnist_1.0-stdout MODEL_LOG - Torch worker started.\n"
        );
        assert!(full_line(at(), log::Level::Error, "t", "c", "m").contains("[ERROR] t c - m"));
    }

    #[test]
    fn a_peer_reads_as_torchserves_access_log_has_it() {
        assert_eq!(Peer(Some("127.0.0.1:53514".parse().unwrap())).to_string(), "/127.0.0.1:53514");
        assert_eq!(Peer(Some("[::1]:8080".parse().unwrap())).to_string(), "/::1:8080");
        assert_eq!(Peer(None).to_string(), "unknown");
    }
}
