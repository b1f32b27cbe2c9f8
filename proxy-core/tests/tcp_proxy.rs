//! The TCP proxy (L4) and network filters, driven in-process against real peers: a real
//! `redis-server` with `redis-cli` as the client, and small origins written here (echo,
//! half-closing) on TCP and Unix sockets. Every address is `127.0.0.1:0` or a socket in a
//! temporary directory; timeouts only bound how long a broken test can hang.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic with its error

mod support;

use std::ffi::OsString;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::config::{BindAddress, EndpointAddress};
use proxy_core::listener::ListenerConfig;
use proxy_core::net::Stream;
use proxy_core::server::{Server, ServerSettings};
use proxy_core::tcp::{
    CloseReason, ConnectionInfo, ConnectionSummary, IpNet, Ipv4Net, NetworkFilter, NetworkFlow,
    TcpProxy, TcpProxyOptions, TcpProxyStats,
};
use support::{STEP, within};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

// ----- the proxy --------------------------------------------------------------------

fn tcp_listener(name: &'static str) -> ListenerConfig {
    ListenerConfig::new(name, "127.0.0.1:0".parse().unwrap())
}

fn unix_listener(name: &'static str, path: &Path) -> ListenerConfig {
    ListenerConfig::new(name, BindAddress::Unix(path.to_path_buf())).socket_mode(0o600)
}

fn cluster(endpoints: Vec<EndpointAddress>) -> Arc<Cluster> {
    let options = ClusterOptions::DEFAULT.connect_timeout(Duration::from_secs(5));
    Arc::new(Cluster::new("origin", endpoints, options))
}

fn server(drain_timeout: Duration) -> Server {
    Server::new(ServerSettings {
        drain_timeout,
        ..ServerSettings::default()
    })
}

/// Binds a TCP proxy listener; returns its address and its counters.
fn serve<F: NetworkFilter>(
    server: &mut Server,
    listener: &ListenerConfig,
    filters: F,
    cluster: &Arc<Cluster>,
    options: TcpProxyOptions,
) -> (BindAddress, Arc<TcpProxyStats>) {
    let proxy = TcpProxy::new(listener.name(), Arc::clone(cluster), options);
    let stats = Arc::clone(proxy.stats());
    let address = server.tcp(listener, filters, proxy).unwrap();
    (address, stats)
}

async fn connect(address: &BindAddress) -> Stream {
    match address {
        BindAddress::Tcp(address) => Stream::Tcp(TcpStream::connect(address).await.unwrap()),
        BindAddress::Unix(path) => Stream::Unix(UnixStream::connect(path).await.unwrap()),
    }
}

