//! The request header rules on the forwarding path (`proxy-core/src/http/headers.rs`:
//! hop-by-hop removal, `x-forwarded-for` append, `x-forwarded-proto`, `x-request-id`
//! generation, `x-forwarded-client-cert` sanitizing, origin form). Those functions are
//! crate-private, so they are measured the only way the public API allows: a round
//! trip through the real proxy (in-process, loopback) to an in-process upstream, once
//! with a minimal request and once with a browser-like head that gives every rule work.
//! The upstream checks, before anything is timed, that the rules were applied.

use std::convert::Infallible;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy_core::Topology;
use proxy_core::bytes::Bytes;
use proxy_core::config::{BindAddress, Inputs};
use proxy_core::server::{Server, ServerSettings};

proxy_core::proxy! {
    listener front {
        bind: "127.0.0.1:0",
        http {
            virtual_host all { domains: ["*"], route prefix("/") => cluster(upstream) }
        }
    }
    cluster upstream { endpoints: [env("BENCH_UPSTREAM", "127.0.0.1:9")] }
}

/// What a browser behind another proxy typically sends: hop-by-hop fields to remove,
/// `te: trailers` to keep, an `x-forwarded-for` chain to extend, no `x-request-id`.
const BROWSER_HEAD: &[(&str, &str)] = &[
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-GB,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("connection", "keep-alive, x-hop"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("x-hop", "removed because `connection` names it"),
    ("te", "trailers"),
    ("x-forwarded-for", "203.0.113.7, 198.51.100.20"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-client-cert", "By=spoofed"),
    (
        "cookie",
        "session=0123456789abcdef0123456789abcdef; theme=dark",
    ),
    ("upgrade-insecure-requests", "1"),
];

/// The upstream: answers `ok`, or for `/check` the head it received, one field a line.
async fn upstream(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/check" {
        let mut text = String::new();
        for (name, value) in request.headers() {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
        }
        text
    } else {
        "ok".to_string()
    };
    Ok(http::Response::new(Full::new(Bytes::from(body))))
}

fn headers(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let upstream_address = runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => panic!("upstream bind: {error}"),
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(error) => panic!("upstream address: {error}"),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upstream)),
                );
            }
        });
        address
    });
    let upstream_address = upstream_address.to_string();
    let mut inputs =
        Inputs::with_lookup(move |var| (var == "BENCH_UPSTREAM").then(|| upstream_address.clone()));
    let proxy: &'static Proxy = Box::leak(Box::new(Proxy::build(&mut inputs)));
    let front = runtime.block_on(async {
        let mut server = Server::new(ServerSettings::default());
        let front = server.http(&proxy.__listener_front, &proxy.__router_front);
        // The server runs for the rest of the process.
        std::mem::forget(server);
        match front {
            Ok(BindAddress::Tcp(front)) => front,
            other => panic!("bind: {other:?}"),
        }
    });
    let mut sender = runtime.block_on(async {
        let stream = match tokio::net::TcpStream::connect(front).await {
            Ok(stream) => stream,
            Err(error) => panic!("connect: {error}"),
        };
        let (sender, connection) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => panic!("handshake: {error}"),
        };
        tokio::spawn(connection);
        sender
    });
    let mut round_trip = |path: &str, head: &[(&str, &str)]| -> Bytes {
        runtime.block_on(async {
            let mut request = http::Request::get(path).header("host", "bench");
            for (name, value) in head {
                request = request.header(*name, *value);
            }
            let Ok(request) = request.body(Empty::<Bytes>::new()) else {
                panic!("request")
            };
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(error) => panic!("send: {error}"),
            };
            assert_eq!(response.status(), 200, "the proxy did not forward");
            match response.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(error) => panic!("body: {error}"),
            }
        })
    };

    // What the upstream saw: the rules ran.
    let seen = round_trip("/check", BROWSER_HEAD);
    let seen = String::from_utf8_lossy(&seen);
    for expected in [
        "x-forwarded-for: 203.0.113.7, 198.51.100.20, 127.0.0.1\n",
        "x-forwarded-proto: http\n",
        "te: trailers\n",
        "x-request-id: ",
    ] {
        assert!(seen.contains(expected), "missing `{expected}` in\n{seen}");
    }
    for removed in [
        "keep-alive",
        "proxy-connection",
        "x-hop",
        "x-forwarded-client-cert",
    ] {
        assert!(
            !seen.contains(&format!("{removed}:")),
            "`{removed}` was forwarded:\n{seen}"
        );
    }

    let mut group = c.benchmark_group("request_headers_forwarded");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("minimal_head", |b| b.iter(|| round_trip("/", &[]).len()));
    group.bench_function("browser_head", |b| {
        b.iter(|| round_trip("/", BROWSER_HEAD).len())
    });
    group.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
