use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why an address string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAddressError {
    #[error("not an ip:port socket address")]
    NotSocketAddr,
    #[error("Unix socket path must be absolute")]
    RelativePath,
    #[error("Unix socket path is empty")]
    EmptyPath,
    #[error("Unix socket path is longer than the 107 bytes the kernel allows")]
    PathTooLong,
    #[error("missing :port")]
    MissingPort,
    #[error("port is not a number from 1 to 65535")]
    BadPort,
    #[error("could not resolve host: {0}")]
    Resolve(String),
}

/// Where a listener accepts connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl BindAddress {
    pub const EXPECTED: &'static str = "ip:port (e.g. 0.0.0.0:8080) or unix:/absolute/path.sock";

    /// Used in place of an address that failed to parse; never bound, because the launcher
    /// refuses to start when any input failed.
    pub(crate) fn placeholder() -> Self {
        BindAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }
}

impl FromStr for BindAddress {
    type Err = ParseAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return absolute_path(path).map(BindAddress::Unix);
        }
        s.parse::<SocketAddr>()
            .map(BindAddress::Tcp)
            .map_err(|_| ParseAddressError::NotSocketAddr)
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Tcp(addr) => addr.fmt(f),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where an upstream endpoint is dialled. Host names are resolved before this exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl EndpointAddress {
    pub const EXPECTED: &'static str =
        "host:port (e.g. 127.0.0.1:8081) or unix:/absolute/path.sock";

    pub(crate) fn placeholder() -> Self {
        EndpointAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// Parses `unix:/path`, `ip:port` or `host:port`, resolving a host name once.
    pub fn resolve(s: &str) -> Result<Self, ParseAddressError> {
        if let Some(path) = s.strip_prefix("unix:") {
            return absolute_path(path).map(EndpointAddress::Unix);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(EndpointAddress::Tcp(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or(ParseAddressError::MissingPort)?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(ParseAddressError::BadPort)?;
        if host.is_empty() {
            return Err(ParseAddressError::NotSocketAddr);
        }
        (host, port)
            .to_socket_addrs()
            .map_err(|e| ParseAddressError::Resolve(e.to_string()))?
            .next()
            .map(EndpointAddress::Tcp)
            .ok_or_else(|| ParseAddressError::Resolve(format!("{host} has no addresses")))
    }
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddress::Tcp(addr) => addr.fmt(f),
            EndpointAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

pub(crate) fn absolute_path(s: &str) -> Result<PathBuf, ParseAddressError> {
    if s.is_empty() {
        return Err(ParseAddressError::EmptyPath);
    }
    let path = Path::new(s);
    if !path.is_absolute() {
        return Err(ParseAddressError::RelativePath);
    }
    if s.len() > MAX_UNIX_PATH {
        return Err(ParseAddressError::PathTooLong);
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bind_forms() {
        assert_eq!(
            "127.0.0.1:80".parse::<BindAddress>().unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            "[::1]:80".parse::<BindAddress>().unwrap().to_string(),
            "[::1]:80"
        );
        assert_eq!(
            "unix:/tmp/a.sock"
                .parse::<BindAddress>()
                .unwrap()
                .to_string(),
            "unix:/tmp/a.sock"
        );
        assert_eq!(
            "unix:a.sock".parse::<BindAddress>(),
            Err(ParseAddressError::RelativePath)
        );
        assert_eq!(
            "localhost:80".parse::<BindAddress>(),
            Err(ParseAddressError::NotSocketAddr)
        );
    }

    #[test]
    fn resolves_endpoint_forms() {
        assert_eq!(
            EndpointAddress::resolve("127.0.0.1:81")
                .unwrap()
                .to_string(),
            "127.0.0.1:81"
        );
        assert!(matches!(
            EndpointAddress::resolve("localhost:81").unwrap(),
            EndpointAddress::Tcp(_)
        ));
        assert_eq!(
            EndpointAddress::resolve("localhost"),
            Err(ParseAddressError::MissingPort)
        );
        assert_eq!(
            EndpointAddress::resolve("localhost:0"),
            Err(ParseAddressError::BadPort)
        );
        assert_eq!(
            EndpointAddress::resolve("unix:rel"),
            Err(ParseAddressError::RelativePath)
        );
    }
}
