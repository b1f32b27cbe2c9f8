//! Every built-in HTTP filter through the `filters_fixture` binary
//! (`src/bin/filters_fixture.rs`), between real clients (hyper over HTTP/1.1 and h2c,
//! curl, raw bytes) and a real origin (nginx, which echoes what it received and logs what
//! reached it), plus a test origin that reports the exact request head the proxy sent.
//!
//! Covered: request/response header mutations (every append action, removals,
//! `%REQ()%`, client address, protocol and route substitutions; upstream responses and
//! local replies), prefix/regex/host rewrites (`x-forwarded-host`), CORS (preflights
//! answered by the proxy, simple requests, regex origins, disallowed origins, Private
//! Network Access, a route-level override), local rate limits (a bucket shared by a
//! virtual host, exact under concurrency, `retry-after`, `RL`, recovery, override,
//! disable), fault injection (abort, delay, header control, percentages, `max_active`),
//! body limits (declared, `100-continue`, streamed), access logs (stdout, a file opened
//! by path, a file whose writes fail), gzip/brotli compression, and the inheritance rules
//! (listener → virtual host → route, overrides by name, disables).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use proxy_tests::client::{ReqBody, empty, full};
use proxy_tests::*;

const FIXTURE: &str = env!("CARGO_BIN_EXE_filters_fixture");

/// Request headers nginx echoes as `name=value` lines (`$http_x_added` etc.; nginx 1.22
/// shows the first value of a repeated header only: repeats are checked on the capture
/// origin instead).
const ECHOED: [&str; 15] = [
    "x-added",
    "x-set",
    "x-default",
    "x-over",
    "x-secret",
    "x-client",
    "x-copy",
    "x-proto",
    "x-route",
    "x-empty",
    "x-layer",
    "x-seen",
    "x-forwarded-host",
    "accept-encoding",
    "origin",
];

fn origin_locations() -> String {
    let echo: String = ECHOED
        .iter()
        .map(|name| format!("{name}=$http_{}\\n", name.replace('-', "_")))
        .collect();
    format!(
        r#"
        location / {{
            default_type text/plain;
            return 200 "method=$request_method\nuri=$request_uri\nhost=$http_host\n{echo}";
        }}
        location = /resp {{
            default_type text/plain;
            add_header X-Origin-Tag original;
            add_header X-Frame-Options SAMEORIGIN;
            add_header Cache-Control "max-age=60";
            add_header Via "1.1 origin";
            return 200 "resp\n";
        }}
        location = /upstream-cors {{
            default_type text/plain;
            add_header Access-Control-Allow-Origin "https://upstream.example";
            add_header Vary Accept-Encoding;
            return 200 "cors\n";
        }}
        location /files/ {{ types {{ text/plain txt; text/html html; image/png png; application/json json; }} }}
        location /files/pre/ {{ types {{ text/plain txt; }} add_header Content-Encoding gzip; }}
        location /files/nt/ {{ types {{ text/plain txt; }} add_header Cache-Control no-transform; }}
        location /files/stream/ {{
            types {{ text/plain txt; }}
            sub_filter 'a' 'A';
            sub_filter_once off;
            sub_filter_types *;
        }}
        location /dav/ {{ dav_methods PUT; create_full_put_path on; }}
        "#
    )
}

fn fields(body: &str) -> BTreeMap<&str, &str> {
    body.lines()
        .filter_map(|line| line.split_once('='))
        .collect()
}

/// What the capture origin answers; it closes the connection after each request.
const CAPTURED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\ncaptured\n";

/// Field order matters: the proxy goes first, then its peers, then the directory.
struct Fixture {
    proxy: ProxyProcess,
    addr: SocketAddr,
    /// The `quiet` listener: no request ids made up, no client IP appended.
    quiet: SocketAddr,
    nginx: Nginx,
    capture: Origin,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Self {
        let dir = tempdir();
        let nginx = Nginx::builder(dir.path())
            .tcp("origin", &origin_locations())
            .start();
        let capture = Origin::scripted(CAPTURED);
        let mut proxy = ProxyCommand::new(FIXTURE, dir.path())
            .env("FILTERS_ADDR", "127.0.0.1:0")
            .env("QUIET_ADDR", "127.0.0.1:0")
            .env("ORIGIN_ADDR", nginx.addr("origin").to_string())
            .env("CAPTURE_ADDR", capture.addr().to_string())
            .spawn();
        let addr = proxy.tcp_listener("main");
        let quiet = proxy.tcp_listener("quiet");
        Self {
            proxy,
            addr,
            quiet,
            nginx,
            capture,
            dir,
        }
    }

    async fn conn(&self, proto: Proto) -> Conn {
        Conn::tcp(self.addr, proto).await
    }

    /// URIs nginx has logged so far, in order.
    fn origin_uris(&self) -> Vec<String> {
        self.nginx
            .access_log("origin")
            .entries()
            .into_iter()
            .map(|e| e.uri)
            .collect()
    }

    /// Writes `bytes` as `www/<path>` for nginx to serve.
    fn file(&self, path: &str, bytes: &[u8]) {
        let path = self.nginx.root().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

async fn send(
    conn: &mut Conn,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    send_body(conn, method, host, path, headers, empty()).await
}

async fn send_body(
    conn: &mut Conn,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Reply {
    let mut request = conn.request(method, host, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    conn.send(request.body(body).unwrap()).await
}

/// Every value of `name`, in order.
fn all<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn get<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The header fields of a captured HTTP/1.1 request head, names lowercased, in order.
fn head_fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn protocol(proto: Proto) -> &'static str {
    match proto {
        Proto::H1 => "HTTP/1.1",
        Proto::H2c => "HTTP/2",
    }
}

// ---------------------------------------------------------------------------------------
// request_headers / response_headers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_are_mutated_before_forwarding() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let client = [
            ("x-added", "client"),
            ("x-set", "a"),
            ("x-set", "b"),
            ("x-default", "mine"),
            ("x-over", "old"),
            ("x-secret", "hush"),
            ("x-source", "src-value"),
        ];
        let reply = send(
            &mut conn,
            Method::GET,
            "headers.test",
            "/capture/x",
            &client,
        )
        .await;
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::OK, "captured\n"),
            "{proto:?}"
        );
        let head = fixture.capture.wait_request();
        assert!(
            head.starts_with("GET /capture/x HTTP/1.1\r\n"),
            "{proto:?}: {head}"
        );
        let sent = head_fields(&head);
        let expected: [(&str, &[&str]); 11] = [
            // add: appended after the client's value
            ("x-added", &["client", "one"]),
            // set: every client value replaced
            ("x-set", &["fixed"]),
            // add_if_absent: the client's value wins
            ("x-default", &["mine"]),
            // overwrite_if_exists: present, so replaced
            ("x-over", &["replaced"]),
            ("x-secret", &[]),
            ("x-client", &["127.0.0.1"]),
            ("x-copy", &["copied=src-value"]),
            ("x-proto", &[protocol(proto)]),
            ("x-route", &["main/headers/0"]),
            // a value that renders empty is not added
            ("x-empty", &[]),
            ("x-source", &["src-value"]),
        ];
        for (name, want) in expected {
            assert_eq!(values(&sent, name), want, "{proto:?} {name}:\n{head}");
        }

        // Without the client's headers: add_if_absent adds, overwrite_if_exists does not.
        let reply = send(&mut conn, Method::GET, "headers.test", "/capture/y", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        let head = fixture.capture.wait_request();
        let sent = head_fields(&head);
        let expected: [(&str, &[&str]); 5] = [
            ("x-added", &["one"]),
            ("x-default", &["dflt"]),
            ("x-over", &[]),
            ("x-set", &["fixed"]),
            ("x-copy", &["copied="]),
        ];
        for (name, want) in expected {
            assert_eq!(values(&sent, name), want, "{proto:?} {name}:\n{head}");
        }

        // nginx sees the same through the default route.
        let reply = send(&mut conn, Method::GET, "headers.test", "/echo", &client).await;
        let got = fields(reply.text());
        let expected = [
            ("x-added", "client"),
            ("x-set", "fixed"),
            ("x-default", "mine"),
            ("x-over", "replaced"),
            ("x-secret", ""),
            ("x-client", "127.0.0.1"),
            ("x-copy", "copied=src-value"),
            ("x-route", "main/headers/2"),
        ];
        for (name, want) in expected {
            assert_eq!(got[name], want, "{proto:?} {name}: {}", reply.text());
        }
    }
}

