//! Active health checking against real peers: nginx (HTTP over TCP and a Unix socket),
//! redis-server (PING over its Unix socket), a tiny in-test gRPC health server, and
//! in-test TCP peers. Clusters are built directly and checked with short intervals;
//! transitions are awaited by polling with generous deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use proxy_core::cluster::health::HealthCheck;
use proxy_core::cluster::{Cluster, ClusterOptions};
use proxy_core::config::EndpointAddress;
use proxy_core::tls::{UpstreamTls, UpstreamTlsSpec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const INSTALL_HINT: &str = "apt-get install -y nginx-light redis-server";
/// Polling deadline for a transition: far above any bound asserted separately.
const DEADLINE: Duration = Duration::from_secs(10);

const INTERVAL: Duration = Duration::from_millis(50);
const JITTER: Duration = Duration::from_millis(20);

/// A check with test-speed timing; the no-traffic interval equals the interval because
/// nothing sends requests through these clusters.
fn fast(check: HealthCheck) -> HealthCheck {
    check
        .interval(INTERVAL)
        .jitter(JITTER)
        .no_traffic_interval(INTERVAL)
        .timeout(Duration::from_millis(500))
}

/// A leaked cluster (topologies live for the process) checked until the guard drops.
struct Checked {
    cluster: &'static Cluster,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Checked {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn checked(name: &'static str, endpoints: Vec<EndpointAddress>, check: HealthCheck) -> Checked {
    start(Cluster::new(name, endpoints, ClusterOptions::DEFAULT).health_check(check))
}

fn start(cluster: Cluster) -> Checked {
    let cluster: &'static Cluster = Box::leak(Box::new(cluster));
    let task = tokio::spawn(cluster.health_checks().expect("health check configured"));
    Checked { cluster, task }
}

impl Checked {
    fn healthy(&self, index: usize) -> bool {
        self.cluster.endpoints()[index].is_healthy()
    }

    /// Polls until endpoint `index` is `healthy`; returns how long that took.
    async fn wait_for(&self, index: usize, healthy: bool) -> Duration {
        let start = Instant::now();
        while self.healthy(index) != healthy {
            assert!(
                start.elapsed() < DEADLINE,
                "{} endpoint {} never became {}; stats: attempt {} success {} failure {}",
                self.cluster.name(),
                self.cluster.endpoints()[index].address(),
                if healthy { "healthy" } else { "unhealthy" },
                self.cluster.health_check_stats().attempt.get(),
                self.cluster.health_check_stats().success.get(),
                self.cluster.health_check_stats().failure.get(),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    /// Polls until at least `n` more checks than `since` have been attempted.
    async fn wait_attempts(&self, since: u64, n: u64) {
        let start = Instant::now();
        while self.cluster.health_check_stats().attempt.get() < since + n {
            assert!(start.elapsed() < DEADLINE, "checks stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn require(binary: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {binary} || test -x /usr/sbin/{binary}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{binary}` is required by these tests: {INSTALL_HINT}"
    );
}

/// A process killed (and reaped) on drop.
struct Peer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Polls until `address` accepts a connection, failing fast if `peer` exited.
async fn wait_listening(peer: &mut Peer, address: &EndpointAddress, log: &str) {
    let start = Instant::now();
    loop {
        let connected = match address {
            EndpointAddress::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            EndpointAddress::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
        };
        if connected {
            return;
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            let log = std::fs::read_to_string(peer.path(log)).unwrap_or_default();
            panic!("peer exited with {status} before listening on {address}: {log}");
        }
        assert!(
            start.elapsed() < DEADLINE,
            "peer never listened on {address}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn free_tcp_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

struct Nginx {
    peer: Peer,
    tcp: EndpointAddress,
    unix: EndpointAddress,
    /// HTTPS with a certificate for `origin.test` issued by the CA at `ca`.
    tls: EndpointAddress,
    ca: PathBuf,
}

/// Writes a CA and an `origin.test` certificate it issued into `dir`; returns the CA's
/// path.
fn write_pki(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["origin.test".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("origin.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("origin.key"), key.serialize_pem()).unwrap();
    ca
}

impl Nginx {
    async fn start() -> Self {
        require("nginx");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        let ca = write_pki(dir.path());
        let tcp = free_tcp_port();
        let tls = free_tcp_port();
        let sock = dir.path().join("hc.sock");
        let d = dir.path().display();
        let config = format!(
            "user root;
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {tcp};
        listen unix:{sock};
        listen {tls} ssl;
        ssl_certificate {d}/origin.pem;
        ssl_certificate_key {d}/origin.key;
        root {root};
        location = /healthz {{ try_files /healthz =503; }}
        location = /ok {{ return 200 ok; }}
        location = /fail {{ return 503; }}
        location = /created {{ return 201; }}
        location = /moved {{ return 301 /ok; }}
        location = /named {{
            add_header x-envoy-upstream-healthchecked-cluster svc-a;
            return 200;
        }}
    }}
}}
",
            root = root.display(),
            sock = sock.display(),
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run nginx ({error}): {INSTALL_HINT}"));
        let mut peer = Peer { child, dir };
        let tcp = EndpointAddress::Tcp(tcp);
        let unix = EndpointAddress::Unix(sock);
        let tls = EndpointAddress::Tcp(tls);
        for address in [&tcp, &unix, &tls] {
            wait_listening(&mut peer, address, "error.log").await;
        }
        Self {
            peer,
            tcp,
            unix,
            tls,
            ca,
        }
    }

    fn set_healthz(&self, present: bool) {
        let file = self.peer.path("www/healthz");
        if present {
            std::fs::write(file, "ok").unwrap();
        } else {
            std::fs::remove_file(file).unwrap();
        }
    }
}

#[tokio::test]
async fn http_over_tcp_and_unix_socket_follows_nginx() {
    let nginx = Nginx::start().await;
    nginx.set_healthz(true);
    let healthy_threshold = 2;
    let hc = checked(
        "nginx",
        vec![nginx.tcp.clone(), nginx.unix.clone()],
        fast(HealthCheck::http("/healthz")).healthy_threshold(healthy_threshold),
    );
    for index in 0..2 {
        hc.wait_for(index, true).await;
    }
    let membership = hc.cluster.membership_stats();
    assert_eq!(membership.membership_total.get(), 2);
    assert_eq!(membership.membership_healthy.get(), 2);

    // A 503 is an active failure: unhealthy after one check, whatever the threshold.
    nginx.set_healthz(false);
    let one_check = INTERVAL + JITTER + Duration::from_millis(500);
    for index in 0..2 {
        let took = hc.wait_for(index, false).await;
        assert!(took < one_check * 3, "went unhealthy after {took:?}");
    }
    assert_eq!(membership.membership_healthy.get(), 0);

    // Back after `healthy_threshold` consecutive successes.
    nginx.set_healthz(true);
    let bound = (INTERVAL + JITTER) * healthy_threshold + Duration::from_secs(2);
    let start = Instant::now();
    for index in 0..2 {
        hc.wait_for(index, true).await;
    }
    let took = start.elapsed();
    assert!(
        took < bound,
        "healthy again after {took:?}, bound {bound:?}"
    );
    assert_eq!(membership.membership_healthy.get(), 2);

    let stats = hc.cluster.health_check_stats();
    assert!(stats.failure.get() >= 2);
    assert_eq!(stats.network_failure.get(), 0);
    assert_eq!(
        stats.attempt.get(),
        stats.success.get() + stats.failure.get()
    );
}

#[tokio::test]
async fn http_expected_statuses_and_service_name() {
    let nginx = Nginx::start().await;
    let default = checked(
        "default",
        vec![nginx.tcp.clone()],
        fast(HealthCheck::http("/created")),
    );
    let strict = checked(
        "strict",
        vec![nginx.tcp.clone()],
        fast(HealthCheck::http("/created").expected_statuses(&[(200, 200)])),
    );
    let redirects = checked(
        "redirects",
        vec![nginx.unix.clone()],
        fast(HealthCheck::http("/moved").expected_statuses(&[(200, 204), (300, 399)])),
    );
    let named = checked(
        "named",
        vec![nginx.unix.clone()],
        fast(HealthCheck::http("/named").service_name_header("svc-a")),
    );
    let misnamed = checked(
        "misnamed",
        vec![nginx.unix.clone()],
        fast(HealthCheck::http("/named").service_name_header("svc-b")),
    );
    default.wait_for(0, true).await;
    redirects.wait_for(0, true).await;
    named.wait_for(0, true).await;
    // Failing checks: wait for a few completed attempts, then the state must hold.
    for hc in [&strict, &misnamed] {
        // Attempt n+1 starts only after attempt n finished: three results are in.
        hc.wait_attempts(0, 4).await;
        assert!(!hc.healthy(0), "{} should be unhealthy", hc.cluster.name());
        assert_eq!(hc.cluster.health_check_stats().success.get(), 0);
    }
    assert!(named.cluster.health_check_stats().verify_cluster.get() >= 1);
    assert!(misnamed.cluster.health_check_stats().verify_cluster.get() >= 3);
}

/// A listener that counts connections and closes each at once: an unhealthy peer that
/// proves whether anything dialled it.
struct Counting {
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counting_tcp() -> (Counting, EndpointAddress) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (Counting { accepted, task }, address)
}

fn counting_unix(dir: &Path) -> (Counting, EndpointAddress) {
    let path = dir.join("counting.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (Counting { accepted, task }, EndpointAddress::Unix(path))
}

#[tokio::test]
async fn each_check_dials_only_its_own_endpoint() {
    let nginx = Nginx::start().await;
    let dir = tempfile::tempdir().unwrap();

    // Unix healthy (nginx), TCP a closing peer.
    let (tcp_peer, tcp) = counting_tcp().await;
    let uds_good = checked(
        "uds-good",
        vec![nginx.unix.clone(), tcp],
        fast(HealthCheck::http("/ok")),
    );
    // TCP healthy (nginx), Unix a closing peer.
    let (unix_peer, unix) = counting_unix(dir.path());
    let tcp_good = checked(
        "tcp-good",
        vec![unix, nginx.tcp.clone()],
        fast(HealthCheck::http("/ok")),
    );

    uds_good.wait_for(0, true).await;
    tcp_good.wait_for(1, true).await;
    let attempts = uds_good.cluster.health_check_stats().attempt.get();
    uds_good.wait_attempts(attempts, 4).await;
    tcp_good
        .wait_attempts(tcp_good.cluster.health_check_stats().attempt.get(), 4)
        .await;
    assert!(
        !uds_good.healthy(1),
        "the closing TCP peer must stay unhealthy"
    );
    assert!(
        !tcp_good.healthy(0),
        "the closing Unix peer must stay unhealthy"
    );
    assert!(uds_good.healthy(0) && tcp_good.healthy(1));
    // Each bad peer was dialled by its own endpoint's checks, so its address is the
    // one probed; and the healthy results came from nginx, not from it.
    assert!(tcp_peer.accepted.load(Ordering::Relaxed) >= 2);
    assert!(unix_peer.accepted.load(Ordering::Relaxed) >= 2);
    assert_eq!(
        uds_good.cluster.membership_stats().membership_healthy.get(),
        1
    );
    assert_eq!(
        tcp_good.cluster.membership_stats().membership_healthy.get(),
        1
    );
    // A closed connection is a network failure.
    assert!(uds_good.cluster.health_check_stats().network_failure.get() >= 2);
}

/// Answers `pong\n` once it has read `ping`; counts connections.
async fn echo_server() -> (Counting, EndpointAddress) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut chunk = [0u8; 64];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    received.extend_from_slice(&chunk[..n]);
                    if received.windows(4).any(|w| w == b"ping") {
                        let _ = stream.write_all(b"hello\npong\n").await;
                        return;
                    }
                }
            });
        }
    });
    (Counting { accepted, task }, address)
}

#[tokio::test]
async fn tcp_connect_only_and_send_expect() {
    let (echo, address) = echo_server().await;
    let (_closed, closed_address) = counting_tcp().await;
    let connect_only = checked(
        "connect",
        vec![address.clone()],
        fast(HealthCheck::tcp_connect()),
    );
    let ping = checked(
        "ping",
        vec![address.clone(), closed_address],
        fast(HealthCheck::tcp(Some(b"ping\n"), Some(b"pong"))),
    );
    let wrong = checked(
        "wrong",
        vec![address],
        fast(HealthCheck::tcp(Some(b"ping\n"), Some(b"PONG"))),
    );
    connect_only.wait_for(0, true).await;
    ping.wait_for(0, true).await;
    wrong.wait_attempts(0, 3).await;
    ping.wait_attempts(ping.cluster.health_check_stats().attempt.get(), 2)
        .await;
    assert!(!wrong.healthy(0), "an unexpected answer is a failure");
    assert!(
        !ping.healthy(1),
        "a peer closing without answering is a failure"
    );
    assert!(
        echo.accepted.load(Ordering::Relaxed) >= 3,
        "fresh connection per check"
    );
}

#[tokio::test]
async fn tcp_connect_only_goes_unhealthy_after_threshold_when_peer_leaves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let hc = checked(
        "leaving",
        vec![address],
        fast(HealthCheck::tcp_connect()).unhealthy_threshold(3),
    );
    hc.wait_for(0, true).await;
    drop(listener);
    let failures = hc.cluster.health_check_stats().network_failure.get();
    hc.wait_for(0, false).await;
    // Three consecutive network failures were needed.
    let now = hc.cluster.health_check_stats().network_failure.get();
    assert!(now >= failures + 3, "{failures} then {now}");
}

#[tokio::test]
async fn redis_ping_over_unix_socket() {
    require("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&sock)
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(dir.path().join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run redis-server ({error}): {INSTALL_HINT}"));
    let mut peer = Peer { child, dir };
    let address = EndpointAddress::Unix(sock);
    wait_listening(&mut peer, &address, "redis.log").await;

    let (_echo, not_redis) = echo_server().await;
    let hc = checked(
        "redis",
        vec![address, not_redis],
        fast(HealthCheck::redis()),
    );
    hc.wait_for(0, true).await;
    hc.wait_attempts(hc.cluster.health_check_stats().attempt.get(), 3)
        .await;
    assert!(!hc.healthy(1), "a peer that is not Redis is unhealthy");

    drop(peer);
    hc.wait_for(0, false).await;
}

/// A gRPC health server: `Check` answers the status in `status` (1 = SERVING) for any
/// service but "unknown", which gets NOT_FOUND as real servers do.
async fn grpc_server(status: Arc<AtomicU64>) -> (tokio::task::JoinHandle<()>, EndpointAddress) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let status = Arc::clone(&status);
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let status = status.load(Ordering::Relaxed);
                    async move {
                        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let unknown = body.ends_with(b"unknown");
                        let mut trailers = http::HeaderMap::new();
                        let grpc_status = if unknown { "5" } else { "0" };
                        trailers.insert("grpc-status", grpc_status.parse().unwrap());
                        let message: Vec<u8> = if unknown {
                            Vec::new()
                        } else {
                            vec![0, 0, 0, 0, 2, 0x08, u8::try_from(status).unwrap()]
                        };
                        let body = Full::new(Bytes::from(message))
                            .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
                        let response = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
            });
        }
    });
    (task, address)
}

