//! Retries, per-try timeouts, backoff and request-body replay, through a real `Server`
//! with a hand-written router in front of real in-test origins (hyper servers that
//! answer with their own name, a raw listener that never answers, and a Unix socket
//! path nobody listens on).
//!
//! Time bounds are one-sided where timers make them exact (a timeout never fires early)
//! and generous where they depend on the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use proxy_core::cluster::{Cluster, ClusterOptions, SessionPersistence, UpstreamProtocol};
use proxy_core::config::EndpointAddress;
use proxy_core::filter::{BodyProgress, Flow, HttpFilter, Summary};
use proxy_core::http::Downstream;
use proxy_core::route::{
    Pipeline, RetryOn, RetryPolicy, Route, RouteAction, RoutePolicy, Router, Targets,
};
use proxy_core::server::Server;
use proxy_core::stats::ListenerStats;
use support::{Blackhole, Client, Routes, STEP, cluster, nowhere, retry_on, route_policy, within};

// ---------------------------------------------------------------------------------------
// Origins

/// What an origin answers to the `n`th request it gets (from 1), given the request
/// body's hash.
type Behaviour = fn(n: usize, hash: u64) -> (StatusCode, String);

/// An in-test origin (HTTP/1.1 and HTTP/2). Every response carries `x-origin: <name>` and
/// `x-body-hash`, the FNV-1a hash of the request body it read.
struct Origin {
    address: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// Body hashes of every request, in arrival order.
    hashes: Arc<Mutex<Vec<u64>>>,
}

impl Origin {
    async fn start(name: &'static str, behaviour: Behaviour) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let hashes = Arc::new(Mutex::new(Vec::new()));
        let (task_hits, task_hashes) = (Arc::clone(&hits), Arc::clone(&hashes));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (hits, hashes) = (Arc::clone(&task_hits), Arc::clone(&task_hashes));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        let (hits, hashes) = (Arc::clone(&hits), Arc::clone(&hashes));
                        async move {
                            let body: hyper::body::Incoming = request.into_body();
                            let bytes = body.collect().await.map(|b| b.to_bytes());
                            let hash = fnv(&bytes.unwrap_or_default());
                            hashes.lock().unwrap().push(hash);
                            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                            let (status, text) = behaviour(n, hash);
                            let response = Response::builder()
                                .status(status)
                                .header("x-origin", name)
                                .header("x-body-hash", hash.to_string())
                                .body(Full::new(Bytes::from(text)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    // HTTP/1.1, or HTTP/2 with prior knowledge, as the cluster speaks.
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let executor = hyper_util::rt::TokioExecutor::new();
                    let _ = hyper_util::server::conn::auto::Builder::new(executor)
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Origin {
            address,
            hits,
            hashes,
        }
    }

    fn endpoint(&self) -> EndpointAddress {
        EndpointAddress::Tcp(self.address)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn ok(_: usize, _: u64) -> (StatusCode, String) {
    (StatusCode::OK, "ok\n".into())
}

fn unavailable(n: usize, _: u64) -> (StatusCode, String) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("unavailable #{n}\n"),
    )
}

fn conflict(_: usize, _: u64) -> (StatusCode, String) {
    (StatusCode::CONFLICT, "conflict\n".into())
}

fn internal_error(_: usize, _: u64) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal\n".into())
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------
// The proxy

struct Proxy {
    server: Server,
    address: SocketAddr,
}

impl Proxy {
    fn start(routes: Vec<(&'static str, Arc<Cluster>, RoutePolicy)>) -> Proxy {
        let (server, address) = support::serve_routes(routes);
        Proxy { server, address }
    }

    fn stats(&self) -> Arc<ListenerStats> {
        Arc::clone(&self.server.listener_stats()[0].1)
    }

    /// Sends one request on a new connection; returns the response head and body.
    async fn send<B>(&self, request: Request<B>) -> (http::response::Parts, Bytes)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Client::connect(self.address).await.send(request).await
    }

    async fn get(&self, path: &str) -> (http::response::Parts, Bytes) {
        self.send(get(path)).await
    }
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "app.example")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post(path: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "app.example")
        .body(Full::new(body))
        .unwrap()
}

/// A body of `chunks` with no declared length (sent chunked).
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn header<'h>(head: &'h http::response::Parts, name: &str) -> &'h str {
    head.headers
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

/// A body of `len` bytes that differ from position to position.
fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| u8::try_from(i * 31 % 251).unwrap())
        .collect()
}

