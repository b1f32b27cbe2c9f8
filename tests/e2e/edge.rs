//! The shipped `edge` binary (release build) between real peers: nginx origins for both
//! clusters (`api` over TCP, `hugo` over a Unix socket) and real clients (curl, hyper over
//! HTTP/1.1 and h2c, raw bytes). What the origin received is read back from nginx
//! (`return 200 "host=$http_host..."`), its access log (`$connection`) or its disk (DAV PUT).
//!
//! Covered: routing to both clusters, request/response header rewriting, bodiless
//! responses, chunked and 100-continue uploads, upstream connection reuse and
//! `Connection: close` on either side, HTTP/1.1 and h2c on one listener, concurrency,
//! truncated and abandoned bodies, local replies (UF, UC), and graceful drain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use http::{Method, StatusCode, Version};
use proxy_tests::client::{bounded, empty, full, legacy_client, legacy_send};
use proxy_tests::*;

// ---------------------------------------------------------------------------------------
// The site: nginx serving both clusters, edge in front.
// ---------------------------------------------------------------------------------------

/// Keys of the echo body, in order: everything the proxy may add, keep or remove.
const ECHO_KEYS: [&str; 17] = [
    "origin",
    "method",
    "uri",
    "proto",
    "host",
    "xff",
    "xfp",
    "rid",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
    "transfer-encoding",
    "x-secret",
    "x-kept",
];

/// nginx locations of one origin; `prefix` is the path edge routes to it (`/api` or ``).
fn origin_locations(origin: &str, prefix: &str) -> String {
    let echo = ECHO_KEYS
        .iter()
        .map(|key| match *key {
            "origin" => format!("origin={origin}\\n"),
            "method" => "method=$request_method\\n".to_owned(),
            "uri" => "uri=$request_uri\\n".to_owned(),
            "proto" => "proto=$server_protocol\\n".to_owned(),
            "host" => "host=$http_host\\n".to_owned(),
            "xff" => "xff=$http_x_forwarded_for\\n".to_owned(),
            "xfp" => "xfp=$http_x_forwarded_proto\\n".to_owned(),
            "rid" => "rid=$http_x_request_id\\n".to_owned(),
            other => format!("{other}=$http_{}\\n", other.replace('-', "_")),
        })
        .collect::<String>();
    format!(
        r#"
        location = {prefix}/echo {{ default_type text/plain; return 200 "{echo}"; }}
        location = {prefix}/hop {{
            default_type text/plain;
            add_header Connection "X-Hop";
            add_header X-Hop "1";
            add_header Keep-Alive "timeout=9";
            add_header Proxy-Connection "keep-alive";
            add_header Upgrade "foo";
            add_header X-Kept "yes";
            add_header Set-Cookie "a=1; Path=/";
            add_header Set-Cookie "b=2";
            return 200 "hop\n";
        }}
        location = {prefix}/short-lived {{ keepalive_requests 3; default_type text/plain; return 200 "short\n"; }}
        location = {prefix}/204 {{ return 204; }}
        location = {prefix}/chunked.txt {{ sub_filter 'a' 'A'; sub_filter_once off; sub_filter_types *; }}
        location {prefix}/dav/ {{ dav_methods PUT; create_full_put_path on; }}
        "#
    )
}

/// Field order matters: the proxy is killed before nginx, and both before the directory goes.
struct Site {
    _edge: ProxyProcess,
    addr: SocketAddr,
    nginx: Nginx,
    dir: tempfile::TempDir,
}

impl Site {
    /// nginx with `api` on TCP and `hugo` on a Unix socket, then edge pointed at both.
    fn start() -> Self {
        let dir = tempdir();
        let nginx = Nginx::builder(dir.path())
            .tcp("api", &origin_locations("api", "/api"))
            .unix("hugo", &origin_locations("hugo", ""))
            .start();
        for (prefix, origin) in [("api", "api"), ("", "hugo")] {
            let folder = nginx.root().join(prefix);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(
                folder.join("static.txt"),
                format!("static file of {origin}\n"),
            )
            .unwrap();
            std::fs::write(folder.join("chunked.txt"), "banana bread and salad\n").unwrap();
        }
        let command = edge_command(dir.path())
            .env("API_ADDR", nginx.addr("api").to_string())
            .env("HUGO_SOCK", nginx.socket("hugo"));
        let mut edge = command.spawn();
        let addr = edge.tcp_listener("edge");
        Self {
            _edge: edge,
            addr,
            nginx,
            dir,
        }
    }