#[tokio::test]
async fn grpc_health_follows_serving_status() {
    let status = Arc::new(AtomicU64::new(1));
    let (server, address) = grpc_server(Arc::clone(&status)).await;
    let hc = checked(
        "grpc",
        vec![address.clone()],
        fast(HealthCheck::grpc(Some("svc"))).healthy_threshold(2),
    );
    let unknown = checked(
        "grpc-unknown",
        vec![address],
        fast(HealthCheck::grpc(Some("unknown"))),
    );
    hc.wait_for(0, true).await;
    status.store(2, Ordering::Relaxed); // NOT_SERVING
    hc.wait_for(0, false).await;
    status.store(1, Ordering::Relaxed);
    hc.wait_for(0, true).await;
    unknown.wait_attempts(0, 3).await;
    assert!(!unknown.healthy(0), "grpc-status NOT_FOUND is unhealthy");
    assert_eq!(hc.cluster.health_check_stats().network_failure.get(), 0);
    server.abort();
}

#[tokio::test]
async fn no_traffic_interval_applies_until_the_cluster_sends_requests() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
    let hc = checked(
        "idle",
        vec![address],
        HealthCheck::tcp_connect()
            .interval(Duration::from_secs(3600))
            .no_traffic_interval(Duration::from_millis(20)),
    );
    assert!(
        hc.cluster.health_checks().is_none(),
        "one checker per cluster"
    );
    // Idle: checks follow the short no-traffic interval.
    hc.wait_attempts(0, 4).await;
    hc.wait_for(0, true).await;

    // Traffic, seen by the check in flight or the next one: the pause after that is
    // the hour-long interval. Absence can only be observed over a window: 100 ms for
    // that check to finish, then 20 no-traffic intervals without another.
    hc.cluster.stats().upstream_rq_total.inc();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = hc.cluster.health_check_stats().attempt.get();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = hc.cluster.health_check_stats().attempt.get();
    assert!(
        after <= settled + 1,
        "checks kept the no-traffic pace: {settled} -> {after}"
    );
    drop(listener);
}