fn policy(name: &'static str, retry: RetryPolicy) -> RoutePolicy {
    route_policy(name).retry_policy(retry)
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn retries_a_503_on_another_endpoint() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/retry/0", retry_on(RetryOn::FIVE_XX)),
    )]);

    let (head, body) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::OK, "{body:?}");
    assert_eq!(header(&head, "x-origin"), "b");
    assert_eq!((a.hits(), b.hits()), (1, 1));
    let stats = upstream.stats();
    assert_eq!(stats.upstream_rq_retry.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 1);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 0);
    assert_eq!(stats.upstream_rq_total.get(), 2);
    assert_eq!(stats.upstream_rq_5xx.get(), 1);
    assert_eq!(stats.upstream_rq_2xx.get(), 1);
    assert_eq!(proxy.stats().downstream_rq_2xx.get(), 1);
}

#[tokio::test]
async fn gateway_error_does_not_retry_a_500() {
    let failing = Origin::start("failing", internal_error).await;
    let fallback = Origin::start("fallback", ok).await;
    let upstream = cluster("app", vec![failing.endpoint(), fallback.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/gateway/0", retry_on(RetryOn::GATEWAY_ERROR)),
    )]);

    let (head, _) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(header(&head, "x-origin"), "failing");
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 0);
    assert_eq!(fallback.hits(), 0);
}

#[tokio::test]
async fn retries_a_connect_failure() {
    let dir = tempfile::tempdir().unwrap();
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![nowhere(&dir), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/connect/0", retry_on(RetryOn::CONNECT_FAILURE)),
    )]);

    let (head, _) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    let stats = upstream.stats();
    assert_eq!(stats.upstream_cx_connect_fail.get(), 1);
    assert_eq!(stats.upstream_rq_retry.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 1);
    assert_eq!(proxy.stats().upstream_connect_fail.get(), 0);
}

#[tokio::test]
async fn connect_failures_exhausted_answer_502_uf() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = cluster("app", vec![nowhere(&dir)]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy(
            "test/connect/1",
            retry_on(RetryOn::CONNECT_FAILURE).num_retries(2),
        ),
    )]);

    let (head, body) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    assert_eq!(header(&head, "x-proxy-response-flags"), "UF");
    assert_eq!(body, "upstream connect error\n");
    let stats = upstream.stats();
    assert_eq!(stats.upstream_cx_connect_fail.get(), 3);
    assert_eq!(stats.upstream_rq_retry.get(), 2);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 0);
    assert_eq!(proxy.stats().upstream_connect_fail.get(), 1);
}

#[tokio::test]
async fn exhausted_retries_return_the_last_5xx() {
    let only = Origin::start("only", unavailable).await;
    let upstream = cluster("app", vec![only.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/exhaust/0", retry_on(RetryOn::FIVE_XX).num_retries(2)),
    )]);

    let (head, body) = proxy.get("/").await;
    // The origin's own response, as is (no proxy flag), from the third attempt.
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "unavailable #3\n");
    assert_eq!(header(&head, "x-proxy-response-flags"), "");
    assert_eq!(only.hits(), 3);
    let stats = upstream.stats();
    assert_eq!(stats.upstream_rq_retry.get(), 2);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 0);
    assert_eq!(stats.upstream_rq_5xx.get(), 3);
}