    /// Writes `big.bin` (see [`big_body`]) for both origins.
    fn add_big_files(&self) {
        for prefix in ["api", ""] {
            std::fs::write(self.nginx.root().join(prefix).join("big.bin"), big_body()).unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// edge on an ephemeral 127.0.0.1 port (read back from its `listening` log line), with
/// two workers whatever the machine: each worker keeps its own upstream pool, so the
/// reuse bounds below (at most one upstream connection per worker) must not depend on
/// the core count.
fn edge_command(dir: &Path) -> ProxyCommand {
    ProxyCommand::new(edge_bin(), dir)
        .env("EDGE_ADDR", "127.0.0.1:0")
        .args(["--concurrency", "2"])
}

/// edge on TCP with its `api` cluster pointing at `api` (anything `API_ADDR` takes) and
/// no Hugo socket: the proxy and its listener's address.
fn edge_in_front_of_api(dir: &Path, api: impl std::fmt::Display) -> (ProxyProcess, SocketAddr) {
    let mut edge = edge_command(dir)
        .env("API_ADDR", api.to_string())
        .env("HUGO_SOCK", dir.join("unused.sock"))
        .spawn();
    let addr = edge.tcp_listener("edge");
    (edge, addr)
}

/// Deterministic, non-repeating-per-chunk bytes: `(offset % 251)`, a prime period, so a
/// lost, duplicated or reordered block shows up at once.
fn pattern(start: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((start + i) % 251) as u8).collect()
}

/// An 8 MiB (and a bit) pattern file body: large enough to span many reads and frames.
fn big_body() -> &'static [u8] {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| pattern(0, 8 * 1024 * 1024 + 13))
}

/// Checks an echo body field by field: keys in `fields` have those values, `rid` is a
/// fresh v4 UUID unless given, everything else is empty (absent at the origin).
#[track_caller]
fn assert_echo(body: &str, fields: &[(&str, &str)]) {
    let got: Vec<(&str, &str)> = body.lines().filter_map(|l| l.split_once('=')).collect();
    let rid = got
        .iter()
        .find(|(k, _)| *k == "rid")
        .map_or("", |(_, v)| *v);
    let expected: String = ECHO_KEYS
        .iter()
        .map(|key| {
            let value = match fields.iter().find(|(k, _)| k == key) {
                Some((_, v)) => (*v).to_owned(),
                None if *key == "rid" => {
                    assert_uuid_v4(rid);
                    rid.to_owned()
                }
                None => String::new(),
            };
            format!("{key}={value}\n")
        })
        .collect();
    assert_eq!(body, expected);
}

#[track_caller]
fn assert_uuid_v4(id: &str) {
    let bytes = id.as_bytes();
    let ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
        && bytes[14] == b'4'
        && matches!(bytes[19], b'8' | b'9' | b'a' | b'b');
    assert!(ok, "x-request-id {id:?} is not a lowercase v4 UUID");
}

fn echo_rid(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("rid="))
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Routing and request rewriting
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_api_prefix_over_tcp_and_everything_else_over_the_unix_socket() {
    let site = Site::start();
    let host = site.addr.to_string();
    let mut conn = Conn::tcp(site.addr, Proto::H1).await;
    for (path, origin) in [
        ("/api/echo", "api"),
        ("/echo", "hugo"),
        ("/apiecho", "hugo-404"),
        ("/API/echo", "hugo-404"),
        // `/api` is not under `/api/`: hugo answers (a directory there: nginx redirects).
        ("/api", "hugo-301"),
        ("/api/static.txt", "static file of api\n"),
        ("/static.txt", "static file of hugo\n"),
    ] {
        let reply = conn.get(&host, path).await;
        match origin {
            "api" | "hugo" => {
                assert_eq!(reply.status, StatusCode::OK, "{path}");
                assert_echo(
                    reply.text(),
                    &[
                        ("origin", origin),
                        ("method", "GET"),
                        ("uri", path),
                        ("proto", "HTTP/1.1"),
                        ("host", &host),
                        ("xff", "127.0.0.1"),
                        ("xfp", "http"),
                    ],
                );
            }
            "hugo-404" | "hugo-301" => {
                // nginx's own answer (not a proxy local reply): the route matched, the file did not.
                let status = if origin == "hugo-301" {
                    StatusCode::MOVED_PERMANENTLY
                } else {
                    StatusCode::NOT_FOUND
                };
                assert_eq!(reply.status, status, "{path}");
                assert!(
                    reply.headers.get("x-proxy-response-flags").is_none(),
                    "{path}: {reply:?}"
                );
                assert!(
                    reply.header("server").starts_with("nginx"),
                    "{path}: {reply:?}"
                );
            }
            body => {
                assert_eq!(reply.status, StatusCode::OK, "{path}");
                assert_eq!(reply.text(), body, "{path}");
            }
        }
    }
    let api = site.nginx.access_log("api").wait_for(2);
    let hugo = site.nginx.access_log("hugo").wait_for(5);
    let uris = |entries: &[AccessEntry]| entries.iter().map(|e| e.uri.clone()).collect::<Vec<_>>();
    assert_eq!(uris(&api), ["/api/echo", "/api/static.txt"]);
    assert_eq!(
        uris(&hugo),
        ["/echo", "/apiecho", "/API/echo", "/api", "/static.txt"]
    );
}

#[test]
fn request_head_is_rewritten_for_the_upstream() {
    let site = Site::start();
    let url = site.url("/api/echo?a=1&b=%20");
    let echo = |headers: &[&str]| {
        let mut args = vec![url.clone()];
        for header in headers {
            args.push("-H".into());
            args.push((*header).to_owned());
        }
        curl(&args).success().stdout_text()
    };

    // Hop-by-hop fields (fixed list and those named in Connection) are dropped; the
    // forwarding headers are appended or replaced; Host and other fields pass through.
    let body = echo(&[
        "Host: Example.ORG:8443",
        "Connection: keep-alive, X-Secret",
        "X-Secret: s3cret",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: gzip",
        "Upgrade: foo",
        "X-Forwarded-For: 1.2.3.4",
        "X-Forwarded-Proto: https",
        "X-Kept: yes",
    ]);
    let fields = [
        ("origin", "api"),
        ("method", "GET"),
        ("uri", "/api/echo?a=1&b=%20"),
        ("proto", "HTTP/1.1"),
        ("host", "Example.ORG:8443"),
        ("xff", "1.2.3.4, 127.0.0.1"),
        ("xfp", "http"),
        ("x-kept", "yes"),
    ];
    assert_echo(&body, &fields);

    // `te: trailers` is end-to-end, even when Connection names TE as it should.
    let body = echo(&["TE: trailers", "Connection: TE"]);
    let host = site.addr.to_string();
    let base = [
        ("origin", "api"),
        ("method", "GET"),
        ("uri", "/api/echo?a=1&b=%20"),
        ("proto", "HTTP/1.1"),
        ("host", host.as_str()),
        ("xff", "127.0.0.1"),
        ("xfp", "http"),
    ];
    assert_echo(&body, &[&base[..], &[("te", "trailers")]].concat());

    // A client's x-request-id is kept; otherwise each request gets a new one.
    let body = echo(&["X-Request-Id: client-chosen-id"]);
    assert_echo(&body, &[&base[..], &[("rid", "client-chosen-id")]].concat());
    let first = echo_rid(&echo(&[]));
    let second = echo_rid(&echo(&[]));
    assert_uuid_v4(&first);
    assert_uuid_v4(&second);
    assert_ne!(first, second, "each request needs its own x-request-id");

    // Several X-Forwarded-For lines are folded, then the client IP appended.
    let body = echo(&[
        "X-Forwarded-For: 1.1.1.1",
        "X-Forwarded-For: 2.2.2.2, 3.3.3.3",
    ]);
    assert_echo(
        &body,
        &[
            &base[..4],
            &[
                ("host", host.as_str()),
                ("xff", "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"),
                ("xfp", "http"),
            ],
        ]
        .concat(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_are_removed() {
    let site = Site::start();
    // Byte-level over HTTP/1.1: exactly the end-to-end fields remain.
    for path in ["/api/hop", "/hop"] {
        let mut raw = RawHttp::connect(site.addr);
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        let mut names = head.names();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-length",
                "content-type",
                "date",
                "server",
                "set-cookie",
                "set-cookie",
                "x-kept"
            ],
            "{}",
            head.raw
        );
        assert_eq!(head.header("x-kept"), "yes");
        assert_eq!(
            head.all("set-cookie"),
            ["a=1; Path=/", "b=2"],
            "repeated fields keep their order"
        );
        assert_eq!(raw.body_for(&head), b"hop\n");
    }
    // Over h2c the response must also be valid HTTP/2 (no connection-specific fields).
    let mut conn = Conn::tcp(site.addr, Proto::H2c).await;
    for path in ["/api/hop", "/hop"] {
        let reply = conn.get("x", path).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.version, Version::HTTP_2);
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "proxy-connection",
            "upgrade",
            "transfer-encoding",
        ] {
            assert!(
                !reply.headers.contains_key(gone),
                "{path}: {gone} leaked: {reply:?}"
            );
        }
        assert_eq!(reply.header("x-kept"), "yes");
        assert_eq!(reply.text(), "hop\n");
    }
}

