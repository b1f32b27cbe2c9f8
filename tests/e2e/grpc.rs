//! gRPC through the proxy's HTTP/2 clusters (`src/bin/grpc_fixture.rs`), with real peers:
//! Python `grpcio` as server (on TCP and on a Unix socket) and as client. Unary, server,
//! client and interleaved bidirectional streaming, a 4 MiB message, status, details and
//! metadata (initial and trailing, text and binary), client deadlines; then what the
//! proxy answers itself for gRPC calls: trailers-only gRPC statuses for no route and
//! unreachable upstreams, and `grpc-timeout` capping the route timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_tests::client::{bounded, full};
use proxy_tests::{ClosedPort, Conn, Origin, Proto, ProxyCommand, ProxyProcess, tempdir};

const FIXTURE: &str = env!("CARGO_BIN_EXE_grpc_fixture");
const INSTALL: &str = "python3 -m pip install grpcio";

fn python_with_grpcio() {
    let found = Command::new("python3").args(["-c", "import grpc"]).status();
    assert!(
        matches!(found, Ok(status) if status.success()),
        "python3 with the `grpcio` package is required: {INSTALL}"
    );
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grpc")
        .join(name)
}

/// A Python command that ignores the developer's proxy settings (grpcio honours them).
fn python(script_name: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(script(script_name));
    for var in [
        "http_proxy",
        "https_proxy",
        "grpc_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_grpc_proxy",
    ] {
        command.env_remove(var);
    }
    command
}

/// `server.py`, killed on drop (and stopping by itself if this process dies: it watches
/// its stdin).
struct GrpcServer {
    child: Child,
    port: u16,
}