#[tokio::test]
async fn retriable_status_codes_are_retried_and_others_are_not() {
    let busy = Origin::start("busy", conflict).await;
    let b = Origin::start("b", ok).await;
    let broken = Origin::start("broken", internal_error).await;
    let c = Origin::start("c", ok).await;
    let codes = retry_on(RetryOn::RETRIABLE_STATUS_CODES).retriable_status_codes(&[409]);
    let conflicts = cluster("conflicts", vec![busy.endpoint(), b.endpoint()]);
    let errors = cluster("errors", vec![broken.endpoint(), c.endpoint()]);
    let proxy = Proxy::start(vec![
        (
            "/409",
            Arc::clone(&conflicts),
            policy("test/codes/0", codes),
        ),
        ("/500", Arc::clone(&errors), policy("test/codes/1", codes)),
    ]);

    let (head, _) = proxy.get("/409").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    assert_eq!(conflicts.stats().upstream_rq_retry.get(), 1);

    let (head, _) = proxy.get("/500").await;
    assert_eq!(head.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!((broken.hits(), c.hits()), (1, 0));
    assert_eq!(errors.stats().upstream_rq_retry.get(), 0);
}

#[tokio::test]
async fn per_try_timeout_bounds_each_attempt() {
    let hole = Blackhole::start().await;
    let upstream = cluster("app", vec![hole.endpoint()]);
    let per_try = Duration::from_millis(300);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy(
            "test/per-try/0",
            retry_on(RetryOn::RESET)
                .num_retries(2)
                .per_try_timeout(per_try),
        ),
    )]);

    let started = Instant::now();
    let (head, body) = proxy.get("/").await;
    let elapsed = started.elapsed();
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&head, "x-proxy-response-flags"), "UT");
    assert_eq!(body, "upstream request timeout\n");
    // Three attempts, each cut at its per-try timeout; a timer never fires early.
    assert!(elapsed >= per_try * 3, "{elapsed:?}");
    assert!(elapsed < per_try * 3 + STEP / 2, "{elapsed:?}");
    assert_eq!(hole.accepted(), 3);
    let stats = upstream.stats();
    assert_eq!(stats.upstream_rq_per_try_timeout.get(), 3);
    assert_eq!(stats.upstream_rq_retry.get(), 2);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 1);
    // Per-try timeouts are not the route timeout.
    assert_eq!(stats.upstream_rq_timeout.get(), 0);
    assert_eq!(proxy.stats().upstream_timeout.get(), 1);
}

#[tokio::test]
async fn per_try_timeout_falls_over_to_an_answering_endpoint() {
    let hole = Blackhole::start().await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![hole.endpoint(), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy(
            "test/per-try/1",
            retry_on(RetryOn::GATEWAY_ERROR).per_try_timeout(Duration::from_millis(200)),
        ),
    )]);

    let (head, _) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    let stats = upstream.stats();
    assert_eq!(stats.upstream_rq_per_try_timeout.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 1);
}

#[tokio::test]
async fn route_timeout_bounds_all_attempts_together() {
    let hole = Blackhole::start().await;
    let upstream = cluster("app", vec![hole.endpoint()]);
    let route_timeout = Duration::from_millis(500);
    let retry = retry_on(RetryOn::RESET)
        .num_retries(10)
        .per_try_timeout(Duration::from_millis(200));
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        RoutePolicy::new("test/route-timeout/0", Some(route_timeout)).retry_policy(retry),
    )]);

    let started = Instant::now();
    let (head, _) = proxy.get("/").await;
    let elapsed = started.elapsed();
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&head, "x-proxy-response-flags"), "UT");
    assert!(elapsed >= route_timeout, "{elapsed:?}");
    // Far below the 11 × 200 ms that the attempts alone would take.
    assert!(elapsed < Duration::from_millis(2_000), "{elapsed:?}");
    let stats = upstream.stats();
    assert_eq!(stats.upstream_rq_timeout.get(), 1);
    assert!(stats.upstream_rq_per_try_timeout.get() >= 2);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 0);
}

