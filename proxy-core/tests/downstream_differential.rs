//! Differential test of the downstream HTTP/1.1 server codec: the same raw bytes go to two
//! in-process proxies that differ only in [`ServerSettings::http1`] (hyper's server, the
//! reference, and the crate's native codec), each in front of its own recording origin.
//! What each client received and what each origin received must agree, entry by entry,
//! except on the entries listed in [`DIVERGENCES`].
//!
//! Every corpus entry ends in a way that makes the proxy close the connection (a last
//! request with `Connection: close`, HTTP/1.0 without keep-alive, a malformed request the
//! proxy refuses, or the client's own FIN), so the client reads until the end of the
//! stream. A smuggled request hidden in an entry says `Connection: close` too: if a proxy
//! does serve it, the difference shows in the comparison instead of as a hang.
//!
//! Compared, per entry: each response the client read (status, version, headers
//! lower-cased and sorted without `date`, which framing delimited the body and the
//! decoded body, whether the connection closed after it) and each request the origin
//! read (method, target, version, headers sorted without `x-request-id`, decoded body,
//! trailers; or the part of a request a proxy abandoned). All mismatches are reported
//! at once, both sides shown.
//!
//! `DIFFERENTIAL_BOTH_HYPER=1` serves both proxies with hyper: every entry must then
//! agree, which checks the harness itself (origin parsing, normalization, settling).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy_core::cluster::Cluster;
use proxy_core::config::{BindAddress, EndpointAddress};
use proxy_core::listener::ListenerConfig;
use proxy_core::route::{Route, RouteAction, RoutePolicy, RouteRequest, Router, Unfiltered};
use proxy_core::server::{Http1Codec, Server, ServerSettings};
use support::within;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// The corpus

/// Entries on which the native codec is known to differ from hyper: (entry name, why).
/// A listed entry must differ: one that agrees again is reported, so the list stays true.
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "Transfer-Encoding: gzip, chunked",
        "501 from the native codec (RFC 9112 §6.1: a coding it cannot decode); hyper accepts, \
         and the proxy's re-framing then sent the origin a gzip-coded body as plain chunked",
    ),
    (
        "two Transfer-Encoding fields, gzip then chunked",
        "as above",
    ),
    (
        "no Host header on HTTP/1.1",
        "400 from the native codec (RFC 9112 §3.2); hyper accepts the request",
    ),
    (
        "Host twice with different values",
        "400 from the native codec (RFC 9112 §3.2); hyper forwards both values",
    ),
    (
        "a 70 KiB header value",
        "the native codec refuses heads over 64 KiB with 431 (Envoy's default limit is 60 KiB); \
     hyper buffers up to ~400 KiB",
    ),
];

/// Entries whose upstream side may differ, by when the bad bytes arrive: the client gets
/// the same 400 from both, but hyper has already sent the origin the head and the chunks
/// before the bad one, where the native codec, which sends the head together with the
/// body bytes that are ready, sends the origin nothing when the error is in the same
/// read. Either outcome is accepted here; everything the client sees must still agree.
const UPSTREAM_MAY_DIFFER: &[&str] = &[
    "missing CRLF after chunk data",
    "chunk data longer than the chunk size",
    "chunk data ending in a bare LF",
    "a trailer line without a colon",
    "a body shorter than its Content-Length, then FIN",
    "a chunked body cut short, then FIN",
];

/// One raw client conversation.
struct Entry {
    name: &'static str,
    bytes: Vec<u8>,
    /// After writing, the client shuts its writing side (FIN); otherwise it keeps it open
    /// until the proxy closes.
    half_close: bool,
}

fn entry(name: &'static str, bytes: impl Into<Vec<u8>>) -> Entry {
    Entry {
        name,
        bytes: bytes.into(),
        half_close: false,
    }
}

fn then_fin(name: &'static str, bytes: impl Into<Vec<u8>>) -> Entry {
    Entry {
        half_close: true,
        ..entry(name, bytes)
    }
}

/// `name: value` lines for `x-0` .. `x-{count - 1}`.
fn many_headers(count: usize) -> String {
    (0..count).map(|i| format!("X-{i}: v\r\n")).collect()
}

