//! DNS service discovery against a real (in-test) authoritative DNS server on 127.0.0.1
//! UDP whose answers each test changes, with real origins on 127.0.0.1 and 127.0.0.2
//! behind a real `Server`. Every change is awaited by polling with a generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use proxy_core::cluster::health::HealthCheck;
use proxy_core::cluster::{Cluster, ClusterOptions, DnsDiscovery, DnsTarget, Endpoint};
use proxy_core::config::EndpointAddress;
use proxy_core::server::Server;
use support::{answer_with_name, eventually_within, leak};

/// Polling deadline for a change: far above any refresh used here.
const DEADLINE: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_millis(50);
const HOST: &str = "web.test";

const A_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

// ---- a tiny authoritative DNS server ----

#[derive(Debug, Clone)]
enum Answer {
    Addresses(Vec<IpAddr>, u32),
    ServFail,
    NxDomain,
}

/// Answers A and AAAA queries from a table the test edits.
struct Dns {
    address: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let zone: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let table = Arc::clone(&zone);
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                let response = answer(&query, &table.lock().unwrap());
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self {
            address,
            zone,
            task,
        }
    }

    fn set(&self, host: &str, answer: Answer) {
        self.zone.lock().unwrap().insert(format!("{host}."), answer);
    }

    /// `DnsDiscovery::resolvers` wants `&'static`: a test leaks one address.
    fn resolvers(&self) -> &'static [SocketAddr] {
        Box::leak(Box::new([self.address]))
    }
}

