use std::time::Duration;

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
}

impl ClusterOptions {
    pub const DEFAULT: ClusterOptions = ClusterOptions {
        connect_timeout: Duration::from_secs(5),
        protocol: UpstreamProtocol::Http1,
        max_idle_per_endpoint: 64,
        idle_timeout: Duration::from_secs(60),
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
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