// ---------------------------------------------------------------------------------------
// Message framing: bodiless responses, chunked and 100-continue uploads
// ---------------------------------------------------------------------------------------

#[test]
fn head_204_and_304_responses_carry_no_body_on_a_keep_alive_connection() {
    let site = Site::start();
    for (prefix, origin) in [("/api", "api"), ("", "hugo")] {
        let file = format!("static file of {origin}\n");
        let mut raw = RawHttp::connect(site.addr);

        raw.send(format!("HEAD {prefix}/static.txt HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        assert_eq!(
            head.header("content-length"),
            file.len().to_string(),
            "HEAD keeps the GET length"
        );
        let etag = head.header("etag").to_owned();

        // Had the proxy sent body bytes after any of these heads, the next head would not
        // start with a status line and `read_head` would fail.
        raw.send(format!("GET {prefix}/204 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(head.status, 204, "{}", head.raw);
        assert!(
            !head.has("content-length") && !head.has("transfer-encoding"),
            "{}",
            head.raw
        );

        raw.send(
            format!("GET {prefix}/static.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n")
                .as_bytes(),
        );
        let head = raw.read_head();
        assert_eq!(head.status, 304, "{}", head.raw);
        assert!(!head.has("transfer-encoding"), "{}", head.raw);

        raw.send(format!("GET {prefix}/static.txt HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        assert_eq!(raw.body_for(&head), file.as_bytes());
        assert!(
            raw.buffered().is_empty(),
            "stray bytes after the last response: {:?}",
            raw.buffered()
        );

        // curl agrees on the framing (it would report an error on excess bytes).
        let out = curl([
            "-i",
            "--raw",
            "-I",
            &site.url(&format!("{prefix}/static.txt")),
        ])
        .success();
        let text = out.stdout_text();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
        let out = curl(["-i", "--raw", &site.url(&format!("{prefix}/204"))]).success();
        let text = out.stdout_text();
        assert!(
            text.starts_with("HTTP/1.1 204 No Content\r\n") && text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
    }
}

#[test]
fn chunked_uploads_arrive_intact() {
    let site = Site::start();
    let data = pattern(7, 3 * 1024 * 1024 + 17);
    let upload = site.dir.path().join("upload.bin");
    std::fs::write(&upload, &data).unwrap();
    for prefix in ["/api", ""] {
        let out = curl([
            "-X",
            "PUT",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
            "--data-binary",
            &format!("@{}", upload.display()),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &site.url(&format!("{prefix}/dav/chunked.bin")),
        ])
        .success();
        assert_eq!(out.stdout_text(), "201", "PUT {prefix}/dav/chunked.bin");
        let folder = if prefix.is_empty() { "dav" } else { "api/dav" };
        let stored = std::fs::read(site.nginx.root().join(folder).join("chunked.bin")).unwrap();
        assert!(
            stored == data,
            "{prefix}: stored {} bytes, sent {}",
            stored.len(),
            data.len()
        );
    }
}

#[test]
fn expect_100_continue_is_answered_and_the_upload_arrives_intact() {
    let site = Site::start();
    let data = pattern(3, 1024 * 1024 + 5);
    for (prefix, folder) in [("/api", "api/dav"), ("", "dav")] {
        // By hand: the client must get `100 Continue` before it sends a byte of body.
        let mut raw = RawHttp::connect(site.addr);
        raw.send(
            format!(
                "PUT {prefix}/dav/expect.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        let interim = raw.read_head();
        assert_eq!(interim.raw, "HTTP/1.1 100 Continue\r\n\r\n");
        raw.send(&data);
        let head = raw.read_head();
        assert_eq!(head.status, 201, "{}", head.raw);
        raw.body_for(&head);
        assert!(std::fs::read(site.nginx.root().join(folder).join("expect.bin")).unwrap() == data);

        // curl waits for the 100 too (and would stall a second if it never came).
        let upload = site.dir.path().join("expect-upload.bin");
        std::fs::write(&upload, &data[..1000]).unwrap();
        let out = curl([
            "-T",
            &upload.display().to_string(),
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "15",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &site.url(&format!("{prefix}/dav/expect-curl.bin")),
        ])
        .success();
        assert_eq!(out.stdout_text(), "201");
        assert_eq!(
            std::fs::read(site.nginx.root().join(folder).join("expect-curl.bin")).unwrap(),
            &data[..1000]
        );
    }
}

/// An origin may answer before the request is all sent and go on reading it (a
/// streaming echo): the rest of the request still goes out, as RFC 9112 asks of a
/// client unless the response says the connection is closing. Each echoed chunk is
/// awaited before the next is sent, so the exchange is full duplex through the proxy.
#[test]
fn an_early_answer_does_not_stop_the_upload() {
    let dir = tempdir();
    let origin = Origin::echo_at_once();
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    let mut raw = RawHttp::connect(addr);
    raw.send(b"POST /api/echo HTTP/1.1\r\nHost: up.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert!(
        head.header("transfer-encoding")
            .eq_ignore_ascii_case("chunked"),
        "{}",
        head.raw
    );
    assert_eq!(raw.body(10), b"5\r\nhello\r\n");
    raw.send(b"5\r\nworld\r\n");
    assert_eq!(
        raw.body(10),
        b"5\r\nworld\r\n",
        "the rest of the upload did not go out"
    );
    raw.send(b"0\r\n\r\n");
    assert_eq!(raw.body(5), b"0\r\n\r\n");
    assert!(
        origin
            .wait_request()
            .starts_with("POST /api/echo HTTP/1.1\r\n")
    );

    // Both the request and the response ended whole: the connection is as clean as
    // after any exchange, and the next request goes out on it.
    raw.send(b"POST /api/echo HTTP/1.1\r\nHost: up.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(raw.read_head().status, 200);
    assert_eq!(raw.body(13), b"3\r\nabc\r\n0\r\n\r\n");
    origin.wait_request();
    assert_eq!(
        origin.accepted(),
        1,
        "the origin connection was not reused after an early answer"
    );
}

#[test]
fn a_request_cut_short_by_its_answer_closes_the_origin_connection() {
    let dir = tempdir();
    let origin = Origin::answer_at_once(b"done\n");
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    let mut raw = RawHttp::connect(addr);
    raw.send(b"POST /api/upload HTTP/1.1\r\nHost: up.example\r\nContent-Length: 10\r\n\r\nhello");
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(raw.body_for(&head), b"done\n");
    assert!(origin.wait_request().starts_with("POST /api/upload "));

    // Half the request body never went out: the next request on that connection would
    // reach the origin behind the missing half.
    raw.send(b"world");
    raw.send(b"GET /api/next HTTP/1.1\r\nHost: up.example\r\n\r\n");
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(raw.body_for(&head), b"done\n");
    let next = origin.wait_request();
    assert!(next.starts_with("GET /api/next "), "{next:?}");
    assert_eq!(origin.accepted(), 2);
}

#[test]
fn an_interim_answer_leaves_the_connection_reusable() {
    let dir = tempdir();
    let origin = Origin::continue_first(b"done\n");
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    let mut raw = RawHttp::connect(addr);
    for _ in 0..2 {
        // The body's first part follows the origin's `100 Continue`, its second the
        // origin's receipt of the first: edge has read the interim response while
        // the request was still going out (a request body it had waited for).
        raw.send(b"POST /api/upload HTTP/1.1\r\nHost: up.example\r\nContent-Length: 5\r\n\r\n");
        origin.wait_request();
        raw.send(b"he");
        assert_eq!(origin.wait_request(), "he");
        raw.send(b"llo");
        assert_eq!(origin.wait_request(), "llo");
        let head = raw.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        assert_eq!(raw.body_for(&head), b"done\n");
    }
    assert_eq!(
        origin.accepted(),
        1,
        "the origin connection was not reused after an interim answer"
    );
}

#[test]
fn expect_is_not_forwarded_upstream() {
    let dir = tempdir();
    let origin = Origin::held(b"done\n");
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    let mut raw = RawHttp::connect(addr);
    raw.send(b"POST /api/upload HTTP/1.1\r\nHost: up.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(raw.read_head().raw, "HTTP/1.1 100 Continue\r\n\r\n");
    raw.send(b"hello");
    let forwarded = origin.wait_request().to_ascii_lowercase();
    assert!(
        forwarded.starts_with("post /api/upload http/1.1\r\n"),
        "{forwarded}"
    );
    assert!(
        !forwarded.contains("\r\nexpect:"),
        "Expect was forwarded:\n{forwarded}"
    );
    assert!(
        forwarded.contains("\r\nhost: up.example\r\n"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\r\ncontent-length: 5\r\n"),
        "{forwarded}"
    );
    origin.release();
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(raw.body_for(&head), b"done\n");
}

// ---------------------------------------------------------------------------------------
// Upstream connection reuse
// ---------------------------------------------------------------------------------------

/// 50 sequential requests over one client connection, then 50 over 50 client
/// connections: nginx must see them on (at most) a couple of upstream connections.
async fn assert_upstream_reuse(path: &str, origin: &str) {
    let site = Site::start();
    let host = site.addr.to_string();
    let log = site.nginx.access_log(origin);

    let mut conn = Conn::tcp(site.addr, Proto::H1).await;
    for _ in 0..50 {
        let reply = conn.get(&host, path).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let entries = log.wait_for(50);
    let distinct = AccessLog::distinct_connections(&entries);
    // One client connection is served by one worker: one upstream connection, or two if
    // the origin closed one in between.
    assert!(
        distinct <= 2,
        "{origin}: 50 requests on one client connection used {distinct} upstream connections: {entries:#?}"
    );

    for proto in Proto::BOTH {
        let before = log.entries().len();
        for _ in 0..50 {
            let mut conn = Conn::tcp(site.addr, proto).await;
            let reply = conn.get(&host, path).await;
            assert_eq!(reply.status, StatusCode::OK);
        }
        let entries = log.wait_for(before + 50);
        let distinct = AccessLog::distinct_connections(&entries[before..]);
        assert!(
            distinct <= 2,
            "{origin}: 50 {proto:?} client connections used {distinct} upstream connections: {:#?}",
            &entries[before..]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_tcp_cluster() {
    assert_upstream_reuse("/api/echo", "api").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_unix_cluster() {
    assert_upstream_reuse("/echo", "hugo").await;
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 and h2c on one listener
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_prior_knowledge_on_one_listener() {
    let site = Site::start();
    site.add_big_files();
    let authority = site.addr.to_string();
    for proto in Proto::BOTH {
        // The pooling client applications use.
        let client = legacy_client(proto);
        for (path, origin) in [("/api/echo", "api"), ("/echo", "hugo")] {
            let request = http::Request::get(site.url(path)).body(empty()).unwrap();
            let reply = legacy_send(&client, request).await;
            assert_eq!(
                (reply.status, reply.version),
                (StatusCode::OK, proto.version()),
                "{proto:?} {path}"
            );
            assert_eq!(reply.header("content-type"), "text/plain");
            assert_eq!(reply.header("content-length"), reply.body.len().to_string());
            assert_echo(
                reply.text(),
                &[
                    ("origin", origin),
                    ("method", "GET"),
                    ("uri", path),
                    ("proto", "HTTP/1.1"),
                    ("host", &authority),
                    ("xff", "127.0.0.1"),
                    ("xfp", "http"),
                ],
            );
        }

        // One connection, chosen authority and forwarding headers, a request body.
        let mut conn = Conn::tcp(site.addr, proto).await;
        let request = conn
            .request(Method::POST, "www.example.org:8443", "/api/echo?q=1")
            .header("x-forwarded-for", "9.9.9.9")
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "abc")
            .header("x-kept", "yes")
            .body(full("ignored body"))
            .unwrap();
        let reply = conn.send(request).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_echo(
            reply.text(),
            &[
                ("origin", "api"),
                ("method", "POST"),
                ("uri", "/api/echo?q=1"),
                ("proto", "HTTP/1.1"),
                ("host", "www.example.org:8443"),
                ("xff", "9.9.9.9, 127.0.0.1"),
                ("xfp", "http"),
                ("rid", "abc"),
                ("x-kept", "yes"),
            ],
        );
        let reply = conn.get("example.org", "/big.bin").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.body == big_body(),
            "{proto:?}: big.bin differs ({} bytes)",
            reply.body.len()
        );
    }

    // curl in both modes.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let out = curl([flag, "-w", "\n%{http_version}", &site.url("/api/echo")]).success();
        let text = out.stdout_text();
        let (body, got_version) = text.rsplit_once('\n').unwrap();
        assert_eq!(got_version, version);
        assert_echo(
            body,
            &[
                ("origin", "api"),
                ("method", "GET"),
                ("uri", "/api/echo"),
                ("proto", "HTTP/1.1"),
                ("host", &authority),
                ("xff", "127.0.0.1"),
                ("xfp", "http"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_h2_streams_and_h1_connections() {
    let site = Site::start();
    let h2 = Conn::tcp(site.addr, Proto::H2c).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut conn = h2.h2_clone();
        let path = if i % 2 == 0 {
            format!("/api/echo?i={i}")
        } else {
            format!("/echo?i={i}")
        };
        tasks.push(tokio::spawn(async move {
            (path.clone(), conn.get("h2.example", &path).await)
        }));
    }
    for i in 0..20 {
        let addr = site.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::tcp(addr, Proto::H1).await;
            let path = format!("/api/echo?h1={i}");
            (path.clone(), conn.get("h1.example", &path).await)
        }));
    }
    for task in tasks {
        let (path, reply) = bounded("concurrent request", task).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let origin = if path.starts_with("/api/") {
            "api"
        } else {
            "hugo"
        };
        let host = if path.contains("h1=") {
            "h1.example"
        } else {
            "h2.example"
        };
        assert_echo(
            reply.text(),
            &[
                ("origin", origin),
                ("method", "GET"),
                ("uri", &path),
                ("proto", "HTTP/1.1"),
                ("host", host),
                ("xff", "127.0.0.1"),
                ("xfp", "http"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upstream_responses_are_streamed_intact() {
    let site = Site::start();
    for proto in Proto::BOTH {
        let mut conn = Conn::tcp(site.addr, proto).await;
        for path in ["/api/chunked.txt", "/chunked.txt"] {
            let reply = conn.get("x", path).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                !reply.headers.contains_key("content-length"),
                "sub_filter output has no length: {reply:?}"
            );
            assert_eq!(reply.text(), "bAnAnA breAd And sAlAd\n", "{proto:?} {path}");
        }
    }
    let out = curl(["--raw", "-i", "--http1.1", &site.url("/api/chunked.txt")]).success();
    let text = out.stdout_text();
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n0\r\n\r\n"),
        "chunked body must end with the last chunk: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connection_close_is_honoured_without_failing_requests() {
    let site = Site::start();
    let host = site.addr.to_string();
    // One client connection throughout: the origin closing its side must not close ours.
    let mut conn = Conn::tcp(site.addr, Proto::H1).await;
    for (path, origin) in [("/api/short-lived", "api"), ("/short-lived", "hugo")] {
        let log = site.nginx.access_log(origin);
        let before = log.entries().len();
        for i in 0..20 {
            let reply = conn.get(&host, path).await;
            assert_eq!(
                (reply.status, reply.text()),
                (StatusCode::OK, "short\n"),
                "{path} request {i}"
            );
            assert!(
                !reply.headers.contains_key("connection"),
                "the origin's Connection: close leaked: {reply:?}"
            );
        }
        let entries = log.wait_for(before + 20);
        let entries = &entries[before..];
        // nginx closes each connection after its third request (`keepalive_requests 3`).
        assert!(
            entries.iter().all(|e| e.connection_requests <= 3),
            "{entries:#?}"
        );
        assert!(
            AccessLog::distinct_connections(entries) >= 7,
            "{entries:#?}"
        );
    }
}

#[test]
fn client_connection_close_is_not_forwarded_and_the_upstream_stays_pooled() {
    let site = Site::start();
    for (path, origin) in [("/api/echo", "api"), ("/echo", "hugo")] {
        for _ in 0..10 {
            let out = curl(["-i", "-H", "Connection: close", &site.url(path)]).success();
            let text = out.stdout_text();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.to_ascii_lowercase().contains("\r\nconnection: close"),
                "the client asked to close:\n{head}"
            );
            assert!(
                body.contains("\nconnection=\n"),
                "Connection was forwarded:\n{body}"
            );
        }
        let entries = site.nginx.access_log(origin).wait_for(10);
        let distinct = AccessLog::distinct_connections(&entries);
        assert!(
            distinct <= 2,
            "{origin}: {distinct} upstream connections for 10 requests: {entries:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_does_not_poison_the_pool() {
    let site = Site::start();
    site.add_big_files();
    let big = big_body();
    for path in ["/api/big.bin", "/big.bin"] {
        for _ in 0..3 {
            let mut raw = RawHttp::connect(site.addr);
            raw.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            let head = raw.read_head();
            assert_eq!(head.header("content-length"), big.len().to_string());
            assert!(raw.body(64 * 1024) == big[..64 * 1024]);
            // Dropped here with most of the body unread.
        }
        let mut conn = Conn::tcp(site.addr, Proto::H1).await;
        for _ in 0..5 {
            let reply = conn.get("x", path).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                reply.body == big,
                "{path}: body differs after abandoned downloads ({} bytes)",
                reply.body.len()
            );
            let reply = conn
                .get(
                    "x",
                    if path.starts_with("/api/") {
                        "/api/echo"
                    } else {
                        "/echo"
                    },
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_upstream_is_not_passed_off_as_complete() {
    let dir = tempdir();
    let origin = Origin::scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly ten b");
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    for proto in Proto::BOTH {
        let mut conn = Conn::tcp(addr, proto).await;
        let request = conn
            .request(Method::GET, "x", "/api/truncated")
            .body(empty())
            .unwrap();
        if let Ok(reply) = conn.try_send(request).await {
            panic!("{proto:?}: a body cut short upstream was delivered as complete: {reply:?}");
        }
    }
    // Byte level: the announced length, the bytes there were, then the connection closes.
    let mut raw = RawHttp::connect(addr);
    raw.send(b"GET /api/truncated HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = raw.read_head();
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, "1000"),
        "{}",
        head.raw
    );
    assert_eq!(raw.read_to_close(), b"only ten b");

    // A head cut short is a reset before the response: 502 UC.
    let origin = Origin::scripted(b"HTTP/1.1 200 OK\r\ncontent-le");
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    let reply = Conn::tcp(addr, Proto::H1)
        .await
        .get("x", "/api/half-head")
        .await;
    assert_eq!(
        reply.local_reply(),
        (
            502,
            Some("UC"),
            Some("text/plain"),
            "upstream reset before response\n"
        )
    );
}

#[test]
fn absolute_form_request_target_replaces_the_host_header() {
    // RFC 9112 §3.2.2: a proxy receiving absolute-form MUST ignore the Host header and
    // replace it with the target's authority (routing already uses the authority).
    let site = Site::start();
    let mut raw = RawHttp::connect(site.addr);
    raw.send(b"GET http://target.example:81/api/echo HTTP/1.1\r\nHost: other.example\r\n\r\n");
    let head = raw.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let body = String::from_utf8(raw.body_for(&head)).unwrap();
    assert_echo(
        &body,
        &[
            ("origin", "api"),
            ("method", "GET"),
            ("uri", "/api/echo"),
            ("proto", "HTTP/1.1"),
            ("host", "target.example:81"),
            ("xff", "127.0.0.1"),
            ("xfp", "http"),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Local replies for upstream failures
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_get_502_uf() {
    let dir = tempdir();
    let closed = ClosedPort::new();
    let (_edge, addr) = edge_in_front_of_api(dir.path(), closed.addr());
    let expected = (
        502,
        Some("UF"),
        Some("text/plain"),
        "upstream connect error\n",
    );
    for proto in Proto::BOTH {
        let mut conn = Conn::tcp(addr, proto).await;
        for path in ["/api/x", "/x"] {
            let reply = conn.get("x", path).await;
            assert_eq!(reply.local_reply(), expected, "{proto:?} {path}");
            assert_eq!(reply.header("content-length"), "23");
        }
    }
    let mut raw = RawHttp::connect(addr);
    raw.send(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = raw.read_head();
    let mut names = head.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "content-length",
            "content-type",
            "date",
            "x-proxy-response-flags"
        ],
        "{}",
        head.raw
    );
    assert_eq!(raw.body_for(&head), b"upstream connect error\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_closing_without_an_answer_gets_502_uc() {
    let dir = tempdir();
    let origin = Origin::reset();
    let (_edge, addr) = edge_in_front_of_api(dir.path(), origin.addr());
    for proto in Proto::BOTH {
        let mut conn = Conn::tcp(addr, proto).await;
        let reply = conn.get("x", "/api/reset").await;
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
        // The connection to the client survives the upstream failure.
        let reply = conn.get("x", "/api/reset").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    }
    assert!(origin.accepted() >= 4, "each attempt reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_cluster_may_be_a_unix_socket() {
    let dir = tempdir();
    let nginx = Nginx::builder(dir.path())
        .unix("api", &origin_locations("api", "/api"))
        .start();
    let (_edge, addr) = edge_in_front_of_api(
        dir.path(),
        format!("unix:{}", nginx.socket("api").display()),
    );
    let reply = Conn::tcp(addr, Proto::H1)
        .await
        .get("u.example", "/api/echo")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_echo(
        reply.text(),
        &[
            ("origin", "api"),
            ("method", "GET"),
            ("uri", "/api/echo"),
            ("proto", "HTTP/1.1"),
            ("host", "u.example"),
            ("xff", "127.0.0.1"),
            ("xfp", "http"),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

/// edge on a Unix socket with `api` pointing at `origin`.
fn edge_on_socket(dir: &Path, origin: &Origin, args: &[&str]) -> (ProxyProcess, PathBuf) {
    let socket = dir.join("edge.sock");
    let mut edge = ProxyCommand::new(edge_bin(), dir)
        .env("EDGE_ADDR", format!("unix:{}", socket.display()))
        .env("API_ADDR", origin.addr().to_string())
        .env("HUGO_SOCK", dir.join("unused.sock"))
        .args(args)
        .spawn();
    edge.wait_unix(&socket);
    (edge, socket)
}

/// curl through the socket on another thread: the in-flight request.
fn curl_in_background(socket: &Path, path: &str) -> std::thread::JoinHandle<CurlOutput> {
    let args = vec![
        "--unix-socket".to_owned(),
        socket.display().to_string(),
        format!("http://edge.local{path}"),
    ];
    std::thread::spawn(move || curl(&args))
}

#[test]
fn sigterm_drains_in_flight_requests_then_removes_the_socket() {
    let dir = tempdir();
    let body = pattern(0, 256 * 1024);
    let origin = Origin::held(&body);
    let (mut edge, socket) = edge_on_socket(dir.path(), &origin, &[]);

    let client = curl_in_background(&socket, "/api/slow");
    origin.wait_request();
    edge.signal("TERM");
    // New connections are refused while the old request is still in flight.
    poll_until("edge to stop accepting after SIGTERM", DEADLINE, || {
        std::os::unix::net::UnixStream::connect(&socket)
            .is_err()
            .then_some(())
    });
    assert!(edge.stderr().contains("draining"), "{}", edge.stderr());
    origin.release();

    let out = client.join().unwrap().success();
    assert!(
        out.stdout == body,
        "in-flight response cut short: {} of {} bytes",
        out.stdout.len(),
        body.len()
    );
    let status = edge.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", edge.stderr());
    assert!(!socket.exists(), "socket file left behind");
    let log = edge.stderr();
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
}

#[test]
fn sigint_stops_the_proxy_too() {
    let dir = tempdir();
    let origin = Origin::held(b"ok\n");
    let (mut edge, socket) = edge_on_socket(dir.path(), &origin, &[]);
    origin.release();
    let out = curl([
        "--unix-socket",
        &socket.display().to_string(),
        "http://edge.local/api/x",
    ])
    .success();
    assert_eq!(out.stdout, b"ok\n");
    edge.signal("INT");
    let status = edge.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", edge.stderr());
    assert!(!socket.exists(), "socket file left behind");
    assert!(edge.stderr().contains("SIGINT"), "{}", edge.stderr());
}

#[test]
fn drain_timeout_bounds_a_stuck_request() {
    let dir = tempdir();
    let origin = Origin::held(b"never sent\n");
    let (mut edge, socket) = edge_on_socket(dir.path(), &origin, &["--drain-timeout", "300ms"]);
    let client = curl_in_background(&socket, "/api/stuck");
    origin.wait_request();
    let signalled = Instant::now();
    edge.signal("TERM");
    let status = edge.wait_exit(DEADLINE);
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", edge.stderr());
    assert!(
        waited.as_millis() >= 300,
        "exited after {waited:?}, before the 300ms drain timeout"
    );
    let out = client.join().unwrap();
    assert_ne!(
        out.code, 0,
        "the stuck request cannot have completed: {out:?}"
    );
    assert!(!socket.exists(), "socket file left behind");
}

#[test]
fn idle_keep_alive_connections_do_not_delay_shutdown() {
    let dir = tempdir();
    let origin = Origin::held(b"ok\n");
    origin.release();
    // A drain timeout far beyond DEADLINE: only closing idle connections at once passes.
    let (mut edge, socket) = edge_on_socket(dir.path(), &origin, &["--drain-timeout", "600s"]);
    let mut idle = RawHttp::connect_unix(&socket);
    idle.send(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = idle.read_head();
    assert_eq!(idle.body_for(&head), b"ok\n");
    let status = edge.terminate();
    assert_eq!(status.code(), Some(0), "{}", edge.stderr());
    assert_eq!(
        idle.read_to_close(),
        b"",
        "the idle connection is closed without a response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_h2_streams_finish() {
    let dir = tempdir();
    let body = pattern(5, 128 * 1024);
    let origin = Origin::held(&body);
    let (mut edge, socket) = edge_on_socket(dir.path(), &origin, &[]);
    let conn = Conn::unix(&socket, Proto::H2c).await;
    let mut stream = conn.h2_clone();
    let in_flight = tokio::spawn(async move { stream.get("h2.local", "/api/slow").await });
    tokio::task::block_in_place(|| {
        origin.wait_request();
        edge.signal("TERM");
        poll_until("edge to stop accepting after SIGTERM", DEADLINE, || {
            std::os::unix::net::UnixStream::connect(&socket)
                .is_err()
                .then_some(())
        });
        origin.release();
    });
    let reply = bounded("the in-flight h2 stream", in_flight).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body == body,
        "in-flight h2 response cut short: {} of {} bytes",
        reply.body.len(),
        body.len()
    );
    let status = tokio::task::block_in_place(|| edge.wait_exit(DEADLINE));
    assert_eq!(status.code(), Some(0), "{}", edge.stderr());
    assert!(!socket.exists(), "socket file left behind");
}
