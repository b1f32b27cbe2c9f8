//! A client gives up — an HTTP/2 stream reset, an HTTP/1.1 connection closed (the
//! relay path) — while the proxy awaits the origin's answer to a request that went out
//! whole. The origin answers anyway; the proxy reads that answer
//! in the background and keeps the HTTP/1.1 connection for the next request, unless the
//! answer is too long to be worth reading.
//!
//! The cluster allows one connection (`max_connections: 1`), so the next request waits
//! for it: it goes out on the same connection if that came back to the pool (and the
//! waiter was woken), and on a second one only if the first was closed. The origin
//! counts the connections it accepted.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::BodyExt as _;
use proxy_core::cluster::{CircuitBreakers, Cluster, ClusterOptions};
use support::{
    Pace, RawOrigin, eventually, h2_get, h2c_client, leak, start_proxy, status_and_body, within,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// How the first client gives its request up.
#[derive(Clone, Copy)]
enum Client {
    /// An HTTP/2 stream, reset.
    H2c,
    /// An HTTP/1.1 connection (the native codec's relay path), closed.
    Http1,
}

/// Sends a request the origin holds, resets its stream once the origin has it and the
/// proxy has given it up, lets the origin answer it, then sends another request; the
/// origin's connection count after that answer.
async fn connections_after_an_abandoned_exchange(client: Client, body: &'static str) -> usize {
    let origin = RawOrigin::start(body, 200, Pace::HeadAfterGate).await;
    let options =
        ClusterOptions::DEFAULT.circuit_breakers(CircuitBreakers::DEFAULT.max_connections(1));
    let cluster: &'static Cluster =
        leak(Cluster::new("held", vec![origin.address.clone()], options));
    let (server, proxy) = start_proxy(cluster, "held");
    let listener = Arc::clone(&server.listener_stats()[0].1);
    let has_first_request = || origin.hits.load(Ordering::SeqCst) == 1;

    let (status, received) = match client {
        Client::H2c => {
            let mut client = h2c_client(proxy).await;
            let mut abandoning = client.clone();
            let abandoned = tokio::spawn(async move { abandoning.send_request(h2_get("/")).await });
            eventually("the origin has the first request", has_first_request).await;
            abandoned.abort();
            // The proxy drops the request when it reads the client's reset.
            eventually("the proxy gives the first request up", || {
                listener.downstream_rq_active.get() == 0
            })
            .await;
            origin.gate.add_permits(2);
            let response = within("the second response", client.send_request(h2_get("/")))
                .await
                .unwrap();
            let status = response.status().as_u16();
            let received = response.into_body().collect().await.unwrap().to_bytes();
            (status, received.len())
        }
        Client::Http1 => {
            let mut abandoning = TcpStream::connect(proxy).await.unwrap();
            abandoning
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            eventually("the origin has the first request", has_first_request).await;
            drop(abandoning);
            eventually("the proxy gives the first request up", || {
                listener.downstream_rq_active.get() == 0
            })
            .await;
            origin.gate.add_permits(2);
            let response = within("the second response", support::get(proxy)).await;
            let (status, received) = status_and_body(&response);
            (status, received.len())
        }
    };
    assert_eq!(status, 200);
    assert_eq!(received, body.len());
    eventually("the first request's slot is released", || {
        cluster.stats().upstream_rq_active.get() == 0
    })
    .await;
    origin.connections.load(Ordering::SeqCst)
}

#[tokio::test]
async fn the_answer_is_read_and_the_connection_reused() {
    assert_eq!(
        connections_after_an_abandoned_exchange(Client::H2c, "ok").await,
        1
    );
}

#[tokio::test]
async fn on_the_relay_path_too() {
    assert_eq!(
        connections_after_an_abandoned_exchange(Client::Http1, "ok").await,
        1
    );
}

#[tokio::test]
async fn an_answer_past_the_body_limit_closes_the_connection() {
    // Past the 64 KiB the proxy reads to keep a connection.
    let long = leak("x".repeat(80 * 1024)).as_str();
    assert_eq!(
        connections_after_an_abandoned_exchange(Client::H2c, long).await,
        2
    );
    assert_eq!(
        connections_after_an_abandoned_exchange(Client::Http1, long).await,
        2
    );
}