/// `generate_request_id: false` and `skip_xff_append: true` hold on the relay (a
/// bodiless HTTP/1.1 request on a route without filters) and on the full path (a body,
/// or HTTP/2); the default listener, for contrast, does both edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_can_leave_request_ids_and_forwarded_for_alone() {
    let fixture = Fixture::start();
    let mut raw = RawHttp::connect(fixture.quiet);
    raw.send(b"GET /relayed HTTP/1.1\r\nHost: quiet.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let captured = fixture.capture.wait_request();
    // The relay keeps field names as the client wrote them (the full path lowercases).
    assert!(
        captured.contains("\r\nX-Forwarded-For: 6.6.6.6\r\n"),
        "not relayed, or the client's IP was appended:\n{captured}"
    );
    let sent = head_fields(&captured);
    assert_eq!(values(&sent, "x-request-id"), [] as [&str; 0], "{captured}");
    assert_eq!(values(&sent, "x-forwarded-proto"), ["http"], "{captured}");

    for proto in Proto::BOTH {
        let mut conn = Conn::tcp(fixture.quiet, proto).await;
        let xff = [("x-forwarded-for", "6.6.6.6")];
        let reply = send_body(
            &mut conn,
            Method::POST,
            "quiet.test",
            "/full",
            &xff,
            full("hi"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        let captured = fixture.capture.wait_request();
        let sent = head_fields(&captured);
        assert_eq!(
            values(&sent, "x-forwarded-for"),
            ["6.6.6.6"],
            "{proto:?}: {captured}"
        );
        assert_eq!(
            values(&sent, "x-request-id"),
            [] as [&str; 0],
            "{proto:?}: {captured}"
        );
        assert_eq!(
            values(&sent, "x-forwarded-proto"),
            ["http"],
            "{proto:?}: {captured}"
        );
    }

    let mut conn = fixture.conn(Proto::H1).await;
    let xff = [("x-forwarded-for", "6.6.6.6")];
    let reply = send(&mut conn, Method::GET, "headers.test", "/capture/z", &xff).await;
    assert_eq!(reply.status, StatusCode::OK);
    let captured = fixture.capture.wait_request();
    let sent = head_fields(&captured);
    assert_eq!(
        values(&sent, "x-forwarded-for"),
        ["6.6.6.6, 127.0.0.1"],
        "{captured}"
    );
    let ids = values(&sent, "x-request-id");
    assert!(ids.len() == 1 && ids[0].len() == 36, "{captured}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_apply_to_upstream_responses_and_local_replies() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let ua = [("user-agent", "filters-test/1")];
        let reply = send(&mut conn, Method::GET, "headers.test", "/resp", &ua).await;
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::OK, "resp\n"),
            "{proto:?}"
        );
        let expected: [(&str, &[&str]); 11] = [
            ("x-origin-tag", &["rewritten"]),
            ("x-not-there", &[]),
            ("x-frame-options", &["SAMEORIGIN"]),
            ("x-content-type-options", &["nosniff"]),
            ("cache-control", &["no-store"]),
            ("via", &["1.1 origin", "1.1 filters"]),
            ("x-resp-added", &["r1"]),
            ("x-echo-ua", &["ua=filters-test/1"]),
            ("server", &[]),
            ("x-stamp", &["listener"]),
            ("x-order", &["listener"]),
        ];
        for (name, want) in expected {
            assert_eq!(all(&reply, name), want, "{proto:?} {name}: {reply:#?}");
        }

        // A direct response passes through the same hooks.
        let reply = send(&mut conn, Method::GET, "headers.test", "/direct", &ua).await;
        assert_eq!(
            reply.local_reply(),
            (200, None, Some("text/plain"), "direct\n"),
            "{proto:?}"
        );
        assert_eq!(reply.header("content-length"), "7");
        let expected: [(&str, &[&str]); 8] = [
            ("x-origin-tag", &[]),
            ("x-frame-options", &["DENY"]),
            ("x-content-type-options", &["nosniff"]),
            ("cache-control", &["no-store"]),
            ("via", &["1.1 filters"]),
            ("x-resp-added", &["r1"]),
            ("x-echo-ua", &["ua=filters-test/1"]),
            ("x-stamp", &["listener"]),
        ];
        for (name, want) in expected {
            assert_eq!(all(&reply, name), want, "{proto:?} {name}: {reply:#?}");
        }

        // Without a user-agent the substitution renders empty, the literal stays.
        let reply = send(&mut conn, Method::GET, "headers.test", "/direct", &[]).await;
        assert_eq!(all(&reply, "x-echo-ua"), ["ua="], "{proto:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Rewrites
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_regex_and_host_rewrites_change_what_the_origin_sees() {
    let fixture = Fixture::start();
    // (path, extra headers, uri at nginx, host at nginx, x-forwarded-host at nginx)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
    let cases: [Case<'_>; 12] = [
        ("/p/a/b?q=1", &[], "/echo/a/b?q=1", "rewrite.test:81", ""),
        ("/p/", &[], "/echo/", "rewrite.test:81", ""),
        ("/strip?x=1", &[], "/?x=1", "rewrite.test:81", ""),
        ("/strip/deeper", &[], "/deeper", "rewrite.test:81", ""),
        (
            "/v1/users/42?x=1",
            &[],
            "/42/by/users?x=1",
            "rewrite.test:81",
            "",
        ),
        ("/v1/users/a/b", &[], "/a/b/by/users", "rewrite.test:81", ""),
        // no match: unchanged
        ("/v1/nomatch", &[], "/v1/nomatch", "rewrite.test:81", ""),
        ("/host/x?y", &[], "/host/x?y", "origin.internal:8080", ""),
        (
            "/host/x",
            &[("x-forwarded-host", "kept.example")],
            "/host/x",
            "origin.internal:8080",
            "kept.example",
        ),
        (
            "/xfh/x",
            &[],
            "/xfh/x",
            "origin.internal",
            "rewrite.test:81",
        ),
        (
            "/xfh/y",
            &[("x-forwarded-host", "edge.example")],
            "/xfh/y",
            "origin.internal",
            "edge.example, rewrite.test:81",
        ),
        // the default route rewrites nothing
        ("/other/p/", &[], "/other/p/", "rewrite.test:81", ""),
    ];
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for (path, headers, uri, host, xfh) in cases {
            let reply = send(&mut conn, Method::GET, "rewrite.test:81", path, headers).await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} {path}: {reply:?}");
            let got = fields(reply.text());
            assert_eq!(
                (got["uri"], got["host"], got["x-forwarded-host"]),
                (uri, host, xfh),
                "{proto:?} {path}"
            );
        }
    }
    // Only that virtual host rewrites.
    let mut conn = fixture.conn(Proto::H1).await;
    let reply = conn.get("layers.test", "/p/z").await;
    assert_eq!(fields(reply.text())["uri"], "/p/z");
}

// ---------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------

const CORS_HEADERS: [&str; 7] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
    "access-control-allow-private-network",
];

