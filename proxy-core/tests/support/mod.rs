//! Harness shared by the integration tests: step timeouts, small origins on 127.0.0.1, a
//! hand-written router started on a real `Server`, and request helpers. Each test file
//! declares `mod support;` and uses what it needs.

// Every test file is its own crate and uses only a subset of this module; what one of
// them leaves unused is not dead.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should panic

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full};
use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::config::{BindAddress, EndpointAddress};
use proxy_core::listener::ListenerConfig;
use proxy_core::route::{
    Pipeline, RetryOn, RetryPolicy, Route, RouteAction, RoutePolicy, RouteRequest, Router,
    Unfiltered,
};
use proxy_core::server::{Server, ServerSettings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

// ----- steps --------------------------------------------------------------------------

/// How long any single step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test after [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

/// Polls `done` until it holds, failing the test after [`STEP`].
pub async fn eventually(what: &str, done: impl FnMut() -> bool) {
    eventually_within(STEP, what, done).await;
}

/// Polls `done` until it holds, failing the test after `limit`.
pub async fn eventually_within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Topologies (clusters, pipelines) live for the process in a real proxy; a test leaks
/// them the same way.
pub fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

// ----- origins ------------------------------------------------------------------------

/// When a [`RawOrigin`] answers.
#[derive(Clone, Copy)]
pub enum Pace {
    /// At once.
    Fast,
    /// Once the gate gives a permit.
    HeadAfterGate,
    /// Headers at once, the body once the gate gives a permit.
    BodyAfterGate,
}

/// A keep-alive HTTP/1.1 origin on 127.0.0.1, written on raw TCP, answering every
/// (bodiless) request with `status` and the body `name`. Counts requests received and
/// connections accepted. A gated [`Pace`] holds answers until the test adds permits to
/// `gate`.
pub struct RawOrigin {
    pub address: EndpointAddress,
    pub hits: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    pub async fn start(name: &'static str, status: u16, pace: Pace) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (counted, accepted, held) = (
            Arc::clone(&hits),
            Arc::clone(&connections),
            Arc::clone(&gate),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (hits, gate) = (Arc::clone(&counted), Arc::clone(&held));
                tokio::spawn(serve_raw(stream, name, status, pace, hits, gate));
            }
        });
        Self {
            address,
            hits,
            connections,
            gate,
            task,
        }
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    name: &str,
    status: u16,
    pace: Pace,
    hits: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) {
    let reason = StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap_or("");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n\r\n",
        name.len()
    );
    let mut buffer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buffer.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        if let Pace::HeadAfterGate = pace {
            gate.acquire().await.unwrap().forget();
        }
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if let Pace::BodyAfterGate = pace {
            stream.flush().await.unwrap();
            gate.acquire().await.unwrap().forget();
        }
        if stream.write_all(name.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Answers every HTTP/1.1 request on `listener` with 200 and the body `name` (hyper).
pub async fn answer_with_name(name: &'static str, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    name,
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A listener on 127.0.0.1 that accepts connections and never answers; holds them until
/// dropped. Counts the connections it accepted.
pub struct Blackhole {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Blackhole {
            address,
            accepted,
            task,
        }
    }

    pub fn endpoint(&self) -> EndpointAddress {
        EndpointAddress::Tcp(self.address)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Unix socket path in a fresh temporary directory that nobody listens on: connecting
/// fails at once, deterministically.
pub fn nowhere(dir: &tempfile::TempDir) -> EndpointAddress {
    EndpointAddress::Unix(dir.path().join("nobody.sock"))
}

// ----- the proxy ----------------------------------------------------------------------

/// A round-robin cluster with default options. Round robin starts with the first
/// endpoint, so the first attempt's endpoint is known.
pub fn cluster(name: &'static str, endpoints: Vec<EndpointAddress>) -> Arc<Cluster> {
    Arc::new(Cluster::new(name, endpoints, ClusterOptions::DEFAULT))
}

/// A route policy with a 30 s route timeout.
pub fn route_policy(name: &'static str) -> RoutePolicy {
    RoutePolicy::new(name, Some(Duration::from_secs(30)))
}

/// A retry policy with a short backoff, so tests are quick.
pub fn retry_on(on: RetryOn) -> RetryPolicy {
    RetryPolicy::new(on).base_interval(Duration::from_millis(1))
}

/// Routes by exact path to a cluster (held as an `Arc` or leaked as `&'static`) under a
/// policy; any other path has no route (404 `NR`).
pub struct Routes<C = Arc<Cluster>>(pub Vec<(&'static str, C, RoutePolicy)>);

impl<C> Router for Routes<C>
where
    C: Deref<Target = Cluster> + Send + Sync + 'static,
{
    fn route<Q: RouteRequest + ?Sized>(&self, request: &Q) -> Route<'_> {
        match self.0.iter().find(|(path, ..)| *path == request.path()) {
            Some((_, cluster, policy)) => Route {
                action: RouteAction::Forward(cluster, policy),
                chain: 0,
                name: policy.name,
            },
            None => Route::none(0),
        }
    }
}

/// A proxy listener named `test` on 127.0.0.1 serving `pipeline`.
pub fn serve<P: Pipeline>(pipeline: &'static P) -> (Server, SocketAddr) {
    let mut server = Server::new(ServerSettings::default());
    let listener = ListenerConfig::new("test", "127.0.0.1:0".parse().unwrap());
    let BindAddress::Tcp(address) = server.http(&listener, pipeline).unwrap() else {
        panic!("expected a TCP listener")
    };
    (server, address)
}

/// A proxy listener on 127.0.0.1 in front of `routes`, without filters.
pub fn serve_routes<C>(routes: Vec<(&'static str, C, RoutePolicy)>) -> (Server, SocketAddr)
where
    C: Deref<Target = Cluster> + Send + Sync + 'static,
{
    serve(leak(Unfiltered(Routes(routes))))
}

/// A proxy listener on 127.0.0.1 forwarding `/` to `cluster` under a route named `route`
/// (no route timeout).
pub fn start_proxy<C>(cluster: C, route: &'static str) -> (Server, SocketAddr)
where
    C: Deref<Target = Cluster> + Send + Sync + 'static,
{
    serve_routes(vec![("/", cluster, RoutePolicy::new(route, None))])
}

// ----- clients ------------------------------------------------------------------------

/// An HTTP/2 client (prior knowledge, hyper) on a new connection to the proxy; clone the
/// sender for concurrent streams.
pub async fn h2c_client(
    proxy: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET path` for an HTTP/2 client, with the authority `proxy.test`.
pub fn h2_get(path: &str) -> Request<http_body_util::Empty<Bytes>> {
    Request::get(format!("http://proxy.test{path}"))
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// `GET /` on a connection the client closes after the response.
pub const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Writes `request` on a new connection and reads the whole response, until the proxy
/// closes the connection (so `request` should say `Connection: close`).
pub async fn exchange(proxy: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The whole response to one [`GET`] on a new connection.
pub async fn get(proxy: SocketAddr) -> String {
    exchange(proxy, GET).await
}

/// The status code and body of a whole HTTP/1.1 response.
pub fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let (_, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of the head: {response:?}"));
    (status, body.to_owned())
}

/// A keep-alive HTTP/1.1 client connection (hyper) to the proxy.
pub struct Client<B = Full<Bytes>>(hyper::client::conn::http1::SendRequest<B>);

impl<B> Client<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub async fn connect(proxy: SocketAddr) -> Self {
        let handshake = async {
            let stream = TcpStream::connect(proxy).await.unwrap();
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap()
        };
        let (sender, connection) = within("connection to the proxy", handshake).await;
        tokio::spawn(connection);
        Client(sender)
    }

    /// Sends `request`; returns the response head and the whole body.
    pub async fn send(&mut self, request: Request<B>) -> (http::response::Parts, Bytes) {
        let exchange = async {
            self.0.ready().await.unwrap();
            let response = self.0.send_request(request).await.unwrap();
            let (head, body) = response.into_parts();
            (head, body.collect().await.unwrap().to_bytes())
        };
        within("the proxy answers", exchange).await
    }
}
