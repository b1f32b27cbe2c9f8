//! A real HTTP client (hyper 1.x) over HTTP/1.1 or h2c with prior knowledge, one
//! connection per [`Conn`] so tests know exactly how many downstream connections exist.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::DEADLINE;

/// Request body type of every helper: fixed bytes or a generated stream.
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// A fixed request body.
pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).boxed()
}

/// No request body.
pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

/// The downstream protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    H1,
    /// HTTP/2 over cleartext with prior knowledge (no upgrade).
    H2c,
}

impl Proto {
    pub const BOTH: [Proto; 2] = [Proto::H1, Proto::H2c];

    pub fn version(self) -> Version {
        match self {
            Proto::H1 => Version::HTTP_11,
            Proto::H2c => Version::HTTP_2,
        }
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as UTF-8 (panics otherwise).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body)
            .unwrap_or_else(|e| panic!("body is not UTF-8 ({e}): {:?}", self.body))
    }

    /// The single value of header `name` as a string; panics if absent.
    pub fn header(&self, name: &str) -> &str {
        let values: Vec<_> = self.headers.get_all(name).iter().collect();
        assert!(
            values.len() == 1,
            "expected one `{name}` header in {self:#?}"
        );
        values[0]
            .to_str()
            .unwrap_or_else(|e| panic!("`{name}` is not visible ASCII: {e}"))
    }

    /// Status, body and the local-reply headers in one assertion-friendly tuple.
    pub fn local_reply(&self) -> (u16, Option<&str>, Option<&str>, &str) {
        let get = |name| self.headers.get(name).and_then(|v| v.to_str().ok());
        (
            self.status.as_u16(),
            get("x-proxy-response-flags"),
            get("content-type"),
            self.text(),
        )
    }
}

enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// One client connection. HTTP/1.1 requests on it are sequential (keep-alive); HTTP/2
/// ones may run concurrently through clones from [`Conn::h2_clone`].
pub struct Conn {
    sender: Sender,
    proto: Proto,
    timeout: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("proto", &self.proto)
            .finish_non_exhaustive()
    }
}

/// Awaits `future`, panicking after [`DEADLINE`] so a hung proxy fails the test.
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    bounded_by(DEADLINE, what, future).await
}

/// Awaits `future`, panicking after `timeout`.
pub async fn bounded_by<F: Future>(timeout: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(timeout, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {timeout:?}: {what}"),
    }
}

impl Conn {
    /// Connects to a TCP listener.
    pub async fn tcp(addr: SocketAddr, proto: Proto) -> Self {
        let stream = bounded("connect", tokio::net::TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        Self::handshake(stream, proto).await
    }

    /// Connects to a Unix socket listener.
    pub async fn unix(path: &Path, proto: Proto) -> Self {
        let stream = bounded("connect", tokio::net::UnixStream::connect(path))
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        Self::handshake(stream, proto).await
    }

    async fn handshake<IO>(io: IO, proto: Proto) -> Self
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = match proto {
            Proto::H1 => {
                let (sender, connection) = bounded("handshake", http1::handshake(io))
                    .await
                    .unwrap_or_else(|e| panic!("h1 handshake: {e}"));
                tokio::spawn(connection);
                Sender::H1(sender)
            }
            Proto::H2c => {
                let (sender, connection) =
                    bounded("handshake", http2::handshake(TokioExecutor::new(), io))
                        .await
                        .unwrap_or_else(|e| panic!("h2 handshake: {e}"));
                tokio::spawn(connection);
                Sender::H2(sender)
            }
        };
        Self {
            sender,
            proto,
            timeout: DEADLINE,
        }
    }

    /// Bounds each step of a request (head, then whole body) by `timeout` instead of
    /// [`DEADLINE`]: for transfers that are meant to take a while.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Another handle on the same HTTP/2 connection, for concurrent streams.
    pub fn h2_clone(&self) -> Self {
        match &self.sender {
            Sender::H2(sender) => Self {
                sender: Sender::H2(sender.clone()),
                proto: self.proto,
                timeout: self.timeout,
            },
            Sender::H1(_) => panic!("HTTP/1.1 connections cannot be shared"),
        }
    }

    /// A request builder in the form the protocol needs: origin-form with `Host` for
    /// HTTP/1.1, absolute-form (`:authority`) for HTTP/2.
    pub fn request(&self, method: Method, host: &str, path: &str) -> http::request::Builder {
        request(self.proto, method, host, path)
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn try_send_streaming(
        &mut self,
        request: Request<ReqBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(sender) => {
                bounded_by(self.timeout, "connection ready", sender.ready()).await?;
                bounded_by(self.timeout, "response head", sender.send_request(request)).await
            }
            Sender::H2(sender) => {
                bounded_by(self.timeout, "connection ready", sender.ready()).await?;
                bounded_by(self.timeout, "response head", sender.send_request(request)).await
            }
        }
    }

    /// Sends a request and reads the whole response; an error is returned, not a panic.
    pub async fn try_send(&mut self, request: Request<ReqBody>) -> Result<Reply, hyper::Error> {
        let response = self.try_send_streaming(request).await?;
        let (parts, body) = response.into_parts();
        let body = bounded_by(self.timeout, "response body", body.collect())
            .await?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, request: Request<ReqBody>) -> Reply {
        let what = format!("{} {}", request.method(), request.uri());
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("{what} over {:?} failed: {e:?}", self.proto))
    }

    /// `GET path` with the given host.
    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        let request = self
            .request(Method::GET, host, path)
            .body(empty())
            .unwrap_or_else(|e| panic!("request: {e}"));
        self.send(request).await
    }
}

/// See [`Conn::request`].
pub fn request(proto: Proto, method: Method, host: &str, path: &str) -> http::request::Builder {
    let builder = Request::builder().method(method);
    match proto {
        Proto::H1 => builder.uri(path).header(http::header::HOST, host),
        Proto::H2c => builder
            .uri(format!("http://{host}{path}"))
            .version(Version::HTTP_2),
    }
}

/// hyper-util's pooling client (the one applications use), HTTP/1.1 or h2c prior knowledge.
pub fn legacy_client(proto: Proto) -> Client<HttpConnector, ReqBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(proto == Proto::H2c)
        .build_http()
}

/// Sends through [`legacy_client`] and collects the whole response.
pub async fn legacy_send(
    client: &Client<HttpConnector, ReqBody>,
    request: Request<ReqBody>,
) -> Reply {
    let what = format!("{} {}", request.method(), request.uri());
    let response = bounded(&what, client.request(request))
        .await
        .unwrap_or_else(|e| panic!("{what} failed: {e:?}"));
    let (parts, body) = response.into_parts();
    let body = bounded(&what, body.collect())
        .await
        .unwrap_or_else(|e| panic!("{what} body: {e:?}"))
        .to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}
