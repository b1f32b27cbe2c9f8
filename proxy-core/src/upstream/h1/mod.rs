//! HTTP/1.1 to origins, written by hand over `httparse`.
//!
//! hyper's client runs every connection as a task of its own: a request crosses a channel
//! to it, the response head comes back over a oneshot and the body over another channel,
//! so each proxied request costs several task wake-ups on top of the protocol work. Here
//! the request's own task owns the connection for the length of the exchange: it writes
//! the head (and body) from one reused buffer, parses the response head in place and
//! reads the body straight off the socket as the downstream side asks for it. An idle
//! connection is just a value in its endpoint's pool.
//!
//! Message framing follows RFC 9112 §6 and matches hyper's client on the same inputs
//! (`proxy-core/tests/upstream_framing.rs` pins the behaviour through the proxy;
//! `decode::tests` cover the decoders).
//!
//! hyper remains the HTTP/2 client, and the health checker's HTTP/1.1 client.

mod abandoned;
mod body;
mod conn;
mod decode;
#[cfg(test)]
mod differential;
mod encode;
mod exchange;
pub(crate) mod relay;
mod upgraded;

pub(crate) use abandoned::{client_gone, finish_in_background};
pub(crate) use body::ResponseStream;
pub(crate) use conn::Connection;
pub(crate) use decode::{Decoded, Decoder, Framing, RawResponse};
#[cfg(test)]
pub(crate) use decode::{Peeked, peek_head};
pub(crate) use exchange::{Exchanged, SendError, send};
pub(crate) use upgraded::UpstreamUpgrade;

/// Why an HTTP/1.1 exchange with an origin failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("origin closed the connection before the response was complete")]
    Closed,
    #[error("client closed the connection before its request body was complete")]
    ClientClosed,
    #[error("malformed response head: {0}")]
    Parse(httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid header in the response: {0}")]
    InvalidHeader(&'static str),
    #[error("invalid content-length in the response")]
    InvalidContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("request body: {0}")]
    RequestBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("request body length differs from its content-length")]
    RequestBodyLength,
    #[error("request body abandoned: the client connection went on after its response")]
    RequestBodyAbandoned,
}

/// The largest response head read (status line and headers). hyper's default buffer
/// limit is larger (~400 KiB), but no origin has a reason to send heads near this size,
/// and Envoy's default (`max_request_headers_kb`) is 60 KiB.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