impl GrpcServer {
    fn start(socket: &Path) -> Self {
        let mut child = python("server.py")
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the gRPC server ({error}): {INSTALL}"));
        // It prints "ready <port>" once serving: a readiness signal, not a sleep.
        let line = child.stdout.take().map(BufReader::new).and_then(|mut out| {
            let mut line = String::new();
            out.read_line(&mut line).ok()?;
            Some(line)
        });
        let port = line
            .as_deref()
            .and_then(|line| line.strip_prefix("ready "))
            .and_then(|port| port.trim().parse().ok());
        let mut server = GrpcServer { child, port: 0 };
        match port {
            Some(port) => server.port = port,
            None => {
                let _ = server.child.kill();
                panic!("the gRPC server did not start (said {line:?}); {INSTALL}")
            }
        }
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `client.py` against the proxy at `addr`, killing it if it outlives a bound (each of
/// its calls has a 20 s deadline; together they take seconds): exit status, stdout, stderr.
fn run_client(dir: &Path, addr: SocketAddr) -> (std::process::ExitStatus, String, String) {
    const CLIENT_DEADLINE: Duration = Duration::from_secs(90);
    let stdout_path = dir.join("client.stdout");
    let stderr_path = dir.join("client.stderr");
    let file = |path: &Path| std::fs::File::create(path).unwrap();
    let mut child = python("client.py")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(file(&stdout_path))
        .stderr(file(&stderr_path))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run the gRPC client ({error}): {INSTALL}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > CLIENT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gRPC client still ran after {CLIENT_DEADLINE:?}:\n{}\n{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    (status, read(&stdout_path), read(&stderr_path))
}

#[test]
fn grpc_calls_cross_http2_clusters_over_tcp_and_unix_sockets() {
    python_with_grpcio();
    let dir = tempdir();
    let socket = dir.path().join("grpc.sock");
    let server = GrpcServer::start(&socket);
    let closed = ClosedPort::new();
    let reset = Origin::reset();
    let mut proxy = ProxyCommand::new(FIXTURE, dir.path())
        .env("RESET_ADDR", reset.addr().to_string())
        .env("GRPC_TCP_ADDR", server.addr().to_string())
        .env("GRPC_UNIX_ADDR", format!("unix:{}", socket.display()))
        .env("DOWN_TCP_ADDR", closed.addr().to_string())
        .env(
            "DOWN_UNIX_ADDR",
            format!("unix:{}", dir.path().join("absent.sock").display()),
        )
        .spawn();
    let addr = proxy.tcp_listener("main");

    let (status, stdout, stderr) = run_client(dir.path(), addr);
    let mut expected = String::new();
    for (name, transport) in [("tcp", "ipv4"), ("unix", "unix")] {
        expected.push_str(&format!(
            "{name} unary+metadata ok {transport}\n\
             {name} server-streaming ok 2000\n\
             {name} client-streaming ok 500\n\
             {name} bidi-interleaved ok 200\n\
             {name} large ok 4194304\n\
             {name} status ok NOT_FOUND\n\
             {name} deadline ok DEADLINE_EXCEEDED\n"
        ));
    }
    expected.push_str(
        "no-virtual-host ok UNIMPLEMENTED no route\n\
         no-route ok UNIMPLEMENTED no route\n\
         upstream-down-tcp ok UNAVAILABLE upstream connect error\n\
         upstream-down-unix ok UNAVAILABLE upstream connect error\n\
         upstream-reset ok UNAVAILABLE upstream reset before response\n",
    );
    assert_eq!(
        stdout,
        expected,
        "client stderr:\n{stderr}\nproxy:\n{}",
        proxy.stderr()
    );
    assert!(status.success(), "client exited {status}");
}

// ---------------------------------------------------------------------------------------
// What the proxy answers itself, seen on the wire with hyper's HTTP/2 client
// ---------------------------------------------------------------------------------------

/// An h2c origin that reads each request and never answers (until the proxy gives up).
async fn stalling_origin() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>().await
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// One length-prefixed gRPC message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// What a gRPC client sees of one call: HTTP status, headers, body and trailers.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// (HTTP status, content-type, grpc-status, grpc-message, response flags).
    fn grpc(&self) -> (u16, Option<&str>, Option<&str>, Option<&str>, Option<&str>) {
        (
            self.status.as_u16(),
            self.header("content-type"),
            self.header("grpc-status"),
            self.header("grpc-message"),
            self.header("x-proxy-response-flags"),
        )
    }

    /// A trailers-only response: everything in the head, no body, no trailers.
    #[track_caller]
    fn assert_trailers_only(&self) {
        assert!(self.body.is_empty(), "a body: {self:?}");
        assert!(self.trailers.is_none(), "trailers: {self:?}");
    }
}

async fn call(
    conn: &Conn,
    authority: &str,
    path: &str,
    content_type: &str,
    grpc_timeout: Option<&str>,
) -> Answer {
    let mut conn = conn.h2_clone();
    let mut request = conn
        .request(Method::POST, authority, path)
        .header("content-type", content_type)
        .header("te", "trailers");
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(full(grpc_frame(b"hello"))).unwrap();
    let start = Instant::now();
    let response = conn
        .try_send_streaming(request)
        .await
        .unwrap_or_else(|e| panic!("POST {authority}{path}: {e:?}"));
    let (parts, body) = response.into_parts();
    let collected = bounded("response body", body.collect()).await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
        elapsed: start.elapsed(),
    }
}

struct ProxyOnly {
    proxy: ProxyProcess,
    addr: SocketAddr,
    _closed: ClosedPort,
    _reset: Origin,
    _dir: tempfile::TempDir,
}

fn proxy_with(stall: Option<SocketAddr>) -> ProxyOnly {
    let dir = tempdir();
    let closed = ClosedPort::new();
    let reset = Origin::reset();
    let mut command = ProxyCommand::new(FIXTURE, dir.path())
        .env("RESET_ADDR", reset.addr().to_string())
        .env("DOWN_TCP_ADDR", closed.addr().to_string())
        .env(
            "DOWN_UNIX_ADDR",
            format!("unix:{}", dir.path().join("absent.sock").display()),
        );
    if let Some(stall) = stall {
        command = command.env("STALL_ADDR", stall.to_string());
    }
    let mut proxy = command.spawn();
    let addr = proxy.tcp_listener("main");
    ProxyOnly {
        proxy,
        addr,
        _closed: closed,
        _reset: reset,
        _dir: dir,
    }
}

const GRPC: &str = "application/grpc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_replies_to_grpc_calls_are_trailers_only_grpc_statuses() {
    let fixture = proxy_with(None);
    let conn = Conn::tcp(fixture.addr, Proto::H2c).await;
    // (grpc-status, grpc-message, x-proxy-response-flags)
    const NO_ROUTE: (&str, &str, &str) = ("12", "no route", "NR");
    const CONNECT: (&str, &str, &str) = ("14", "upstream connect error", "UF");
    const RESET: (&str, &str, &str) = ("14", "upstream reset before response", "UC");
    let cases = [
        ("nowhere.grpc", "/e2e.Echo/Unary", GRPC, NO_ROUTE),
        ("tcp.grpc", "/e2e.Missing/Call", GRPC, NO_ROUTE),
        (
            "tcp.grpc",
            "/e2e.Missing/Call",
            "application/grpc+proto",
            NO_ROUTE,
        ),
        ("down.grpc", "/e2e.Echo/Unary", GRPC, CONNECT),
        ("gone.grpc", "/e2e.Echo/Unary", GRPC, CONNECT),
        ("reset.grpc", "/e2e.Echo/Unary", GRPC, RESET),
    ];
    for (authority, path, content_type, (status, message, flag)) in cases {
        let answer = call(&conn, authority, path, content_type, None).await;
        assert_eq!(
            answer.grpc(),
            (
                200,
                Some("application/grpc"),
                Some(status),
                Some(message),
                Some(flag)
            ),
            "{authority}{path} ({content_type}): {answer:#?}\nproxy:\n{}",
            fixture.proxy.stderr()
        );
        answer.assert_trailers_only();
    }

    // The same failures for a request that is not gRPC keep their HTTP form.
    let answer = call(&conn, "nowhere.grpc", "/x", "application/json", None).await;
    assert_eq!(
        (
            answer.status.as_u16(),
            answer.header("x-proxy-response-flags"),
            answer.header("grpc-status"),
            &answer.body[..],
        ),
        (404, Some("NR"), None, &b"no route\n"[..]),
        "{answer:#?}"
    );
    let answer = call(&conn, "down.grpc", "/x", "application/json", None).await;
    assert_eq!(
        (
            answer.status.as_u16(),
            answer.header("x-proxy-response-flags"),
            answer.header("grpc-status"),
            &answer.body[..],
        ),
        (502, Some("UF"), None, &b"upstream connect error\n"[..]),
        "{answer:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_caps_the_route_timeout() {
    let (stall, _origin) = stalling_origin().await;
    let fixture = proxy_with(Some(stall));
    let conn = Conn::tcp(fixture.addr, Proto::H2c).await;
    let cases = [
        // (path, grpc-timeout, expected wait, grpc-status): the routes wait 10s, none, 300ms.
        ("/e2e.Echo/Slow", Some("300m"), 300, Some("4")),
        ("/none/e2e.Echo/Slow", Some("400000u"), 400, Some("4")),
        // The route's own timeout is the shorter one: UNAVAILABLE, not DEADLINE_EXCEEDED.
        ("/short/e2e.Echo/Slow", Some("5S"), 300, Some("14")),
        ("/short/e2e.Echo/Slow", None, 300, Some("14")),
    ];
    for (path, grpc_timeout, wait_ms, status) in cases {
        let answer = call(&conn, "stall.grpc", path, GRPC, grpc_timeout).await;
        let what = format!("{path} with grpc-timeout {grpc_timeout:?}");
        assert_eq!(
            answer.grpc(),
            (
                200,
                Some("application/grpc"),
                status,
                Some("upstream request timeout"),
                Some("UT")
            ),
            "{what}: {answer:#?}\nproxy:\n{}",
            fixture.proxy.stderr()
        );
        answer.assert_trailers_only();
        let wait = Duration::from_millis(wait_ms);
        assert!(
            answer.elapsed >= wait && answer.elapsed < wait + Duration::from_millis(2500),
            "{what}: answered after {:?}, expected {wait:?}",
            answer.elapsed
        );
    }

    // Not a gRPC call: the route timeout's plain 504.
    let answer = call(
        &conn,
        "stall.grpc",
        "/short/plain",
        "application/json",
        None,
    )
    .await;
    assert_eq!(
        (
            answer.status.as_u16(),
            answer.header("x-proxy-response-flags"),
            &answer.body[..]
        ),
        (504, Some("UT"), &b"upstream request timeout\n"[..]),
        "{answer:#?}"
    );
}