/// The proxy closed the connection without sending anything.
async fn assert_closed_without_data(stream: &mut Stream) {
    let mut buffer = [0; 64];
    match within("close", stream.read(&mut buffer)).await {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
}

/// Reads until end of stream or an error (a reset after a close is fine).
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Writes `data` (then half-closes) while reading whatever comes back until the proxy
/// closes. The write is larger than every buffer on the way, so this only completes if
/// both directions make progress together.
async fn send_and_read_back(address: &BindAddress, data: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = tokio::io::split(connect(address).await);
    let send = async {
        writer.write_all(data).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let ((), echoed) = within("echo", async {
        tokio::join!(send, read_until_closed(&mut reader))
    })
    .await;
    echoed
}

/// Letters from a xorshift generator: no period that lines up with buffer sizes.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect()
}

// ----- origins written here ---------------------------------------------------------

/// A server the proxy dials. Each connection runs `handler`, whose result (usually the
/// bytes it received) arrives on `finished`.
struct Origin {
    address: EndpointAddress,
    accepted: Arc<AtomicUsize>,
    finished: mpsc::UnboundedReceiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum OriginListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Origin {
    async fn tcp<H, R>(handler: H) -> Self
    where
        H: Fn(Stream) -> R + Send + Sync + 'static,
        R: Future<Output = u64> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
        Self::start(address, OriginListener::Tcp(listener), handler)
    }

    fn unix<H, R>(path: &Path, handler: H) -> Self
    where
        H: Fn(Stream) -> R + Send + Sync + 'static,
        R: Future<Output = u64> + Send + 'static,
    {
        let listener = UnixListener::bind(path).unwrap();
        let address = EndpointAddress::Unix(path.to_path_buf());
        Self::start(address, OriginListener::Unix(listener), handler)
    }

    fn start<H, R>(address: EndpointAddress, listener: OriginListener, handler: H) -> Self
    where
        H: Fn(Stream) -> R + Send + Sync + 'static,
        R: Future<Output = u64> + Send + 'static,
    {
        let accepted = Arc::new(AtomicUsize::new(0));
        let (report, finished) = mpsc::unbounded_channel();
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let stream = match &listener {
                    OriginListener::Tcp(l) => Stream::Tcp(l.accept().await.unwrap().0),
                    OriginListener::Unix(l) => Stream::Unix(l.accept().await.unwrap().0),
                };
                count.fetch_add(1, Ordering::SeqCst);
                let connection = handler(stream);
                let report = report.clone();
                tokio::spawn(async move {
                    let _ = report.send(connection.await);
                });
            }
        });
        Self {
            address,
            accepted,
            finished,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The result of the next connection to finish.
    async fn next_finished(&mut self) -> u64 {
        within("origin connection to finish", self.finished.recv())
            .await
            .unwrap()
    }
}

/// Echoes until end of stream, then closes its write side. Returns the bytes received.
async fn echo(stream: Stream) -> u64 {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buffer = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                if writer.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = writer.shutdown().await;
    total
}

// ----- redis ------------------------------------------------------------------------

const INSTALL_REDIS: &str = "apt-get install -y redis-server";

fn require(program: &str) {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!("`{program} --version` failed: {output:?}"),
        Err(error) => panic!(
            "`{program}` is needed by these tests and could not be run ({error}); \
             install it with `{INSTALL_REDIS}` (tests/run.sh does this when run as root)"
        ),
    }
}

/// Kills and reaps the child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` on a Unix socket in `dir`, without persistence.
struct Redis {
    _child: ChildGuard,
    socket: PathBuf,
}

impl Redis {
    async fn start(dir: &Path) -> Self {
        require("redis-server");
        require("redis-cli");
        let socket = dir.join("redis.sock");
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); {INSTALL_REDIS}"));
        let mut child = ChildGuard(child);

        // Readiness: PING answered on the socket. Polled, because redis-server has no
        // readiness notification short of systemd's.
        let started = Instant::now();
        loop {
            if Self::ping(&socket).await {
                break;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server exited with {status}:\n{log}");
            }
            assert!(
                started.elapsed() < STEP,
                "redis-server did not answer PING within {STEP:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            _child: child,
            socket,
        }
    }

