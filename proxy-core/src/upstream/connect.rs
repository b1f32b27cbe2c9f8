use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::config::EndpointAddress;
use crate::net::Stream;

/// Why an upstream connection could not be established. Either way the client sees
/// 502 with response flag `UF`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {address} timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("connect to {address} failed: {source}")]
    Io { address: String, source: io::Error },
    #[error("HTTP handshake with {address} failed: {source}")]
    Handshake {
        address: String,
        source: hyper::Error,
    },
}

/// Dials `address`, giving up after `timeout`.
pub(crate) async fn connect(
    address: &EndpointAddress,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    let dial = async {
        match address {
            EndpointAddress::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                // Request heads are written whole; Nagle would only delay them.
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            EndpointAddress::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
        }
    };
    match tokio::time::timeout(timeout, dial).await {
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
