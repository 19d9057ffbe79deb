//! TorchServe's listener addresses: `http://host[:port]`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: String,
    pub port: u16,
}

impl ListenAddress {
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_string(),
            port,
        }
    }

    /// Parses `http://host[:port]`; `default_port` applies when none is given, as in
    /// TorchServe's `Connector.parse`. HTTPS and unix sockets are refused with a reason rather
    /// than served as plain HTTP.
    pub fn parse(value: &str, default_port: u16) -> Result<Self, String> {
        let value = value.trim();
        let rest = if let Some(rest) = value.strip_prefix("http://") {
            rest
        } else if value.starts_with("https://") {
            return Err("https listeners are not supported yet".into());
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
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("missing host".into());
        }
        Ok(Self::new(host, port))
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
        let addr = ListenAddress::parse("http://0.0.0.0:9080", 80).unwrap();
        assert_eq!(addr, ListenAddress::new("0.0.0.0", 9080));
        assert_eq!(addr.to_string(), "0.0.0.0:9080");
    }

    #[test]
    fn default_port_when_absent() {
        assert_eq!(
            ListenAddress::parse("http://127.0.0.1", 80).unwrap(),
            ListenAddress::new("127.0.0.1", 80)
        );
    }

    #[test]
    fn ipv6_literals() {
        let addr = ListenAddress::parse("http://[::1]:8080", 80).unwrap();
        assert_eq!(addr, ListenAddress::new("::1", 8080));
        assert_eq!(addr.to_string(), "[::1]:8080");
        assert_eq!(ListenAddress::parse("http://[::1]", 80).unwrap().port, 80);
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        assert!(ListenAddress::parse("https://127.0.0.1:8443", 443).is_err());
        assert!(ListenAddress::parse("unix:/tmp/sock", 80).is_err());
        assert!(ListenAddress::parse("http://127.0.0.1:port", 80).is_err());
    }
}
