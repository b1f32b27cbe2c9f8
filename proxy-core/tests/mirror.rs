//! Request mirroring and weighted splits (`RouteAction::Split` over `Targets`), through
//! a real `Server` with a hand-written router in front of real in-test origins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proxy_core::config::EndpointAddress;
use proxy_core::route::{
    RetryOn, RetryPolicy, Route, RouteAction, RoutePolicy, RouteRequest, Router, Targets,
    Unfiltered,
};
use proxy_core::server::Server;
use support::{
    Blackhole, Client, STEP, cluster, eventually, leak, nowhere, retry_on, route_policy, within,
};
use tokio::sync::mpsc;

/// What an origin saw of one request.
#[derive(Debug)]
struct Seen {
    host: String,
    path: String,
    body: Bytes,
}

/// An in-test HTTP/1.1 origin answering `200 <name>` with `x-origin: <name>`, and
/// reporting every request it gets.
struct Origin {
    address: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Origin {
    async fn start(name: &'static str) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (report, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let report = report.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        let report = report.clone();
                        async move {
                            let (head, body) = request.into_parts();
                            let body: hyper::body::Incoming = body;
                            let body = body.collect().await.unwrap().to_bytes();
                            let host = head.headers.get("host").map_or("", |h| h.to_str().unwrap());
                            let _ = report.send(Seen {
                                host: host.to_owned(),
                                path: head.uri.path().to_owned(),
                                body,
                            });
                            let response = Response::builder()
                                .header("x-origin", name)
                                .body(Full::new(Bytes::from(name)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Origin { address, seen }
    }

    fn endpoint(&self) -> EndpointAddress {
        EndpointAddress::Tcp(self.address)
    }

    async fn next(&mut self) -> Seen {
        within("the origin gets the request", self.seen.recv())
            .await
            .unwrap()
    }
}

/// Every request goes to one `Split`.
struct SplitRouter {
    targets: Targets,
    policy: RoutePolicy,
}

impl Router for SplitRouter {
    fn route<Q: RouteRequest + ?Sized>(&self, _: &Q) -> Route<'_> {
        Route {
            action: RouteAction::Split(&self.targets, &self.policy),
            chain: 0,
            name: self.policy.name,
        }
    }
}

/// A proxy in front of `targets`; returns the server (kept alive by the caller) and its
/// address.
fn proxy(targets: Targets, policy: RoutePolicy) -> (Server, SocketAddr) {
    support::serve(leak(Unfiltered(SplitRouter { targets, policy })))
}

fn request(method: &str, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.example:8080")
        .body(Full::new(body))
        .unwrap()
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| u8::try_from(i * 7 % 253).unwrap())
        .collect()
}

#[tokio::test]
async fn mirror_gets_a_copy_with_shadow_host() {
    let mut primary = Origin::start("primary").await;
    let mut shadow = Origin::start("shadow").await;
    let primary_cluster = cluster("primary", vec![primary.endpoint()]);
    let shadow_cluster = cluster("shadow", vec![shadow.endpoint()]);
    let targets = Targets::new(vec![(Arc::clone(&primary_cluster), 1)])
        .mirror(Arc::clone(&shadow_cluster), 100);
    let (_server, address) = proxy(targets, route_policy("test/mirror/0"));
    let mut client = Client::connect(address).await;

    let body = payload(20_000);
    let (head, answer) = client.send(request("POST", "/upload", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(answer, "primary");
    let original = primary.next().await;
    assert_eq!(original.host, "app.example:8080");
    assert_eq!(original.body, body);

    let copy = shadow.next().await;
    assert_eq!(copy.host, "app.example-shadow:8080");
    assert_eq!(copy.path, "/upload");
    assert_eq!(copy.body, body);

    // A bodiless request is mirrored too.
    let (head, _) = client.send(request("GET", "/get", Bytes::new())).await;
    assert_eq!(head.status, StatusCode::OK);
    let copy = shadow.next().await;
    assert_eq!((copy.path.as_str(), copy.body.len()), ("/get", 0));
    assert_eq!(primary_cluster.stats().upstream_rq_total.get(), 2);
}

#[tokio::test]
async fn hanging_mirror_does_not_delay_the_primary() {
    let mut primary = Origin::start("primary").await;
    let hole = Blackhole::start().await;
    let shadow_cluster = cluster("shadow", vec![hole.endpoint()]);
    let targets = Targets::new(vec![(cluster("primary", vec![primary.endpoint()]), 1)])
        .mirror(Arc::clone(&shadow_cluster), 100);
    // The mirror would wait up to the route timeout for its answer.
    let policy = RoutePolicy::new("test/mirror/1", Some(Duration::from_secs(3_600)));
    let (_server, address) = proxy(targets, policy);
    let mut client = Client::connect(address).await;

    let started = Instant::now();
    for _ in 0..3 {
        let (head, answer) = client.send(request("POST", "/", payload(100))).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(answer, "primary");
        primary.next().await;
    }
    // Three answers while every mirrored copy is still waiting.
    assert!(started.elapsed() < STEP / 2, "{:?}", started.elapsed());
    for copies in 1..=3 {
        eventually("a mirrored copy reaches the blackhole", || {
            hole.accepted() >= copies
        })
        .await;
    }
    assert_eq!(shadow_cluster.stats().upstream_rq_total.get(), 3);
    assert_eq!(shadow_cluster.stats().upstream_rq_2xx.get(), 0);
}

#[tokio::test]
async fn mirror_that_is_down_is_counted_in_its_own_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Origin::start("primary").await;
    let shadow_cluster = cluster("shadow", vec![nowhere(&dir)]);
    let primary_cluster = cluster("primary", vec![primary.endpoint()]);
    let targets = Targets::new(vec![(Arc::clone(&primary_cluster), 1)])
        .mirror(Arc::clone(&shadow_cluster), 100);
    let (server, address) = proxy(targets, route_policy("test/mirror/2"));
    let mut client = Client::connect(address).await;

    let (head, answer) = client.send(request("GET", "/", Bytes::new())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(answer, "primary");
    primary.next().await;
    // The mirror's task runs on its own; wait for its failure to be counted.
    eventually("the mirror's connect failure is counted", || {
        shadow_cluster.stats().upstream_cx_connect_fail.get() != 0
    })
    .await;
    let listener = &server.listener_stats()[0].1;
    assert_eq!(listener.upstream_connect_fail.get(), 0);
    assert_eq!(listener.downstream_rq_2xx.get(), 1);
    assert_eq!(primary_cluster.stats().upstream_cx_connect_fail.get(), 0);
}

#[tokio::test]
async fn body_over_the_buffer_is_not_mirrored() {
    let mut primary = Origin::start("primary").await;
    let mut shadow = Origin::start("shadow").await;
    let targets = Targets::new(vec![(cluster("primary", vec![primary.endpoint()]), 1)])
        .mirror(cluster("shadow", vec![shadow.endpoint()]), 100);
    let (_server, address) = proxy(targets, route_policy("test/mirror/3"));
    let mut client = Client::connect(address).await;

    // Over the 64 KiB default: the primary gets it whole, the mirror nothing.
    let large = payload(RetryPolicy::DEFAULT_MAX_BUFFERED_BODY + 1);
    let (head, _) = client.send(request("POST", "/large", large.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(primary.next().await.body, large);
    let (head, _) = client.send(request("POST", "/small", payload(10))).await;
    assert_eq!(head.status, StatusCode::OK);
    primary.next().await;
    // Copies are sent in request order on tasks spawned before each primary attempt;
    // the large request's would have been the first.
    assert_eq!(shadow.next().await.path, "/small");
    assert!(shadow.seen.try_recv().is_err());
}

#[tokio::test]
async fn mirror_follows_its_percentage() {
    let mut primary = Origin::start("primary").await;
    let mut always = Origin::start("always").await;
    let mut never = Origin::start("never").await;
    let never_cluster = cluster("never", vec![never.endpoint()]);
    let targets = Targets::new(vec![(cluster("primary", vec![primary.endpoint()]), 1)])
        .mirror(Arc::clone(&never_cluster), 0)
        .mirror(cluster("always", vec![always.endpoint()]), 100);
    let (_server, address) = proxy(targets, route_policy("test/mirror/4"));
    let mut client = Client::connect(address).await;

    for _ in 0..20 {
        let (head, _) = client.send(request("GET", "/", Bytes::new())).await;
        assert_eq!(head.status, StatusCode::OK);
        primary.next().await;
        always.next().await;
    }
    assert_eq!(never_cluster.stats().upstream_rq_total.get(), 0);
    assert!(never.seen.try_recv().is_err());
}

#[tokio::test]
async fn mirror_gets_one_copy_when_the_primary_is_retried() {
    let mut shadow = Origin::start("shadow").await;
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Origin::start("primary").await;
    let primary_cluster = cluster("primary", vec![nowhere(&dir), primary.endpoint()]);
    let targets = Targets::new(vec![(Arc::clone(&primary_cluster), 1)])
        .mirror(cluster("shadow", vec![shadow.endpoint()]), 100);
    let policy = route_policy("test/mirror/5").retry_policy(retry_on(RetryOn::CONNECT_FAILURE));
    let (_server, address) = proxy(targets, policy);
    let mut client = Client::connect(address).await;

    let body = payload(3_000);
    let (head, _) = client.send(request("PUT", "/once", body.clone())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(primary.next().await.body, body);
    assert_eq!(primary_cluster.stats().upstream_rq_retry.get(), 1);
    assert_eq!(shadow.next().await.body, body);
    let (head, _) = client.send(request("GET", "/next", Bytes::new())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(shadow.next().await.path, "/next");
}

#[tokio::test]
async fn weighted_split_follows_the_weights() {
    let heavy = Origin::start("heavy").await;
    let light = Origin::start("light").await;
    let heavy_cluster = cluster("heavy", vec![heavy.endpoint()]);
    let light_cluster = cluster("light", vec![light.endpoint()]);
    let targets = Targets::new(vec![
        (Arc::clone(&heavy_cluster), 80),
        (Arc::clone(&light_cluster), 20),
    ]);
    let (_server, address) = proxy(targets, route_policy("test/split/0"));
    let mut client = Client::connect(address).await;

    const REQUESTS: u64 = 2_000;
    for _ in 0..REQUESTS {
        let (head, _) = client.send(request("GET", "/", Bytes::new())).await;
        assert_eq!(head.status, StatusCode::OK);
    }
    let to_heavy = heavy_cluster.stats().upstream_rq_total.get();
    let to_light = light_cluster.stats().upstream_rq_total.get();
    assert_eq!(to_heavy + to_light, REQUESTS);
    // Binomial(2000, 0.8): mean 1600, standard deviation ≈ 17.9; ±150 is over 8 σ.
    assert!(to_heavy.abs_diff(1_600) <= 150, "{to_heavy} / {to_light}");
}
