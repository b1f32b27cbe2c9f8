//! Circuit breakers (Envoy's `circuit_breakers.thresholds`, default priority): limits
//! on what one cluster may have outstanding; past a limit the request fails fast with
//! 503 and flag `UO` instead of queueing without bound.
//!
//! The semantics, and where they differ from Envoy's, are documented on the settings
//! type, where the public documentation shows them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

use super::{Cluster, Endpoint, UpstreamError, UpstreamProtocol};
use crate::stats::{CircuitBreakerStats, ClusterStats, GaugeGuard};

use super::endpoint::ActiveRequest;

/// Limits for one cluster, `const`-constructible. Defaults are Envoy's.
///
/// # Semantics
///
/// - **`max_requests`**: requests in flight to the cluster, each from the start of
///   `Cluster::send` until its response body ends, fails or is dropped. One more is
///   refused with [`UpstreamError::Overflow`]`("max_requests")`, counted in
///   `upstream_rq_pending_overflow` (Envoy's counter for it too).
/// - **`max_connections`**: upstream connections open at once across the cluster's
///   endpoints: pooled HTTP/1.1 connections busy or idle, HTTP/2 connections, TCP proxy
///   connections, each from the start of its dial until it closes. A request that needs
///   a new connection while the limit is reached counts `upstream_cx_overflow` once and
///   becomes *pending*: it waits until a connection of its endpoint comes back to the
///   pool or a connection slot frees, whichever comes first. While it waits it closes
///   idle connections (pooled HTTP/1.1 ones, or HTTP/2 ones without requests) of other
///   endpoints, one at each wake-up, so slots held by idle connections are never a
///   deadlock. A TCP proxy connection does not wait: the downstream connection is
///   closed at once ([`CloseReason::UpstreamOverflow`](crate::tcp::CloseReason)).
/// - **`max_pending_requests`**: requests waiting that way. One more is refused with
///   [`UpstreamError::Overflow`]`("max_pending_requests")`, counted in
///   `upstream_rq_pending_overflow`.
/// - **`max_retries`** / **`retry_budget`**: retries in flight, see
///   [`Cluster::try_retry`].
///
/// Every slot is held by a guard, so a request that is cancelled (client gone, route
/// timeout) releases everything it held when its future or body is dropped. Admission
/// is one compare-and-swap per resource; waking waiters costs a load when nobody waits.
/// Gauges (`circuit_breakers.default.*`) are computed from the live counts when read
/// ([`Cluster::circuit_breaker_stats`]).
///
/// # Deviations from Envoy
///
/// - Only the default priority exists; `max_connection_pools` is not implemented
///   (`cx_pool_open` is always 0).
/// - A pending request counts against `max_requests` too (Envoy checks the limit on
///   admission but counts it once the request has a connection).
/// - Envoy lets a host with no connection at all open one past `max_connections`;
///   here the limit is strict and idle connections of other endpoints are closed to
///   make room instead.
/// - Requests waiting for an HTTP/2 endpoint's first connection to be dialled wait
///   behind the dial without counting as pending.
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
    /// Envoy's defaults: 20 % of requests in flight, at least 3.
    pub const DEFAULT: RetryBudget = RetryBudget {
        budget_percent: 20,
        min_retry_concurrency: 3,
    };
}

impl CircuitBreakers {
    /// Envoy's defaults: 1024 connections, pending requests and requests, 3 retries.
    pub const DEFAULT: CircuitBreakers = CircuitBreakers {
        max_connections: 1024,
        max_pending_requests: 1024,
        max_requests: 1024,
        max_retries: 3,
        retry_budget: None,
    };

    /// Sets [`Self::max_connections`].
    pub const fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets [`Self::max_pending_requests`].
    pub const fn max_pending_requests(mut self, max: u32) -> Self {
        self.max_pending_requests = max;
        self
    }

    /// Sets [`Self::max_requests`].
    pub const fn max_requests(mut self, max: u32) -> Self {
        self.max_requests = max;
        self
    }

    /// Sets [`Self::max_retries`] (ignored while a retry budget is set).
    pub const fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = max;
        self
    }

    /// Limits retries by a budget instead of [`Self::max_retries`].
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

/// What a cluster has outstanding, against its [`CircuitBreakers`].
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    /// Wakes pending requests when a connection slot frees or a request ends (its
    /// connection may be back in a pool). Only notified while someone is pending.
    changed: Notify,
    /// The cluster's stats: `upstream_rq_active` follows the request slots.
    stats: Arc<ClusterStats>,
}

impl Breakers {
    pub(crate) fn new(stats: Arc<ClusterStats>) -> Self {
        Self {
            stats,
            ..Self::default()
        }
    }

