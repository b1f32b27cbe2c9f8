//! Circuit breakers (Envoy's `circuit_breakers.thresholds`, default priority): limits
//! on what one cluster may have outstanding; past a limit the request fails fast with
//! 503 and flag `UO` instead of queueing without bound.

use super::Cluster;

/// Limits for one cluster, `const`-constructible. Defaults are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Upstream connections open at once, across all endpoints. Default 1024.
    pub max_connections: u32,
    /// Requests waiting for a connection (the connection limit is reached). Default 1024.
    pub max_pending_requests: u32,
    /// Requests in flight at once. Default 1024.
    pub max_requests: u32,
    /// Retries in flight at once. Default 3. Replaced by `retry_budget` when one is set.
    pub max_retries: u32,
    /// Retries in flight allowed as a share of requests in flight.
    pub retry_budget: Option<RetryBudget>,
}

/// Envoy's `retry_budget`: retries in flight may be up to `budget_percent` of the
/// requests in flight, and at least `min_retry_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Default 20.
    pub budget_percent: u32,
    /// Default 3.
    pub min_retry_concurrency: u32,
}

impl RetryBudget {
    pub const DEFAULT: RetryBudget = RetryBudget {
        budget_percent: 20,
        min_retry_concurrency: 3,
    };
}

impl CircuitBreakers {
    pub const DEFAULT: CircuitBreakers = CircuitBreakers {
        max_connections: 1024,
        max_pending_requests: 1024,
        max_requests: 1024,
        max_retries: 3,
        retry_budget: None,
    };

    pub const fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    pub const fn max_pending_requests(mut self, max: u32) -> Self {
        self.max_pending_requests = max;
        self
    }

    pub const fn max_requests(mut self, max: u32) -> Self {
        self.max_requests = max;
        self
    }

    pub const fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = max;
        self
    }

    pub const fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Permission for one retry, held while the retry is in flight.
#[derive(Debug)]
pub struct RetryPermit<'a> {
    _cluster: &'a Cluster,
}

impl Cluster {
    /// Asks the cluster's retry limit (`max_retries` or the retry budget) for one more
    /// retry in flight. `None` means the limit is reached: the caller must not retry,
    /// and `upstream_rq_retry_overflow` has been counted.
    pub fn try_retry(&self) -> Option<RetryPermit<'_>> {
        // Interface only: the limit is enforced by the circuit breaker work (issue 4).
        Some(RetryPermit { _cluster: self })
    }
}