fn corpus() -> Vec<Entry> {
    let big_value = "a".repeat(70 * 1024);
    let big_target = "a".repeat(70 * 1024);
    vec![
        // ----- plain requests
        entry(
            "simple GET",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "GET with query",
            "GET /search?q=a%20b&x=1&x=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "absolute-form target",
            "GET http://t/x?y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "absolute-form target with a different Host",
            "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "HTTP/1.0 GET without keep-alive",
            "GET / HTTP/1.0\r\nHost: t\r\n\r\n",
        ),
        entry(
            "HTTP/1.0 GET with keep-alive, then one with close",
            "GET /first HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n\
             GET /second HTTP/1.0\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry("HTTP/1.0 request line only", "GET / HTTP/1.0\r\n\r\n"),
        entry(
            "three pipelined GETs in one write",
            "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /2 HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a request pipelined after Connection: close is not served",
            "GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
             GET /after-close HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "Connection: keep-alive, close",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n",
        ),
        entry(
            "Connection: CLOSE in capitals",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: CLOSE\r\n\r\n",
        ),
        entry(
            "hop-by-hop headers named in Connection",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
             X-End: 2\r\n\r\n",
        ),
        entry(
            "OPTIONS *",
            "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "CONNECT authority-form",
            "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "HEAD /",
            "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a request to /204",
            "GET /204 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "lowercase method token",
            "get / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "extension method token",
            "PURGE-IT / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        // ----- request bodies
        entry(
            "POST with Content-Length body",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\n\
             hello world",
        ),
        entry(
            "POST with Content-Length: 0",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "POST chunked with chunk extensions and a trailer",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\
             Connection: close\r\n\r\n\
             5;name=value\r\nhello\r\n6;a;b=\"q\"\r\n world\r\n0;last\r\nX-Trailer: t1\r\n\r\n",
        ),
        entry(
            "POST chunked with TE: trailers and a trailer",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
        ),
        entry(
            "POST chunked with only the last chunk",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             0\r\n\r\n",
        ),
        entry(
            "POST with Expect: 100-continue, head and body together",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\nhello",
        ),
        entry(
            "GET with a Content-Length body",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "POST with Content-Length, then a pipelined GET",
            "POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
             GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "POST chunked, then a pipelined GET",
            "POST /1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
             GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a body that is itself a request",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 47\r\nConnection: close\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: t\r\nX-Pad: 123\r\n\r\n",
        ),
        // ----- framing conflicts (smuggling)
        entry(
            "both Content-Length and chunked",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "both chunked and Content-Length, chunked first",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding: xchunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding: chunked, identity",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding: identity with Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello",
        ),
        entry(
            "Transfer-Encoding: Chunked in capitals",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding: gzip, chunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "two Transfer-Encoding fields, gzip then chunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "two Transfer-Encoding fields, chunked then identity",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding with a tab before the value",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding with a space before the colon, and Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\n0\r\n\r\n",
        ),
        entry(
            "Transfer-Encoding: chunked on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "two different Content-Lengths",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\
             Connection: close\r\n\r\nhello!",
        ),
        entry(
            "two equal Content-Lengths",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length: 5, 5",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length: 5, 6",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\nConnection: close\r\n\r\nhello!",
        ),
        entry(
            "Content-Length: +5",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length: -1",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length: 0x5",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length: 005",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length empty",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \r\nConnection: close\r\n\r\nhello",
        ),
        entry(
            "Content-Length overflowing u64",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\
             Connection: close\r\n\r\nhello",
        ),
        // ----- chunked bodies
        entry(
            "chunk size zz",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             zz\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk size overflow",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk size 0x5",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             0x5\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk size with trailing whitespace",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5 \r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk size with leading whitespace",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             \x205\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "missing CRLF after chunk data",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello0\r\n\r\n",
        ),
        entry(
            "chunk data longer than the chunk size",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             3\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk size line ending in a bare LF",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "chunk data ending in a bare LF",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\n0\r\n\r\n",
        ),
        entry(
            "chunk extension with a bare LF inside",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5;a\nb\r\nhello\r\n0\r\n\r\n",
        ),
        entry(
            "a trailer carrying Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n",
        ),
        entry(
            "a trailer line without a colon",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nno colon here\r\n\r\n",
        ),
        // ----- header syntax
        entry(
            "NUL in a header value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Client: a\0b\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "bare CR in a header value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Client: a\rb\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "DEL in a header value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Client: a\x7fb\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "obs-text in a header value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Client: caf\xe9\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        entry(
            "a tab inside a header value and around it",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Client:\ta\tb\t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "an empty header value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Empty:\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "bare LF line endings throughout",
            "GET / HTTP/1.1\nHost: t\nX-Client: lf\nConnection: close\n\n",
        ),
        entry(
            "obs-fold header line",
            "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "obs-fold on the first header line",
            "GET / HTTP/1.1\r\n X-Lead: a\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "space before the colon",
            "GET / HTTP/1.1\r\nHost : t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "invalid char in a header name",
            "GET / HTTP/1.1\r\nHost: t\r\nX Y: 1\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a header line without a colon",
            "GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "an empty header name",
            "GET / HTTP/1.1\r\nHost: t\r\n: v\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a 70 KiB header value",
            format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big_value}\r\nConnection: close\r\n\r\n"),
        ),
        entry(
            "a 70 KiB request target",
            format!("GET /{big_target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        ),
        entry(
            "100 header fields",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
                many_headers(98)
            ),
        ),
        entry(
            "101 header fields",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
                many_headers(99)
            ),
        ),
        // ----- Host
        entry(
            "no Host header on HTTP/1.1",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "Host twice with different values",
            "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "an empty Host",
            "GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "Host with userinfo",
            "GET / HTTP/1.1\r\nHost: user@t\r\nConnection: close\r\n\r\n",
        ),
        // ----- request line
        entry(
            "invalid method token G@T",
            "G@T / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "lowercase http/1.1",
            "GET / http/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "HTTP/2.0 in the request line",
            "GET / HTTP/2.0\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "HTTP/1.2 in the request line",
            "GET / HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "an empty line before the request line",
            "\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a target with a fragment",
            "GET /a#b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a target containing a space",
            "GET /a b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a target containing NUL",
            "GET /a\0b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a target with non-ASCII bytes",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        entry(
            "two spaces after the method",
            "GET  / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a relative target without a slash",
            "GET a/b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "a request line without a version",
            "GET /\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        // ----- upgrades
        entry(
            "websocket upgrade on a route without upgrades, then a GET",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
             GET /after-upgrade HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        entry(
            "h2c upgrade with close",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        ),
        // ----- the client closes its side (FIN) after writing
        then_fin("nothing sent, then FIN", ""),
        then_fin(
            "a whole GET without close, then FIN",
            "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        then_fin(
            "a head cut short, then FIN",
            "GET / HTTP/1.1\r\nHost: t\r\n",
        ),
        then_fin(
            "a body shorter than its Content-Length, then FIN",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello",
        ),
        then_fin(
            "a chunked body cut short, then FIN",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The test

#[tokio::test]
async fn the_native_codec_agrees_with_hyper_on_every_entry_but_the_listed_ones() {
    let corpus = corpus();
    for (i, entry) in corpus.iter().enumerate() {
        assert!(
            corpus[..i].iter().all(|other| other.name != entry.name),
            "two corpus entries named `{}`",
            entry.name
        );
    }
    for (name, _) in DIVERGENCES {
        assert!(
            corpus.iter().any(|entry| entry.name == *name),
            "DIVERGENCES names `{name}`, which is not in the corpus"
        );
    }

    let hyper = Proxy::start(Http1Codec::Hyper).await;
    // Set, both proxies are hyper's: a check of the harness itself (every entry must
    // agree, DIVERGENCES ignored), e.g. after changing the corpus or the normalization.
    let self_check = std::env::var_os("DIFFERENTIAL_BOTH_HYPER").is_some();
    let second = if self_check {
        Http1Codec::Hyper
    } else {
        Http1Codec::Native
    };
    let native = Proxy::start(second).await;
    let mut report = Vec::new();
    for entry in &corpus {
        // Both at once (each proxy has its own origin); entries one after the other, so
        // what an origin received belongs to the entry that sent it.
        let (theirs, ours) = tokio::join!(hyper.run(entry), native.run(entry));
        if entry.name == "simple GET" {
            // The harness itself works: a plain request went through and came back.
            assert_eq!(theirs.forwarded.len(), 1, "{}", theirs.render());
            assert!(
                matches!(&theirs.answer.responses[..], [response] if response.status == 200),
                "{}",
                theirs.render()
            );
        }
        let listed = DIVERGENCES
            .iter()
            .find(|(name, _)| *name == entry.name && !self_check);
        let agree = theirs == ours
            || (!self_check
                && UPSTREAM_MAY_DIFFER.contains(&entry.name)
                && theirs.answer == ours.answer
                && ours.forwarded.is_empty());
        match (agree, listed) {
            (false, None) => report.push(format!(
                "`{}` differs\n  hyper:\n{}  native:\n{}",
                entry.name,
                theirs.render(),
                ours.render()
            )),
            (true, Some((_, why))) => report.push(format!(
                "`{}` is listed in DIVERGENCES ({why}) but agrees now: take it off the list\n  \
                 both:\n{}",
                entry.name,
                theirs.render()
            )),
            _ => {}
        }
    }
    assert!(
        report.is_empty(),
        "{} of {} entries disagree with DIVERGENCES:\n\n{}",
        report.len(),
        corpus.len(),
        report.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The proxies

/// Routes every path starting with `/` to one cluster; anything else (`*`, an
/// authority-form target) has no route.
struct UnderSlash {
    cluster: Arc<Cluster>,
    policy: RoutePolicy,
}

impl Router for UnderSlash {
    fn route<Q: RouteRequest + ?Sized>(&self, request: &Q) -> Route<'_> {
        if !request.path().starts_with('/') {
            return Route::none(0);
        }
        Route {
            action: RouteAction::Forward(&self.cluster, &self.policy),
            chain: 0,
            name: self.policy.name,
        }
    }
}

/// A proxy served by one HTTP/1.1 codec, in front of its own recording origin.
struct Proxy {
    codec: Http1Codec,
    address: SocketAddr,
    origin: Origin,
    _server: Server,
}

impl Proxy {
    async fn start(codec: Http1Codec) -> Proxy {
        let origin = Origin::start().await;
        let pipeline = support::leak(Unfiltered(UnderSlash {
            cluster: support::cluster("origin", vec![origin.address.clone()]),
            policy: support::route_policy("differential"),
        }));
        let mut server = Server::new(ServerSettings {
            http1: codec,
            ..ServerSettings::default()
        });
        let listener = ListenerConfig::new("test", "127.0.0.1:0".parse().unwrap());
        let BindAddress::Tcp(address) = server.http(&listener, pipeline).unwrap() else {
            panic!("expected a TCP listener")
        };
        Proxy {
            codec,
            address,
            origin,
            _server: server,
        }
    }

    /// Plays `entry` on a new connection; returns what the client and the origin saw.
    async fn run(&self, entry: &Entry) -> Outcome {
        let what = format!(
            "entry `{}` through the {:?} proxy: the proxy answers and closes",
            entry.name, self.codec
        );
        let (raw, reset) = within(&what, exchange(self.address, entry)).await;
        let origin_partial = self.origin.settle().await;
        Outcome {
            answer: Answer::parse(&raw, reset, starts_with_head(&entry.bytes)),
            forwarded: self.origin.take(),
            origin_partial,
        }
    }
}

/// Writes `entry` on a new connection (and FIN if it says so) while reading everything
/// until the proxy closes. Returns the bytes read and whether a reset ended the read.
async fn exchange(proxy: SocketAddr, entry: &Entry) -> (Vec<u8>, bool) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        // The proxy may refuse a head and close before taking the rest: not a failure.
        let _ = writer.write_all(&entry.bytes).await;
        if entry.half_close {
            let _ = writer.shutdown().await;
        }
    };
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return (raw, false),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(_) => return (raw, true),
            }
        }
    };
    let ((), read) = tokio::join!(write, read);
    // `writer` lives until here: dropping it would shut the writing side down early.
    drop(writer);
    read
}

fn starts_with_head(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"HEAD ")
}

/// What one entry did through one proxy.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    answer: Answer,
    forwarded: Vec<Received>,
    /// Upstream connections still holding part of a request once things settled.
    origin_partial: usize,
}

impl Outcome {
    fn render(&self) -> String {
        let mut out = String::new();
        let end = if self.answer.reset {
            "a reset"
        } else {
            "end of stream"
        };
        writeln!(out, "    client received (ended by {end}):").unwrap();
        for response in &self.answer.responses {
            writeln!(
                out,
                "      HTTP/1.{} {} framing={:?} body={:?} closed_after={}",
                response.version,
                response.status,
                response.framing,
                abbreviate(&response.body),
                response.closed_after
            )
            .unwrap();
            writeln!(
                out,
                "        headers: {}",
                render_headers(&response.headers)
            )
            .unwrap();
        }
        if !self.answer.unparsed.is_empty() {
            writeln!(
                out,
                "      unparsable: {:?}",
                abbreviate(&self.answer.unparsed)
            )
            .unwrap();
        }
        if self.answer.responses.is_empty() && self.answer.unparsed.is_empty() {
            writeln!(out, "      nothing").unwrap();
        }
        writeln!(out, "    origin received:").unwrap();
        for received in &self.forwarded {
            match received {
                Received::Request(request) => {
                    writeln!(
                        out,
                        "      {} {} HTTP/1.{} body={:?}",
                        request.method,
                        abbreviate(&request.target),
                        request.version,
                        abbreviate(&request.body)
                    )
                    .unwrap();
                    writeln!(out, "        headers: {}", render_headers(&request.headers)).unwrap();
                    if !request.trailers.is_empty() {
                        writeln!(
                            out,
                            "        trailers: {}",
                            render_headers(&request.trailers)
                        )
                        .unwrap();
                    }
                }
                Received::Cut { head, rest } => {
                    match head {
                        Some(head) => writeln!(
                            out,
                            "      cut short after the head: {} {} HTTP/1.{}, then {:?}",
                            head.method,
                            abbreviate(&head.target),
                            head.version,
                            abbreviate(rest)
                        ),
                        None => {
                            writeln!(out, "      cut short in the head: {:?}", abbreviate(rest))
                        }
                    }
                    .unwrap();
                    if let Some(head) = head {
                        writeln!(out, "        headers: {}", render_headers(&head.headers))
                            .unwrap();
                    }
                }
                Received::Malformed(what) => {
                    writeln!(out, "      malformed: {}", abbreviate(what)).unwrap();
                }
            }
        }
        if self.forwarded.is_empty() {
            writeln!(out, "      nothing").unwrap();
        }
        if self.origin_partial > 0 {
            writeln!(
                out,
                "      {} connection(s) still holding part of a request",
                self.origin_partial
            )
            .unwrap();
        }
        out
    }
}

fn render_headers(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", abbreviate(value)))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Long values (the 70 KiB cases) shortened for the report; comparisons use them whole.
fn abbreviate(text: &str) -> String {
    if text.len() <= 200 {
        return text.to_owned();
    }
    let head: String = text.chars().take(80).collect();
    let tail: String = text
        .chars()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}...({} bytes)...{tail}", text.len())
}

// ---------------------------------------------------------------------------------------
// What the client received

/// The responses a client read, until the proxy closed.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    responses: Vec<Response>,
    /// Bytes after the last whole response that do not parse as one (escaped).
    unparsed: String,
    /// A reset, not a clean end of stream, ended the read.
    reset: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Response {
    /// The minor version: `1` for HTTP/1.1.
    version: u8,
    status: u16,
    /// Lower-cased names, sorted by name (same-name fields keep their order), without
    /// `date` and without the framing fields (`content-length`, `transfer-encoding`),
    /// which [`Framing`] stands for.
    headers: Vec<(String, String)>,
    framing: Framing,
    /// The decoded payload (escaped).
    body: String,
    /// The proxy closed the connection after this response.
    closed_after: bool,
}

/// How a response's body was delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// None by rule (1xx, 204, 304, the answer to HEAD); the `content-length` sent, if any,
    /// which means something there.
    Bodiless { content_length: Option<String> },
    /// A valid `content-length`, and that many bytes.
    Length,
    /// Chunked, with these trailers (sorted).
    Chunked { trailers: Vec<(String, String)> },
    /// Neither: the body ran until the connection closed.
    UntilClose,
    /// The connection closed before the framing said the body ended.
    Incomplete,
    /// Framing fields or a chunked encoding the client cannot read.
    Invalid(String),
}

impl Answer {
    /// Splits `raw` into responses. `head_first`: the first final response answers a HEAD.
    fn parse(raw: &[u8], reset: bool, head_first: bool) -> Answer {
        let mut responses = Vec::new();
        let mut at = 0;
        let mut finals = 0;
        let mut unparsed = String::new();
        while at < raw.len() {
            let mut fields = [httparse::EMPTY_HEADER; 512];
            let mut parsed = httparse::Response::new(&mut fields);
            let head_len = match parsed.parse(&raw[at..]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => {
                    unparsed = format!("(partial head) {}", raw[at..].escape_ascii());
                    break;
                }
                Err(error) => {
                    unparsed = format!("({error}) {}", raw[at..].escape_ascii());
                    break;
                }
            };
            let status = parsed.code.unwrap();
            let version = parsed.version.unwrap();
            let all = normalize(parsed.headers, &["date"]);
            let content_lengths: Vec<&str> = values(&all, "content-length");
            let codings: Vec<String> = codings(&all);
            let headers: Vec<(String, String)> = all
                .iter()
                .filter(|(name, _)| name != "content-length" && name != "transfer-encoding")
                .cloned()
                .collect();
            let is_final = status >= 200;
            let bodiless =
                !is_final || status == 204 || status == 304 || (head_first && finals == 0);
            if is_final {
                finals += 1;
            }
            at += head_len;
            let rest = &raw[at..];
            let (framing, body, used) = if bodiless {
                let content_length =
                    (!content_lengths.is_empty()).then(|| content_lengths.join(", "));
                (Framing::Bodiless { content_length }, Vec::new(), 0)
            } else if !codings.is_empty() {
                if codings.last().is_some_and(|coding| coding == "chunked") {
                    match dechunk(rest) {
                        Ok(Some(decoded)) => (
                            Framing::Chunked {
                                trailers: decoded.trailers,
                            },
                            decoded.payload,
                            decoded.used,
                        ),
                        Ok(None) => (Framing::Incomplete, rest.to_vec(), rest.len()),
                        Err(error) => (Framing::Invalid(error), rest.to_vec(), rest.len()),
                    }
                } else {
                    (Framing::UntilClose, rest.to_vec(), rest.len())
                }
            } else if !content_lengths.is_empty() {
                match content_length(&content_lengths) {
                    Ok(length) if rest.len() >= length => {
                        (Framing::Length, rest[..length].to_vec(), length)
                    }
                    Ok(_) => (Framing::Incomplete, rest.to_vec(), rest.len()),
                    Err(error) => (Framing::Invalid(error), rest.to_vec(), rest.len()),
                }
            } else {
                (Framing::UntilClose, rest.to_vec(), rest.len())
            };
            at += used;
            responses.push(Response {
                version,
                status,
                headers,
                framing,
                body: body.escape_ascii().to_string(),
                closed_after: at == raw.len(),
            });
        }
        Answer {
            responses,
            unparsed,
            reset,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The recording origin

/// What the origin read from the proxy, one item per request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Received {
    Request(Forwarded),
    /// The connection ended inside a request: its head if that arrived whole (with an
    /// empty body), and the bytes after it that did (escaped).
    Cut {
        head: Option<Forwarded>,
        rest: String,
    },
    /// Bytes that do not parse as a request (escaped, with the parser's complaint).
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Forwarded {
    method: String,
    target: String,
    /// The minor version: `1` for HTTP/1.1.
    version: u8,
    /// Lower-cased names, sorted by name (same-name fields keep their order), without
    /// `x-request-id` (random). Values exact (escaped), framing fields included.
    headers: Vec<(String, String)>,
    /// The decoded payload (escaped).
    body: String,
    trailers: Vec<(String, String)>,
}

/// A keep-alive HTTP/1.1 origin on 127.0.0.1 that records every request it reads and
/// answers `200 ok` (a bodiless 200 to HEAD, a 204 with `Content-Length: 5` to paths
/// starting `/204`).
struct Origin {
    address: EndpointAddress,
    received: Arc<Mutex<Vec<Received>>>,
    /// Connections holding part of a request (bytes read, request not complete).
    partial: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let partial = Arc::new(AtomicUsize::new(0));
        let log = Log {
            received: Arc::clone(&received),
            partial: Arc::clone(&partial),
        };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone()));
            }
        });
        Origin {
            address,
            received,
            partial,
            task,
        }
    }

    /// Waits for what the proxy sent to have arrived: a moment for bytes in flight, then
    /// until no connection holds part of a request (a request the proxy abandoned halfway
    /// is recorded once it closes that connection), for at most a second. Returns how many
    /// still do.
    async fn settle(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let start = Instant::now();
        loop {
            let partial = self.partial.load(Ordering::SeqCst);
            if partial == 0 || start.elapsed() > Duration::from_secs(1) {
                return partial;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// What was received since the last call.
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

#[derive(Clone)]
struct Log {
    received: Arc<Mutex<Vec<Received>>>,
    partial: Arc<AtomicUsize>,
}

/// Counts its connection in [`Origin::partial`] while it holds part of a request.
struct Holding<'a> {
    counter: &'a AtomicUsize,
    holding: bool,
}

impl Holding<'_> {
    fn set(&mut self, holding: bool) {
        if holding != self.holding {
            if holding {
                self.counter.fetch_add(1, Ordering::SeqCst);
            } else {
                self.counter.fetch_sub(1, Ordering::SeqCst);
            }
            self.holding = holding;
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// How reading the next request ended.
enum Next {
    Request(Forwarded),
    /// End of stream between requests.
    Closed,
    /// End of stream inside a request.
    Cut,
    Malformed(String),
}

async fn serve(mut stream: TcpStream, log: Log) {
    let mut buffer = Vec::new();
    let mut holding = Holding {
        counter: &log.partial,
        holding: false,
    };
    loop {
        let next = loop {
            match parse_request(&buffer) {
                Ok(Some((request, used))) => {
                    buffer.drain(..used);
                    break Next::Request(request);
                }
                Ok(None) => {}
                Err(error) => break Next::Malformed(error),
            }
            holding.set(!buffer.is_empty());
            match stream.read_buf(&mut buffer).await {
                Ok(1..) => holding.set(true),
                Ok(0) | Err(_) if buffer.is_empty() => break Next::Closed,
                Ok(0) | Err(_) => break Next::Cut,
            }
        };
        let request = match next {
            Next::Request(request) => request,
            Next::Closed => return,
            Next::Cut => {
                let cut = match parse_head(&buffer) {
                    Ok(Some((head, len))) => Received::Cut {
                        head: Some(head),
                        rest: buffer[len..].escape_ascii().to_string(),
                    },
                    _ => Received::Cut {
                        head: None,
                        rest: buffer.escape_ascii().to_string(),
                    },
                };
                log.received.lock().unwrap().push(cut);
                return;
            }
            Next::Malformed(error) => {
                let what = format!("({error}) {}", buffer.escape_ascii());
                log.received.lock().unwrap().push(Received::Malformed(what));
                return;
            }
        };
        let reply: &[u8] = if request.target.starts_with("/204") {
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
        } else if request.method == "HEAD" {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        log.received
            .lock()
            .unwrap()
            .push(Received::Request(request));
        holding.set(!buffer.is_empty());
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Parses one whole request (head and framed body) at the start of `buffer`: the request
/// and the bytes it took, `None` if it is not all there yet.
fn parse_request(buffer: &[u8]) -> Result<Option<(Forwarded, usize)>, String> {
    let Some((mut request, head_len)) = parse_head(buffer)? else {
        return Ok(None);
    };
    let rest = &buffer[head_len..];
    let codings = codings(&request.headers);
    let lengths = values(&request.headers, "content-length");
    let (body, trailers, used) = if !codings.is_empty() {
        if codings.last().is_none_or(|coding| coding != "chunked") {
            return Err(format!(
                "transfer-encoding {codings:?} does not end in chunked"
            ));
        }
        match dechunk(rest)? {
            Some(decoded) => (decoded.payload, decoded.trailers, decoded.used),
            None => return Ok(None),
        }
    } else if !lengths.is_empty() {
        let length = content_length(&lengths)?;
        if rest.len() < length {
            return Ok(None);
        }
        (rest[..length].to_vec(), Vec::new(), length)
    } else {
        (Vec::new(), Vec::new(), 0)
    };
    request.body = body.escape_ascii().to_string();
    request.trailers = trailers;
    Ok(Some((request, head_len + used)))
}

/// Parses a request head at the start of `buffer`: the request with an empty body, and
/// the head's length; `None` if the head is not all there yet.
fn parse_head(buffer: &[u8]) -> Result<Option<(Forwarded, usize)>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 512];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let request = Forwarded {
        method: parsed.method.unwrap().to_owned(),
        target: parsed.path.unwrap().to_owned(),
        version: parsed.version.unwrap(),
        headers: normalize(parsed.headers, &["x-request-id"]),
        body: String::new(),
        trailers: Vec::new(),
    };
    Ok(Some((request, head_len)))
}

// ---------------------------------------------------------------------------------------
// Message parsing shared by both sides (test side, deliberately strict)

/// Header fields with lower-cased names, sorted by name (stable: same-name fields keep
/// their order), values escaped, without the fields named in `without`.
fn normalize(fields: &[httparse::Header<'_>], without: &[&str]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = fields
        .iter()
        .map(|field| {
            (
                field.name.to_ascii_lowercase(),
                field.value.escape_ascii().to_string(),
            )
        })
        .filter(|(name, _)| !without.contains(&name.as_str()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

/// The transfer codings, lower-cased, over every `transfer-encoding` field.
fn codings(headers: &[(String, String)]) -> Vec<String> {
    values(headers, "transfer-encoding")
        .iter()
        .flat_map(|value| value.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty())
        .collect()
}

/// The one length the `content-length` fields agree on (comma-separated lists included).
fn content_length(values: &[&str]) -> Result<usize, String> {
    let mut length = None;
    for value in values.iter().flat_map(|value| value.split(',')) {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!("content-length {values:?}"));
        }
        let parsed: usize = value
            .parse()
            .map_err(|_| format!("content-length {values:?}"))?;
        if length.is_some_and(|length| length != parsed) {
            return Err(format!("content-length {values:?}"));
        }
        length = Some(parsed);
    }
    length.ok_or_else(|| format!("content-length {values:?}"))
}

struct Dechunked {
    payload: Vec<u8>,
    /// Normalized like headers.
    trailers: Vec<(String, String)>,
    /// Bytes the chunked encoding took, trailers and the final CRLF included.
    used: usize,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Decodes a chunked body at the start of `raw` (CRLF line endings only); `None` if it is
/// not all there yet.
fn dechunk(raw: &[u8]) -> Result<Option<Dechunked>, String> {
    let mut payload = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_len) = find(&raw[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = &raw[at..at + line_len];
        let size = line.split(|byte| *byte == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .filter(|size| !size.is_empty() && size.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .and_then(|size| usize::from_str_radix(size, 16).ok())
            .ok_or_else(|| format!("chunk size line {:?}", line.escape_ascii().to_string()))?;
        at += line_len + 2;
        if size == 0 {
            break;
        }
        let Some(data_end) = at.checked_add(size) else {
            return Err("chunk size overflows".to_owned());
        };
        if raw.len() < data_end + 2 {
            return Ok(None);
        }
        if &raw[data_end..data_end + 2] != b"\r\n" {
            return Err("no CRLF after the chunk data".to_owned());
        }
        payload.extend_from_slice(&raw[at..data_end]);
        at = data_end + 2;
    }
    // Trailer fields, then the empty line.
    let mut trailers = Vec::new();
    loop {
        let Some(line_len) = find(&raw[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = &raw[at..at + line_len];
        at += line_len + 2;
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|byte| *byte == b':')
            .ok_or_else(|| format!("trailer line {:?}", line.escape_ascii().to_string()))?;
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().escape_ascii().to_string();
        trailers.push((name, value));
    }
    trailers.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(Dechunked {
        payload,
        trailers,
        used: at,
    }))
}
