//! HTTP/2 through the proxy (`src/bin/grpc_fixture.rs`) with real peers: protocol
//! translation h2c→h2, h1→h2 and h2c→h1 against nginx (status, headers and bodies byte for
//! byte, 32 MiB each way with the proxy's memory bounded), 100 concurrent streams on one
//! client connection, and request and response trailers end to end through the suite's own
//! hyper origin (HTTP/2 and HTTP/1.1 on one port), which echoes request trailers back as
//! response trailers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy_tests::client::{bounded, empty, full};
use proxy_tests::*;

const FIXTURE: &str = env!("CARGO_BIN_EXE_grpc_fixture");
const BIG: usize = 32 << 20;
/// Peak RSS the proxy may reach while moving 32 MiB each way.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Bound for one request of the big transfers (generous: the machine may be busy).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(60);

/// `len` bytes of a pattern with a prime period, so chunk boundaries never line up with it.
fn pattern(len: usize) -> Vec<u8> {
    let period: Vec<u8> = (0..251u8).collect();
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let take = period.len().min(len - bytes.len());
        bytes.extend_from_slice(&period[..take]);
    }
    bytes
}

/// A body made of given frames (data and trailers), in order; unknown length, so HTTP/1.1
/// sends it chunked.
struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    fn new(frames: impl IntoIterator<Item = Frame<Bytes>>) -> Self {
        Self(frames.into_iter().collect())
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// A response read to its end: head, body and trailers.
#[derive(Debug)]
struct Full {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Full {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {self:#?}"))
            .to_str()
            .unwrap()
    }
}

async fn send_full(conn: &mut Conn, request: Request<client::ReqBody>) -> Full {
    let what = format!("{} {}", request.method(), request.uri());
    let response = conn
        .try_send_streaming(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = response.into_parts();
    let collected = bounded(&what, body.collect())
        .await
        .unwrap_or_else(|e| panic!("{what} body: {e:?}"));
    Full {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

// ---------------------------------------------------------------------------------------
// Protocol translation against nginx
// ---------------------------------------------------------------------------------------

/// Every nginx server of the suite: static files with extra headers, a request echo, a
/// non-200 status, and DAV uploads.
const NGINX_SERVER: &str = r#"
    location / {
        add_header x-origin-proto $server_protocol always;
        add_header x-multi one always;
        add_header x-multi two always;
    }
    location = /echo {
        default_type text/plain;
        return 200 "method=$request_method\nuri=$request_uri\nhost=$http_host\ncustom=$http_x_custom\nhop=$http_x_hop\nte=$http_te\nproto=$server_protocol\n";
    }
    location = /teapot { return 418 "short and stout\n"; }
    location /dav/ { dav_methods PUT; create_full_put_path on; }
"#;

/// Headers that describe a message end to end: without the connection-level ones (which
/// differ between HTTP/1.1 and HTTP/2 by definition) and `date` (a clock), name → values.
fn end_to_end(headers: &HeaderMap) -> BTreeMap<String, Vec<Vec<u8>>> {
    const HOP: [&str; 5] = [
        "date",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "proxy-connection",
    ];
    let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in headers {
        if !HOP.contains(&name.as_str()) {
            map.entry(name.as_str().to_owned())
                .or_default()
                .push(value.as_bytes().to_vec());
        }
    }
    map
}

/// One client protocol against one upstream protocol: the request head as nginx saw it,
/// statuses, headers and bodies compared with nginx answering directly, and 32 MiB down
/// and up, byte for byte, with the proxy's memory bounded.
async fn translation(client: Proto, upstream: Proto) {
    let dir = tempdir();
    let nginx = Nginx::builder(dir.path())
        .h2c("h2", NGINX_SERVER)
        .tcp("h1", NGINX_SERVER)
        .start();
    let big = Bytes::from(pattern(BIG));
    std::fs::write(nginx.root().join("big.bin"), &big).unwrap();
    std::fs::write(nginx.root().join("small.txt"), "small file\n").unwrap();
    let mut proxy = ProxyCommand::new(FIXTURE, dir.path())
        .env("NGINX_H2_ADDR", nginx.addr("h2").to_string())
        .env("NGINX_H1_ADDR", nginx.addr("h1").to_string())
        .spawn();
    let addr = proxy.tcp_listener("main");
    let (authority, server, nginx_proto) = match upstream {
        Proto::H2c => ("H2.Origin:8080", "h2", "HTTP/2.0"),
        Proto::H1 => ("H1.Origin:8080", "h1", "HTTP/1.1"),
    };
    let case = format!("{client:?} client, {upstream:?} upstream");
    let mut conn = Conn::tcp(addr, client)
        .await
        .with_timeout(TRANSFER_DEADLINE);
    let mut direct = Conn::tcp(nginx.addr(server), upstream)
        .await
        .with_timeout(TRANSFER_DEADLINE);

    // The request head nginx receives.
    let mut request = conn
        .request(Method::GET, authority, "/echo?q=1&r=%20x")
        .header("x-custom", "value, with comma")
        .header("te", "trailers");
    if client == Proto::H1 {
        request = request
            .header("connection", "x-hop")
            .header("x-hop", "secret");
    }
    let reply = conn.send(request.body(empty()).unwrap()).await;
    assert_eq!(
        (reply.status, reply.version, reply.text()),
        (
            StatusCode::OK,
            client.version(),
            format!(
                "method=GET\nuri=/echo?q=1&r=%20x\nhost={authority}\ncustom=value, with comma\n\
                 hop=\nte=trailers\nproto={nginx_proto}\n"
            )
            .as_str()
        ),
        "{case}: {reply:#?}"
    );

    // Statuses, headers and bodies as nginx sends them.
    for path in ["/small.txt", "/big.bin", "/missing.bin", "/teapot", "/echo"] {
        let proxied = conn.get(authority, path).await;
        let origin = direct.get(authority, path).await;
        let what = format!("{case}: GET {path}");
        assert_eq!(proxied.status, origin.status, "{what}");
        assert_eq!(proxied.version, client.version(), "{what}");
        assert!(
            proxied.body == origin.body,
            "{what}: {} bytes through the proxy, {} from nginx",
            proxied.body.len(),
            origin.body.len()
        );
        assert_eq!(
            end_to_end(&proxied.headers),
            end_to_end(&origin.headers),
            "{what}: headers differ"
        );
        assert!(!proxied.headers.contains_key("x-proxy-response-flags"));
        if client == Proto::H2c {
            for hop in ["connection", "keep-alive", "transfer-encoding"] {
                assert!(!proxied.headers.contains_key(hop), "{what}: {hop}");
            }
        }
    }
    let download = conn.get(authority, "/big.bin").await;
    assert_eq!(download.status, StatusCode::OK, "{case}");
    assert_eq!(download.header("content-length"), BIG.to_string(), "{case}");
    assert_eq!(download.header("x-origin-proto"), nginx_proto, "{case}");
    let multi: Vec<_> = download.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"], "{case}");
    assert!(download.body == big, "{case}: the 32 MiB download differs");

    // 32 MiB up.
    let request = conn
        .request(Method::PUT, authority, "/dav/up.bin")
        .header("content-type", "application/octet-stream")
        .body(full(big.clone()))
        .unwrap();
    let reply = conn.send(request).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{case}: {reply:?}");
    let stored = std::fs::read(nginx.root().join("dav/up.bin")).unwrap();
    assert!(
        stored == big,
        "{case}: stored {} of {BIG} bytes, or different ones",
        stored.len()
    );

    let peak = proxy.peak_rss_kib();
    eprintln!("{case}: proxy peak RSS {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "{case}: proxy peak RSS {peak} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_to_h2_upstream() {
    translation(Proto::H2c, Proto::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_client_to_h2_upstream() {
    translation(Proto::H1, Proto::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_to_h1_upstream() {
    translation(Proto::H2c, Proto::H1).await;
}

// ---------------------------------------------------------------------------------------
// The suite's own origin: HTTP/2 and HTTP/1.1 on one port
// ---------------------------------------------------------------------------------------

/// - `/echo`: answers with the request body and, as response trailers, the request's
///   trailers plus `x-origin-trailer: done` (declared in `trailer`, which HTTP/1.1 needs);
///   reports what it saw in `x-seen-version`, `x-seen-te`, `x-request-trailers`.
/// - `/barrier/..`: echoes the body, but only once `barrier` requests are in at once.
struct EchoOrigin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

struct OriginState {
    barrier: tokio::sync::Barrier,
    connections: AtomicUsize,
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoOrigin {
    async fn start(barrier: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(OriginState {
            barrier: tokio::sync::Barrier::new(barrier),
            connections: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| echo(request, Arc::clone(&state)));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

async fn echo(
    request: Request<Incoming>,
    state: Arc<OriginState>,
) -> Result<Response<Frames>, Infallible> {
    let (parts, body) = request.into_parts();
    let text = |status: u16, message: String| {
        let mut response = Response::new(Frames::new([Frame::data(Bytes::from(message))]));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(response)
    };
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => return text(500, format!("request body: {error}")),
    };
    let request_trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let path = parts.uri.path();
    if path.starts_with("/barrier/") {
        if tokio::time::timeout(DEADLINE, state.barrier.wait())
            .await
            .is_err()
        {
            return text(503, "the barrier was not reached".into());
        }
        return Ok(Response::new(Frames::new([Frame::data(data)])));
    }
    if path != "/echo" {
        return text(404, format!("no {path}"));
    }
    let mut trailers = request_trailers.clone().unwrap_or_default();
    trailers.insert("x-origin-trailer", HeaderValue::from_static("done"));
    let declared: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
    let mut frames = Vec::new();
    if !data.is_empty() {
        // Two frames, so the body is not one write on the way back either.
        let half = data.len() / 2;
        frames.push(Frame::data(data.slice(..half)));
        frames.push(Frame::data(data.slice(half..)));
    }
    let seen_te = parts
        .headers
        .get("te")
        .cloned()
        .unwrap_or(HeaderValue::from_static("-"));
    let response = Response::builder()
        .header("trailer", declared.join(", "))
        .header("x-seen-version", format!("{:?}", parts.version))
        .header("x-seen-te", seen_te)
        .header(
            "x-request-trailers",
            if request_trailers.is_some() {
                "yes"
            } else {
                "no"
            },
        )
        .body(Frames::new(
            frames.into_iter().chain([Frame::trailers(trailers)]),
        ))
        .unwrap();
    Ok(response)
}

struct EchoSite {
    origin: EchoOrigin,
    proxy: ProxyProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn echo_site(barrier: usize) -> EchoSite {
    let dir = tempdir();
    let origin = EchoOrigin::start(barrier).await;
    let mut proxy = ProxyCommand::new(FIXTURE, dir.path())
        .env("ECHO_H2_ADDR", origin.addr.to_string())
        .env("NGINX_H1_ADDR", origin.addr.to_string())
        .spawn();
    let addr = proxy.tcp_listener("main");
    EchoSite {
        origin,
        proxy,
        addr,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_on_one_client_connection() {
    const STREAMS: usize = 100;
    let site = echo_site(STREAMS).await;
    let conn = Conn::tcp(site.addr, Proto::H2c).await;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let mut conn = conn.h2_clone();
            let body = Bytes::from(format!("stream {i:03};").repeat(100 * (i + 1)));
            tokio::spawn(async move {
                let request = conn
                    .request(Method::POST, "echo.origin", &format!("/barrier/{i}"))
                    .body(full(body.clone()))
                    .unwrap();
                (body, conn.send(request).await)
            })
        })
        .collect();
    // The origin answers none of them before all of them arrived: they are all in flight
    // through the proxy at once.
    for (i, task) in tasks.into_iter().enumerate() {
        let (sent, reply) = bounded("a concurrent stream", task).await.unwrap();
        assert_eq!(
            (reply.status, reply.version),
            (StatusCode::OK, Version::HTTP_2),
            "stream {i}: {reply:?}\nproxy:\n{}",
            site.proxy.stderr()
        );
        assert!(reply.body == sent, "stream {i}: body differs");
    }
    assert_eq!(
        site.origin.connections(),
        1,
        "the HTTP/2 cluster should multiplex every stream on one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_cross_the_proxy_both_ways() {
    let site = echo_site(1).await;
    let sent_trailers = || {
        header_map(&[
            ("x-req-trailer", "one"),
            ("x-checksum", "12345"),
            ("x-multi-trailer", "a"),
            ("x-multi-trailer", "b"),
        ])
    };
    let echoed = |mut trailers: HeaderMap| {
        trailers.insert("x-origin-trailer", HeaderValue::from_static("done"));
        Some(trailers)
    };

    // HTTP/2 end to end: data then trailers, trailers alone, and response trailers only.
    let mut h2 = Conn::tcp(site.addr, Proto::H2c).await;
    let cases: [(Vec<Frame<Bytes>>, &str, &str); 3] = [
        (
            vec![
                Frame::data(Bytes::from_static(b"hello ")),
                Frame::data(Bytes::from_static(b"trailers")),
                Frame::trailers(sent_trailers()),
            ],
            "hello trailers",
            "yes",
        ),
        (vec![Frame::trailers(sent_trailers())], "", "yes"),
        (vec![], "", "no"),
    ];
    for (frames, body, request_trailers) in cases {
        let with_trailers = request_trailers == "yes";
        let request = h2
            .request(Method::POST, "echo.origin", "/echo")
            .header("te", "trailers")
            .body(Frames::new(frames).boxed())
            .unwrap();
        let reply = send_full(&mut h2, request).await;
        let what = format!("h2 → h2, body {body:?}, request trailers {request_trailers}");
        assert_eq!(
            (
                reply.status,
                reply.version,
                &reply.body[..],
                reply.header("x-seen-version"),
                reply.header("x-seen-te"),
                reply.header("x-request-trailers"),
            ),
            (
                StatusCode::OK,
                Version::HTTP_2,
                body.as_bytes(),
                "HTTP/2.0",
                "trailers",
                request_trailers,
            ),
            "{what}: {reply:#?}\nproxy:\n{}",
            site.proxy.stderr()
        );
        let expected = echoed(if with_trailers {
            sent_trailers()
        } else {
            HeaderMap::new()
        });
        assert_eq!(reply.trailers, expected, "{what}");
    }

    // An HTTP/1.1 client (chunked trailers, declared in `trailer` as HTTP/1.1 requires)
    // to the HTTP/2 upstream, and an HTTP/2 client to an HTTP/1.1 upstream.
    for (client, authority, upstream) in [
        (Proto::H1, "echo.origin", "HTTP/2.0"),
        (Proto::H2c, "h1.origin", "HTTP/1.1"),
    ] {
        let mut conn = Conn::tcp(site.addr, client).await;
        let trailers = header_map(&[("x-req-trailer", "one"), ("x-checksum", "12345")]);
        let request = conn
            .request(Method::POST, authority, "/echo")
            .header("te", "trailers")
            .header("trailer", "x-req-trailer, x-checksum")
            .body(
                Frames::new([
                    Frame::data(Bytes::from_static(b"across ")),
                    Frame::data(Bytes::from_static(b"versions")),
                    Frame::trailers(trailers.clone()),
                ])
                .boxed(),
            )
            .unwrap();
        let reply = send_full(&mut conn, request).await;
        let what = format!("{client:?} client, {upstream} upstream");
        assert_eq!(
            (
                reply.status,
                reply.version,
                &reply.body[..],
                reply.header("x-seen-version"),
                reply.header("x-seen-te"),
                reply.header("x-request-trailers"),
            ),
            (
                StatusCode::OK,
                client.version(),
                &b"across versions"[..],
                upstream,
                "trailers",
                "yes",
            ),
            "{what}: {reply:#?}\nproxy:\n{}",
            site.proxy.stderr()
        );
        assert_eq!(reply.trailers, echoed(trailers), "{what}");
    }
}

/// How a response head (an HPACK block) sent `Date`, as far as a client can tell without
/// keeping the table.
#[derive(Debug, PartialEq, Eq)]
enum DateSent {
    /// A literal the table keeps (or an entry it already kept: indexed).
    Indexable,
    /// A literal no table may keep.
    NeverIndexed,
}

/// Reads an HPACK integer with an `n`-bit prefix from `block` at `at`.
fn hpack_int(block: &[u8], at: &mut usize, n: u32) -> usize {
    let mask = (1usize << n) - 1;
    let mut value = block[*at] as usize & mask;
    *at += 1;
    if value == mask {
        let mut shift = 0;
        loop {
            let byte = block[*at];
            *at += 1;
            value += ((byte & 0x7f) as usize) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    value
}

/// How `Date` went in `block`: `None` if no literal carried it and no field was indexed
/// from the table (a fully indexed field may be a date kept earlier).
fn date_sent(block: &[u8]) -> Option<DateSent> {
    const DATE: usize = 33;
    let mut at = 0;
    let mut sent = None;
    let skip_string = |at: &mut usize| {
        let len = hpack_int(block, at, 7);
        *at += len;
    };
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            let index = hpack_int(block, &mut at, 7);
            if index > 61 && sent.is_none() {
                sent = Some(DateSent::Indexable);
            }
        } else if first & 0xe0 == 0x20 {
            hpack_int(block, &mut at, 5);
        } else {
            let (prefix, kind) = match first & 0xf0 {
                0x10 => (4, DateSent::NeverIndexed),
                0x00 => (4, DateSent::Indexable),
                _ => (6, DateSent::Indexable),
            };
            let name = hpack_int(block, &mut at, prefix);
            if name == 0 {
                skip_string(&mut at);
            }
            skip_string(&mut at);
            // The only field the proxy sends never-indexed is `Date`, named by its static
            // index or by the table entry an earlier date left.
            if name == DATE || kind == DateSent::NeverIndexed {
                sent = Some(kind);
            }
        }
    }
    sent
}

/// A bare HTTP/2 client, to see the bytes of a response head (the `h2` crate decodes them
/// away).
struct RawH2(tokio::net::TcpStream);

impl RawH2 {
    async fn connect(addr: SocketAddr) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        Self(stream)
    }

    /// Sends `GET /barrier/date` as stream `id` and returns its response's header block.
    async fn get(&mut self, id: u32) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // :method GET, :scheme http, then :path and :authority as literals.
        let mut block = vec![0x82, 0x86, 0x04, 12];
        block.extend_from_slice(b"/barrier/dat");
        block.extend_from_slice(&[0x01, 11]);
        block.extend_from_slice(b"echo.origin");
        let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[0x01, 0x05]);
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&block);
        self.0.write_all(&frame).await.unwrap();
        loop {
            let mut head = [0u8; 9];
            self.0.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            self.0.read_exact(&mut payload).await.unwrap();
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            match head[3] {
                // SETTINGS without ACK: acknowledged.
                0x04 if head[4] & 0x01 == 0 => {
                    self.0.write_all(b"\0\0\0\x04\x01\0\0\0\0").await.unwrap();
                }
                0x01 if stream == id => {
                    assert_eq!(head[4] & 0x2c, 0x04, "padded, prioritised or continued");
                    return payload;
                }
                0x07 => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
        }
    }
}

/// A client connection's responses carry `Date` as a literal its HPACK table may keep
/// for the connection's first 15 s, and as a never-indexed literal after
/// (`server/h2_date.rs`): `h2`'s encoder compares each date with every stale one kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_stays_out_of_an_old_connections_hpack_table() {
    let site = echo_site(1).await;
    let mut client = RawH2::connect(site.addr).await;
    let young = client.get(1).await;
    assert_eq!(date_sent(&young), Some(DateSent::Indexable), "{young:02x?}");
    // Not a synchronisation: the connection must be 15 s old.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let old = client.get(3).await;
    assert_eq!(date_sent(&old), Some(DateSent::NeverIndexed), "{old:02x?}");
}
