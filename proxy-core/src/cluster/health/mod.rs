//! Active health checking: one task per endpoint probes exactly that endpoint's address
//! (TCP or Unix socket, with the cluster's TLS if it has any) on a fresh connection,
//! and flips [`Endpoint::set_healthy`] once the thresholds are crossed.
//!
//! # Semantics (Envoy's, with the choices called out)
//!
//! - **Initial state.** When checking starts, every endpoint is *pending its first
//!   check* and is marked unhealthy, as Envoy marks a static cluster's initial hosts
//!   `FAILED_ACTIVE_HC` until the first round completes. The first check runs at once
//!   and decides alone: one success makes the endpoint healthy without waiting for
//!   `healthy_threshold`, one failure keeps it unhealthy. Envoy hides this window by
//!   holding the cluster in warming; here it lasts one probe (normally milliseconds),
//!   during which the balancer sees no healthy endpoint.
//! - **DNS clusters.** Their endpoints change: one that joins is marked unhealthy
//!   before the balancer can see it and checked at once (Envoy checks new hosts before
//!   using them); one that leaves stops being checked and no longer counts in the
//!   `healthy` gauge. If it comes back it starts over, pending its first check.
//! - **Thresholds.** A healthy endpoint becomes unhealthy after `unhealthy_threshold`
//!   consecutive *network* failures (connect error, I/O error, timeout, peer closed
//!   early), or after a single *active* failure (the peer answered, and the answer is
//!   wrong: an HTTP status outside `expected_statuses`, a wrong service name, gRPC not
//!   `SERVING`, Redis not `+PONG`) — Envoy's rule that a non-retriable active failure
//!   ignores the threshold. An unhealthy endpoint becomes healthy after
//!   `healthy_threshold` consecutive successes.
//! - **Timing.** The next check starts `interval` (+ a uniformly random `0..=jitter`)
//!   after the previous one *ended*, as Envoy arms its timer on completion. When the
//!   cluster has sent no request since the previous check (its `upstream_rq_total` is
//!   unchanged), `no_traffic_interval` (+ jitter) is used instead — Envoy applies it
//!   until a cluster has ever seen traffic; here it also applies again after idle spells.
//! - **Timeout** covers connect, TLS handshake and the whole exchange; it expiring is a
//!   network failure.
//! - **Protocols.** HTTP checks speak HTTP/1.1 whatever the cluster's protocol (Envoy's
//!   default codec for health checks); gRPC checks speak HTTP/2, so over TLS they need a
//!   cluster whose protocol is HTTP/2 (its ALPN offers `h2`).
//!
//! - **Outlier detection** keeps its own flag: an endpoint is used only while neither
//!   source fails it (Envoy's `FAILED_ACTIVE_HC` and `FAILED_OUTLIER_CHECK`), so a
//!   passing check does not return an ejected endpoint early.
//!
//! Every transition is logged at `info` with cluster, endpoint, old and new state and the
//! reason, and counted in `cluster.<name>.health_check.*` and
//! `cluster.<name>.membership_*` (see [`HealthCheckStats`], [`MembershipStats`]).

mod probe;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Cluster, Endpoint};
use crate::stats::{HealthCheckStats, MembershipStats};

use probe::{Failure, FailureKind};

/// What a health check sends and what it accepts as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `GET path` over HTTP/1.1 on a fresh connection (`connection: close`).
    Http {
        path: &'static str,
        /// The `host` header; default the cluster's name, as Envoy does.
        host: Option<&'static str>,
        /// Inclusive ranges of healthy statuses; default `200..=299`.
        expected_statuses: &'static [(u16, u16)],
        /// When set, the response must carry `x-envoy-upstream-healthchecked-cluster`
        /// with exactly this value (Envoy's `service_name_matcher`); counted in
        /// `health_check.verify_cluster`.
        service_name_header: Option<&'static str>,
    },
    /// Connect, then optionally write `send` and wait until the bytes read contain
    /// `expect`. With both `None`, a completed connect is success.
    Tcp {
        send: Option<&'static [u8]>,
        expect: Option<&'static [u8]>,
    },
    /// `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 with the cluster's TLS);
    /// healthy when the reply is `SERVING`.
    Grpc { service_name: Option<&'static str> },
    /// `PING`, expecting `+PONG`.
    Redis,
}

/// Active health checking settings for one cluster, `const`-constructible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Pause between the end of one check and the start of the next. Default 5 s.
    pub interval: Duration,
    /// Up to this much (uniformly random) is added to each pause. Default 0.
    pub jitter: Duration,
    /// Limit on one whole check, connect included. Default 1 s.
    pub timeout: Duration,
    /// Consecutive network failures that make a healthy endpoint unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that make an unhealthy endpoint healthy. Default 2.
    pub healthy_threshold: u32,
    /// The pause used while the cluster has had no request since the last check.
    /// Default 60 s, Envoy's.
    pub no_traffic_interval: Duration,
}

