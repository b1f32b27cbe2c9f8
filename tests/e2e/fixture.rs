//! DSL features `edge` does not use, through the `fixture` binary (`src/bin/fixture.rs`):
//! virtual-host precedence, exact/prefix/regex routes, method and header conditions,
//! direct responses (HEAD included), redirects, a route timeout, a connect timeout,
//! upstream failures, an HTTP/2 upstream (reuse, uploads, GOAWAY), and a second listener
//! on a Unix socket (mode, stale, live and non-socket files, clean-up after a failed start).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use proxy_tests::client::{bounded, empty, full};
use proxy_tests::*;

const FIXTURE: &str = env!("CARGO_BIN_EXE_fixture");

/// nginx answering every path with what it received.
fn echo_server(origin: &str) -> String {
    format!(
        r#"
        location / {{
            default_type text/plain;
            return 200 "origin={origin}\nproto=$server_protocol\nmethod=$request_method\nuri=$request_uri\nhost=$http_host\nxff=$http_x_forwarded_for\nxfp=$http_x_forwarded_proto\nrid=$http_x_request_id\n";
        }}
        location /h2/dav/ {{ dav_methods PUT; create_full_put_path on; }}
        "#
    )
}

fn fields(body: &str) -> BTreeMap<&str, &str> {
    body.lines()
        .filter_map(|line| line.split_once('='))
        .collect()
}

/// Field order matters: the proxy goes first, then its peers, then the directory.
struct Fixture {
    proxy: ProxyProcess,
    addr: SocketAddr,
    socket: PathBuf,
    nginx: Nginx,
    slow: Origin,
    reset: Origin,
    _dead: ClosedPort,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Self {
        let dir = tempdir();
        let nginx = Nginx::builder(dir.path())
            .tcp("origin", &echo_server("origin"))
            .h2c("h2", &echo_server("h2"))
            .start();
        let slow = Origin::blackhole();
        let reset = Origin::reset();
        let dead = ClosedPort::new();
        let socket = dir.path().join("fixture.sock");
        let mut proxy = fixture_command(dir.path(), &socket)
            .env("ORIGIN_ADDR", nginx.addr("origin").to_string())
            .env("H2_ADDR", nginx.addr("h2").to_string())
            .env("SLOW_ADDR", slow.addr().to_string())
            .env("DEAD_ADDR", dead.addr().to_string())
            .env("RESET_ADDR", reset.addr().to_string())
            .spawn();
        let addr = proxy.tcp_listener("main");
        proxy.wait_unix(&socket);
        Self {
            proxy,
            addr,
            socket,
            nginx,
            slow,
            reset,
            _dead: dead,
            _dir: dir,
        }
    }

    async fn conn(&self, proto: Proto) -> Conn {
        Conn::tcp(self.addr, proto).await
    }
}

/// The fixture with its listeners on an ephemeral port and `socket`.
fn fixture_command(dir: &Path, socket: &Path) -> ProxyCommand {
    ProxyCommand::new(FIXTURE, dir)
        .env("FIXTURE_ADDR", "127.0.0.1:0")
        .env("FIXTURE_SOCK", socket)
}