#[tokio::test]
async fn backoff_is_capped_by_max_interval() {
    let only = Origin::start("only", unavailable).await;
    let upstream = cluster("app", vec![only.endpoint()]);
    // Uncapped, the four backoffs would be drawn below 1 h, 2 h, 4 h and 8 h.
    let retry = RetryPolicy::new(RetryOn::FIVE_XX)
        .num_retries(4)
        .base_interval(Duration::from_secs(3_600))
        .max_interval(Duration::from_millis(10));
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/cap/0", retry),
    )]);

    let (head, _) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(only.hits(), 5);
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 4);
}

#[tokio::test]
async fn route_timeout_cuts_a_long_backoff() {
    let only = Origin::start("only", unavailable).await;
    let upstream = cluster("app", vec![only.endpoint()]);
    // Backoffs drawn below 1 h, 2 h and 4 h: the chance that all three together fit in
    // the 300 ms route timeout is about 10⁻¹³.
    let retry = RetryPolicy::new(RetryOn::FIVE_XX)
        .num_retries(3)
        .base_interval(Duration::from_secs(3_600))
        .max_interval(Duration::from_secs(4 * 3_600));
    let route_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        RoutePolicy::new("test/backoff/0", Some(route_timeout)).retry_policy(retry),
    )]);

    let started = Instant::now();
    let (head, _) = proxy.get("/").await;
    let elapsed = started.elapsed();
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&head, "x-proxy-response-flags"), "UT");
    assert!(elapsed >= route_timeout, "{elapsed:?}");
    assert!(elapsed < STEP / 2, "{elapsed:?}");
    assert!(only.hits() >= 1);
    let stats = upstream.stats();
    assert_eq!(
        stats.upstream_rq_retry.get(),
        u64::try_from(only.hits()).unwrap()
    );
    assert_eq!(stats.upstream_rq_timeout.get(), 1);
}

#[tokio::test]
async fn post_body_is_replayed_identically() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/replay/0", retry_on(RetryOn::FIVE_XX)),
    )]);

    // A body of declared length is kept and replayed byte for byte.
    let body = payload(40_000);
    let expected = fnv(&body);
    let (head, _) = proxy.send(post("/", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    assert_eq!(header(&head, "x-body-hash"), expected.to_string());
    assert_eq!(*a.hashes.lock().unwrap(), [expected]);
    assert_eq!(*b.hashes.lock().unwrap(), [expected]);
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 1);

    // A body of unknown length may be a stream that waits for the response, so it is
    // streamed at once and tried once, wherever the balancer sends it.
    let chunks = body.chunks(7_000).map(Bytes::copy_from_slice).collect();
    let request = Request::post("/")
        .header("host", "app.example")
        .body(Chunked(chunks))
        .unwrap();
    let (head, _) = proxy.send(request).await;
    let tries = a.hashes.lock().unwrap().len() + b.hashes.lock().unwrap().len();
    assert_eq!(tries, 3, "the chunked request went upstream once");
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 1);
    let status = head.status;
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
}

#[tokio::test]
async fn body_over_the_buffer_is_streamed_and_not_retried() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let retry = retry_on(RetryOn::FIVE_XX).max_buffered_body(16 * 1024);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/large/0", retry),
    )]);
    let body = payload(100_000);
    let expected = fnv(&body);

    // Chunked: the first 16 KiB are buffered, then the rest streams behind them.
    let chunks = body.chunks(4_096).map(Bytes::copy_from_slice).collect();
    let request = Request::post("/")
        .header("host", "app.example")
        .body(Chunked(chunks))
        .unwrap();
    let (head, _) = proxy.send(request).await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&head, "x-origin"), "a");
    assert_eq!(*a.hashes.lock().unwrap(), [expected]);

    // Declared too large: streamed from the start. Round robin sends it to `b`.
    let (head, _) = proxy.send(post("/", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-body-hash"), expected.to_string());

    // A small body on the same route is still retried.
    let (head, _) = proxy.send(post("/", payload(1_000))).await;
    assert_eq!(head.status, StatusCode::OK);

    assert_eq!((a.hits(), b.hits()), (2, 2));
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 1);
    assert_eq!(upstream.stats().upstream_rq_retry_limit_exceeded.get(), 0);
}

