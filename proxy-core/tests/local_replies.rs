//! The runtime's local replies, driven in-process with a hand-written router and a real
//! TCP client. The DSL cannot express a cluster without endpoints (it is a compile
//! error), so `503 UH` is reached here through the public runtime API.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

use std::sync::Arc;

use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::config::BindAddress;
use proxy_core::listener::ListenerConfig;
use proxy_core::route::{Route, RouteAction, RoutePolicy, Router, Unfiltered};
use proxy_core::server::{Server, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct EmptyClusterRouter {
    empty: Arc<Cluster>,
}

impl Router for EmptyClusterRouter {
    fn route(&self, request: &http::request::Parts) -> Route<'_> {
        static POLICY: RoutePolicy = RoutePolicy::new("test/empty/0", None);
        match request.uri.path() {
            "/empty" => Route {
                action: RouteAction::Forward(&self.empty, &POLICY),
                chain: 0,
                name: POLICY.name,
            },
            _ => Route::none(0),
        }
    }
}

async fn exchange(address: &BindAddress, request: &str) -> String {
    let BindAddress::Tcp(address) = address else {
        panic!("expected TCP, got {address}")
    };
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn cluster_without_endpoints_answers_503_uh_and_unmatched_path_404_nr() {
    let empty = Arc::new(Cluster::new("empty", Vec::new(), ClusterOptions::DEFAULT));
    let mut server = Server::new(ServerSettings::default());
    let listener = ListenerConfig::new("test", "127.0.0.1:0".parse().unwrap());
    // Pipelines live for the process in a real proxy; a test leaks one the same way.
    let pipeline = Box::leak(Box::new(Unfiltered(EmptyClusterRouter { empty })));
    let address = server.http(&listener, pipeline).unwrap();

    let response = exchange(
        &address,
        "GET /empty HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(
        response.contains("\r\nx-proxy-response-flags: UH\r\n"),
        "{response}"
    );
    assert!(
        response.contains("\r\ncontent-type: text/plain\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\nno healthy upstream\n"),
        "{response}"
    );

    let response = exchange(
        &address,
        "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{response}"
    );
    assert!(
        response.contains("\r\nx-proxy-response-flags: NR\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nno route\n"), "{response}");

    let stats = Arc::clone(&server.listener_stats()[0].1);
    server.shutdown().await;
    assert_eq!(stats.no_healthy_upstream.get(), 1);
    assert_eq!(stats.no_route.get(), 1);
    assert_eq!(stats.downstream_rq_5xx.get(), 1);
    assert_eq!(stats.downstream_rq_4xx.get(), 1);
}