/// The CORS headers of `reply`, absent ones included as `None`.
fn cors_headers(reply: &Reply) -> Vec<(&'static str, Option<&str>)> {
    CORS_HEADERS.iter().map(|n| (*n, get(reply, n))).collect()
}

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_from_allowed_origins_are_answered_by_the_proxy() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for origin in ["https://app.example", "https://shop.trusted.example"] {
            let reply = send(
                &mut conn,
                Method::OPTIONS,
                "cors.test",
                "/api/items",
                &preflight(origin),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} {origin}");
            assert_eq!(reply.body.len(), 0, "{proto:?} {origin}");
            assert_eq!(reply.header("content-length"), "0");
            assert!(!reply.headers.contains_key("content-type"), "{reply:#?}");
            assert_eq!(
                cors_headers(&reply),
                [
                    ("access-control-allow-origin", Some(origin)),
                    ("access-control-allow-credentials", Some("true")),
                    ("access-control-allow-methods", Some("GET, PUT")),
                    (
                        "access-control-allow-headers",
                        Some("content-type, x-api-key")
                    ),
                    ("access-control-max-age", Some("3600")),
                    ("access-control-expose-headers", None),
                    ("access-control-allow-private-network", None),
                ],
                "{proto:?} {origin}"
            );
            assert_eq!(all(&reply, "vary"), ["origin"], "{proto:?}");
            // Response filters of outer levels still see the proxy's reply.
            assert_eq!(all(&reply, "x-stamp"), ["listener"]);
        }
    }
    // Private Network Access is allowed by this policy, when asked for.
    let mut conn = fixture.conn(Proto::H1).await;
    let mut headers = preflight("https://app.example").to_vec();
    headers.push(("access-control-request-private-network", "true"));
    let reply = send(&mut conn, Method::OPTIONS, "cors.test", "/pna", &headers).await;
    assert_eq!(
        get(&reply, "access-control-allow-private-network"),
        Some("true")
    );
    // A GET to show the origin is reachable; nginx never saw an OPTIONS.
    let mut conn = fixture.conn(Proto::H1).await;
    assert_eq!(conn.get("cors.test", "/last").await.status, StatusCode::OK);
    let entries = fixture.nginx.access_log("origin").wait_for(1);
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.method.as_str(), e.uri.as_str()))
            .collect::<Vec<_>>(),
        [("GET", "/last")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_decorates_simple_requests_and_ignores_other_origins() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        // Allowed origin: forwarded (with its Origin), decorated on the way back.
        let origin = [("origin", "https://app.example")];
        let reply = send(&mut conn, Method::GET, "cors.test", "/api/x", &origin).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(fields(reply.text())["origin"], "https://app.example");
        assert_eq!(
            cors_headers(&reply),
            [
                ("access-control-allow-origin", Some("https://app.example")),
                ("access-control-allow-credentials", Some("true")),
                ("access-control-allow-methods", None),
                ("access-control-allow-headers", None),
                ("access-control-max-age", None),
                (
                    "access-control-expose-headers",
                    Some("x-request-id, x-total")
                ),
                ("access-control-allow-private-network", None),
            ],
            "{proto:?}"
        );
        assert_eq!(all(&reply, "vary"), ["origin"], "{proto:?}");

        // The upstream's own CORS header is replaced for an allowed origin; its `vary`
        // is extended.
        let reply = send(
            &mut conn,
            Method::GET,
            "cors.test",
            "/upstream-cors",
            &origin,
        )
        .await;
        assert_eq!(reply.text(), "cors\n");
        assert_eq!(
            all(&reply, "access-control-allow-origin"),
            ["https://app.example"],
            "{proto:?}"
        );
        assert_eq!(
            all(&reply, "vary"),
            ["Accept-Encoding", "origin"],
            "{proto:?}"
        );

        // Disallowed origins (a regex must match the whole origin) get no CORS headers,
        // and an upstream's own are left alone.
        for other in [
            "https://evil.example",
            "https://shop.trusted.example.evil.com",
            "http://app.example",
            "https://app.example.",
        ] {
            let headers = [("origin", other)];
            let reply = send(&mut conn, Method::GET, "cors.test", "/api/y", &headers).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                cors_headers(&reply).iter().all(|(_, v)| v.is_none()),
                "{proto:?} {other}: {reply:#?}"
            );
            assert_eq!(all(&reply, "vary"), ["origin"], "{proto:?} {other}");
            let reply = send(
                &mut conn,
                Method::GET,
                "cors.test",
                "/upstream-cors",
                &headers,
            )
            .await;
            assert_eq!(
                all(&reply, "access-control-allow-origin"),
                ["https://upstream.example"],
                "{proto:?} {other}"
            );
            assert!(
                !reply
                    .headers
                    .contains_key("access-control-allow-credentials")
            );
        }

        // No Origin: not a CORS request, but the response varies on it.
        let reply = send(&mut conn, Method::GET, "cors.test", "/api/z", &[]).await;
        assert!(cors_headers(&reply).iter().all(|(_, v)| v.is_none()));
        assert_eq!(all(&reply, "vary"), ["origin"], "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_from_other_origins_are_forwarded_or_refused_per_route() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        // Virtual-host policy: a non-matching preflight goes to the origin (Envoy's default).
        let headers = preflight("https://evil.example");
        let reply = send(
            &mut conn,
            Method::OPTIONS,
            "cors.test",
            "/api/pre",
            &headers,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let got = fields(reply.text());
        assert_eq!((got["method"], got["uri"]), ("OPTIONS", "/api/pre"));
        assert!(cors_headers(&reply).iter().all(|(_, v)| v.is_none()));

        // An OPTIONS without access-control-request-method is no preflight: forwarded.
        let headers = [("origin", "https://app.example")];
        let reply = send(
            &mut conn,
            Method::OPTIONS,
            "cors.test",
            "/api/opt",
            &headers,
        )
        .await;
        assert_eq!(fields(reply.text())["method"], "OPTIONS", "{proto:?}");
        assert_eq!(
            get(&reply, "access-control-allow-origin"),
            Some("https://app.example")
        );

        // The /strict/ route overrides the policy by name: non-matching preflights are
        // answered without CORS headers, matching ones with this policy's (fewer) headers.
        let headers = preflight("https://evil.example");
        let reply = send(
            &mut conn,
            Method::OPTIONS,
            "cors.test",
            "/strict/x",
            &headers,
        )
        .await;
        assert_eq!(
            (reply.status, reply.body.len()),
            (StatusCode::OK, 0),
            "{proto:?}"
        );
        assert!(
            cors_headers(&reply).iter().all(|(_, v)| v.is_none()),
            "{proto:?}: {reply:#?}"
        );
        let headers = preflight("https://app.example");
        let reply = send(
            &mut conn,
            Method::OPTIONS,
            "cors.test",
            "/strict/y",
            &headers,
        )
        .await;
        assert_eq!(
            cors_headers(&reply),
            [
                ("access-control-allow-origin", Some("https://app.example")),
                ("access-control-allow-credentials", None),
                ("access-control-allow-methods", None),
                ("access-control-allow-headers", None),
                ("access-control-max-age", None),
                ("access-control-expose-headers", None),
                ("access-control-allow-private-network", None),
            ],
            "{proto:?}"
        );
        // The regex origin is the virtual host's, not the override's.
        let headers = preflight("https://shop.trusted.example");
        let reply = send(
            &mut conn,
            Method::OPTIONS,
            "cors.test",
            "/strict/z",
            &headers,
        )
        .await;
        assert!(cors_headers(&reply).iter().all(|(_, v)| v.is_none()));
    }
    let entries = fixture.nginx.access_log("origin").wait_for(4);
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.method.as_str(), e.uri.as_str()))
            .collect::<Vec<_>>(),
        [
            ("OPTIONS", "/api/pre"),
            ("OPTIONS", "/api/opt"),
            ("OPTIONS", "/api/pre"),
            ("OPTIONS", "/api/opt"),
        ],
        "only forwarded preflights reach the origin"
    );
}

