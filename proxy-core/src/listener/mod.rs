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
    http: HttpOptions,
}

/// What an HTTP listener's connection manager adds to every request it forwards, named
/// as Envoy's `HttpConnectionManager` names them. By default a request gets an
/// `x-request-id` (when it has none) and the client's IP appended to `x-forwarded-for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Generate a UUID v4 `x-request-id` for a request that carries none.
    pub generate_request_id: bool,
    /// Forward `x-forwarded-for` as the client sent it, without the client's IP.
    pub skip_xff_append: bool,
}

impl HttpOptions {
    pub const DEFAULT: Self = Self {
        generate_request_id: true,
        skip_xff_append: false,
    };

    pub const fn generate_request_id(mut self, generate: bool) -> Self {
        self.generate_request_id = generate;
        self
    }

    pub const fn skip_xff_append(mut self, skip: bool) -> Self {
        self.skip_xff_append = skip;
        self
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Equal when name, address, mode, HTTP options and TLS configuration are; TLS
/// configurations are compared by identity (the same loaded [`ServerTls`]), not by the
/// files they name.
impl PartialEq for ListenerConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.bind == other.bind
            && self.socket_mode == other.socket_mode
            && self.http == other.http
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
            http: HttpOptions::default(),
        }
    }

    /// Sets what the connection manager adds to the requests of an HTTP listener.
    pub fn http_options(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// What the connection manager adds to the requests of an HTTP listener.
    pub fn http(&self) -> HttpOptions {
        self.http
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

/// A bound, listening socket, not yet registered with a runtime: it is bound on the
/// start-up thread and then handed to the worker that accepts on it
/// ([`BoundListener::into_acceptor`]).
#[derive(Debug)]
pub(crate) enum BoundListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// A listening socket registered with the runtime of the worker accepting on it.
#[derive(Debug)]
pub(crate) enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Listen backlog: enough to ride out accept bursts without SYN drops.
const BACKLOG: i32 = 1024;

impl BoundListener {
    /// Binds `config` once: one socket for one accept loop.
    #[cfg(test)]
    pub(crate) fn bind(config: &ListenerConfig) -> Result<Self, BindError> {
        let mut bound = Self::bind_workers(config, 1)?;
        Ok(bound.swap_remove(0))
    }

    /// Binds `config` for `workers` accept loops, one listening socket each (at least
    /// one). A TCP address gets one socket per worker with `SO_REUSEPORT`, so the kernel
    /// spreads connections over the workers' accept queues and no two workers wake for
    /// the same connection. A Unix socket cannot be bound twice, so its one socket is
    /// shared (a duplicated descriptor per worker; every worker's poller sees a new
    /// connection and one wins the `accept`).
    ///
    /// The first TCP socket is bound *without* `SO_REUSEPORT`, which is only set after
    /// `bind` and before `listen`: an address another process holds is still refused
    /// (`EADDRINUSE`), as with a single socket, instead of silently sharing its traffic.
    pub(crate) fn bind_workers(
        config: &ListenerConfig,
        workers: usize,
    ) -> Result<Vec<Self>, BindError> {
        let workers = workers.max(1);
        match &config.bind {
            BindAddress::Tcp(addr) => {
                let first = bind_tcp(*addr, workers > 1, false)?;
                let bound = first.local_addr().map_err(tcp_error(*addr))?;
                let mut all = vec![BoundListener::Tcp(first)];
                for _ in 1..workers {
                    all.push(BoundListener::Tcp(bind_tcp(bound, true, true)?));
                }
                Ok(all)
            }
            BindAddress::Unix(path) => {
                let listener = bind_unix(path, config.socket_mode)?;
                let mut all = Vec::with_capacity(workers);
                for _ in 1..workers {
                    let copy = listener.try_clone().map_err(unix_error(path))?;
                    all.push(BoundListener::Unix(copy, path.clone()));
                }
                all.push(BoundListener::Unix(listener, path.clone()));
                Ok(all)
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

    /// Registers the socket with the current runtime (the worker that will accept on
    /// it). Must be called inside that runtime.
    pub(crate) fn into_acceptor(self) -> io::Result<Acceptor> {
        match self {
            BoundListener::Tcp(listener) => TcpListener::from_std(listener).map(Acceptor::Tcp),
            BoundListener::Unix(listener, _) => {
                UnixListener::from_std(listener).map(Acceptor::Unix)
            }
        }
    }
}

impl Acceptor {
    /// The next connection and the client's IP (`None` over a Unix socket).
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        match self {
            Acceptor::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Responses are written whole; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer.ip())))
            }
            Acceptor::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

fn tcp_error(addr: SocketAddr) -> impl Fn(io::Error) -> BindError {
    move |source| BindError::Io {
        address: addr.to_string(),
        source,
    }
}

fn unix_error(path: &Path) -> impl Fn(io::Error) -> BindError + '_ {
    move |source| BindError::Io {
        address: format!("unix:{}", path.display()),
        source,
    }
}

/// A listening TCP socket on `addr`. `reuse_port`: `SO_REUSEPORT` is set, so more
/// sockets (each worker's) can listen on the same address; `before_bind`: it is set
/// before `bind` (joining sockets already bound), else after (the first socket, which
/// must not join anyone else's: see [`BoundListener::bind_workers`]).
fn bind_tcp(
    addr: SocketAddr,
    reuse_port: bool,
    before_bind: bool,
) -> Result<std::net::TcpListener, BindError> {
    let io_error = tcp_error(addr);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(&io_error)?;
    // Lets a restarted proxy bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(&io_error)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(&io_error)?;
    }
    socket.set_nonblocking(true).map_err(&io_error)?;
    if reuse_port && before_bind {
        socket.set_reuse_port(true).map_err(&io_error)?;
    }
    socket.bind(&addr.into()).map_err(&io_error)?;
    if reuse_port && !before_bind {
        socket.set_reuse_port(true).map_err(&io_error)?;
    }
    socket.listen(BACKLOG).map_err(&io_error)?;
    Ok(socket.into())
}

/// Binds a Unix socket at `path`, first removing a socket file left by a dead process.
///
/// A leftover file is only removed when it is a socket that refuses connections; a live
/// one (another proxy still serving) or a non-socket file is an error, never deleted.
fn bind_unix(
    path: &Path,
    mode: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    let io_error = unix_error(path);
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
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(&io_error)?;
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
            BindError::Mode {
                path: path.to_path_buf(),
                mode,
                source,
            }
        })?;
    }
    listener.set_nonblocking(true).map_err(&io_error)?;
    Ok(listener)
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

    #[tokio::test]
    async fn one_socket_per_worker_and_a_taken_port_is_still_refused() {
        let config = ListenerConfig::new("t", BindAddress::Tcp("127.0.0.1:0".parse().unwrap()));
        let bound = BoundListener::bind_workers(&config, 3).unwrap();
        assert_eq!(bound.len(), 3);
        let address = bound[0].local_address(config.bind_address());
        assert!(bound.iter().all(|b| b.local_address(&address) == address));

        // Another process (here: another bind of the same address) is refused, with or
        // without workers of its own, as with a single socket.
        let taken = ListenerConfig::new("u", address.clone());
        for workers in [1, 2] {
            let err = BoundListener::bind_workers(&taken, workers).unwrap_err();
            assert!(err.to_string().contains("in use"), "{err}");
        }

        // The kernel spreads connections over every worker's socket (by a hash of the
        // client's address and port: with 64 clients, a socket left without any is a
        // 1-in-10^11 event).
        let acceptors: Vec<Acceptor> = bound
            .into_iter()
            .map(|b| b.into_acceptor().unwrap())
            .collect();
        let BindAddress::Tcp(addr) = address else {
            unreachable!()
        };
        let _clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for acceptor in &acceptors {
            let accepted =
                tokio::time::timeout(std::time::Duration::from_secs(5), acceptor.accept()).await;
            assert!(
                matches!(accepted, Ok(Ok(_))),
                "a worker's socket got no connection"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let unix = unix_config(&dir.path().join("w.sock"));
        let bound = BoundListener::bind_workers(&unix, 2).unwrap();
        assert_eq!(bound.len(), 2);
        assert!(
            bound
                .iter()
                .all(|b| b.unix_path() == Some(&dir.path().join("w.sock")))
        );
    }
}
