//! Ports, addresses and waiting for something to accept connections.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{DEADLINE, POLL_INTERVAL};

/// A port on 127.0.0.1 that was free a moment ago (bind `:0`, read the port, release it).
/// Someone else may take it before the caller binds, so callers that bind it in another
/// process retry on "address in use" (see [`crate::Nginx`]).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

/// A 127.0.0.1 port that refuses connections for as long as this value lives: a socket
/// bound to it that never listens. Unlike a port that was merely free once, nobody else
/// can start listening there during the test, so "connection refused" is guaranteed.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: socket2::Socket,
    addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap_or_else(|e| panic!("socket: {e}"));
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| panic!("bound socket has no inet address"));
        Self {
            _socket: socket,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A 127.0.0.1 listener whose accept queue is full and never drained: connection
/// attempts neither succeed nor fail, so the caller's connect timeout decides. (Linux
/// drops SYNs to a full queue; one held connection fills a backlog of 0.)
#[derive(Debug)]
pub struct SaturatedPort {
    _listener: socket2::Socket,
    _filler: TcpStream,
    addr: SocketAddr,
}

impl SaturatedPort {
    pub fn new() -> Self {
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap_or_else(|e| panic!("socket: {e}"));
        listener
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        listener.listen(0).unwrap_or_else(|e| panic!("listen: {e}"));
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| panic!("bound socket has no inet address"));
        let filler = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("fill the accept queue of {addr}: {e}"));
        // Prove the queue is full: a further attempt must not connect.
        let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(
            probe.is_err(),
            "{addr} still accepts connections; cannot simulate a connect timeout"
        );
        Self {
            _listener: listener,
            _filler: filler,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for SaturatedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Some`, or panics after
/// `timeout` naming `what`. The one way suites wait for anything.
pub fn poll_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_tcp(addr: SocketAddr) {
    poll_until(&format!("a listener on {addr}"), DEADLINE, || {
        TcpStream::connect(addr).ok().map(drop)
    });
}

/// Waits until something accepts connections on the Unix socket at `path`.
pub fn wait_for_unix(path: &Path) {
    poll_until(
        &format!("a listener on {}", path.display()),
        DEADLINE,
        || UnixStream::connect(path).ok().map(drop),
    );
}
