//! The runtime's local replies, driven in-process with a hand-written router and a real
//! TCP client. The DSL cannot express a cluster without endpoints (it is a compile
//! error), so `503 UH` is reached here through the public runtime API.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::sync::Arc;

use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::route::RoutePolicy;
use support::exchange;

#[tokio::test]
async fn cluster_without_endpoints_answers_503_uh_and_unmatched_path_404_nr() {
    let empty = Arc::new(Cluster::new("empty", Vec::new(), ClusterOptions::DEFAULT));
    let (server, address) = support::serve_routes(vec![(
        "/empty",
        empty,
        RoutePolicy::new("test/empty/0", None),
    )]);

    let response = exchange(
        address,
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
        address,
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
