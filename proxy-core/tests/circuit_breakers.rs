//! Circuit breakers against real origins, through the proxy's `Server` in-process with a
//! hand-written router: `max_requests`, `max_connections` with pending requests,
//! retry limits, the TCP proxy's connection limit, and in-flight accounting that lasts
//! until the response body ends. Slow origins are held by a semaphore the test
//! releases; every wait is for a condition, with a generous limit.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proxy_core::cluster::{CircuitBreakers, Cluster, ClusterOptions, LbPolicy, RetryBudget};
use proxy_core::config::{BindAddress, EndpointAddress};
use proxy_core::listener::ListenerConfig;
use proxy_core::server::{Server, ServerSettings};
use proxy_core::stats::CircuitBreakerStats;
use proxy_core::tcp::{TcpProxy, TcpProxyOptions};
use support::{GET, Pace, RawOrigin, eventually, get, leak, start_proxy, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The route every request takes to the cluster under test.
const ROUTE: &str = "test/breakers/0";

// ----- origins and the proxy ----------------------------------------------------------

/// A keep-alive HTTP/1.1 origin answering every request with 200 and the body `name`,
/// at `pace`.
async fn origin(name: &'static str, pace: Pace) -> RawOrigin {
    RawOrigin::start(name, 200, pace).await
}

fn cluster(
    name: &'static str,
    origins: &[&RawOrigin],
    breakers: CircuitBreakers,
) -> &'static Cluster {
    let options = ClusterOptions::DEFAULT.circuit_breakers(breakers);
    leak(Cluster::new(
        name,
        origins.iter().map(|o| o.address.clone()).collect(),
        options,
    ))
}

/// `GET /` on its own task, for requests the origin holds.
fn spawn_get(proxy: SocketAddr) -> JoinHandle<String> {
    tokio::spawn(get(proxy))
}

fn assert_ok(response: &str, body: &str) {
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(&format!("\r\n\r\n{body}")), "{response}");
}

fn assert_overflow(response: &str) {
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(
        response.contains("\r\nx-proxy-response-flags: UO\r\n"),
        "{response}"
    );
}

/// The `*_open` gauges and what is in use, as `(cx, pending, rq, retry)` open flags.
fn open(stats: &CircuitBreakerStats) -> (i64, i64, i64, i64) {
    (
        stats.cx_open.get(),
        stats.rq_pending_open.get(),
        stats.rq_open.get(),
        stats.rq_retry_open.get(),
    )
}

// ----- tests --------------------------------------------------------------------------

#[tokio::test]
async fn max_requests_overflows_with_503_uo_and_everything_is_released_after() {
    let slow = origin("slow", Pace::HeadAfterGate).await;
    let cluster = cluster(
        "breaker_rq",
        &[&slow],
        CircuitBreakers::DEFAULT.max_requests(2),
    );
    let (server, proxy) = start_proxy(cluster, ROUTE);

    let held = [spawn_get(proxy), spawn_get(proxy)];
    eventually("both requests reach the origin", || {
        slow.hits.load(Ordering::SeqCst) == 2
    })
    .await;
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(breakers.rq_open.get(), 1);
    assert_eq!(breakers.remaining_rq.get(), 0);

    let third = within("overflowing request", get(proxy)).await;
    assert_overflow(&third);
    assert_eq!(cluster.stats().upstream_rq_pending_overflow.get(), 1);
    assert_eq!(slow.hits.load(Ordering::SeqCst), 2, "never sent upstream");

    slow.gate.add_permits(2);
    for request in held {
        assert_ok(&within("held request", request).await.unwrap(), "slow");
    }
    eventually("requests released", || {
        cluster.circuit_breaker_stats().remaining_rq.get() == 2
    })
    .await;
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(open(&breakers), (0, 0, 0, 0));
    assert_eq!(breakers.remaining_pending.get(), 1024);
    assert_eq!(breakers.remaining_retries.get(), 3);
    // Two connections open (idle in the pool) out of 1024.
    assert_eq!(breakers.remaining_cx.get(), 1022);
    assert_eq!(cluster.stats().upstream_rq_total.get(), 2);
    assert_eq!(cluster.stats().upstream_rq_2xx.get(), 2);

    let listener_stats = Arc::clone(&server.listener_stats()[0].1);
    server.shutdown().await;
    assert_eq!(listener_stats.upstream_overflow.get(), 1);
}

