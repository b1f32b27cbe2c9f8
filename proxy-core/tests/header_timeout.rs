//! The native codec's request-head deadline (`ServerSettings::header_read_timeout`): a
//! connection that does not deliver a whole head in time is closed, whether it is idle
//! between requests or stalled half-way through a head. The connection task polls its
//! timer only when the task's waker changed or the timer fired, so these tests are what
//! shows a fired timer is still seen.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy_core::config::BindAddress;
use proxy_core::listener::ListenerConfig;
use proxy_core::route::Unfiltered;
use proxy_core::server::{Server, ServerSettings};
use support::{Routes, leak, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_millis(300);

/// A listener with no routes (every request gets a local `404`) and a short deadline.
fn proxy() -> (Server, SocketAddr) {
    let mut server = Server::new(ServerSettings {
        header_read_timeout: DEADLINE,
        ..ServerSettings::default()
    });
    let pipeline = leak(Unfiltered(Routes::<std::sync::Arc<_>>(Vec::new())));
    let listener = ListenerConfig::new("test", "127.0.0.1:0".parse().unwrap());
    let BindAddress::Tcp(address) = server.http(&listener, pipeline).unwrap() else {
        panic!("expected a TCP listener")
    };
    (server, address)
}

/// Reads until the proxy closes the connection; returns what came.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await.unwrap();
    String::from_utf8(received).unwrap()
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_deadline_after_its_last_response() {
    let (server, address) = proxy();
    let mut stream = TcpStream::connect(address).await.unwrap();
    // Two requests, the second once the first is answered: the timer armed for the
    // first wait fires during the second and must be re-armed, not taken as expiry.
    let mut last_sent = Instant::now();
    for _ in 0..2 {
        last_sent = Instant::now();
        stream
            .write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        within("a response", stream.read_exact(&mut head))
            .await
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 404");
        let mut rest = [0u8; 1];
        // Drain the rest of this response (a local reply, a few hundred bytes).
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut rest).await.unwrap();
            seen.push(rest[0]);
        }
        let length = String::from_utf8_lossy(&seen)
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
    }
    let rest = within("the close", read_to_close(&mut stream)).await;
    assert_eq!(rest, "", "nothing is sent before the close");
    // The proxy's wait began after it answered, which is after the request was sent.
    assert!(
        last_sent.elapsed() >= DEADLINE,
        "closed {:?} after the last request, before the deadline",
        last_sent.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_head_stalled_half_way_is_closed_at_the_deadline() {
    let (server, address) = proxy();
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
    let rest = within("the close", read_to_close(&mut stream)).await;
    assert_eq!(rest, "", "no response to a head that never completed");
    assert!(started.elapsed() >= DEADLINE);
    server.shutdown().await;
}