impl HealthCheck {
    /// Healthy HTTP statuses unless configured: any 2xx.
    pub const DEFAULT_EXPECTED_STATUSES: &'static [(u16, u16)] = &[(200, 299)];

    const fn new(kind: HealthCheckKind) -> Self {
        Self {
            kind,
            interval: Duration::from_secs(5),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            no_traffic_interval: Duration::from_secs(60),
        }
    }

    /// An HTTP check of `path`, expecting any 2xx.
    pub const fn http(path: &'static str) -> Self {
        Self::new(HealthCheckKind::Http {
            path,
            host: None,
            expected_statuses: Self::DEFAULT_EXPECTED_STATUSES,
            service_name_header: None,
        })
    }

    /// A TCP check that only connects.
    pub const fn tcp_connect() -> Self {
        Self::new(HealthCheckKind::Tcp {
            send: None,
            expect: None,
        })
    }

    /// A TCP check that writes `send` and expects `expect` among the bytes read back.
    pub const fn tcp(send: Option<&'static [u8]>, expect: Option<&'static [u8]>) -> Self {
        Self::new(HealthCheckKind::Tcp { send, expect })
    }

    /// A gRPC health check of `service_name` (`None`: the server as a whole).
    pub const fn grpc(service_name: Option<&'static str>) -> Self {
        Self::new(HealthCheckKind::Grpc { service_name })
    }

    /// A Redis `PING` check.
    pub const fn redis() -> Self {
        Self::new(HealthCheckKind::Redis)
    }

    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    pub const fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Clamped to at least 1.
    pub const fn unhealthy_threshold(mut self, threshold: u32) -> Self {
        self.unhealthy_threshold = if threshold == 0 { 1 } else { threshold };
        self
    }

    /// Clamped to at least 1.
    pub const fn healthy_threshold(mut self, threshold: u32) -> Self {
        self.healthy_threshold = if threshold == 0 { 1 } else { threshold };
        self
    }

    pub const fn no_traffic_interval(mut self, interval: Duration) -> Self {
        self.no_traffic_interval = interval;
        self
    }

    /// Sets the `host` header of an HTTP check; no effect on other kinds.
    pub const fn host(mut self, value: &'static str) -> Self {
        if let HealthCheckKind::Http { host, .. } = &mut self.kind {
            *host = Some(value);
        }
        self
    }

    /// Sets the healthy status ranges (inclusive) of an HTTP check; no effect on other
    /// kinds.
    pub const fn expected_statuses(mut self, ranges: &'static [(u16, u16)]) -> Self {
        if let HealthCheckKind::Http {
            expected_statuses, ..
        } = &mut self.kind
        {
            *expected_statuses = ranges;
        }
        self
    }

    /// Requires an HTTP check's response to name this service; no effect on other kinds.
    pub const fn service_name_header(mut self, name: &'static str) -> Self {
        if let HealthCheckKind::Http {
            service_name_header,
            ..
        } = &mut self.kind
        {
            *service_name_header = Some(name);
        }
        self
    }

    /// The pause before the next check: `interval`, or `no_traffic_interval` when the
    /// cluster saw no request since the last check, plus random jitter.
    fn pause(&self, had_traffic: bool) -> Duration {
        let base = if had_traffic {
            self.interval
        } else {
            self.no_traffic_interval
        };
        let jitter = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        base.saturating_add(Duration::from_nanos(fastrand::u64(0..=jitter)))
    }
}

/// A cluster's health checking settings and counters.
#[derive(Debug, Default)]
pub(crate) struct ClusterHealth {
    check: Option<HealthCheck>,
    stats: HealthCheckStats,
    membership: MembershipStats,
    /// Serialises recounts of `membership`, so the last recount after concurrent health
    /// transitions (active checks, outlier detection) sees all of them.
    membership_recount: std::sync::Mutex<()>,
    /// Set by the first [`Cluster::health_checks`], so endpoints get one checker each.
    started: AtomicBool,
}

