//! Many HTTP/2 streams on one client connection, which the server runs on that
//! connection's task (`server/streams.rs`): every stream is answered, and streams the
//! client resets while their origin holds the answer leave the others, and the
//! connection, working.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http2::SendRequest;
use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::server::Server;
use proxy_core::stats::ListenerStats;
use support::{Pace, RawOrigin, eventually, h2_get, h2c_client, leak, start_proxy, within};
use tokio::task::JoinHandle;

/// More streams than the server lets run at once (hyper's default, 200).
const STREAMS: usize = 300;

type Client = SendRequest<Empty<Bytes>>;
type Answer = Result<(http::StatusCode, Bytes), hyper::Error>;

/// `count` concurrent `GET`s on `client`'s connection, each on a task of its own
/// (aborting one resets its stream).
fn open_streams(client: &Client, count: usize) -> Vec<JoinHandle<Answer>> {
    (0..count)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let response = client
                    .send_request(h2_get(&format!("/?stream={i}")))
                    .await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok((status, body))
            })
        })
        .collect()
}

/// An origin answering "ok" at `pace`, a proxy in front of it, its listener's stats and
/// an h2c client connection to it.
async fn proxied(pace: Pace) -> (RawOrigin, Server, Arc<ListenerStats>, Client) {
    let origin = RawOrigin::start("ok", 200, pace).await;
    let cluster: &'static Cluster = leak(Cluster::new(
        "origin",
        vec![origin.address.clone()],
        ClusterOptions::DEFAULT,
    ));
    let (server, proxy) = start_proxy(cluster, "origin");
    let listener = Arc::clone(&server.listener_stats()[0].1);
    let client = h2c_client(proxy).await;
    (origin, server, listener, client)
}

/// Waits for each stream and checks it got the origin's 200 "ok".
async fn answered_ok(streams: Vec<JoinHandle<Answer>>) {
    for stream in streams {
        let (status, body) = within("a stream's response", stream)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "ok");
    }
}

#[tokio::test]
async fn every_stream_of_a_busy_connection_is_answered() {
    let (origin, _server, listener, client) = proxied(Pace::Fast).await;

    let streams = open_streams(&client, STREAMS);
    answered_ok(streams).await;
    assert_eq!(origin.hits.load(Ordering::SeqCst), STREAMS);
    eventually("no request left in flight", || {
        listener.downstream_rq_active.get() == 0
    })
    .await;
}

#[tokio::test]
async fn reset_streams_leave_the_others_and_the_connection_working() {
    const HELD: usize = 40;
    let (origin, _server, listener, client) = proxied(Pace::HeadAfterGate).await;

    let mut streams = open_streams(&client, HELD);
    eventually("the origin holds every request", || {
        origin.hits.load(Ordering::SeqCst) == HELD
    })
    .await;
    // Every other stream is reset (its client task dropped) while the origin holds it.
    let kept: Vec<_> = streams
        .drain(..)
        .enumerate()
        .filter_map(|(i, stream)| {
            if i % 2 == 0 {
                stream.abort();
                None
            } else {
                Some(stream)
            }
        })
        .collect();
    eventually("the proxy gives the reset streams up", || {
        listener.downstream_rq_active.get() == (HELD / 2) as i64
    })
    .await;
    origin.gate.add_permits(HELD + 1);

    answered_ok(kept).await;
    let mut client = client;
    let response = within("a new stream", client.send_request(h2_get("/?after")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}