#[tokio::test]
async fn no_retry_policy_means_one_attempt() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        route_policy("test/none/0"),
    )]);

    let (head, _) = proxy.send(post("/", payload(1_000))).await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((a.hits(), b.hits()), (1, 0));
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 0);
}

#[tokio::test]
async fn session_cookie_names_the_endpoint_that_answered_the_retry() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let sticky = ClusterOptions::DEFAULT.session_persistence(SessionPersistence::Cookie {
        name: "sticky",
        path: "/",
        ttl: None,
    });
    let upstream = Arc::new(Cluster::new(
        "app",
        vec![a.endpoint(), b.endpoint()],
        sticky,
    ));
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/session/0", retry_on(RetryOn::FIVE_XX)),
    )]);

    let (head, _) = proxy.get("/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    let cookies: Vec<_> = head.headers.get_all(SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let pair = cookies[0].to_str().unwrap().split(';').next().unwrap();
    assert!(pair.starts_with("sticky="), "{pair}");

    // The cookie brings the client back to `b`, however often it asks.
    for _ in 0..4 {
        let mut request = get("/");
        request.headers_mut().insert(COOKIE, pair.parse().unwrap());
        let (head, _) = proxy.send(request).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(header(&head, "x-origin"), "b");
        assert!(head.headers.get(SET_COOKIE).is_none());
    }
    assert_eq!((a.hits(), b.hits()), (1, 5));
}

/// A filter that counts the request-body bytes it sees, refuses bodies over `limit`
/// with 413, and reports every exchange's summary.
struct Recorder {
    limit: u64,
    seen: AtomicUsize,
    summaries: tokio::sync::mpsc::UnboundedSender<Summary>,
}

impl HttpFilter for Recorder {
    type State = ();

    fn on_request_body(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        self.seen.fetch_add(chunk.len(), Ordering::SeqCst);
        if progress.total > self.limit {
            return Flow::respond(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n");
        }
        Flow::Continue
    }

    fn on_complete(&self, (): (), _: &proxy_core::filter::RequestInfo, summary: &Summary) {
        let _ = self.summaries.send(summary.clone());
    }
}

struct Filtered {
    filter: Recorder,
    routes: Routes,
    /// `/mirrored` goes here.
    mirrored: (Targets, RoutePolicy),
}

impl Pipeline for Filtered {
    async fn handle(
        &'static self,
        request: Request<proxy_core::http::IncomingBody>,
        downstream: &Downstream,
    ) -> Response<proxy_core::http::ResponseBody> {
        let (parts, body) = request.into_parts();
        let route = match parts.uri.path() {
            "/mirrored" => Route {
                action: RouteAction::Split(&self.mirrored.0, &self.mirrored.1),
                chain: 0,
                name: self.mirrored.1.name,
            },
            _ => self.routes.route(&parts),
        };
        proxy_core::http::exchange(&self.filter, downstream, route, parts, body).await
    }
}

#[tokio::test]
async fn filters_see_each_chunk_once_and_the_summary_reports_the_answering_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let dead = cluster("dead", vec![nowhere(&dir)]);
    let retry = retry_on(RetryOn::FIVE_XX);
    let (summaries, mut summary) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = support::leak(Filtered {
        filter: Recorder {
            limit: 50_000,
            seen: AtomicUsize::new(0),
            summaries,
        },
        routes: Routes(vec![
            ("/", Arc::clone(&upstream), policy("test/filtered/0", retry)),
            ("/dead", Arc::clone(&dead), policy("test/filtered/1", retry)),
        ]),
        mirrored: (
            Targets::new(vec![(cluster("single", vec![b.endpoint()]), 1)])
                .mirror(cluster("shadow", vec![a.endpoint()]), 100),
            route_policy("test/filtered/2"),
        ),
    });
    let (server, address) = support::serve(pipeline);
    let proxy = Proxy { server, address };
    let mut next_summary = async || within("exchange summary", summary.recv()).await.unwrap();

