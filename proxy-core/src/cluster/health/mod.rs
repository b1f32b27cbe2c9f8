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
//! Every transition is logged at `info` with cluster, endpoint, old and new state and the
//! reason, and counted in `cluster.<name>.health_check.*` and
//! `cluster.<name>.membership_*` (see [`HealthCheckStats`], [`MembershipStats`]).

mod probe;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

    /// `cluster.<name>.membership_*`; maintained while health checks run.
    pub fn membership_stats(&self) -> &MembershipStats {
        &self.health.membership
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
        let endpoints = self.endpoints();
        let membership = &self.health.membership;
        membership
            .membership_total
            .set(i64::try_from(endpoints.len()).unwrap_or(i64::MAX));
        membership.membership_healthy.set(0);
        self.health.stats.healthy.set(0);
        for endpoint in endpoints {
            endpoint.set_healthy(false);
        }
        Some(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for index in 0..endpoints.len() {
                tasks.spawn(check_endpoint(self, index, check));
            }
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = result {
                    tracing::error!(cluster = self.name, %error, "health check task failed");
                }
            }
        })
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

/// Checks endpoint `index` of `cluster` forever.
async fn check_endpoint(cluster: &'static Cluster, index: usize, check: HealthCheck) {
    let Some(endpoint) = cluster.endpoints().get(index) else {
        return;
    };
    let stats = &cluster.health.stats;
    let mut tracker = Tracker::new();
    let mut requests_seen = cluster.stats.upstream_rq_total.get();
    loop {
        stats.attempt.inc();
        let result = probe::probe(cluster, index, endpoint, &check).await;
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
        tokio::time::sleep(check.pause(had_traffic)).await;
    }
}

fn transition(
    cluster: &Cluster,
    endpoint: &Endpoint,
    old: State,
    new: State,
    result: &Result<(), Failure>,
) {
    let healthy = new == State::Healthy;
    // Gauges first, so whoever sees the endpoint's new state also sees them updated.
    let (membership, stats) = (&cluster.health.membership, &cluster.health.stats);
    if healthy {
        membership.membership_healthy.inc();
        stats.healthy.inc();
    } else if old == State::Healthy {
        membership.membership_healthy.dec();
        stats.healthy.dec();
    }
    endpoint.set_healthy(healthy);
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