impl Cluster {
    /// Checks every endpoint of this cluster actively; started by
    /// [`Cluster::health_checks`].
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health.check = Some(check);
        self
    }

    /// The cluster's active health check settings, if any.
    pub fn health_check_settings(&self) -> Option<&HealthCheck> {
        self.health.check.as_ref()
    }

    /// `cluster.<name>.health_check.*`.
    pub fn health_check_stats(&self) -> &HealthCheckStats {
        &self.health.stats
    }

    /// `cluster.<name>.membership_*`: `membership_total` is every endpoint,
    /// `membership_healthy` those neither active health checking nor outlier detection
    /// fails. Recounted from the endpoints' health flags at every health transition of
    /// either source and whenever this is called, so both sources (and changes of the
    /// endpoint set) keep it right without coordinating.
    pub fn membership_stats(&self) -> &MembershipStats {
        self.recount_membership();
        &self.health.membership
    }

    /// Recounts `membership_*` from the endpoints' flags. Called after every health
    /// transition (rare), never per request.
    pub(crate) fn recount_membership(&self) {
        // Nothing is called under the lock but the count: it cannot deadlock, and a
        // panic there leaves nothing half-updated.
        let _recount = self
            .health
            .membership_recount
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut total, mut healthy) = (0_i64, 0_i64);
        self.for_each_endpoint(|endpoint| {
            total += 1;
            healthy += i64::from(endpoint.is_healthy());
        });
        let membership = &self.health.membership;
        membership.membership_total.set(total);
        membership.membership_healthy.set(healthy);
    }

    /// The task that checks every endpoint, or `None` when the cluster has no
    /// [`health_check`](Self::health_check) or this was called before. Calling this marks every endpoint unhealthy
    /// pending its first check (see the [module docs](crate::cluster::health)); the future runs
    /// one task per endpoint, each checking at once and then every interval, until it
    /// is dropped, which stops them all.
    pub fn health_checks(&'static self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let check = self.health.check?;
        if self.health.started.swap(true, Ordering::Relaxed) {
            return None;
        }
        self.health.stats.healthy.set(0);
        // Marked now, so requests after this call already see them pending.
        let endpoints = self.endpoints();
        for endpoint in endpoints {
            endpoint.set_healthy(false);
        }
        // A DNS cluster: its current endpoints, and every later change, from the same
        // instant. Discovery marks endpoints that join later itself.
        let dns = self.dns.as_deref().map(|dns| {
            let (members, changes) = dns.watch_membership();
            for &slot in &members {
                if let Some(endpoint) = dns.endpoint(slot) {
                    endpoint.set_healthy(false);
                }
            }
            (dns, members, changes)
        });
        self.recount_membership();
        Some(async move {
            let mut checkers = Checkers {
                cluster: self,
                check,
                tasks: tokio::task::JoinSet::new(),
                running: HashMap::new(),
                alive: HashMap::new(),
            };
            for endpoint in endpoints {
                checkers
                    .tasks
                    .spawn(check_endpoint(self, endpoint, check, None));
            }
            match dns {
                None => while checkers.next_exit().await {},
                Some((dns, members, changes)) => {
                    checkers.follow(dns, members, changes).await;
                }
            }
        })
    }
}

/// The checker tasks of one cluster.
struct Checkers {
    cluster: &'static Cluster,
    check: HealthCheck,
    tasks: tokio::task::JoinSet<()>,
    /// DNS endpoints being checked, by slot: dropping the sender stops the checker.
    running: HashMap<usize, oneshot::Sender<()>>,
    /// Per slot, a lock each checker holds for its life, so a successor for the same
    /// endpoint starts only once its predecessor is gone. Kept after the endpoint
    /// leaves (at most one per interned endpoint).
    alive: HashMap<usize, Arc<tokio::sync::Mutex<()>>>,
}

impl Checkers {
    /// Waits for one task to end, logging a panic; `false` once none is left.
    async fn next_exit(&mut self) -> bool {
        match self.tasks.join_next().await {
            Some(Err(error)) if !error.is_cancelled() => {
                tracing::error!(cluster = self.cluster.name, %error, "health check task failed");
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Checks a DNS cluster's `members`, then follows `changes` forever: an endpoint
    /// that joins is checked (discovery marked it unhealthy, pending its first check),
    /// one that leaves stops being checked.
    async fn follow(
        &mut self,
        dns: &'static super::dns::DnsHosts,
        members: Vec<usize>,
        mut changes: tokio::sync::mpsc::UnboundedReceiver<super::dns::Membership>,
    ) {
        for slot in members {
            self.start(dns, slot);
        }
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(super::dns::Membership::Added(slot)) => self.start(dns, slot),
                    Some(super::dns::Membership::Removed(slot)) => {
                        // Dropping the sender stops the checker.
                        self.running.remove(&slot);
                    }
                    // The cluster (and its discovery) lives as long as the process.
                    None => return,
                },
                _ = self.next_exit(), if !self.tasks.is_empty() => {}
            }
        }
    }