    // Sent twice upstream, filtered once.
    let body = payload(30_000);
    let (head, _) = proxy.send(post("/", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-body-hash"), fnv(&body).to_string());
    assert_eq!(pipeline.filter.seen.load(Ordering::SeqCst), 30_000);
    let done = next_summary().await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.response_flags, "");
    assert_eq!(done.bytes_received, 30_000);
    assert_eq!(done.upstream, Some(b.address.to_string()));

    // Refused by the filter while buffered: nothing goes upstream.
    let (head, body) = proxy.send(post("/", payload(60_000))).await;
    assert_eq!(head.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, "payload too large\n");
    assert_eq!((a.hits(), b.hits()), (1, 1));
    assert_eq!(next_summary().await.status, StatusCode::PAYLOAD_TOO_LARGE);

    // A local reply after exhausted retries names the endpoint of the last attempt.
    let (head, _) = proxy.send(post("/dead", payload(10))).await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    let done = next_summary().await;
    assert_eq!(done.response_flags, "UF");
    assert_eq!(done.bytes_received, 10);
    assert_eq!(
        done.upstream,
        Some(EndpointAddress::Unix(dir.path().join("nobody.sock")).to_string())
    );
    assert_eq!(dead.stats().upstream_rq_retry_limit_exceeded.get(), 1);

    // Buffered for a mirror only (no retry policy): the size is still reported.
    let seen_before = pipeline.filter.seen.load(Ordering::SeqCst);
    let (head, _) = proxy.send(post("/mirrored", payload(2_000))).await;
    assert_eq!(head.status, StatusCode::OK);
    let done = next_summary().await;
    assert_eq!(done.bytes_received, 2_000);
    assert_eq!(done.upstream, Some(b.address.to_string()));
    assert_eq!(
        pipeline.filter.seen.load(Ordering::SeqCst),
        seen_before + 2_000
    );
}

#[tokio::test]
async fn http2_cluster_retries_with_the_body_replayed() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let options = ClusterOptions::DEFAULT.protocol(UpstreamProtocol::Http2);
    let upstream = Arc::new(Cluster::new(
        "h2",
        vec![a.endpoint(), b.endpoint()],
        options,
    ));
    let proxy = Proxy::start(vec![(
        "/",
        Arc::clone(&upstream),
        policy("test/h2/0", retry_on(RetryOn::GATEWAY_ERROR)),
    )]);

    let body = payload(50_000);
    let (head, _) = proxy.send(post("/", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "x-origin"), "b");
    assert_eq!(*a.hashes.lock().unwrap(), [fnv(&body)]);
    assert_eq!(*b.hashes.lock().unwrap(), [fnv(&body)]);
    assert_eq!(upstream.stats().upstream_rq_retry_success.get(), 1);
}

#[tokio::test]
async fn upgrade_requests_are_never_retried() {
    let a = Origin::start("a", unavailable).await;
    let b = Origin::start("b", ok).await;
    let upstream = cluster("app", vec![a.endpoint(), b.endpoint()]);
    let proxy = Proxy::start(vec![(
        "/ws",
        Arc::clone(&upstream),
        policy("test/ws/0", retry_on(RetryOn::FIVE_XX)).upgrades(&["websocket"]),
    )]);

    let request = Request::get("/ws")
        .header("host", "app.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (head, _) = proxy.send(request).await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((a.hits(), b.hits()), (1, 0));
    assert_eq!(upstream.stats().upstream_rq_retry.get(), 0);
}
