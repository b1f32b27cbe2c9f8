use std::io;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};

use crate::config::EndpointAddress;
use crate::net::Stream;
use crate::tls::ClusterTls;

/// Why an upstream connection could not be established. Either way the client sees
/// 502 with response flag `UF`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Dialling (and the TLS handshake, if any) took longer than `connect_timeout`.
    #[error("connect to {address} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint dialled.
        address: String,
        /// The cluster's `connect_timeout`.
        timeout: Duration,
    },
    /// The dial failed (refused, unreachable, no such socket file, ...).
    #[error("connect to {address} failed: {source}")]
    Io {
        /// The endpoint dialled.
        address: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The connection opened but the HTTP/1.1 or HTTP/2 handshake failed.
    #[error("HTTP handshake with {address} failed: {source}")]
    Handshake {
        /// The endpoint dialled.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// The TLS handshake failed: the origin's certificate did not verify, it refused
    /// ours, or no protocol version or cipher suite is common to both.
    #[error("TLS handshake with {address} failed: {source}")]
    Tls {
        /// The endpoint dialled.
        address: String,
        /// rustls' error, as an I/O error.
        source: io::Error,
    },
    /// The cluster originates TLS but has no server name for this endpoint (a Unix
    /// socket, and the cluster's TLS settings give no `sni`).
    #[error("no TLS server name for {address}: set `sni` in the cluster's tls settings")]
    NoServerName {
        /// The endpoint without a server name.
        address: String,
    },
}

/// Dials `address`, giving up after `timeout`.
pub(crate) async fn connect(
    address: &EndpointAddress,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    match tokio::time::timeout(timeout, dial(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ConnectError::Io {
            address: address.to_string(),
            source,
        }),
        Err(_) => Err(ConnectError::Timeout {
            address: address.to_string(),
            timeout,
        }),
    }
}

async fn dial(address: &EndpointAddress) -> io::Result<Stream> {
    match address {
        EndpointAddress::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await?;
            // Request heads are written whole; Nagle would only delay them.
            stream.set_nodelay(true)?;
            Ok(Stream::Tcp(stream))
        }
        EndpointAddress::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
    }
}

/// Dials `address` and runs a TLS handshake over it as `server_name`; `timeout` covers
/// both, as Envoy's `connect_timeout` covers the transport socket's handshake.
pub(crate) async fn connect_tls(
    address: &EndpointAddress,
    timeout: Duration,
    tls: &ClusterTls,
    server_name: Option<&ServerName<'static>>,
) -> Result<Stream, ConnectError> {
    let server_name = server_name
        .cloned()
        .ok_or_else(|| ConnectError::NoServerName {
            address: address.to_string(),
        })?;
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || ConnectError::Timeout {
        address: address.to_string(),
        timeout,
    };
    let stream = match tokio::time::timeout_at(deadline, dial(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(ConnectError::Io {
                address: address.to_string(),
                source,
            });
        }
        Err(_) => return Err(timed_out()),
    };
    match tokio::time::timeout_at(deadline, tls.handshake(stream, server_name)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ConnectError::Tls {
            address: address.to_string(),
            source,
        }),
        Err(_) => {
            tls.timed_out();
            Err(timed_out())
        }
    }
}
