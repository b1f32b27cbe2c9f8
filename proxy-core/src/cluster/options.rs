use std::time::Duration;

use super::{CircuitBreakers, HashPolicy, LbPolicy, OutlierDetection, SessionPersistence};

/// How a cluster speaks to its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a keep-alive pool per endpoint.
    Http1,
    /// HTTP/2 (prior knowledge, h2c) with one multiplexed connection per endpoint.
    Http2,
}

/// Cluster settings, `const`-constructible so the macro can emit them as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Time allowed to establish a connection (Envoy's `connect_timeout`). Default 5 s.
    pub connect_timeout: Duration,
    pub protocol: UpstreamProtocol,
    /// Idle HTTP/1.1 connections kept per endpoint. Default 64.
    pub max_idle_per_endpoint: usize,
    /// How long an idle connection is kept. Default 60 s: below nginx's default
    /// `keepalive_timeout` (75 s), so the proxy normally closes first and never sends a
    /// request into a connection the origin is closing.
    pub idle_timeout: Duration,
    /// How an endpoint is chosen within a priority level. Default round robin.
    pub lb_policy: LbPolicy,
    /// What the consistent-hash policies hash. Default none: requests are spread at
    /// random, so set one with `RingHash` or `Maglev`.
    pub hash_policy: Option<HashPolicy>,
    /// Percent of healthy endpoints below which a priority level is in panic and
    /// balanced across all its endpoints, healthy or not (Envoy's
    /// `healthy_panic_threshold`). Default 50; 0 disables panic mode.
    pub healthy_panic_threshold: u8,
    /// Percent by which a level's healthy share is scaled before traffic spills to
    /// lower priorities (Envoy's `overprovisioning_factor`). Default 140.
    pub overprovisioning_factor: u32,
    /// Passive ejection of failing endpoints; `None` (the default) disables it.
    pub outlier_detection: Option<OutlierDetection>,
    /// Limits on connections, pending requests, requests and retries. Envoy's defaults.
    pub circuit_breakers: CircuitBreakers,
    /// Sticky sessions; `None` (the default) disables them.
    pub session_persistence: Option<SessionPersistence>,
}

impl ClusterOptions {
    pub const DEFAULT: ClusterOptions = ClusterOptions {
        connect_timeout: Duration::from_secs(5),
        protocol: UpstreamProtocol::Http1,
        max_idle_per_endpoint: 64,
        idle_timeout: Duration::from_secs(60),
        lb_policy: LbPolicy::RoundRobin,
        hash_policy: None,
        healthy_panic_threshold: 50,
        overprovisioning_factor: 140,
        outlier_detection: None,
        circuit_breakers: CircuitBreakers::DEFAULT,
        session_persistence: None,
    };

    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub const fn protocol(mut self, protocol: UpstreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    pub const fn max_idle_per_endpoint(mut self, max: usize) -> Self {
        self.max_idle_per_endpoint = max;
        self
    }

    pub const fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    pub const fn lb(mut self, policy: LbPolicy) -> Self {
        self.lb_policy = policy;
        self
    }

    pub const fn hash_policy(mut self, policy: HashPolicy) -> Self {
        self.hash_policy = Some(policy);
        self
    }

    /// Panic threshold in percent; values above 100 are taken as 100.
    pub const fn healthy_panic_threshold(mut self, percent: u8) -> Self {
        self.healthy_panic_threshold = if percent > 100 { 100 } else { percent };
        self
    }

    /// Overprovisioning factor in percent (Envoy's default is 140); at least 1.
    pub const fn overprovisioning_factor(mut self, percent: u32) -> Self {
        self.overprovisioning_factor = if percent == 0 { 1 } else { percent };
        self
    }
}

impl ClusterOptions {
    pub const fn outlier_detection(mut self, detection: OutlierDetection) -> Self {
        self.outlier_detection = Some(detection);
        self
    }

    pub const fn circuit_breakers(mut self, breakers: CircuitBreakers) -> Self {
        self.circuit_breakers = breakers;
        self
    }

    pub const fn session_persistence(mut self, persistence: SessionPersistence) -> Self {
        self.session_persistence = Some(persistence);
        self
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
