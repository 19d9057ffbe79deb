//! TorchServe's listener addresses: `http://host[:port]`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: String,
    pub port: u16,
    /// `https://`: the listener speaks TLS.
    pub tls: bool,
}

impl ListenAddress {
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_string(),
            port,
            tls: false,
        }
    }

    /// Parses `http(s)://host[:port]`; without a port, `default_port` (plain) or `tls_port`
    /// (https) applies, as in TorchServe's `Connector.parse`. Unix sockets are refused with a
    /// reason rather than served as something else.
    pub fn parse(value: &str, default_port: u16, tls_port: u16) -> Result<Self, String> {
        let value = value.trim();
        let (rest, tls) = if let Some(rest) = value.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = value.strip_prefix("https://") {
            (rest, true)
        } else if value.starts_with("unix:") {
            return Err("unix socket listeners are not supported yet".into());
        } else {
            return Err("expected http://host[:port]".into());
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port ends with ']'; its colons are not a port separator.
            Some((host, port)) if !port.ends_with(']') => {
                let port = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
                (host, port)
            }
            _ => (authority, if tls { tls_port } else { default_port }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("missing host".into());
        }
        Ok(Self { tls, ..Self::new(host, port) })
    }

    /// The same listener (so one serves both APIs, as TorchServe does).
    pub fn same_listener(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port && self.port != 0
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_and_port() {
        let addr = ListenAddress::parse("http://0.0.0.0:9080", 80, 443).unwrap();
        assert_eq!(addr, ListenAddress::new("0.0.0.0", 9080));
        assert_eq!(addr.to_string(), "0.0.0.0:9080");
    }

    #[test]
    fn default_port_when_absent() {
        assert_eq!(
            ListenAddress::parse("http://127.0.0.1", 80, 443).unwrap(),
            ListenAddress::new("127.0.0.1", 80)
        );
        let tls = ListenAddress::parse("https://127.0.0.1", 80, 443).unwrap();
        assert_eq!((tls.port, tls.tls), (443, true));
    }

    #[test]
    fn ipv6_literals() {
        let addr = ListenAddress::parse("http://[::1]:8080", 80, 443).unwrap();
        assert_eq!(addr, ListenAddress::new("::1", 8080));
        assert_eq!(addr.to_string(), "[::1]:8080");
        assert_eq!(ListenAddress::parse("http://[::1]", 80, 443).unwrap().port, 80);
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        assert!(ListenAddress::parse("unix:/tmp/sock", 80, 443).is_err());
        assert!(ListenAddress::parse("http://127.0.0.1:port", 80, 443).is_err());
    }
}