#[tokio::test]
async fn http_checks_use_the_cluster_tls() {
    let nginx = Nginx::start().await;
    let tls = |spec: UpstreamTlsSpec| Arc::new(UpstreamTls::load(spec).unwrap());
    let cluster = |name, spec| {
        Cluster::new(name, vec![nginx.tls.clone()], ClusterOptions::DEFAULT)
            .tls(tls(spec))
            .health_check(fast(HealthCheck::http("/ok")))
    };
    let verified = start(cluster(
        "tls",
        UpstreamTlsSpec::new().ca(&nginx.ca).sni("origin.test"),
    ));
    let wrong_name = start(cluster(
        "tls-wrong-name",
        UpstreamTlsSpec::new().ca(&nginx.ca).sni("other.test"),
    ));
    let plaintext = checked(
        "plaintext",
        vec![nginx.tls.clone()],
        fast(HealthCheck::http("/ok")),
    );
    verified.wait_for(0, true).await;
    for hc in [&wrong_name, &plaintext] {
        hc.wait_attempts(0, 4).await;
        assert!(!hc.healthy(0), "{} must fail its checks", hc.cluster.name());
    }
    // The certificate is checked during connect: a network failure.
    let stats = wrong_name.cluster.health_check_stats();
    assert_eq!(stats.network_failure.get(), stats.failure.get());
    // Plain HTTP to a TLS port gets nginx's 400: an active failure.
    assert_eq!(
        plaintext.cluster.health_check_stats().network_failure.get(),
        0
    );
}