// ---------------------------------------------------------------------------------------
// local_rate_limit
// ---------------------------------------------------------------------------------------

fn assert_rate_limited(reply: &Reply, status: u16, context: &str) -> u64 {
    assert_eq!(
        reply.local_reply(),
        (
            status,
            Some("RL"),
            Some("text/plain"),
            "local_rate_limited\n"
        ),
        "{context}: {reply:#?}"
    );
    assert_eq!(reply.header("content-length"), "19", "{context}");
    reply
        .header("retry-after")
        .parse()
        .unwrap_or_else(|e| panic!("{context}: retry-after: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_bucket_is_shared_by_the_virtual_host() {
    let fixture = Fixture::start();
    // 4 tokens, one more per hour, shared by every route of the vhost but /free/ and /fast/.
    let mut h1 = fixture.conn(Proto::H1).await;
    let mut h2 = fixture.conn(Proto::H2c).await;
    assert_eq!(h1.get("limit.test", "/a/1").await.status, StatusCode::OK);
    assert_eq!(h2.get("limit.test", "/direct").await.text(), "direct\n");
    assert_eq!(h2.get("limit.test", "/a/2").await.status, StatusCode::OK);
    assert_eq!(h1.get("limit.test", "/direct").await.text(), "direct\n");
    for (i, path) in ["/a/3", "/a/4", "/direct", "/direct"]
        .into_iter()
        .enumerate()
    {
        let conn = if i % 2 == 0 { &mut h1 } else { &mut h2 };
        let reply = conn.get("limit.test", path).await;
        let context = format!("{:?} {path}", conn.proto());
        let retry = assert_rate_limited(&reply, 429, &context);
        // The next token comes at the end of the hour-long interval.
        assert!(
            (3000..=3600).contains(&retry),
            "{context}: retry-after {retry}"
        );
        // Outer filters' response hooks see the local reply too.
        assert_eq!(all(&reply, "x-stamp"), ["listener"], "{context}");
    }
    // The disabled route is not limited at all.
    for i in 0..10 {
        let conn = if i % 2 == 0 { &mut h1 } else { &mut h2 };
        let reply = conn.get("limit.test", &format!("/free/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "/free/{i}");
    }
    // Refused requests never reached nginx.
    let uris = fixture.nginx.access_log("origin").wait_for(12);
    let uris: Vec<&str> = uris.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(&uris[..2], ["/a/1", "/a/2"]);
    assert_eq!(uris.len(), 12, "{uris:?}");
    assert!(
        uris[2..].iter().all(|u| u.starts_with("/free/")),
        "{uris:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_admits_exactly_its_tokens_under_concurrency() {
    let fixture = Fixture::start();
    // 24 requests at once (h2 streams on one connection, and h1 connections) for 4 tokens.
    let h2 = fixture.conn(Proto::H2c).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut conn = if i % 2 == 0 {
            h2.h2_clone()
        } else {
            fixture.conn(Proto::H1).await
        };
        tasks.push(tokio::spawn(async move {
            conn.get("limit.test", &format!("/c/{i}")).await
        }));
    }
    let mut admitted = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            admitted.push(format!("/c/{i}"));
        } else {
            assert_rate_limited(&reply, 429, &format!("/c/{i}"));
        }
    }
    assert_eq!(admitted.len(), 4, "admitted: {admitted:?}");
    let entries = fixture.nginx.access_log("origin").wait_for(4);
    let mut reached: Vec<String> = entries.into_iter().map(|e| e.uri).collect();
    reached.sort();
    admitted.sort();
    assert_eq!(reached, admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_recovers_after_the_fill_interval() {
    let fixture = Fixture::start();
    // /fast/ overrides the vhost's limiter: 2 tokens, 2 more every 200ms, status 503.
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let mut admitted = 0;
        let limited = loop {
            let reply = conn.get("limit.test", "/fast/x").await;
            if reply.status == StatusCode::OK {
                admitted += 1;
                assert!(admitted < 200, "{proto:?}: never rate limited");
                continue;
            }
            break reply;
        };
        let retry = assert_rate_limited(&limited, 503, &format!("{proto:?}"));
        assert_eq!(retry, 1, "{proto:?}: 200ms rounds up to 1s");
        // A fresh bucket holds 2; the second round starts after the first took one of a
        // refill of 2.
        let full = if proto == Proto::H1 { 2 } else { 1 };
        assert!(admitted >= full, "{proto:?}: only {admitted} admitted");
        // Tokens come back within the interval: poll until one is granted.
        let refused_at = Instant::now();
        loop {
            let reply = conn.get("limit.test", "/fast/again").await;
            match reply.status {
                StatusCode::OK => break,
                StatusCode::SERVICE_UNAVAILABLE => {}
                other => panic!("{proto:?}: unexpected {other}: {reply:?}"),
            }
            assert!(
                refused_at.elapsed() < DEADLINE,
                "{proto:?}: still limited after {DEADLINE:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        // Loose upper bound; the fill interval is 200ms.
        let waited = refused_at.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "{proto:?}: recovered after {waited:?}"
        );
    }
    // The vhost's own bucket was untouched by all of that: its 4 tokens are all there.
    let mut conn = fixture.conn(Proto::H1).await;
    for i in 0..4 {
        assert_eq!(
            conn.get("limit.test", "/direct").await.status,
            StatusCode::OK,
            "vhost token {i}"
        );
    }
    assert_rate_limited(&conn.get("limit.test", "/direct").await, 429, "vhost");
}

// ---------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------

fn assert_aborted(reply: &Reply, status: u16, context: &str) {
    assert_eq!(
        reply.local_reply(),
        (
            status,
            Some("FI"),
            Some("text/plain"),
            "fault filter abort\n"
        ),
        "{context}: {reply:#?}"
    );
    assert_eq!(reply.header("content-length"), "19", "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_abort_answers_instead_of_the_origin() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for i in 0..5 {
            let reply = conn.get("fault.test", &format!("/abort/{i}")).await;
            assert_aborted(&reply, 503, &format!("{proto:?} /abort/{i}"));
        }
        // A POST with a body is refused the same way and the connection stays usable.
        let request = conn
            .request(Method::POST, "fault.test", "/abort/upload")
            .body(full(vec![b'x'; 20_000]))
            .unwrap();
        assert_aborted(&conn.send(request).await, 503, &format!("{proto:?} POST"));

        // Header control replaces the status; an invalid one falls back.
        let reply = conn.get("fault.test", "/abort-hc/a").await;
        assert_aborted(&reply, 500, &format!("{proto:?} configured"));
        for (value, status) in [("418", 418), ("503", 503), ("abc", 500), ("99", 500)] {
            let headers = [("x-envoy-fault-abort-request", value)];
            let reply = send(
                &mut conn,
                Method::GET,
                "fault.test",
                "/abort-hc/b",
                &headers,
            )
            .await;
            assert_aborted(&reply, status, &format!("{proto:?} header {value}"));
        }
        // ...and the percentage header can lower the share to none.
        let headers = [("x-envoy-fault-abort-request-percentage", "0")];
        let reply = send(
            &mut conn,
            Method::GET,
            "fault.test",
            "/abort-hc/c",
            &headers,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {reply:?}");

        // Without header control, the header is ignored.
        let headers = [("x-envoy-fault-abort-request", "418")];
        let reply = send(&mut conn, Method::GET, "fault.test", "/abort/hdr", &headers).await;
        assert_aborted(&reply, 503, &format!("{proto:?} ignored header"));

        // Header-only faults: nothing without a header.
        let reply = conn.get("fault.test", "/headers/none").await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        let headers = [("x-envoy-fault-abort-request", "429")];
        let reply = send(&mut conn, Method::GET, "fault.test", "/headers/x", &headers).await;
        assert_aborted(&reply, 429, &format!("{proto:?} fault_headers"));

        // percent: 0 never aborts (nor delays by its 10s); max_active: 0 never injects.
        for i in 0..20 {
            let started = Instant::now();
            let reply = conn.get("fault.test", &format!("/never/{i}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} /never/{i}");
            assert!(started.elapsed() < Duration::from_secs(5));
            let reply = conn.get("fault.test", &format!("/capped/{i}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} /capped/{i}");
        }
    }
    // Exactly the requests not aborted reached nginx.
    let expected = 2 * (1 + 1 + 20 + 20);
    let entries = fixture.nginx.access_log("origin").wait_for(expected);
    let leaked: Vec<&str> = entries
        .iter()
        .map(|e| e.uri.as_str())
        .filter(|u| {
            ["/abort/", "/abort-hc/a", "/abort-hc/b", "/headers/x"]
                .iter()
                .any(|p| u.starts_with(p))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "aborted requests reached the origin: {leaked:?}"
    );
    assert_eq!(entries.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_holds_requests_for_the_configured_or_requested_time() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        // (header value, minimum time, maximum time): the route's delay is 2s, far enough
        // from the requested 300ms that a loaded machine cannot blur the two.
        let cases: [(Option<&str>, u64, u64); 3] = [
            (None, 2000, 10_000),
            (Some("300"), 300, 1900),
            // a header of 0ms is no delay at all
            (Some("0"), 0, 1900),
        ];
        for (value, at_least, at_most) in cases {
            let headers: Vec<(&str, &str)> = value
                .map(|v| ("x-envoy-fault-delay-request", v))
                .into_iter()
                .collect();
            let started = Instant::now();
            let reply = send(&mut conn, Method::GET, "fault.test", "/delay/x", &headers).await;
            let waited = started.elapsed();
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} {value:?}");
            assert_eq!(fields(reply.text())["uri"], "/delay/x");
            assert!(
                waited >= Duration::from_millis(at_least),
                "{proto:?} {value:?}: answered after {waited:?}"
            );
            assert!(
                waited < Duration::from_millis(at_most),
                "{proto:?} {value:?}: answered after {waited:?}"
            );
        }
        // A percentage header of 0 skips even a long requested delay.
        let started = Instant::now();
        let headers = [
            ("x-envoy-fault-delay-request", "5000"),
            ("x-envoy-fault-delay-request-percentage", "0"),
        ];
        let reply = send(&mut conn, Method::GET, "fault.test", "/delay/y", &headers).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(1900), "{proto:?}");

        // fault_headers: delay, then abort.
        let started = Instant::now();
        let headers = [
            ("x-envoy-fault-delay-request", "200"),
            ("x-envoy-fault-abort-request", "500"),
        ];
        let reply = send(&mut conn, Method::GET, "fault.test", "/headers/z", &headers).await;
        assert!(started.elapsed() >= Duration::from_millis(200), "{proto:?}");
        assert_aborted(&reply, 500, &format!("{proto:?} fault_headers"));
    }
}

// ---------------------------------------------------------------------------------------
// body_limit
// ---------------------------------------------------------------------------------------

/// A request body of `total` bytes in `chunk`-sized frames with no declared length, so
/// HTTP/1.1 sends it chunked and HTTP/2 without `content-length`.
struct Chunked {
    byte: u8,
    chunk: usize,
    left: usize,
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let len = this.left.min(this.chunk);
        this.left -= len;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![this.byte; len])))))
    }
}

