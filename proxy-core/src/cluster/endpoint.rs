use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use hyper::client::conn::http2;

use super::ClusterOptions;
use crate::config::EndpointAddress;
use crate::http::RequestBody;
use crate::upstream::Pool;

/// One upstream address with its connections.
#[derive(Debug)]
pub struct Endpoint {
    address: EndpointAddress,
    /// Set by active health checking (and later outlier detection); read by the balancer
    /// on every pick, so a relaxed atomic: a pick may see a transition a moment late.
    healthy: AtomicBool,
    /// Load balancing weight (≥ 1) and priority (0 is highest); see [`super::balance`].
    weight: u32,
    priority: u32,
    /// Requests in flight to this endpoint, for the least-request balancer.
    active_requests: AtomicUsize,
    pool: Pool,
    /// The shared HTTP/2 connection and its generation, so a task that saw it fail can
    /// drop exactly that one and not a replacement another task just opened.
    http2: Mutex<(u64, Option<http2::SendRequest<RequestBody>>)>,
    http2_dial: tokio::sync::Mutex<()>,
}

impl Endpoint {
    pub(crate) fn new(endpoint: LbEndpoint, options: &ClusterOptions) -> Self {
        Self {
            address: endpoint.address,
            healthy: AtomicBool::new(true),
            weight: endpoint.weight.max(1),
            priority: endpoint.priority,
            active_requests: AtomicUsize::new(0),
            pool: Pool::new(options.max_idle_per_endpoint, options.idle_timeout),
            http2: Mutex::new((0, None)),
            http2_dial: tokio::sync::Mutex::new(()),
        }
    }

    pub fn address(&self) -> &EndpointAddress {
        &self.address
    }

    /// Whether the endpoint may receive traffic. Endpoints start healthy: without health
    /// checking, every endpoint is used.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the endpoint healthy or not (health checking); returns the previous state.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed)
    }

    /// Load balancing weight, at least 1 (Envoy's `load_balancing_weight`).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Priority level; 0 is the highest and gets traffic first.
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Requests currently in flight to this endpoint: from the start of
    /// `Cluster::send` until its response head arrives or it fails (or is dropped).
    #[inline]
    pub fn active_requests(&self) -> usize {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// Counts one request in flight to this endpoint until the guard is dropped.
    /// `Cluster::send` does this for HTTP; other paths (a TCP proxy connection) may too.
    pub fn track_request(&self) -> ActiveRequest<'_> {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(&self.active_requests)
    }

    /// Idle HTTP/1.1 connections currently pooled.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The shared HTTP/2 connection with its generation, if one is open.
    pub(crate) fn http2_sender(&self) -> Option<(u64, http2::SendRequest<RequestBody>)> {
        let slot = self.lock_http2();
        let (generation, sender) = &*slot;
        sender
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .map(|sender| (*generation, sender.clone()))
    }

    /// Installs a new shared connection; returns its generation.
    pub(crate) fn set_http2_sender(&self, sender: http2::SendRequest<RequestBody>) -> u64 {
        let mut slot = self.lock_http2();
        slot.0 += 1;
        slot.1 = Some(sender);
        slot.0
    }

    /// Forgets the shared connection if it is still generation `generation`.
    pub(crate) fn discard_http2_sender(&self, generation: u64) {
        let mut slot = self.lock_http2();
        if slot.0 == generation {
            slot.1 = None;
        }
    }

    fn lock_http2(&self) -> MutexGuard<'_, (u64, Option<http2::SendRequest<RequestBody>>)> {
        // Every critical section is a read or a single assignment: a poisoned lock still
        // holds a consistent value.
        self.http2
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) async fn http2_dial_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.http2_dial.lock().await
    }
}

/// One request in flight to an endpoint; see [`Endpoint::track_request`].
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct ActiveRequest<'a>(&'a AtomicUsize);

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint as configured: its address, weight and priority (Envoy's `LbEndpoint`
/// with its locality's priority). Defaults: weight 1, priority 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbEndpoint {
    pub address: EndpointAddress,
    /// Share of traffic relative to the level's other endpoints; 0 is taken as 1.
    pub weight: u32,
    /// 0 is the highest priority; lower levels get traffic only as higher ones fail.
    pub priority: u32,
}

impl LbEndpoint {
    pub fn new(address: EndpointAddress) -> Self {
        Self {
            address,
            weight: 1,
            priority: 0,
        }
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
}

impl From<EndpointAddress> for LbEndpoint {
    fn from(address: EndpointAddress) -> Self {
        Self::new(address)
    }
}