async fn send(
    conn: &mut Conn,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = conn.request(method, host, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    conn.send(request.body(empty()).unwrap()).await
}

// ---------------------------------------------------------------------------------------
// Virtual hosts and routes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosts_follow_envoy_precedence() {
    let fixture = Fixture::start();
    let port = fixture.addr.port().to_string();
    let cases = [
        // exact beats every wildcard that also matches
        ("exact.example", "exact"),
        ("www.exact.example", "exact"),
        // port- and case-insensitive
        ("EXACT.Example:8080", "exact"),
        ("exact.example:1", "exact"),
        // longest suffix wildcard wins
        ("a.deep.example", "deep-suffix"),
        ("x.y.deep.example", "deep-suffix"),
        ("deep.example", "suffix"),
        ("b.example", "suffix"),
        ("B.Example:443", "suffix"),
        // suffix wildcards beat prefix wildcards
        ("api.example", "suffix"),
        ("api.internal.example", "suffix"),
        // longest prefix wildcard wins
        ("api.internal.x", "long-prefix"),
        ("API.Internal.lan:8080", "long-prefix"),
        ("api.x", "prefix"),
        ("api.internal", "prefix"),
        // a wildcard never matches the empty string
        ("api.", "fallback"),
        ("example", "fallback"),
        // everything else
        ("other.org", "fallback"),
        ("127.0.0.1", "fallback"),
    ];
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for (host, vhost) in cases {
            let reply = conn.get(host, "/who").await;
            assert_eq!(
                (reply.status, reply.text()),
                (StatusCode::OK, format!("{vhost}\n").as_str()),
                "{proto:?} Host: {host}"
            );
        }
        let reply = conn.get(&format!("127.0.0.1:{port}"), "/who").await;
        assert_eq!(reply.text(), "fallback\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_prefix_and_regex_routes() {
    let fixture = Fixture::start();
    let mut conn = fixture.conn(Proto::H1).await;
    let to_origin = |reply: &Reply, path: &str| {
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            fields(reply.text()).get("origin"),
            Some(&"origin"),
            "{path} should reach the origin: {}",
            reply.text()
        );
        assert_eq!(fields(reply.text()).get("uri"), Some(&path), "{path}");
    };
    let cases: [(&str, Option<&str>); 12] = [
        ("/healthz", Some("ok\n")),
        ("/healthz/", None),
        ("/healthzx", None),
        ("/healthz?probe=1", Some("ok\n")),
        ("/v1/items", Some("items\n")),
        ("/v42/items", Some("items\n")),
        ("/v42/items?x=1", Some("items\n")),
        ("/v/items", None),
        ("/v1/items/", None),
        ("/xv1/items", None),
        ("/v1/itemsx", None),
        ("/V1/items", None),
    ];
    for (path, direct) in cases {
        let reply = conn.get("site.example.org", path).await;
        match direct {
            Some(body) => assert_eq!(
                (reply.status, reply.text()),
                (StatusCode::OK, body),
                "{path}"
            ),
            None => to_origin(&reply, path),
        }
    }
    let reply = conn.get("site.example.org", "/teapot").await;
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (418, "short and stout\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_on_method_and_headers() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 11] = [
            (Method::GET, "/canary", &[("x-canary", "1")], "canary\n"),
            (
                Method::GET,
                "/canary/deeper",
                &[("x-canary", "1")],
                "canary\n",
            ),
            (Method::POST, "/canary", &[("x-canary", "1")], "stable\n"),
            (Method::GET, "/canary", &[("x-canary", "2")], "stable\n"),
            (Method::GET, "/canary", &[("x-canary", "11")], "stable\n"),
            (Method::GET, "/canary", &[], "stable\n"),
            (
                Method::GET,
                "/canary",
                &[("x-canary", "0"), ("x-canary", "1")],
                "canary\n",
            ),
            (Method::GET, "/flag", &[("x-flag", "anything")], "flagged\n"),
            (Method::DELETE, "/flag", &[("X-Flag", "")], "flagged\n"),
            (Method::GET, "/flag", &[("x-flags", "1")], "unflagged\n"),
            (Method::GET, "/flag", &[], "unflagged\n"),
        ];
        for (method, path, headers, body) in cases {
            let reply = send(&mut conn, method.clone(), "c.test", path, headers).await;
            assert_eq!(
                (reply.status, reply.text()),
                (StatusCode::OK, body),
                "{proto:?} {method} {path} {headers:?}"
            );
        }
    }
    // HEAD matches like GET (HEAD over HTTP/2 is covered by its own test below).
    let mut conn = fixture.conn(Proto::H1).await;
    let reply = send(
        &mut conn,
        Method::HEAD,
        "c.test",
        "/canary",
        &[("x-canary", "1")],
    )
    .await;
    assert_eq!(
        (reply.status, reply.header("content-length"), reply.text()),
        (StatusCode::OK, "7", "")
    );
    let reply = send(&mut conn, Method::HEAD, "c.test", "/canary", &[]).await;
    assert_eq!(
        (reply.status, reply.header("content-length"), reply.text()),
        (StatusCode::OK, "7", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_answered_by_the_proxy_have_no_body_over_both_protocols() {
    let fixture = Fixture::start();
    // (host, path, status, content-length of the GET body)
    let cases = [
        ("c.test", "/healthz", 200, "3"),        // direct_response
        ("exact.example", "/nothing", 404, "9"), // NR
        ("c.test", "/dead/x", 502, "23"),        // UF
        ("c.test", "/moved", 301, "0"),          // redirect
        ("c.test", "/echo", 200, ""),            // proxied: nginx's own HEAD answer
    ];
    // Every case is tried (a fresh connection each, as a reset may poison one), then all
    // failures are reported together.
    let mut failures = Vec::new();
    for proto in Proto::BOTH {
        for (host, path, status, length) in cases {
            let mut conn = fixture.conn(proto).await;
            let request = conn
                .request(Method::HEAD, host, path)
                .body(empty())
                .unwrap();
            match conn.try_send(request).await {
                Err(error) => failures.push(format!(
                    "{proto:?} HEAD {host}{path}: invalid response: {error:?}"
                )),
                Ok(reply) => {
                    assert_eq!(reply.status.as_u16(), status, "{proto:?} HEAD {host}{path}");
                    if !length.is_empty() {
                        assert_eq!(
                            reply.header("content-length"),
                            length,
                            "{proto:?} HEAD {host}{path}"
                        );
                    }
                    if !reply.body.is_empty() {
                        failures.push(format!(
                            "{proto:?} HEAD {host}{path}: body {:?}",
                            reply.body
                        ));
                    }
                }
            }
        }
    }
    // curl agrees (it reports a PROTOCOL_ERROR for DATA on a HEAD stream).
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let out = curl([
            flag,
            "-I",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/healthz", fixture.addr),
        ]);
        if (out.code, out.stdout_text().as_str()) != (0, "200") {
            failures.push(format!(
                "curl {flag} -I /healthz: exit {} {}",
                out.code,
                out.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "HEAD responses with a body:\n{}",
        failures.join("\n")
    );
}

#[test]
fn direct_responses_are_plain_text_with_an_exact_length() {
    let fixture = Fixture::start();
    let mut raw = RawHttp::connect(fixture.addr);
    for (request, status, body) in [
        ("GET /healthz", 200, "ok\n"),
        ("HEAD /healthz", 200, ""),
        ("GET /teapot", 418, "short and stout\n"),
        ("POST /teapot", 418, "short and stout\n"),
        ("GET /healthz", 200, "ok\n"),
    ] {
        raw.send(
            format!("{request} HTTP/1.1\r\nHost: d.test\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        let head = raw.read_head();
        assert_eq!(head.status, status, "{request}: {}", head.raw);
        let mut names = head.names();
        names.sort_unstable();
        assert_eq!(
            names,
            ["content-length", "content-type", "date"],
            "{request}: {}",
            head.raw
        );
        assert_eq!(head.header("content-type"), "text/plain");
        let full_length = if request.starts_with("HEAD") {
            3
        } else {
            body.len()
        };
        assert_eq!(
            head.header("content-length"),
            full_length.to_string(),
            "{request}"
        );
        let got = raw.body(body.len());
        assert_eq!(String::from_utf8(got).unwrap(), body, "{request}");
    }
    assert!(
        raw.buffered().is_empty(),
        "stray bytes: {:?}",
        raw.buffered()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_build_location_from_the_request() {
    let fixture = Fixture::start();
    let cases = [
        // scheme and host replaced, prefix rewritten, query kept, port dropped
        ("/old/a/b?q=1", 308, "https://new.example/new/a/b?q=1"),
        ("/old/", 308, "https://new.example/new/"),
        // only the path replaced: host, port and query kept
        ("/moved/x?y=2", 301, "http://site.test:8080/here?y=2"),
        // port replaced, query stripped
        ("/strip/p?secret=1", 302, "http://site.test:8443/strip/p"),
        // host replaced without a port: the request's port is dropped
        ("/elsewhere/z?k", 307, "http://other.example/elsewhere/z?k"),
        // scheme replaced without a port: the request's port is dropped
        ("/secure/z", 301, "https://site.test/secure/z"),
    ];
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for (path, status, location) in cases {
            let reply = conn.get("site.test:8080", path).await;
            assert_eq!(reply.status.as_u16(), status, "{proto:?} {path}");
            assert_eq!(reply.header("location"), location, "{proto:?} {path}");
            assert_eq!(reply.header("content-length"), "0", "{proto:?} {path}");
            assert!(
                reply.body.is_empty() && !reply.headers.contains_key("content-type"),
                "{reply:?}"
            );
        }
        // Without a port in the request, none appears.
        let reply = conn.get("site.test", "/moved").await;
        assert_eq!(reply.header("location"), "http://site.test/here");
    }
    // curl follows the redirect chain's first hop exactly.
    let out = curl([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: a.test:81",
        &format!("http://{}/moved?z", fixture.addr),
    ])
    .success();
    assert_eq!(out.stdout_text(), "301 http://a.test:81/here?z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_host_without_a_matching_route_answers_404_nr() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/who/"),
            (Method::POST, "/nothing"),
            (Method::GET, "/echo/x"),
        ] {
            let reply = send(&mut conn, method.clone(), "exact.example", path, &[]).await;
            assert_eq!(
                reply.local_reply(),
                (404, Some("NR"), Some("text/plain"), "no route\n"),
                "{proto:?} {method} {path}"
            );
            assert_eq!(reply.header("content-length"), "9");
        }
        // The exact vhost's cluster route still works.
        let reply = conn.get("exact.example", "/echo").await;
        assert_eq!(
            fields(reply.text()).get("host"),
            Some(&"exact.example"),
            "{}",
            reply.text()
        );
    }
    // Nothing reached the origin but the two /echo requests.
    let entries = fixture.nginx.access_log("origin").wait_for(2);
    assert_eq!(
        entries.iter().map(|e| e.uri.as_str()).collect::<Vec<_>>(),
        ["/echo", "/echo"]
    );
}

// ---------------------------------------------------------------------------------------
// Upstream failures and the route timeout
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_ut() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let started = Instant::now();
        let reply = conn.get("t.test", "/slow/never").await;
        let waited = started.elapsed();
        assert_eq!(
            reply.local_reply(),
            (
                504,
                Some("UT"),
                Some("text/plain"),
                "upstream request timeout\n"
            ),
            "{proto:?}"
        );
        // The route's 500ms applies, not the 15s default.
        assert!(
            waited >= Duration::from_millis(500),
            "{proto:?}: timed out after only {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(15),
            "{proto:?}: took {waited:?}, the default timeout, not 500ms"
        );
        // The downstream connection is still usable.
        assert_eq!(conn.get("t.test", "/healthz").await.text(), "ok\n");
    }
    assert!(
        fixture.slow.accepted() >= 1,
        "the blackhole origin was never contacted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_local_replies() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let reply = conn.get("f.test", "/dead/x").await;
        assert_eq!(
            reply.local_reply(),
            (
                502,
                Some("UF"),
                Some("text/plain"),
                "upstream connect error\n"
            ),
            "{proto:?}"
        );
        let reply = conn.get("f.test", "/reset/x").await;
        assert_eq!(
            reply.local_reply(),
            (
                502,
                Some("UC"),
                Some("text/plain"),
                "upstream reset before response\n"
            ),
            "{proto:?}"
        );
        // A POST with a body is answered the same way and the connection survives.
        let request = conn
            .request(Method::POST, "f.test", "/reset/upload")
            .body(full(vec![b'x'; 10_000]))
            .unwrap();
        let reply = conn.send(request).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{proto:?}");
        assert_eq!(conn.get("f.test", "/healthz").await.text(), "ok\n");
    }
    assert!(fixture.reset.accepted() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_of_the_cluster_applies() {
    // `dead` has `connect_timeout: 2s` and its route `timeout: 5s`: an endpoint that never
    // completes the handshake must give 502 UF after the 2s, not 504 UT after 5s.
    let dir = tempdir();
    let saturated = SaturatedPort::new();
    let socket = dir.path().join("fixture.sock");
    let mut proxy = fixture_command(dir.path(), &socket)
        .env("DEAD_ADDR", saturated.addr().to_string())
        .spawn();
    let addr = proxy.tcp_listener("main");
    let mut conn = Conn::tcp(addr, Proto::H1).await;
    let started = Instant::now();
    let reply = conn.get("c.test", "/dead/slow-connect").await;
    let waited = started.elapsed();
    assert_eq!(
        reply.local_reply(),
        (
            502,
            Some("UF"),
            Some("text/plain"),
            "upstream connect error\n"
        )
    );
    assert!(
        waited >= Duration::from_secs(2),
        "gave up after {waited:?}, before the 2s connect timeout"
    );
}

// ---------------------------------------------------------------------------------------
// HTTP/2 upstream
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cluster_speaks_h2c_to_nginx_over_one_connection() {
    let fixture = Fixture::start();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let reply = send(
            &mut conn,
            Method::GET,
            "H2.Test:8080",
            "/h2/echo?x=1",
            &[
                ("x-forwarded-for", "5.6.7.8"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let got = fields(reply.text());
        assert_eq!(got["origin"], "h2");
        assert_eq!(got["proto"], "HTTP/2.0");
        assert_eq!(got["method"], "GET");
        assert_eq!(got["uri"], "/h2/echo?x=1");
        assert_eq!(got["host"], "H2.Test:8080");
        assert_eq!(got["xff"], "5.6.7.8, 127.0.0.1");
        assert_eq!(got["xfp"], "http");
        assert_eq!(got["rid"].len(), 36, "{}", reply.text());
    }

    // Many requests, sequential and concurrent, share one upstream connection.
    let h2 = fixture.conn(Proto::H2c).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut conn = h2.h2_clone();
        tasks.push(tokio::spawn(async move {
            conn.get("h2.test", &format!("/h2/c{i}")).await
        }));
    }
    for task in tasks {
        let reply = bounded("h2 request", task).await.unwrap();
        assert_eq!(
            (reply.status, fields(reply.text())["proto"]),
            (StatusCode::OK, "HTTP/2.0")
        );
    }
    let mut h1 = fixture.conn(Proto::H1).await;
    for i in 0..20 {
        assert_eq!(
            h1.get("h2.test", &format!("/h2/s{i}")).await.status,
            StatusCode::OK
        );
    }
    let entries = fixture.nginx.access_log("h2").wait_for(62);
    let distinct = AccessLog::distinct_connections(&entries);
    assert!(
        distinct <= 2,
        "the HTTP/2 cluster opened {distinct} connections: {entries:#?}"
    );
    assert!(entries.iter().all(|e| e.protocol == "HTTP/2.0"));

    // A request body streams over the HTTP/2 upstream intact.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 7)
        .map(|i: u32| (i % 253) as u8)
        .collect();
    for proto in Proto::BOTH {
        let mut conn = fixture.conn(proto).await;
        let path = format!("/h2/dav/{proto:?}.bin");
        put_to_the_http2_cluster(&mut conn, fixture.nginx.root(), &path, &data).await;
    }
}

/// PUTs `data` at `path` of the HTTP/2 cluster's DAV location and checks nginx stored
/// it whole under `root`.
async fn put_to_the_http2_cluster(conn: &mut Conn, root: &Path, path: &str, data: &[u8]) {
    let request = conn
        .request(Method::PUT, "h2.test", path)
        .body(full(data.to_vec()))
        .unwrap();
    let reply = conn.send(request).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{path}: {reply:?}");
    let stored = std::fs::read(root.join(path.trim_start_matches('/'))).unwrap();
    assert!(
        stored == data,
        "{path}: stored {} of {} bytes",
        stored.len(),
        data.len()
    );
}

/// An HTTP/2 upstream reads an HTTP/1.1 client's body from its own task (possibly on
/// the other worker) while the client's connection task watches the socket; a wake-up
/// the watch took from the body's reader stalled the upload with the bytes buffered
/// (about one run in seven of this test, before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_uploads_to_the_http2_cluster_never_stall() {
    let fixture = Fixture::start();
    let data: Vec<u8> = (0..512 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let root = fixture.nginx.root().to_path_buf();
    let mut clients = Vec::new();
    for client in 0..4 {
        let (addr, data, root) = (fixture.addr, data.clone(), root.clone());
        clients.push(tokio::spawn(async move {
            for upload in 0..50 {
                let mut conn = Conn::tcp(addr, Proto::H1).await;
                let path = format!("/h2/dav/upload-{client}-{upload}.bin");
                put_to_the_http2_cluster(&mut conn, &root, &path, &data).await;
            }
        }));
    }
    // Each request is bounded by the client's own deadline.
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cluster_survives_the_origin_going_away() {
    // nginx sends GOAWAY after 2 requests on a connection (`keepalive_requests 2`): the
    // proxy must move to a new connection without failing requests.
    let dir = tempdir();
    let nginx = Nginx::builder(dir.path())
        .h2c("h2", r#"keepalive_requests 2; location / { default_type text/plain; return 200 "$request_uri\n"; }"#)
        .start();
    let socket = dir.path().join("fixture.sock");
    let mut proxy = fixture_command(dir.path(), &socket)
        .env("H2_ADDR", nginx.addr("h2").to_string())
        .spawn();
    let addr = proxy.tcp_listener("main");
    let mut conn = Conn::tcp(addr, Proto::H1).await;
    let mut failures = Vec::new();
    for i in 0..100 {
        let path = format!("/h2/goaway/{i}");
        let reply = conn.get("g.test", &path).await;
        if (reply.status, reply.text()) != (StatusCode::OK, format!("{path}\n").as_str()) {
            failures.push(format!(
                "request {i}: {} {:?} {:?}",
                reply.status,
                reply.headers.get("x-proxy-response-flags"),
                reply.text()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "requests failed across upstream GOAWAYs:\n{}\n{}",
        failures.join("\n"),
        proxy.stderr()
    );
    let entries = nginx.access_log("h2").wait_for(100 - failures.len());
    assert!(
        AccessLog::distinct_connections(&entries) >= 50,
        "{entries:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// The Unix socket listener
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_listener_serves_with_its_socket_mode() {
    let fixture = Fixture::start();
    let meta = std::fs::symlink_metadata(&fixture.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let socket = fixture.socket.display().to_string();
    let out = curl(["--unix-socket", &socket, "http://pipe.local/healthz"]).success();
    assert_eq!(out.stdout, b"pipe ok\n");

    // A Unix-socket client has no IP: no x-forwarded-for is invented.
    for proto in Proto::BOTH {
        let mut conn = Conn::unix(&fixture.socket, proto).await;
        let reply = conn.get("pipe.local", "/via/pipe").await;
        let got = fields(reply.text());
        assert_eq!(
            (got["origin"], got["host"], got["xff"], got["xfp"]),
            ("origin", "pipe.local", "", "http"),
            "{proto:?}"
        );
        assert_eq!(got["uri"], "/via/pipe");
    }
    let out = curl([
        "--unix-socket",
        &socket,
        "-H",
        "X-Forwarded-For: 10.0.0.1",
        "http://pipe.local/xff",
    ])
    .success();
    assert_eq!(fields(&out.stdout_text())["xff"], "10.0.0.1");
}

#[test]
fn sigterm_removes_the_pipe_socket() {
    let mut fixture = Fixture::start();
    assert_eq!(
        fixture.proxy.terminate().code(),
        Some(0),
        "{}",
        fixture.proxy.stderr()
    );
    assert!(!fixture.socket.exists(), "socket file left behind");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempdir();
    let socket = dir.path().join("fixture.sock");
    // Bound and dropped without unlinking, as a crashed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut proxy = fixture_command(dir.path(), &socket).spawn();
    proxy.wait_unix(&socket);
    let out = curl([
        "--unix-socket",
        &socket.display().to_string(),
        "http://pipe.local/healthz",
    ])
    .success();
    assert_eq!(out.stdout, b"pipe ok\n");
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    assert_eq!(proxy.terminate().code(), Some(0));
    assert!(!socket.exists());
}

#[test]
fn a_live_socket_is_never_taken_over() {
    let dir = tempdir();
    let socket = dir.path().join("fixture.sock");
    let live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let run = fixture_command(dir.path(), &socket).run();
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("in use by a running process"),
        "{}",
        run.stderr
    );
    // The other process keeps its socket.
    assert!(socket.exists());
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    live.accept().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempdir();
    let path = dir.path().join("fixture.sock");
    std::fs::write(&path, "precious").unwrap();
    let run = fixture_command(dir.path(), &path).run();
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a Unix socket"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_failed_bind_removes_sockets_already_bound() {
    let dir = tempdir();
    let socket = dir.path().join("fixture.sock");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let run = ProxyCommand::new(FIXTURE, dir.path())
        .env("FIXTURE_SOCK", &socket)
        .env("FIXTURE_ADDR", busy_addr.to_string())
        .run();
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("cannot bind {busy_addr}")),
        "{}",
        run.stderr
    );
    // The pipe listener is declared (and bound) first; its file must not outlive the failure.
    let log = proxy_tests::process::strip_ansi(&run.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains("listening") && l.contains("pipe")),
        "pipe was not bound first:\n{log}"
    );
    assert!(
        !socket.exists(),
        "socket file of the already-bound listener left behind"
    );
}

#[test]
fn check_shows_the_socket_mode_and_every_listener() {
    let dir = tempdir();
    let socket = dir.path().join("fixture.sock");
    let run = ProxyCommand::new(FIXTURE, dir.path())
        .arg("--check")
        .env("FIXTURE_SOCK", &socket)
        .run();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let resolved = run
        .stdout
        .split_once("resolved at start-up:\n")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let lines: Vec<&str> = resolved.lines().take(7).collect();
    let pipe = format!("  listener pipe on unix:{} (mode 660)", socket.display());
    assert_eq!(
        lines,
        [
            pipe.as_str(),
            "  listener main on 127.0.0.1:0",
            "  cluster origin -> [127.0.0.1:1]",
            "  cluster h2 -> [127.0.0.1:1]",
            "  cluster slow -> [127.0.0.1:1]",
            "  cluster dead -> [127.0.0.1:1]",
            "  cluster reset -> [127.0.0.1:1]",
        ]
    );
    assert!(!socket.exists(), "--check must not bind");
}