fn chunked(byte: u8, chunk: usize, total: usize) -> ReqBody {
    Chunked {
        byte,
        chunk,
        left: total,
    }
    .boxed()
}

fn payload_too_large(reply: &Reply, context: &str) {
    assert_eq!(
        reply.local_reply(),
        (413, None, Some("text/plain"), "payload too large\n"),
        "{context}: {reply:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_refuses_declared_and_streamed_bodies_over_the_limit() {
    let fixture = Fixture::start();
    let stored = |name: &str| std::fs::read(fixture.nginx.root().join("dav").join(name)).ok();
    for proto in Proto::BOTH {
        let tag = format!("{proto:?}").to_lowercase();
        let mut conn = fixture.conn(proto).await;
        // At the limit: stored intact.
        let path = format!("/dav/{tag}-at-limit.bin");
        let reply = send_body(
            &mut conn,
            Method::PUT,
            "body.test",
            &path,
            &[],
            full(vec![b'a'; 1000]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{proto:?}: {reply:?}");
        assert_eq!(
            stored(&format!("{tag}-at-limit.bin")),
            Some(vec![b'a'; 1000])
        );

        // Declared one byte over: refused from the head, nothing sent upstream.
        let path = format!("/dav/{tag}-declared.bin");
        let reply = send_body(
            &mut conn,
            Method::PUT,
            "body.test",
            &path,
            &[],
            full(vec![b'b'; 1001]),
        )
        .await;
        payload_too_large(&reply, &format!("{proto:?} declared"));

        // Streamed without a length, under the limit: stored intact.
        let path = format!("/dav/{tag}-small-stream.bin");
        let reply = send_body(
            &mut conn,
            Method::PUT,
            "body.test",
            &path,
            &[],
            chunked(b'c', 100, 900),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{proto:?}: {reply:?}");
        assert_eq!(
            stored(&format!("{tag}-small-stream.bin")),
            Some(vec![b'c'; 900])
        );
    }
    // `Expect: 100-continue`: a declared length over the limit is refused before the
    // client is invited to send its body; one under the limit is invited and stored.
    let mut raw = RawHttp::connect(fixture.addr);
    raw.send(
        b"PUT /dav/expect-big.bin HTTP/1.1\r\nHost: body.test\r\nContent-Length: 5000\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    let head = raw.read_head();
    assert_eq!(head.status, 413, "{}", head.raw);
    assert_eq!(raw.body_for(&head), b"payload too large\n");
    let mut raw = RawHttp::connect(fixture.addr);
    raw.send(
        b"PUT /dav/expect-ok.bin HTTP/1.1\r\nHost: body.test\r\nContent-Length: 10\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    let head = raw.read_head();
    assert_eq!(head.status, 100, "{}", head.raw);
    raw.send(b"0123456789");
    let head = raw.read_head();
    assert_eq!(head.status, 201, "{}", head.raw);
    assert_eq!(stored("expect-ok.bin"), Some(b"0123456789".to_vec()));
    assert_eq!(stored("expect-big.bin"), None);

    // Streamed without a length, over the limit: cut off by the chunk that crosses it.
    // The upload is abandoned, so each gets a fresh connection. Every case is tried,
    // then all failures are reported together.
    let mut failures = Vec::new();
    for proto in Proto::BOTH {
        let tag = format!("{proto:?}").to_lowercase();
        for (chunk, total) in [(600, 1200), (100, 1100), (4096, 256 * 1024)] {
            let mut conn = fixture.conn(proto).await;
            let path = format!("/dav/{tag}-stream-{total}.bin");
            let request = conn
                .request(Method::PUT, "body.test", &path)
                .body(chunked(b'd', chunk, total))
                .unwrap();
            let got = match conn.try_send(request).await {
                Ok(reply) => format!("{:?}", reply.local_reply()),
                Err(error) => format!("error {error:?}"),
            };
            let want = r#"(413, None, Some("text/plain"), "payload too large\n")"#;
            if got != want {
                failures.push(format!(
                    "{proto:?} {total} bytes in {chunk}-byte chunks: got {got}"
                ));
            }
            assert_eq!(stored(&format!("{tag}-stream-{total}.bin")), None);
        }
        // The proxy still serves.
        let mut conn = fixture.conn(proto).await;
        assert_eq!(conn.get("body.test", "/after").await.status, StatusCode::OK);
    }
    // The declared-too-large uploads never reached nginx.
    let uris = fixture.origin_uris();
    assert!(
        !uris.iter().any(|u| u.contains("declared")),
        "refused uploads reached the origin: {uris:?}"
    );
    for proto in ["h1", "h2c"] {
        assert_eq!(stored(&format!("{proto}-declared.bin")), None);
    }
    assert!(
        failures.is_empty(),
        "streamed uploads over the limit not answered 413:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// access_log_stdout
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_line_per_exchange_to_stdout() {
    let fixture = Fixture::start();
    let upstream = fixture.nginx.addr("origin").to_string();
    let mut h1 = fixture.conn(Proto::H1).await;
    let mut h2 = fixture.conn(Proto::H2c).await;
    let id = |id: &'static str| [("x-test-id", id)];

    // The route that disables the log goes first: had it been logged, its line would
    // precede the others.
    let reply = send(
        &mut h1,
        Method::GET,
        "layers.test",
        "/quiet/q",
        &id("quiet"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let mut expected = Vec::new();
    let reply = send(
        &mut h1,
        Method::GET,
        "layers.test",
        "/plain/a?x=1",
        &id("t1"),
    )
    .await;
    expected.push(format!(
        "GET /plain/a?x=1 HTTP/1.1 200 - {} {upstream} t1",
        reply.body.len()
    ));
    let reply = send(&mut h2, Method::GET, "fault.test", "/abort/z", &id("t2")).await;
    assert_eq!(reply.status.as_u16(), 503);
    expected.push("GET /abort/z HTTP/2 503 FI 19 - t2".to_owned());
    let reply = send(&mut h1, Method::HEAD, "layers.test", "/direct", &id("t3")).await;
    assert_eq!(reply.status, StatusCode::OK);
    expected.push("HEAD /direct HTTP/1.1 200 - 0 - t3".to_owned());
    // The log is the first filter: it records the path before the route's rewrite.
    let reply = send_body(
        &mut h2,
        Method::POST,
        "rewrite.test",
        "/p/x",
        &id("t4"),
        full("hello"),
    )
    .await;
    assert_eq!(fields(reply.text())["uri"], "/echo/x");
    expected.push(format!(
        "POST /p/x HTTP/2 200 - {} {upstream} t4",
        reply.body.len()
    ));
    let reply = send(&mut h1, Method::GET, "headers.test", "/direct", &id("t5")).await;
    assert_eq!(reply.text(), "direct\n");
    expected.push("GET /direct HTTP/1.1 200 - 7 - t5".to_owned());
    // Bytes sent are the bytes on the wire: compressed.
    fixture.file("files/log.txt", &text_body(8 * 1024));
    let headers = [("x-test-id", "t6"), ("accept-encoding", "gzip")];
    let reply = send(
        &mut h1,
        Method::GET,
        "compress.test",
        "/files/log.txt",
        &headers,
    )
    .await;
    assert_eq!(reply.header("content-encoding"), "gzip");
    expected.push(format!(
        "GET /files/log.txt HTTP/1.1 200 - {} {upstream} t6",
        reply.body.len()
    ));
    let reply = send_body(
        &mut h2,
        Method::PUT,
        "body.test",
        "/dav/log.bin",
        &id("t7"),
        full(vec![0u8; 2000]),
    )
    .await;
    assert_eq!(reply.status.as_u16(), 413);
    expected.push("PUT /dav/log.bin HTTP/2 413 - 18 - t7".to_owned());
    // No virtual host matches: the router's own local reply is logged too.
    let reply = send(&mut h1, Method::GET, "nowhere.test", "/x", &id("t8")).await;
    assert_eq!(reply.local_reply().0, 404);
    expected.push("GET /x HTTP/1.1 404 NR 9 - t8".to_owned());

    // A log whose every write fails (`/dev/full`) costs nothing but a warning.
    let reply = send(&mut h2, Method::GET, "bare.test", "/full", &id("t9")).await;
    assert_eq!(reply.status, StatusCode::OK);
    expected.push(format!(
        "GET /full HTTP/2 200 - {} {upstream} t9",
        reply.body.len()
    ));

    // Lines reach stdout within the writers' one-second flush interval. Lines of the
    // layers vhost's `access_log_file("/dev/stdout", ..)` start with `file `.
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
    let file_ids = ["quiet", "t1", "t3"];
    let (lines, file_lines) = poll_until("every access log line on stdout", DEADLINE, || {
        let stdout = fixture.proxy.stdout();
        let (file, lines): (Vec<String>, Vec<String>) = stdout
            .lines()
            .map(str::to_owned)
            .partition(|l| l.starts_with("file "));
        let has = |lines: &[String], id: &str| lines.iter().any(|l| l.ends_with(&format!(" {id}")));
        (ids.iter().all(|id| has(&lines, id)) && file_ids.iter().all(|id| has(&file, id)))
            .then_some((lines, file))
    });
    assert_eq!(lines, expected, "stderr:\n{}", fixture.proxy.stderr());
    assert_eq!(
        file_lines,
        [
            "file 200 main/layers/3 quiet",
            "file 200 main/layers/0 t1",
            "file 200 main/layers/4 t3",
        ]
    );
    poll_until("the /dev/full write failure warning", DEADLINE, || {
        let log = proxy_tests::process::strip_ansi(&fixture.proxy.stderr());
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("access log write failed"))
            .then_some(())
    });
    let reply = send(&mut h1, Method::GET, "bare.test", "/still", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// compression
// ---------------------------------------------------------------------------------------

/// `len` bytes of text that compress well (and contain `a`s for nginx's sub_filter).
fn text_body(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut i = 0;
    while text.len() < len {
        text.extend_from_slice(
            format!("line {i}: a quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    text.truncate(len);
    text
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        other => panic!("unexpected content-encoding {other}"),
    }
    .unwrap_or_else(|e| panic!("cannot decode {encoding} body of {} bytes: {e}", data.len()));
    out
}

/// How a response should come back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Compressed with this encoding.
    Encoded(&'static str),
    /// Compressible, but sent as is (no acceptable encoding, or HEAD): `vary` only.
    Identity,
    /// Not compressible: untouched, no `vary`.
    Untouched,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_encodes_compressible_responses_as_the_client_prefers() {
    let fixture = Fixture::start();
    let big = text_body(256 * 1024);
    let small = text_body(100);
    let image: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let json = br#"{"items":[1,2,3],"name":"compress me"}"#.repeat(60);
    let tiny_json = br#"{"a":1}"#.to_vec();
    let pre = gzip(&big);
    let streamed: Vec<u8> = big
        .iter()
        .map(|&b| if b == b'a' { b'A' } else { b })
        .collect();
    fixture.file("files/big.txt", &big);
    fixture.file("files/small.txt", &small);
    fixture.file("files/page.html", &big[..2048]);
    fixture.file("files/image.png", &image);
    fixture.file("files/data.json", &json);
    fixture.file("files/tiny.json", &tiny_json);
    fixture.file("files/pre/big.txt", &pre);
    fixture.file("files/nt/big.txt", &big);
    fixture.file("files/stream/big.txt", &big);

    use Expect::{Encoded, Identity, Untouched};
    let cases: [(&str, Option<&str>, Expect, &[u8]); 20] = [
        ("/files/big.txt", Some("gzip"), Encoded("gzip"), &big),
        ("/files/big.txt", Some("br"), Encoded("br"), &big),
        (
            "/files/big.txt",
            Some("gzip, deflate, br"),
            Encoded("br"),
            &big,
        ),
        (
            "/files/big.txt",
            Some("br;q=0.5, gzip"),
            Encoded("gzip"),
            &big,
        ),
        ("/files/big.txt", Some("*"), Encoded("br"), &big),
        ("/files/big.txt", None, Identity, &big),
        ("/files/big.txt", Some("identity"), Identity, &big),
        ("/files/big.txt", Some("deflate"), Identity, &big),
        ("/files/big.txt", Some("gzip;q=0, br;q=0"), Identity, &big),
        (
            "/files/page.html",
            Some("gzip"),
            Encoded("gzip"),
            &big[..2048],
        ),
        ("/files/data.json", Some("br"), Encoded("br"), &json),
        // below min_content_length (256)
        ("/files/small.txt", Some("gzip"), Untouched, &small),
        // not a compressible type
        ("/files/image.png", Some("gzip"), Untouched, &image),
        // already encoded by the origin: passed through byte for byte
        ("/files/pre/big.txt", Some("gzip, br"), Untouched, &pre),
        // cache-control: no-transform
        ("/files/nt/big.txt", Some("gzip"), Untouched, &big),
        // streamed by the origin (no content-length): compressed as it streams
        (
            "/files/stream/big.txt",
            Some("gzip"),
            Encoded("gzip"),
            &streamed,
        ),
        (
            "/files/stream/big.txt",
            Some("br"),
            Encoded("br"),
            &streamed,
        ),
        // the /gz/ route overrides the policy: gzip only
        ("/gz/files/big.txt", Some("br, gzip"), Encoded("gzip"), &big),
        ("/gz/files/big.txt", Some("br"), Identity, &big),
        // /json-only/ compresses JSON only, whatever its size
        (
            "/json-only/files/tiny.json",
            Some("gzip"),
            Encoded("gzip"),
            &tiny_json,
        ),
    ];
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        // The origin's strong validator, to see it weakened.
        let plain = conn.get("compress.test", "/files/big.txt").await;
        let etag = plain.header("etag").to_owned();
        assert!(etag.starts_with('"'), "{etag}");
        for (path, accept, expect, body) in cases {
            let headers: Vec<(&str, &str)> =
                accept.map(|a| ("accept-encoding", a)).into_iter().collect();
            let reply = send(&mut conn, Method::GET, "compress.test", path, &headers).await;
            let context = format!("{proto:?} {path} accept-encoding {accept:?}");
            assert_eq!(reply.status, StatusCode::OK, "{context}");
            match expect {
                Encoded(encoding) => {
                    assert_eq!(all(&reply, "content-encoding"), [encoding], "{context}");
                    assert_eq!(all(&reply, "vary"), ["accept-encoding"], "{context}");
                    assert!(
                        !reply.headers.contains_key("content-length"),
                        "{context}: {reply:#?}"
                    );
                    assert!(!reply.headers.contains_key("accept-ranges"), "{context}");
                    if path == "/files/big.txt" {
                        assert_eq!(reply.header("etag"), format!("W/{etag}"), "{context}");
                    }
                    if body.len() > 1024 {
                        assert!(
                            reply.body.len() < body.len() / 2,
                            "{context}: {} compressed bytes for {}",
                            reply.body.len(),
                            body.len()
                        );
                    }
                    let decoded = decode(encoding, &reply.body);
                    assert!(decoded == body, "{context}: decoded body differs");
                }
                Identity | Untouched => {
                    let vary: &[&str] = if expect == Identity {
                        &["accept-encoding"]
                    } else {
                        &[]
                    };
                    assert_eq!(all(&reply, "vary"), vary, "{context}");
                    assert!(reply.body == body, "{context}: body differs");
                    if !path.contains("/stream/") {
                        assert_eq!(
                            reply.header("content-length"),
                            body.len().to_string(),
                            "{context}"
                        );
                    }
                    let encoding = all(&reply, "content-encoding");
                    if path.contains("/pre/") {
                        assert_eq!(encoding, ["gzip"], "{context}");
                    } else {
                        assert!(encoding.is_empty(), "{context}: {encoding:?}");
                    }
                    if path == "/files/big.txt" {
                        assert_eq!(reply.header("etag"), etag, "{context}");
                    }
                }
            }
        }
        // HEAD is never compressed, but varies like the GET.
        let headers = [("accept-encoding", "gzip, br")];
        let reply = send(
            &mut conn,
            Method::HEAD,
            "compress.test",
            "/files/big.txt",
            &headers,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.is_empty());
        assert!(
            !reply.headers.contains_key("content-encoding"),
            "{proto:?} HEAD"
        );
        assert_eq!(all(&reply, "vary"), ["accept-encoding"], "{proto:?} HEAD");
        assert_eq!(reply.header("content-length"), big.len().to_string());
    }

    // Only the /gz/ route removes accept-encoding on the way upstream.
    let mut conn = fixture.conn(Proto::H1).await;
    let headers = [("accept-encoding", "gzip")];
    let reply = send(
        &mut conn,
        Method::GET,
        "compress.test",
        "/gz/echo",
        &headers,
    )
    .await;
    assert_eq!(fields(reply.text())["accept-encoding"], "");
    let reply = send(&mut conn, Method::GET, "compress.test", "/echo", &headers).await;
    assert_eq!(fields(reply.text())["accept-encoding"], "gzip");

    // curl decodes what it negotiated (it offers both).
    let url = format!("http://{}/files/big.txt", fixture.addr);
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let out_path = fixture.dir.path().join("curl.out");
        let out = curl([
            flag,
            "--compressed",
            "-H",
            "Host: compress.test",
            "-o",
            out_path.to_str().unwrap(),
            "-w",
            "%{http_code} %header{content-encoding}",
            &url,
        ])
        .success();
        assert_eq!(out.stdout_text(), "200 br", "curl {flag}");
        assert!(
            std::fs::read(&out_path).unwrap() == big,
            "curl {flag}: body differs"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Inheritance: listener → virtual host → route
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_inherited_overridden_by_name_and_disabled() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        // (host, path) → (x-layer at nginx, x-seen at nginx, x-stamp, x-order)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case<'_>; 6] = [
            // route filters run after the vhost's on the request (they see x-layer),
            // and before them on the response (x-order: route, vhost, listener)
            (
                "layers.test",
                "/plain/a",
                "vhost",
                "saw vhost",
                &["listener"],
                &["route", "vhost", "listener"],
            ),
            (
                "layers.test",
                "/no-tag/a",
                "",
                "",
                &["listener"],
                &["vhost", "listener"],
            ),
            // the listener's `stamp` replaced in place by the route's
            (
                "layers.test",
                "/override/a",
                "vhost",
                "",
                &["route"],
                &["vhost"],
            ),
            ("layers.test", "/quiet/a", "vhost", "", &[], &["vhost"]),
            (
                "layers.test",
                "/other",
                "vhost",
                "",
                &["listener"],
                &["vhost", "listener"],
            ),
            ("bare.test", "/a", "", "", &[], &[]),
        ];
        for (host, path, layer, seen, stamp, order) in cases {
            let reply = conn.get(host, path).await;
            let context = format!("{proto:?} {host}{path}");
            assert_eq!(reply.status, StatusCode::OK, "{context}");
            let got = fields(reply.text());
            assert_eq!((got["x-layer"], got["x-seen"]), (layer, seen), "{context}");
            assert_eq!(all(&reply, "x-stamp"), stamp, "{context}");
            assert_eq!(all(&reply, "x-order"), order, "{context}");
        }
        // A route's unnamed built-in replaces the vhost's of the same built-in name.
        let reply = conn.get("layers.test", "/direct").await;
        assert_eq!(reply.text(), "direct\n");
        assert_eq!(all(&reply, "x-direct"), ["yes"], "{proto:?}");
        assert_eq!(all(&reply, "x-order"), ["listener"], "{proto:?}");
        assert_eq!(all(&reply, "x-stamp"), ["listener"], "{proto:?}");
    }
}