#[tokio::test]
async fn a_pending_request_waits_for_the_connection_and_the_next_one_overflows() {
    let slow = origin("slow", Pace::HeadAfterGate).await;
    let cluster = cluster(
        "breaker_pending",
        &[&slow],
        CircuitBreakers::DEFAULT
            .max_connections(1)
            .max_pending_requests(1),
    );
    let (server, proxy) = start_proxy(cluster, ROUTE);
    let stats = cluster.stats();

    let first = spawn_get(proxy);
    eventually("the first request reaches the origin", || {
        slow.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = spawn_get(proxy);
    eventually("the second request is pending", || {
        stats.upstream_rq_pending_active.get() == 1
    })
    .await;
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(open(&breakers), (1, 1, 0, 0));
    assert_eq!(breakers.remaining_cx.get(), 0);
    assert_eq!(breakers.remaining_pending.get(), 0);

    let third = within("overflowing request", get(proxy)).await;
    assert_overflow(&third);
    assert_eq!(stats.upstream_rq_pending_overflow.get(), 1);
    assert_eq!(stats.upstream_cx_overflow.get(), 2, "second and third");

    // The first answer frees the connection; the pending request takes it.
    slow.gate.add_permits(1);
    assert_ok(&within("first request", first).await.unwrap(), "slow");
    eventually("the second request reaches the origin", || {
        slow.hits.load(Ordering::SeqCst) == 2
    })
    .await;
    slow.gate.add_permits(1);
    assert_ok(&within("second request", second).await.unwrap(), "slow");

    assert_eq!(stats.upstream_cx_total.get(), 1, "one connection, reused");
    assert_eq!(slow.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        stats.upstream_rq_pending_total.get(),
        1,
        "the third never waited"
    );
    eventually("requests released", || {
        cluster.circuit_breaker_stats().rq_open.get() == 0
            && cluster.circuit_breaker_stats().remaining_rq.get() == 1024
    })
    .await;
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(stats.upstream_rq_pending_active.get(), 0);
    assert_eq!(breakers.rq_pending_open.get(), 0);
    assert_eq!(breakers.remaining_pending.get(), 1);
    // The idle pooled connection still holds the only connection slot, as in Envoy.
    assert_eq!(breakers.cx_open.get(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_of_other_endpoints_make_room_for_a_pending_request() {
    let a = origin("a", Pace::Fast).await;
    let b = origin("b", Pace::Fast).await;
    let cluster = cluster(
        "breaker_evict",
        &[&a, &b],
        CircuitBreakers::DEFAULT.max_connections(1),
    );
    let (server, proxy) = start_proxy(cluster, ROUTE);

    // Round robin: one request to each endpoint, then again. Each time the only slot
    // is held by the other endpoint's idle connection, which is closed to make room.
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let response = within("request", get(proxy)).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        bodies.push(response.rsplit("\r\n\r\n").next().unwrap().to_owned());
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "a", "b", "b"]);
    let stats = cluster.stats();
    assert_eq!(stats.upstream_cx_total.get(), 4);
    assert_eq!(stats.upstream_cx_overflow.get(), 3);
    assert_eq!(stats.upstream_rq_pending_overflow.get(), 0);
    eventually("evicted connections closed", || {
        stats.upstream_cx_active.get() == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn try_retry_respects_max_retries() {
    let cluster = leak(Cluster::new(
        "breaker_retries",
        Vec::new(),
        ClusterOptions::DEFAULT.circuit_breakers(CircuitBreakers::DEFAULT.max_retries(2)),
    ));
    let first = cluster.try_retry().unwrap();
    let second = cluster.try_retry().unwrap();
    assert!(cluster.try_retry().is_none());
    assert_eq!(cluster.stats().upstream_rq_retry_overflow.get(), 1);
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(breakers.rq_retry_open.get(), 1);
    assert_eq!(breakers.remaining_retries.get(), 0);
    drop(first);
    let third = cluster.try_retry().unwrap();
    drop((second, third));
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(breakers.rq_retry_open.get(), 0);
    assert_eq!(breakers.remaining_retries.get(), 2);
}

#[tokio::test]
async fn try_retry_follows_the_retry_budget_of_requests_in_flight() {
    let slow = origin("slow", Pace::HeadAfterGate).await;
    let budget = RetryBudget {
        budget_percent: 50,
        min_retry_concurrency: 1,
    };
    let cluster = cluster(
        "breaker_budget",
        &[&slow],
        CircuitBreakers::DEFAULT.retry_budget(budget),
    );
    let (server, proxy) = start_proxy(cluster, ROUTE);

    // Idle: the minimum concurrency applies.
    let only = cluster.try_retry().unwrap();
    assert!(cluster.try_retry().is_none());
    drop(only);

    let held: Vec<_> = (0..4).map(|_| spawn_get(proxy)).collect();
    eventually("four requests in flight", || {
        slow.hits.load(Ordering::SeqCst) == 4
    })
    .await;
    // 50 % of 4 requests in flight.
    let permits = [cluster.try_retry().unwrap(), cluster.try_retry().unwrap()];
    assert!(cluster.try_retry().is_none());
    assert_eq!(cluster.stats().upstream_rq_retry_overflow.get(), 2);
    assert_eq!(cluster.circuit_breaker_stats().rq_retry_open.get(), 1);
    drop(permits);

    slow.gate.add_permits(4);
    for request in held {
        assert_ok(&within("held request", request).await.unwrap(), "slow");
    }
    eventually("requests released", || {
        cluster.circuit_breaker_stats().remaining_rq.get() == 1024
    })
    .await;
    let breakers = cluster.circuit_breaker_stats();
    assert_eq!(open(&breakers), (0, 0, 0, 0));
    assert_eq!(breakers.remaining_retries.get(), 1, "back to the minimum");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_count_in_flight_until_the_response_body_ends() {
    let streaming = origin("body", Pace::BodyAfterGate).await;
    let cluster = leak(Cluster::new(
        "breaker_in_flight",
        vec![streaming.address.clone()],
        ClusterOptions::DEFAULT.lb(LbPolicy::LEAST_REQUEST),
    ));
    let (server, proxy) = start_proxy(cluster, ROUTE);
    let endpoint = &cluster.endpoints()[0];

    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(GET.as_bytes()).await.unwrap();
    // Read the head: the body is held back by the origin.
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within("response head", stream.read_exact(&mut byte))
            .await
            .unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // The head has arrived, the body has not: still one request in flight.
    assert_eq!(endpoint.active_requests(), 1);
    assert_eq!(cluster.circuit_breaker_stats().remaining_rq.get(), 1023);
    assert_eq!(cluster.stats().upstream_rq_active.get(), 1);

    streaming.gate.add_permits(1);
    let mut body = String::new();
    within("response body", stream.read_to_string(&mut body))
        .await
        .unwrap();
    assert_eq!(body, "body");
    eventually("the request ends with its body", || {
        endpoint.active_requests() == 0 && cluster.stats().upstream_rq_active.get() == 0
    })
    .await;
    assert_eq!(cluster.circuit_breaker_stats().remaining_rq.get(), 1024);

    // A client that goes away mid-body releases the request too.
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(GET.as_bytes()).await.unwrap();
    within("response head", stream.read_exact(&mut byte))
        .await
        .unwrap();
    assert_eq!(endpoint.active_requests(), 1);
    drop(stream);
    eventually("the abandoned request is released", || {
        endpoint.active_requests() == 0
    })
    .await;
    assert_eq!(cluster.circuit_breaker_stats().rq_open.get(), 0);
    streaming.gate.add_permits(1);
    server.shutdown().await;
}

/// Echoes bytes back until end of stream.
async fn echo_origin() -> (EndpointAddress, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    (address, task)
}

#[tokio::test]
async fn the_tcp_proxy_respects_max_connections() {
    let (address, origin) = echo_origin().await;
    let cluster = Arc::new(Cluster::new(
        "breaker_tcp",
        vec![address],
        ClusterOptions::DEFAULT.circuit_breakers(CircuitBreakers::DEFAULT.max_connections(1)),
    ));
    let mut server = Server::new(ServerSettings::default());
    let listener = ListenerConfig::new("tcp", "127.0.0.1:0".parse().unwrap());
    let tcp = TcpProxy::new("tcp", Arc::clone(&cluster), TcpProxyOptions::DEFAULT);
    let BindAddress::Tcp(proxy) = server.tcp(&listener, (), tcp).unwrap() else {
        panic!("expected a TCP listener")
    };

    let mut first = TcpStream::connect(proxy).await.unwrap();
    first.write_all(b"ping").await.unwrap();
    let mut echoed = [0; 4];
    within("echo", first.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(cluster.circuit_breaker_stats().cx_open.get(), 1);

    // The second connection is closed without reaching the origin.
    let mut second = TcpStream::connect(proxy).await.unwrap();
    let mut rest = Vec::new();
    let read = within("refused connection closes", second.read_to_end(&mut rest)).await;
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    assert_eq!(cluster.stats().upstream_cx_overflow.get(), 1);
    assert_eq!(cluster.stats().upstream_cx_total.get(), 1);

    // Once the first closes, its slot is free again.
    drop(first);
    eventually("slot released", || {
        cluster.circuit_breaker_stats().cx_open.get() == 0
    })
    .await;
    let mut third = TcpStream::connect(proxy).await.unwrap();
    third.write_all(b"pong").await.unwrap();
    within("echo", third.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"pong");
    drop(third);
    server.shutdown().await;
    origin.abort();
}