    /// Tells pending requests that something may have freed up. The load pairs with
    /// [`Cluster::wait_for_connection`]: it counts itself pending (sequentially
    /// consistent) before it checks the pool and slots again, so either it sees what was
    /// freed or this sees it pending and wakes it.
    fn wake_pending(&self) {
        if self.pending.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Takes one unit of `counter` if it is below `limit`.
fn acquire(counter: &AtomicU32, limit: u32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// One open (or dialling) upstream connection's slot under `max_connections`. Held by
/// the connection's task; dropping it frees the slot and wakes pending requests.
#[derive(Debug)]
#[must_use = "the slot is held only while the guard lives"]
pub(crate) struct ConnectionSlot(Arc<Breakers>);

impl ConnectionSlot {
    #[cfg(test)]
    pub(crate) fn for_tests(breakers: &Arc<Breakers>) -> Self {
        breakers.connections.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(breakers))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
        self.0.wake_pending();
    }
}

/// One request's slot under `max_requests`.
#[derive(Debug)]
struct RequestSlot(Arc<Breakers>);

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::SeqCst);
        self.0.stats.upstream_rq_active.dec();
        // The request's HTTP/1.1 connection was put back in its pool just before (see
        // `ResponseBody`): a pending request for that endpoint can take it.
        self.0.wake_pending();
    }
}

/// One pending request's slot under `max_pending_requests`.
struct PendingSlot<'a> {
    breakers: &'a Breakers,
    _active: GaugeGuard<'a>,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.breakers.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Everything one HTTP request holds while in flight: its `max_requests` slot and its
/// endpoint's least-request count. Travels with the response body and is released when
/// the body ends, fails or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    // Declared first, dropped first: the endpoint count is exact before waiters wake.
    _endpoint: ActiveRequest,
    _request: RequestSlot,
}

/// What a pending request got.
pub(crate) enum Waited<T> {
    /// A connection of its endpoint became reusable.
    Reuse(T),
    /// A connection slot: dial a new connection.
    Slot(ConnectionSlot),
}

/// Permission for one retry, held while the retry is in flight.
#[derive(Debug)]
#[must_use = "the retry counts as in flight only while the permit lives"]
pub struct RetryPermit<'a> {
    breakers: &'a Breakers,
}