    async fn ping(socket: &Path) -> bool {
        let Ok(mut stream) = UnixStream::connect(socket).await else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn endpoint(&self) -> EndpointAddress {
        EndpointAddress::Unix(self.socket.clone())
    }
}

/// `redis-cli` arguments that reach `address`.
fn cli_target(address: &BindAddress) -> Vec<OsString> {
    match address {
        BindAddress::Tcp(address) => vec![
            "-h".into(),
            address.ip().to_string().into(),
            "-p".into(),
            address.port().to_string().into(),
        ],
        BindAddress::Unix(path) => vec!["-s".into(), path.into()],
    }
}

/// Runs `redis-cli` to completion off the runtime's threads; returns its stdout.
async fn redis_cli(address: &BindAddress, args: &[&str], stdin: Option<&Path>) -> Vec<u8> {
    let mut command = Command::new("redis-cli");
    command.args(cli_target(address)).args(args);
    command.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
        None => Stdio::null(),
    });
    let output = within(
        "redis-cli",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); {INSTALL_REDIS}"));
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ----- tests: redis through the proxy -------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn redis_8_mib_value_set_over_tcp_listener_and_read_back_over_unix_listener() {
    let dir = TempDir::new().unwrap();
    let redis = Redis::start(dir.path()).await;
    let cluster = cluster(vec![redis.endpoint()]);
    let mut server = server(Duration::from_secs(5));
    let (tcp, tcp_stats) = serve(
        &mut server,
        &tcp_listener("redis_tcp"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );
    let proxy_socket = dir.path().join("proxy.sock");
    let (unix, unix_stats) = serve(
        &mut server,
        &unix_listener("redis_unix", &proxy_socket),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    const SIZE: usize = 8 * 1024 * 1024;
    let value = payload(SIZE);
    let file = dir.path().join("value");
    std::fs::write(&file, &value).unwrap();

    let started = Instant::now();
    let set = redis_cli(&tcp, &["-x", "SET", "big"], Some(&file)).await;
    assert_eq!(set, b"OK\n");
    let got = redis_cli(&unix, &["--raw", "GET", "big"], None).await;
    assert_eq!(got.len(), SIZE + 1, "value plus redis-cli's newline");
    assert!(got[..SIZE] == value[..], "value changed on the way");
    let strlen = redis_cli(&tcp, &["STRLEN", "big"], None).await;
    assert_eq!(strlen, format!("{SIZE}\n").as_bytes());
    eprintln!("8 MiB SET + GET through the proxy: {:?}", started.elapsed());

    server.shutdown().await;
    assert!(
        !proxy_socket.exists(),
        "proxy socket file removed at shutdown"
    );
    assert_eq!(tcp_stats.downstream_cx_total.get(), 2);
    assert_eq!(unix_stats.downstream_cx_total.get(), 1);
    assert!(tcp_stats.downstream_cx_rx_bytes_total.get() > SIZE as u64);
    assert!(unix_stats.downstream_cx_tx_bytes_total.get() > SIZE as u64);
    assert_eq!(tcp_stats.downstream_cx_active.get(), 0);
    assert_eq!(unix_stats.downstream_cx_active.get(), 0);
    assert_eq!(tcp_stats.downstream_cx_error.get(), 0);
    assert_eq!(tcp_stats.upstream_cx_error.get(), 0);
    assert_eq!(cluster.stats().upstream_cx_total.get(), 3);
    assert_eq!(cluster.stats().upstream_cx_active.get(), 0);
    assert_eq!(cluster.stats().upstream_cx_destroy.get(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_monitor_streams_commands_issued_through_another_proxied_connection() {
    let dir = TempDir::new().unwrap();
    let redis = Redis::start(dir.path()).await;
    let cluster = cluster(vec![redis.endpoint()]);
    let mut server = server(Duration::from_secs(5));
    let proxy_socket = dir.path().join("proxy.sock");
    let (monitor_address, monitor_stats) = serve(
        &mut server,
        &unix_listener("monitor", &proxy_socket),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );
    let (commands, _) = serve(
        &mut server,
        &tcp_listener("commands"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    let mut monitor = Command::new("redis-cli");
    monitor
        .args(cli_target(&monitor_address))
        .arg("MONITOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut monitor = ChildGuard(
        monitor
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); {INSTALL_REDIS}")),
    );
    let stdout = monitor.0.stdout.take().unwrap();
    let (line_sender, mut lines) = mpsc::unbounded_channel();
    // Blocking reads on a thread of their own; they end when the child is killed.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut next_line = async || within("MONITOR output", lines.recv()).await.unwrap();

    // The monitor is subscribed once redis has answered MONITOR.
    assert_eq!(next_line().await, "OK");
    assert_eq!(monitor_stats.downstream_cx_active.get(), 1);

    let started = Instant::now();
    assert_eq!(
        redis_cli(&commands, &["SET", "monitored", "v1"], None).await,
        b"OK\n"
    );
    assert_eq!(redis_cli(&commands, &["INCR", "n"], None).await, b"1\n");
    let mut seen = Vec::new();
    for expected in [r#""SET" "monitored" "v1""#, r#""INCR" "n""#] {
        loop {
            let line = next_line().await;
            seen.push(line.clone());
            if line.contains(expected) {
                // The command reached redis over its Unix socket, i.e. from the proxy.
                assert!(line.contains("unix:"), "{line}");
                break;
            }
        }
    }
    eprintln!("MONITOR saw both commands after {:?}", started.elapsed());

    drop(monitor);
    server.shutdown().await;
    assert_eq!(monitor_stats.downstream_cx_active.get(), 0);
    assert!(monitor_stats.downstream_cx_tx_bytes_total.get() > 0);
}

// ----- tests: streaming semantics ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unix_client_to_unix_echo_streams_1_mib_both_ways() {
    let dir = TempDir::new().unwrap();
    let mut origin = Origin::unix(&dir.path().join("echo.sock"), echo);
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let proxy_socket = dir.path().join("proxy.sock");
    let (address, stats) = serve(
        &mut server,
        &unix_listener("echo", &proxy_socket),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    const SIZE: usize = 1024 * 1024;
    let data = payload(SIZE);
    let echoed = send_and_read_back(&address, &data).await;
    assert!(echoed == data, "echo differs from what was sent");
    assert_eq!(origin.next_finished().await, SIZE as u64);

    server.shutdown().await;
    assert!(!proxy_socket.exists());
    assert_eq!(stats.downstream_cx_rx_bytes_total.get(), SIZE as u64);
    assert_eq!(stats.downstream_cx_tx_bytes_total.get(), SIZE as u64);
    assert_eq!(stats.downstream_cx_active.get(), 0);
    assert_eq!(stats.downstream_cx_error.get(), 0);
    assert_eq!(stats.upstream_cx_error.get(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_from_the_client_still_delivers_the_whole_reply() {
    // Reads the request to its end, then answers with twice as many bytes.
    let mut origin = Origin::tcp(|mut stream: Stream| async move {
        let request = read_until_closed(&mut stream).await;
        let reply = payload(2 * request.len());
        stream.write_all(&reply).await.unwrap();
        stream.shutdown().await.unwrap();
        request.len() as u64
    })
    .await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("half_close"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    const SIZE: usize = 300 * 1024;
    let mut client = connect(&address).await;
    client.write_all(&payload(SIZE)).await.unwrap();
    client.shutdown().await.unwrap();
    let reply = within("reply", read_until_closed(&mut client)).await;
    assert!(reply == payload(2 * SIZE), "reply differs");
    assert_eq!(origin.next_finished().await, SIZE as u64);

    server.shutdown().await;
    assert_eq!(stats.downstream_cx_rx_bytes_total.get(), SIZE as u64);
    assert_eq!(stats.downstream_cx_tx_bytes_total.get(), 2 * SIZE as u64);
    assert_eq!(stats.downstream_cx_error.get(), 0);
    assert_eq!(stats.upstream_cx_error.get(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_from_the_upstream_still_delivers_what_the_client_sends_after() {
    // Greets, closes its write side at once, then counts what the client still sends.
    let mut origin = Origin::tcp(|mut stream: Stream| async move {
        stream.write_all(b"bye for now\n").await.unwrap();
        stream.shutdown().await.unwrap();
        read_until_closed(&mut stream).await.len() as u64
    })
    .await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("half_close"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    let mut client = connect(&address).await;
    let greeting = within("greeting", read_until_closed(&mut client)).await;
    assert_eq!(greeting, b"bye for now\n", "greeting, then end of stream");
    const SIZE: usize = 200 * 1024;
    client.write_all(&payload(SIZE)).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(origin.next_finished().await, SIZE as u64);

    server.shutdown().await;
    assert_eq!(stats.downstream_cx_active.get(), 0);
    assert_eq!(stats.downstream_cx_error.get(), 0);
    assert_eq!(stats.upstream_cx_error.get(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_closes_both_sides_of_a_quiet_connection() {
    let mut origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let idle = Duration::from_millis(200);
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("idle"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT.idle_timeout(Some(idle)),
    );

    let mut client = connect(&address).await;
    client.write_all(b"ping").await.unwrap();
    let mut pong = [0; 4];
    within("echo", client.read_exact(&mut pong)).await.unwrap();
    let quiet_since = Instant::now();
    let rest = within("idle close", read_until_closed(&mut client)).await;
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= idle - Duration::from_millis(20),
        "closed after {waited:?}"
    );
    // The upstream side was closed too: the echo saw its end of stream.
    assert_eq!(origin.next_finished().await, 4);
    eprintln!("idle timeout {idle:?} closed after {waited:?}");

    server.shutdown().await;
    assert_eq!(stats.idle_timeout.get(), 1);
    assert_eq!(stats.max_downstream_connection_duration.get(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connection_duration_closes_a_busy_connection() {
    let origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let max = Duration::from_millis(300);
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("max_duration"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT
            .idle_timeout(Some(Duration::from_millis(100)))
            .max_connection_duration(Some(max)),
    );

    // One connection pings every 20 ms, more often than the idle timeout; the other
    // streams as fast as it can both ways, so the proxy always has bytes ready. Both
    // run until the proxy closes them.
    let started = Instant::now();
    let mut pinging = connect(&address).await;
    let pings = async {
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let mut exchanges = 0;
        loop {
            ticks.tick().await;
            let mut pong = [0; 4];
            if pinging.write_all(b"ping").await.is_err()
                || pinging.read_exact(&mut pong).await.is_err()
            {
                return (exchanges, started.elapsed());
            }
            exchanges += 1;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(connect(&address).await);
    let bulk = async {
        let chunk = payload(64 * 1024);
        let send = async { while writer.write_all(&chunk).await.is_ok() {} };
        let ((), echoed) = tokio::join!(send, read_until_closed(&mut reader));
        (echoed.len(), started.elapsed())
    };
    let ((exchanges, pinged_for), (echoed, streamed_for)) =
        within("max duration close", async { tokio::join!(pings, bulk) }).await;
    eprintln!(
        "max duration {max:?}: pinging connection closed after {pinged_for:?} and \
         {exchanges} exchanges, streaming one after {streamed_for:?} and {} MiB echoed",
        echoed / (1024 * 1024)
    );
    assert!(pinged_for >= max, "closed after {pinged_for:?}");
    assert!(streamed_for >= max, "closed after {streamed_for:?}");
    assert!(exchanges >= 5, "only {exchanges} exchanges: was it busy?");
    assert!(
        streamed_for < max * 10,
        "a saturated pipe held off the max-duration timer for {streamed_for:?}"
    );

    server.shutdown().await;
    assert_eq!(stats.max_downstream_connection_duration.get(), 2);
    assert_eq!(stats.idle_timeout.get(), 0);
}

// ----- tests: admission ----------------------------------------------------------------

const LOOPBACK: IpNet = IpNet::V4(Ipv4Net::new_assert(
    std::net::Ipv4Addr::new(127, 0, 0, 0),
    8,
));
const LOCALHOST: IpNet = IpNet::V4(Ipv4Net::new_assert(
    std::net::Ipv4Addr::new(127, 0, 0, 1),
    32,
));
const TEN: IpNet = IpNet::V4(Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 0, 0, 0), 8));

#[tokio::test(flavor = "multi_thread")]
async fn source_ip_rules_deny_before_dialling_and_allow_listed_clients_pass() {
    let origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (denied, denied_stats) = serve(
        &mut server,
        &tcp_listener("deny_loopback"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT.deny_source_ips(&[LOOPBACK]),
    );
    let (not_allowed, not_allowed_stats) = serve(
        &mut server,
        &tcp_listener("allow_ten"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT.allow_source_ips(&[TEN]),
    );
    let (allowed, allowed_stats) = serve(
        &mut server,
        &tcp_listener("allow_localhost"),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT
            .allow_source_ips(&[TEN, LOCALHOST])
            .deny_source_ips(&[TEN]),
    );

    assert_closed_without_data(&mut connect(&denied).await).await;
    assert_closed_without_data(&mut connect(&not_allowed).await).await;
    assert_eq!(origin.accepted(), 0, "a denied client never causes a dial");

    let mut client = connect(&allowed).await;
    client.write_all(b"hello").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(
        within("echo", read_until_closed(&mut client)).await,
        b"hello"
    );

    server.shutdown().await;
    assert_eq!(denied_stats.downstream_cx_denied.get(), 1);
    assert_eq!(denied_stats.downstream_cx_total.get(), 1);
    assert_eq!(not_allowed_stats.downstream_cx_denied.get(), 1);
    assert_eq!(allowed_stats.downstream_cx_denied.get(), 0);
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_port_mismatch_is_denied_and_ports_do_not_apply_to_unix_listeners() {
    let dir = TempDir::new().unwrap();
    let origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    // Port 1 is never the port `127.0.0.1:0` gets.
    let only_port_1 = TcpProxyOptions::DEFAULT.destination_ports(&[1]);
    let (tcp, tcp_stats) = serve(
        &mut server,
        &tcp_listener("ports"),
        (),
        &cluster,
        only_port_1,
    );
    let (unix, unix_stats) = serve(
        &mut server,
        &unix_listener("ports_unix", &dir.path().join("proxy.sock")),
        (),
        &cluster,
        only_port_1,
    );

    assert_closed_without_data(&mut connect(&tcp).await).await;
    assert_eq!(origin.accepted(), 0);

    let mut client = connect(&unix).await;
    client.write_all(b"over a socket file").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(
        within("echo", read_until_closed(&mut client)).await,
        b"over a socket file"
    );

    server.shutdown().await;
    assert_eq!(tcp_stats.downstream_cx_denied.get(), 1);
    assert_eq!(unix_stats.downstream_cx_denied.get(), 0);
}

// ----- tests: network filters ----------------------------------------------------------

/// Rejects every connection and reports what `on_close` saw.
struct RejectAll(mpsc::UnboundedSender<(CloseReason, Option<u16>)>);

impl NetworkFilter for RejectAll {
    type State = ();

    async fn on_new_connection(&self, (): &mut (), _: &ConnectionInfo) -> NetworkFlow {
        NetworkFlow::Close
    }

    fn on_close(&self, (): (), info: &ConnectionInfo, summary: &ConnectionSummary<'_>) {
        let _ = self.0.send((summary.reason, info.local_port));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_rejecting_a_new_connection_closes_it_without_dialling() {
    let origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (closed, mut closes) = mpsc::unbounded_channel();
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("reject"),
        RejectAll(closed),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );
    let BindAddress::Tcp(bound) = address else {
        panic!("expected TCP")
    };

    assert_closed_without_data(&mut connect(&address).await).await;
    let (reason, local_port) = within("on_close", closes.recv()).await.unwrap();
    assert_eq!(reason, CloseReason::Rejected);
    assert_eq!(local_port, Some(bound.port()));
    assert_eq!(origin.accepted(), 0);

    server.shutdown().await;
    assert_eq!(stats.downstream_cx_filter_rejected.get(), 1);
    assert_eq!(cluster.stats().upstream_cx_total.get(), 0);
}

/// Counts bytes each way in its per-connection state and reports them at close.
struct CountBytes(mpsc::UnboundedSender<(u64, u64, CloseReason, u64, u64)>);

impl NetworkFilter for CountBytes {
    type State = (u64, u64);

    fn on_read(&self, (read, _): &mut (u64, u64), data: &mut BytesMut) -> NetworkFlow {
        *read += data.len() as u64;
        NetworkFlow::Continue
    }

    fn on_write(&self, (_, written): &mut (u64, u64), data: &mut BytesMut) -> NetworkFlow {
        *written += data.len() as u64;
        NetworkFlow::Continue
    }

    fn on_close(
        &self,
        (read, written): (u64, u64),
        _: &ConnectionInfo,
        summary: &ConnectionSummary<'_>,
    ) {
        let _ = self.0.send((
            read,
            written,
            summary.reason,
            summary.received_bytes,
            summary.sent_bytes,
        ));
    }
}

/// Writes every client byte twice: grows each chunk past the read buffer's size.
struct Double;

impl NetworkFilter for Double {
    type State = ();

    fn on_read(&self, (): &mut (), data: &mut BytesMut) -> NetworkFlow {
        let doubled: Vec<u8> = data.iter().flat_map(|b| [*b, *b]).collect();
        data.clear();
        data.extend_from_slice(&doubled);
        NetworkFlow::Continue
    }
}

/// Uppercases upstream bytes.
struct Upper;

impl NetworkFilter for Upper {
    type State = ();

    fn on_write(&self, (): &mut (), data: &mut BytesMut) -> NetworkFlow {
        data.make_ascii_uppercase();
        NetworkFlow::Continue
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_count_and_rewrite_bytes_in_both_directions() {
    let mut origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (report, mut reports) = mpsc::unbounded_channel();
    // Counting sits closest to the client: it sees client bytes before `Double` and
    // upstream bytes after `Upper`.
    let filters = (CountBytes(report), (Arc::new(Double), (Upper, ())));
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("filters"),
        filters,
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    const SIZE: usize = 100 * 1024;
    let data = payload(SIZE);
    let echoed = send_and_read_back(&address, &data).await;
    let expected: Vec<u8> = data
        .iter()
        .flat_map(|b| [b.to_ascii_uppercase(); 2])
        .collect();
    assert!(
        echoed == expected,
        "client got other bytes than doubled uppercase"
    );
    assert_eq!(origin.next_finished().await, 2 * SIZE as u64);

    let (read, written, reason, received, sent) = within("on_close", reports.recv()).await.unwrap();
    assert_eq!((read, written), (SIZE as u64, 2 * SIZE as u64));
    assert_eq!(reason, CloseReason::Completed);
    assert_eq!((received, sent), (SIZE as u64, 2 * SIZE as u64));

    server.shutdown().await;
    assert_eq!(stats.downstream_cx_rx_bytes_total.get(), SIZE as u64);
    assert_eq!(stats.downstream_cx_tx_bytes_total.get(), 2 * SIZE as u64);
}

/// Closes the connection when the client sends `QUIT`.
struct CloseOnQuit;

impl NetworkFilter for CloseOnQuit {
    type State = ();

    fn on_read(&self, (): &mut (), data: &mut BytesMut) -> NetworkFlow {
        if data.windows(4).any(|w| w == b"QUIT") {
            NetworkFlow::Close
        } else {
            NetworkFlow::Continue
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_closing_mid_stream_closes_both_sides_and_drops_the_chunk() {
    let mut origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let mut server = server(Duration::from_secs(5));
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("quit"),
        CloseOnQuit,
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    let mut client = connect(&address).await;
    client.write_all(b"hello").await.unwrap();
    let mut echoed = [0; 5];
    within("echo", client.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(&echoed, b"hello");
    client.write_all(b"QUIT").await.unwrap();
    assert!(
        within("close", read_until_closed(&mut client))
            .await
            .is_empty()
    );
    assert_eq!(
        origin.next_finished().await,
        5,
        "QUIT never reached the upstream"
    );

    server.shutdown().await;
    assert_eq!(stats.downstream_cx_filter_closed.get(), 1);
}

// ----- tests: upstream failures ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_and_empty_cluster_close_the_client() {
    let dir = TempDir::new().unwrap();
    let unreachable = cluster(vec![EndpointAddress::Unix(dir.path().join("nobody.sock"))]);
    let empty = cluster(Vec::new());
    let mut server = server(Duration::from_secs(5));
    let (refused, refused_stats) = serve(
        &mut server,
        &tcp_listener("refused"),
        (),
        &unreachable,
        TcpProxyOptions::DEFAULT,
    );
    let (no_endpoint, no_endpoint_stats) = serve(
        &mut server,
        &tcp_listener("empty"),
        (),
        &empty,
        TcpProxyOptions::DEFAULT,
    );

    assert_closed_without_data(&mut connect(&refused).await).await;
    assert_closed_without_data(&mut connect(&no_endpoint).await).await;

    server.shutdown().await;
    assert_eq!(refused_stats.upstream_cx_connect_fail.get(), 1);
    assert_eq!(unreachable.stats().upstream_cx_connect_fail.get(), 1);
    assert_eq!(unreachable.stats().upstream_cx_total.get(), 0);
    assert_eq!(no_endpoint_stats.no_healthy_upstream.get(), 1);
}

// ----- tests: shutdown -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_an_open_connection_finish_within_the_drain_timeout() {
    let dir = TempDir::new().unwrap();
    let mut origin = Origin::unix(&dir.path().join("echo.sock"), echo);
    let cluster = cluster(vec![origin.address.clone()]);
    let drain_timeout = Duration::from_secs(60);
    let mut server = server(drain_timeout);
    let proxy_socket = dir.path().join("proxy.sock");
    let (address, stats) = serve(
        &mut server,
        &unix_listener("drain", &proxy_socket),
        (),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    let mut client = connect(&address).await;
    client.write_all(b"before").await.unwrap();
    let mut echoed = [0; 6];
    within("echo", client.read_exact(&mut echoed))
        .await
        .unwrap();

    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    // The connection still works while the server drains...
    client.write_all(b"during").await.unwrap();
    within("echo", client.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(&echoed, b"during");
    // ...and shutdown completes as soon as it ends, not at the drain timeout.
    client.shutdown().await.unwrap();
    assert!(
        within("end", read_until_closed(&mut client))
            .await
            .is_empty()
    );
    within("shutdown", shutdown).await.unwrap();
    assert!(started.elapsed() < drain_timeout / 2);
    assert!(!proxy_socket.exists());
    assert_eq!(origin.next_finished().await, 12);
    assert_eq!(stats.downstream_cx_drain_close.get(), 0);
    assert_eq!(stats.downstream_cx_active.get(), 0);
}

/// Reports the close reason.
struct ReportClose(mpsc::UnboundedSender<CloseReason>);

impl NetworkFilter for ReportClose {
    type State = ();

    fn on_close(&self, (): (), _: &ConnectionInfo, summary: &ConnectionSummary<'_>) {
        let _ = self.0.send(summary.reason);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_connections_still_open_at_the_drain_timeout() {
    let origin = Origin::tcp(echo).await;
    let cluster = cluster(vec![origin.address.clone()]);
    let drain_timeout = Duration::from_millis(200);
    let mut server = server(drain_timeout);
    let (report, mut reasons) = mpsc::unbounded_channel();
    let (address, stats) = serve(
        &mut server,
        &tcp_listener("drain"),
        ReportClose(report),
        &cluster,
        TcpProxyOptions::DEFAULT,
    );

    let mut client = connect(&address).await;
    client.write_all(b"open").await.unwrap();
    let mut echoed = [0; 4];
    within("echo", client.read_exact(&mut echoed))
        .await
        .unwrap();

    let started = Instant::now();
    within("shutdown", server.shutdown()).await;
    let took = started.elapsed();
    assert!(took >= drain_timeout, "shutdown took {took:?}");
    assert!(
        within("close", read_until_closed(&mut client))
            .await
            .is_empty()
    );
    assert_eq!(
        within("on_close", reasons.recv()).await,
        Some(CloseReason::Drain)
    );
    assert_eq!(stats.downstream_cx_drain_close.get(), 1);
    assert_eq!(stats.downstream_cx_active.get(), 0);
    eprintln!("drain timeout {drain_timeout:?}: shutdown took {took:?}");
}