    fn start(&mut self, dns: &'static super::dns::DnsHosts, slot: usize) {
        let Some(endpoint) = dns.endpoint(slot) else {
            return;
        };
        let (stop, stopped) = oneshot::channel();
        // Replacing a running checker's sender stops it.
        self.running.insert(slot, stop);
        let (cluster, check) = (self.cluster, self.check);
        let lock = Arc::clone(self.alive.entry(slot).or_default());
        self.tasks.spawn(async move {
            // A checker of an earlier membership of this endpoint may still be winding
            // down; start once it has, and only then mark the endpoint pending again,
            // so its last verdict cannot overwrite this one.
            let _alive = lock.lock_owned().await;
            endpoint.set_healthy(false);
            check_endpoint(cluster, endpoint, check, Some(stopped)).await;
        });
    }
}

/// An endpoint's standing in the checker's eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Healthy,
    Unhealthy,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
        }
    }
}

/// Consecutive-result bookkeeping for one endpoint.
#[derive(Debug)]
struct Tracker {
    state: State,
    successes: u32,
    failures: u32,
}

impl Tracker {
    const fn new() -> Self {
        Self {
            state: State::Pending,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one result; returns the new state if it changed.
    fn record(&mut self, check: &HealthCheck, result: &Result<(), Failure>) -> Option<State> {
        let next = match result {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                match self.state {
                    State::Healthy => None,
                    State::Pending => Some(State::Healthy),
                    State::Unhealthy => {
                        (self.successes >= check.healthy_threshold).then_some(State::Healthy)
                    }
                }
            }
            Err(failure) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                match self.state {
                    State::Unhealthy => None,
                    State::Pending => Some(State::Unhealthy),
                    State::Healthy => (failure.kind() == FailureKind::Active
                        || self.failures >= check.unhealthy_threshold)
                        .then_some(State::Unhealthy),
                }
            }
        };
        if let Some(state) = next {
            self.state = state;
            self.successes = 0;
            self.failures = 0;
        }
        next
    }
}

/// Checks `endpoint` of `cluster` until `stop` fires or is dropped (never, without one).
async fn check_endpoint(
    cluster: &'static Cluster,
    endpoint: &'static Endpoint,
    check: HealthCheck,
    stop: Option<oneshot::Receiver<()>>,
) {
    let stopped = async move {
        match stop {
            // Fired or dropped: either way the endpoint is no longer to be checked.
            Some(stop) => {
                let _ = stop.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    let stats = &cluster.health.stats;
    let mut tracker = Tracker::new();
    let mut requests_seen = cluster.stats.upstream_rq_total.get();
    loop {
        stats.attempt.inc();
        // `biased`: once stopped, no later verdict may reach the endpoint.
        let result = tokio::select! {
            biased;
            () = &mut stopped => break,
            result = probe::probe(cluster, endpoint, &check) => result,
        };
        match &result {
            Ok(()) => stats.success.inc(),
            Err(failure) => {
                stats.failure.inc();
                if failure.kind() == FailureKind::Network {
                    stats.network_failure.inc();
                }
                tracing::debug!(
                    cluster = cluster.name,
                    endpoint = %endpoint.address(),
                    reason = %failure,
                    "health check failed"
                );
            }
        }
        let old = tracker.state;
        if let Some(new) = tracker.record(&check, &result) {
            transition(cluster, endpoint, old, new, &result);
        }

        let requests = cluster.stats.upstream_rq_total.get();
        let had_traffic = requests != requests_seen;
        requests_seen = requests;
        tokio::select! {
            biased;
            () = &mut stopped => break,
            () = tokio::time::sleep(check.pause(had_traffic)) => {}
        }
    }
    // The endpoint left the cluster: it no longer counts as healthy here.
    if tracker.state == State::Healthy {
        stats.healthy.dec();
    }
    tracing::debug!(
        cluster = cluster.name,
        endpoint = %endpoint.address(),
        "health checking stopped: the endpoint left the cluster"
    );
}

fn transition(
    cluster: &Cluster,
    endpoint: &Endpoint,
    old: State,
    new: State,
    result: &Result<(), Failure>,
) {
    let healthy = new == State::Healthy;
    // The gauge first, so whoever sees the endpoint's new state also sees it updated.
    // (`membership_*` is computed from the endpoints' flags when read.)
    let stats = &cluster.health.stats;
    if healthy {
        stats.healthy.inc();
    } else if old == State::Healthy {
        stats.healthy.dec();
    }
    endpoint.set_healthy(healthy);
    cluster.recount_membership();
    let reason = match result {
        Ok(()) => "check passed".to_owned(),
        Err(failure) => failure.to_string(),
    };
    tracing::info!(
        cluster = cluster.name,
        endpoint = %endpoint.address(),
        old = old.as_str(),
        new = new.as_str(),
        %reason,
        "health changed"
    );
}

#[cfg(test)]
mod tests;
