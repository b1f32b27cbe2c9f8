//! Listeners: binding TCP addresses and Unix socket paths, and accepting connections.

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use crate::config::BindAddress;
use crate::net::Stream;
use crate::tls::ServerTls;

/// A listener as the topology declares it, with its address resolved.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    name: &'static str,
    bind: BindAddress,
    socket_mode: Option<u32>,
    tls: Option<Arc<ServerTls>>,
}

/// Equal when name, address, mode and TLS configuration are; TLS configurations are
/// compared by identity (the same loaded [`ServerTls`]), not by the files they name.
impl PartialEq for ListenerConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.bind == other.bind
            && self.socket_mode == other.socket_mode
            && match (&self.tls, &other.tls) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for ListenerConfig {}

impl ListenerConfig {
    pub fn new(name: &'static str, bind: BindAddress) -> Self {
        Self {
            name,
            bind,
            socket_mode: None,
            tls: None,
        }
    }

    /// Terminates TLS on this listener with `tls`. The handshake runs in each
    /// connection's own task after `accept`, bounded by the handshake timeout; the
    /// server also starts `tls`'s file watch (once, however many listeners share it).
    /// HTTP listeners only ([`Server::http`](crate::server::Server::http)).
    pub fn tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS configuration, if this listener terminates TLS.
    pub fn tls_config(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }

    /// Permission bits for a Unix socket file (ignored for TCP), e.g. `0o660`.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = Some(mode);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn bind_address(&self) -> &BindAddress {
        &self.bind
    }

    pub fn mode(&self) -> Option<u32> {
        self.socket_mode
    }
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot bind {address}: {source}")]
    Io { address: String, source: io::Error },
    #[error(
        "{path} is in use by a running process (a connection to it succeeded); stop it or choose another path"
    )]
    LiveSocket { path: PathBuf },
    #[error("{path} exists and is not a Unix socket; refusing to remove it")]
    NotASocket { path: PathBuf },
    #[error("cannot set mode {mode:o} on {path}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
}

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) enum BoundListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Listen backlog: enough to ride out accept bursts without SYN drops.
const BACKLOG: i32 = 1024;

impl BoundListener {
    /// Binds `config`. Must be called inside the runtime.
    pub(crate) fn bind(config: &ListenerConfig) -> Result<Self, BindError> {
        match &config.bind {
            BindAddress::Tcp(addr) => bind_tcp(*addr).map(BoundListener::Tcp),
            BindAddress::Unix(path) => {
                let listener = bind_unix(path, config.socket_mode)?;
                Ok(BoundListener::Unix(listener, path.clone()))
            }
        }
    }

    /// The address actually bound (with the real port when `:0` was asked for).
    pub(crate) fn local_address(&self, requested: &BindAddress) -> BindAddress {
        match self {
            BoundListener::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| requested.clone(), BindAddress::Tcp),
            BoundListener::Unix(_, path) => BindAddress::Unix(path.clone()),
        }
    }

    pub(crate) fn unix_path(&self) -> Option<&Path> {
        match self {
            BoundListener::Tcp(_) => None,
            BoundListener::Unix(_, path) => Some(path),
        }
    }

    /// The next connection and the client's IP (`None` over a Unix socket).
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        match self {
            BoundListener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Responses are written whole; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer.ip())))
            }
            BoundListener::Unix(listener, _) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let io_error = |source| BindError::Io {
        address: addr.to_string(),
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(io_error)?;
    // Lets a restarted proxy bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(io_error)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(io_error)?;
    }
    socket.set_nonblocking(true).map_err(io_error)?;
    socket.bind(&addr.into()).map_err(io_error)?;
    socket.listen(BACKLOG).map_err(io_error)?;
    TcpListener::from_std(socket.into()).map_err(io_error)
}

/// Binds a Unix socket at `path`, first removing a socket file left by a dead process.
///
/// A leftover file is only removed when it is a socket that refuses connections; a live
/// one (another proxy still serving) or a non-socket file is an error, never deleted.
fn bind_unix(path: &Path, mode: Option<u32>) -> Result<UnixListener, BindError> {
    let io_error = |source| BindError::Io {
        address: format!("unix:{}", path.display()),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(BindError::LiveSocket {
                    path: path.to_path_buf(),
                });
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket file");
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(e)),
                }
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_error)?;
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
            BindError::Mode {
                path: path.to_path_buf(),
                mode,
                source,
            }
        })?;
    }
    listener.set_nonblocking(true).map_err(io_error)?;
    UnixListener::from_std(listener).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_config(path: &Path) -> ListenerConfig {
        ListenerConfig::new("t", BindAddress::Unix(path.to_path_buf())).socket_mode(0o600)
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_live_one_refused_regular_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");

        // Stale: bound then dropped without unlinking, as after a crash.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = BoundListener::bind(&unix_config(&path)).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Live: the listener above still accepts.
        let err = BoundListener::bind(&unix_config(&path)).unwrap_err();
        assert!(matches!(err, BindError::LiveSocket { .. }), "{err}");
        drop(live);

        let file = dir.path().join("not-a-socket");
        fs::write(&file, b"data").unwrap();
        let err = BoundListener::bind(&unix_config(&file)).unwrap_err();
        assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"data");
    }
}