fn answer(query: &Message, zone: &HashMap<String, Answer>) -> Message {
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    for question in query.queries() {
        response.add_query(question.clone());
        let name = question.name().to_ascii().to_ascii_lowercase();
        match zone.get(&name) {
            None | Some(Answer::NxDomain) => {
                response.set_response_code(ResponseCode::NXDomain);
            }
            Some(Answer::ServFail) => {
                response.set_response_code(ResponseCode::ServFail);
            }
            Some(Answer::Addresses(addresses, ttl)) => {
                for address in addresses {
                    let rdata = match (question.query_type(), address) {
                        (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                        (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    response.add_answer(Record::from_rdata(question.name().clone(), *ttl, rdata));
                }
            }
        }
    }
    response
}

// ---- origins and the proxy ----

/// HTTP/1.1 origins that answer with their name, one per IP, all on one port.
struct Origins {
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Origins {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn origins(named: &[(&'static str, IpAddr)]) -> Origins {
    'attempt: for _ in 0..20 {
        let mut listeners = Vec::new();
        let mut port = 0;
        for &(name, ip) in named {
            match tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(listener) => {
                    port = listener.local_addr().unwrap().port();
                    listeners.push((name, listener));
                }
                // The port chosen for the first IP is taken on another: start over.
                Err(_) => continue 'attempt,
            }
        }
        let tasks = listeners
            .into_iter()
            .map(|(name, listener)| tokio::spawn(answer_with_name(name, listener)))
            .collect();
        return Origins { port, tasks };
    }
    panic!("no common free port for the origins");
}

/// A DNS cluster with discovery running, behind a listening proxy.
struct Proxy {
    cluster: &'static Cluster,
    server: Option<Server>,
    address: SocketAddr,
    discovery: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.discovery.abort();
    }
}

impl Proxy {
    async fn start(cluster: Cluster) -> Self {
        let cluster = leak(cluster);
        let discovery = tokio::spawn(cluster.discovery().expect("a DNS cluster"));
        tokio::time::timeout(DEADLINE, cluster.discovery_warmed())
            .await
            .expect("first resolution");
        let (server, address) = support::start_proxy(cluster, "test/dns/0");
        Self {
            cluster,
            server: Some(server),
            address,
            discovery,
        }
    }

    /// Status code and body of one GET through the proxy (a fresh client connection;
    /// upstream connections are pooled by the proxy).
    async fn get(&self) -> (u16, String) {
        support::status_and_body(&support::get(self.address).await)
    }

    /// The bodies of `n` requests, as a set.
    async fn served_by(&self, n: usize) -> HashSet<String> {
        let mut seen = HashSet::new();
        for _ in 0..n {
            let (status, body) = self.get().await;
            assert_eq!(status, 200, "{body}");
            seen.insert(body);
        }
        seen
    }

    fn ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .cluster
            .current_endpoints()
            .iter()
            .map(|endpoint| match endpoint.address() {
                EndpointAddress::Tcp(address) => address.ip(),
                EndpointAddress::Unix(path) => panic!("unexpected {}", path.display()),
            })
            .collect();
        ips.sort();
        ips
    }

    fn endpoint(&self, ip: IpAddr) -> &'static Endpoint {
        self.cluster
            .current_endpoints()
            .into_iter()
            .find(|e| matches!(e.address(), EndpointAddress::Tcp(a) if a.ip() == ip))
            .expect("the endpoint is current")
    }

    async fn wait_for_ips(&self, expected: &[IpAddr]) {
        let start = Instant::now();
        while self.ips() != expected {
            assert!(
                start.elapsed() < DEADLINE,
                "endpoints stayed {:?}, expected {expected:?}",
                self.ips()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Polls `done` until it holds, failing the test after [`DEADLINE`].
async fn eventually(what: &str, done: impl FnMut() -> bool) {
    eventually_within(DEADLINE, what, done).await;
}

fn strict(dns: &Dns, port: u16, settings: DnsDiscovery) -> Cluster {
    Cluster::from_dns(
        "web",
        vec![DnsTarget::new(HOST, port)],
        ClusterOptions::DEFAULT,
        settings.resolvers(dns.resolvers()),
    )
}

// ---- tests ----

#[tokio::test]
async fn strict_dns_adds_and_drains_endpoints_and_keeps_the_survivors() {
    let dns = Dns::start().await;
    let origins = origins(&[("a", A_IP), ("b", B_IP)]).await;
    dns.set(HOST, Answer::Addresses(vec![A_IP], 0));
    let settings = DnsDiscovery::strict()
        .refresh_rate(REFRESH)
        .respect_ttl(false);
    let proxy = Proxy::start(strict(&dns, origins.port, settings)).await;
    assert_eq!(proxy.ips(), [A_IP], "resolved before serving");
    assert_eq!(proxy.served_by(3).await, HashSet::from(["a".to_owned()]));
    let a = proxy.endpoint(A_IP);
    assert!(a.idle_connections() > 0, "the proxy pools its connection");

    // A second record joins within a refresh, and traffic reaches both origins.
    dns.set(HOST, Answer::Addresses(vec![B_IP, A_IP], 0));
    proxy.wait_for_ips(&[A_IP, B_IP]).await;
    let both = HashSet::from(["a".to_owned(), "b".to_owned()]);
    assert_eq!(proxy.served_by(6).await, both);
    // The endpoint that stayed is the same one, with its pool.
    assert!(std::ptr::eq(proxy.endpoint(A_IP), a));

    // The first record goes: it leaves the balancer and its idle connections close.
    dns.set(HOST, Answer::Addresses(vec![B_IP], 0));
    proxy.wait_for_ips(&[B_IP]).await;
    assert_eq!(a.idle_connections(), 0, "drained");
    assert_eq!(proxy.served_by(4).await, HashSet::from(["b".to_owned()]));

    // And when it returns, it is the same endpoint again.
    dns.set(HOST, Answer::Addresses(vec![A_IP, B_IP], 0));
    proxy.wait_for_ips(&[A_IP, B_IP]).await;
    assert!(std::ptr::eq(proxy.endpoint(A_IP), a));

    let stats = proxy.cluster.stats();
    // The next refresh gets the same answer: counted, nothing rebuilt.
    eventually("an unchanged answer", || stats.update_no_rebuild.get() >= 1).await;
    assert!(stats.update_attempt.get() >= 5);
    assert!(stats.update_success.get() >= 5);
    assert_eq!(stats.membership_change.get(), 4);
    assert_eq!(stats.update_failure.get(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn failed_resolution_keeps_the_previous_set_and_nxdomain_empties_it() {
    let dns = Dns::start().await;
    let origins = origins(&[("a", A_IP), ("b", B_IP)]).await;
    dns.set(HOST, Answer::Addresses(vec![A_IP, B_IP], 0));
    let settings = DnsDiscovery::strict()
        .refresh_rate(REFRESH)
        .respect_ttl(false);
    let proxy = Proxy::start(strict(&dns, origins.port, settings)).await;
    assert_eq!(proxy.ips(), [A_IP, B_IP]);

    dns.set(HOST, Answer::ServFail);
    let stats = proxy.cluster.stats();
    eventually("two failed resolutions", || stats.update_failure.get() >= 2).await;
    assert_eq!(proxy.ips(), [A_IP, B_IP], "the previous set stays");
    let both = HashSet::from(["a".to_owned(), "b".to_owned()]);
    assert_eq!(proxy.served_by(6).await, both);

    // An authoritative "no such name" is an answer: the endpoints go (as Envoy).
    dns.set(HOST, Answer::NxDomain);
    proxy.wait_for_ips(&[]).await;
    let (status, body) = proxy.get().await;
    assert_eq!((status, body.as_str()), (503, "no healthy upstream\n"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn unresolvable_at_start_serves_503_until_a_resolution_succeeds() {
    let dns = Dns::start().await;
    let origins = origins(&[("a", A_IP)]).await;
    dns.set(HOST, Answer::ServFail);
    let settings = DnsDiscovery::strict()
        .refresh_rate(REFRESH)
        .respect_ttl(false);
    // Warming ends with the first (failed) resolution; the proxy serves anyway.
    let proxy = Proxy::start(strict(&dns, origins.port, settings)).await;
    assert!(proxy.cluster.stats().update_failure.get() >= 1);
    assert_eq!(proxy.get().await.0, 503);

    dns.set(HOST, Answer::Addresses(vec![A_IP], 0));
    proxy.wait_for_ips(&[A_IP]).await;
    assert_eq!(proxy.get().await, (200, "a".to_owned()));
    proxy.shutdown().await;
}

#[tokio::test]
async fn ttl_sets_the_refresh_interval_when_respected() {
    let dns = Dns::start().await;
    dns.set(HOST, Answer::Addresses(vec![A_IP], 1));
    let slow = Duration::from_secs(3600);
    // Both would wait an hour by their refresh rate; only one listens to the TTL.
    let respect = Proxy::start(strict(&dns, 80, DnsDiscovery::strict().refresh_rate(slow))).await;
    let ignore = Proxy::start(strict(
        &dns,
        80,
        DnsDiscovery::strict().refresh_rate(slow).respect_ttl(false),
    ))
    .await;
    let started = Instant::now();
    let attempts = || respect.cluster.stats().update_attempt.get();
    eventually("two re-resolutions after the 1 s TTL", || attempts() >= 3).await;
    // Two intervals of the TTL (1 s), not of the refresh rate.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(ignore.cluster.stats().update_attempt.get(), 1);

    // A changed answer is picked up at the TTL too.
    dns.set(HOST, Answer::Addresses(vec![B_IP], 1));
    respect.wait_for_ips(&[B_IP]).await;
    assert_eq!(ignore.ips(), [A_IP]);
    respect.shutdown().await;
    ignore.shutdown().await;
}

#[tokio::test]
async fn logical_dns_sends_new_connections_to_the_latest_first_address() {
    let dns = Dns::start().await;
    let origins = origins(&[("a", A_IP), ("b", B_IP)]).await;
    dns.set(HOST, Answer::Addresses(vec![A_IP, B_IP], 0));
    let settings = DnsDiscovery::logical()
        .refresh_rate(REFRESH)
        .respect_ttl(false);
    let proxy = Proxy::start(Cluster::from_dns(
        "logical",
        vec![DnsTarget::new(HOST, origins.port)],
        ClusterOptions::DEFAULT,
        settings.resolvers(dns.resolvers()),
    ))
    .await;
    assert_eq!(proxy.ips(), [A_IP], "one endpoint: the first address");
    assert_eq!(proxy.served_by(4).await, HashSet::from(["a".to_owned()]));
    let a = proxy.endpoint(A_IP);
    let idle = a.idle_connections();
    assert!(idle > 0);

    dns.set(HOST, Answer::Addresses(vec![B_IP, A_IP], 0));
    proxy.wait_for_ips(&[B_IP]).await;
    assert_eq!(proxy.served_by(4).await, HashSet::from(["b".to_owned()]));
    // Connections already open to the old address are not closed by the change.
    assert_eq!(a.idle_connections(), idle);
    proxy.shutdown().await;
}

#[tokio::test]
async fn health_checks_follow_dns_membership() {
    let dns = Dns::start().await;
    let origins = origins(&[("a", A_IP), ("b", B_IP)]).await;
    dns.set(HOST, Answer::Addresses(vec![A_IP], 0));
    let check = HealthCheck::tcp_connect()
        .interval(Duration::from_millis(50))
        .no_traffic_interval(Duration::from_millis(50))
        .timeout(Duration::from_millis(500));
    let settings = DnsDiscovery::strict()
        .refresh_rate(REFRESH)
        .respect_ttl(false);
    let proxy = Proxy::start(strict(&dns, origins.port, settings).health_check(check)).await;
    let cluster = proxy.cluster;
    let checks = tokio::spawn(cluster.health_checks().expect("a health check"));
    let healthy = || cluster.health_check_stats().healthy.get();
    eventually("the first endpoint checked healthy", || healthy() == 1).await;
    assert!(proxy.endpoint(A_IP).is_healthy());

    // A new endpoint is checked before it gets traffic, then joins.
    dns.set(HOST, Answer::Addresses(vec![A_IP, B_IP], 0));
    proxy.wait_for_ips(&[A_IP, B_IP]).await;
    eventually("the new endpoint checked healthy", || healthy() == 2).await;
    assert!(proxy.endpoint(B_IP).is_healthy());
    let both = HashSet::from(["a".to_owned(), "b".to_owned()]);
    assert_eq!(proxy.served_by(6).await, both);

    // A removed endpoint stops being checked (and no longer counts as healthy).
    dns.set(HOST, Answer::Addresses(vec![B_IP], 0));
    proxy.wait_for_ips(&[B_IP]).await;
    eventually("the removed endpoint's checker stopped", || healthy() == 1).await;
    let membership = cluster.membership_stats();
    assert_eq!(membership.membership_total.get(), 1);
    assert_eq!(membership.membership_healthy.get(), 1);

    // Back again: pending its first check, then healthy.
    dns.set(HOST, Answer::Addresses(vec![A_IP, B_IP], 0));
    proxy.wait_for_ips(&[A_IP, B_IP]).await;
    eventually("the returning endpoint checked healthy", || healthy() == 2).await;
    checks.abort();
    proxy.shutdown().await;
}