impl Drop for RetryPermit<'_> {
    fn drop(&mut self) {
        self.breakers.retries.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Cluster {
    /// Asks the cluster's retry limit (`max_retries` or the retry budget) for one more
    /// retry in flight. `None` means the limit is reached: the caller must not retry,
    /// and `upstream_rq_retry_overflow` has been counted.
    ///
    /// With a [`RetryBudget`] the limit is `budget_percent` of the requests in flight
    /// (pending ones included), and at least `min_retry_concurrency`. The permit frees
    /// its place when dropped.
    pub fn try_retry(&self) -> Option<RetryPermit<'_>> {
        let breakers = &*self.breakers;
        if acquire(&breakers.retries, self.retry_limit()) {
            Some(RetryPermit { breakers })
        } else {
            self.stats.upstream_rq_retry_overflow.inc();
            None
        }
    }

    /// Retries allowed in flight now.
    fn retry_limit(&self) -> u32 {
        let limits = &self.options.circuit_breakers;
        match limits.retry_budget {
            None => limits.max_retries,
            Some(budget) => {
                let requests = u64::from(self.breakers.requests.load(Ordering::SeqCst));
                let share = u64::from(budget.budget_percent).saturating_mul(requests) / 100;
                u32::try_from(share)
                    .unwrap_or(u32::MAX)
                    .max(budget.min_retry_concurrency)
            }
        }
    }

    /// The circuit breakers' state now, as Envoy's `circuit_breakers.default.*` gauges.
    pub fn circuit_breaker_stats(&self) -> CircuitBreakerStats {
        let limits = &self.options.circuit_breakers;
        let breakers = &*self.breakers;
        let stats = CircuitBreakerStats::default();
        let gauge = |open: &crate::stats::Gauge,
                     remaining: &crate::stats::Gauge,
                     used: &AtomicU32,
                     limit: u32| {
            let used = used.load(Ordering::SeqCst);
            open.set(i64::from(used >= limit));
            remaining.set(i64::from(limit.saturating_sub(used)));
        };
        gauge(
            &stats.cx_open,
            &stats.remaining_cx,
            &breakers.connections,
            limits.max_connections,
        );
        gauge(
            &stats.rq_pending_open,
            &stats.remaining_pending,
            &breakers.pending,
            limits.max_pending_requests,
        );
        gauge(
            &stats.rq_open,
            &stats.remaining_rq,
            &breakers.requests,
            limits.max_requests,
        );
        gauge(
            &stats.rq_retry_open,
            &stats.remaining_retries,
            &breakers.retries,
            self.retry_limit(),
        );
        stats
    }

    /// Admits one request under `max_requests` and counts it on `endpoint`; the
    /// overflow is counted here.
    pub(crate) fn admit_request(&self, endpoint: &Endpoint) -> Result<InFlight, UpstreamError> {
        let breakers = &self.breakers;
        if !acquire(
            &breakers.requests,
            self.options.circuit_breakers.max_requests,
        ) {
            self.stats.upstream_rq_pending_overflow.inc();
            return Err(UpstreamError::Overflow("max_requests"));
        }
        // Active from admission until the response body ends (Envoy's meaning), as the
        // request slot is.
        self.stats.upstream_rq_active.inc();
        Ok(InFlight {
            _endpoint: endpoint.track_request(),
            _request: RequestSlot(Arc::clone(breakers)),
        })
    }

    /// A connection slot, if `max_connections` is not reached. Counts nothing.
    pub(crate) fn connection_slot(&self) -> Option<ConnectionSlot> {
        acquire(
            &self.breakers.connections,
            self.options.circuit_breakers.max_connections,
        )
        .then(|| ConnectionSlot(Arc::clone(&self.breakers)))
    }

    /// A connection slot for a TCP proxy connection, which does not wait: on overflow
    /// `upstream_cx_overflow` is counted, an idle HTTP connection is closed to make room
    /// for the next one, and `None` is returned.
    pub(crate) fn tcp_connection_slot(&self, endpoint: &Endpoint) -> Option<ConnectionSlot> {
        let slot = self.connection_slot();
        if slot.is_none() {
            self.stats.upstream_cx_overflow.inc();
            self.evict_idle_connection(endpoint);
        }
        slot
    }

    /// Waits, as a pending request, for a connection to `endpoint`: one `reuse` finds
    /// (a pooled or shared connection of that endpoint), or a free slot to dial one.
    /// Called when `max_connections` is reached; fails when `max_pending_requests` is.
    pub(crate) async fn wait_for_connection<T>(
        &self,
        endpoint: &Endpoint,
        reuse: impl Fn() -> Option<T>,
    ) -> Result<Waited<T>, UpstreamError> {
        self.stats.upstream_cx_overflow.inc();
        let breakers = &*self.breakers;
        let mut pending = None;
        loop {
            // Registered before this waiter counts as pending and checks again, so a
            // wake-up between the checks and the wait is not lost (`notify_waiters`
            // reaches every `Notified` created before it).
            let changed = breakers.changed.notified();
            if pending.is_none() {
                if !acquire(
                    &breakers.pending,
                    self.options.circuit_breakers.max_pending_requests,
                ) {
                    self.stats.upstream_rq_pending_overflow.inc();
                    return Err(UpstreamError::Overflow("max_pending_requests"));
                }
                self.stats.upstream_rq_pending_total.inc();
                pending = Some(PendingSlot {
                    breakers,
                    _active: GaugeGuard::new(&self.stats.upstream_rq_pending_active),
                });
            }
            if let Some(connection) = reuse() {
                return Ok(Waited::Reuse(connection));
            }
            if let Some(slot) = self.connection_slot() {
                return Ok(Waited::Slot(slot));
            }
            // Slots held by idle connections would otherwise never come back: close one
            // (its slot frees when its task ends, which wakes this loop again).
            self.evict_idle_connection(endpoint);
            changed.await;
        }
    }

    /// Closes one idle connection of an endpoint other than `except`, to free its slot:
    /// a pooled HTTP/1.1 connection, or an HTTP/2 connection with no request in flight.
    fn evict_idle_connection(&self, except: &Endpoint) -> bool {
        let mut evicted = false;
        self.for_each_endpoint(|endpoint| {
            if evicted || std::ptr::eq(endpoint, except) {
                return;
            }
            evicted = match self.options.protocol {
                UpstreamProtocol::Http1 => endpoint.pool().evict_oldest(),
                UpstreamProtocol::Http2 => {
                    endpoint.active_requests() == 0 && endpoint.discard_idle_http2()
                }
            };
            if evicted {
                tracing::debug!(
                    cluster = self.name,
                    endpoint = %endpoint.address(),
                    "closed an idle connection for a pending request (max_connections)"
                );
            }
        });
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_stops_at_the_limit_and_guards_release() {
        let breakers = Arc::new(Breakers::default());
        assert!(acquire(&breakers.connections, 2));
        let first = ConnectionSlot(Arc::clone(&breakers));
        assert!(acquire(&breakers.connections, 2));
        let second = ConnectionSlot(Arc::clone(&breakers));
        assert!(!acquire(&breakers.connections, 2));
        drop(first);
        assert_eq!(breakers.connections.load(Ordering::SeqCst), 1);
        drop(second);
        assert_eq!(breakers.connections.load(Ordering::SeqCst), 0);
        assert!(
            !acquire(&breakers.connections, 0),
            "a zero limit admits nothing"
        );
    }
}
