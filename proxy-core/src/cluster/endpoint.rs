//! One upstream endpoint: its address, health flags, in-flight count and connections.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::client::conn::http2;

use super::ClusterOptions;
use super::outlier::EndpointOutlier;
use crate::config::EndpointAddress;
use crate::http::RequestBody;
use crate::upstream::Pool;

/// Health flag: active health checking failed the endpoint (Envoy's `FAILED_ACTIVE_HC`).
const FAILED_ACTIVE_HC: u8 = 1;
/// Health flag: outlier detection ejected the endpoint (Envoy's `FAILED_OUTLIER_CHECK`).
const FAILED_OUTLIER_CHECK: u8 = 1 << 1;

/// One upstream address with its connections.
#[derive(Debug)]
pub struct Endpoint {
    address: EndpointAddress,
    /// Why the endpoint is unusable, as bits (`FAILED_*`); 0 is healthy. Two sources
    /// (active health checking, outlier detection) set and clear their own bit with one
    /// atomic read-modify-write each, so neither undoes the other. Read by the balancer on
    /// every pick with a relaxed load: a pick may see a transition a moment late.
    health: AtomicU8,
    /// Load balancing weight (≥ 1) and priority (0 is highest); see [`super::balance`].
    weight: u32,
    priority: u32,
    /// Requests in flight to this endpoint, for the least-request balancer. Shared with
    /// the [`ActiveRequest`] guards, which travel with response bodies past the
    /// endpoint's borrow.
    active_requests: Arc<AtomicUsize>,
    /// Outlier detection's per-endpoint counters and ejection state.
    outlier: EndpointOutlier,
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
            health: AtomicU8::new(0),
            weight: endpoint.weight.max(1),
            priority: endpoint.priority,
            active_requests: Arc::new(AtomicUsize::new(0)),
            outlier: EndpointOutlier::default(),
            pool: Pool::new(options.max_idle_per_endpoint, options.idle_timeout),
            http2: Mutex::new((0, None)),
            http2_dial: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the endpoint listens.
    pub fn address(&self) -> &EndpointAddress {
        &self.address
    }

    /// Whether the endpoint may receive traffic: neither active health checking has
    /// failed it nor outlier detection ejected it. Endpoints start healthy: without
    /// health checking or outlier detection, every endpoint is used.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == 0
    }

    /// Sets or clears the active health checking verdict (Envoy's `FAILED_ACTIVE_HC`);
    /// returns whether active health checking had the endpoint healthy before. An
    /// outlier ejection is unaffected: the endpoint is usable only once both agree.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let before = self.set_flag(FAILED_ACTIVE_HC, !healthy);
        before & FAILED_ACTIVE_HC == 0
    }

    /// Whether active health checking currently fails the endpoint.
    pub fn failed_active_health_check(&self) -> bool {
        self.health.load(Ordering::Relaxed) & FAILED_ACTIVE_HC != 0
    }

    /// Whether outlier detection currently ejects the endpoint.
    pub fn is_ejected(&self) -> bool {
        self.health.load(Ordering::Acquire) & FAILED_OUTLIER_CHECK != 0
    }

    /// Sets or clears outlier detection's flag; returns whether it was set before.
    pub(crate) fn set_ejected(&self, ejected: bool) -> bool {
        self.set_flag(FAILED_OUTLIER_CHECK, ejected) & FAILED_OUTLIER_CHECK != 0
    }

    /// Sets or clears `flag`; returns all flags as they were. Release/acquire so whoever
    /// sees an ejection also sees the ejection time written before it.
    fn set_flag(&self, flag: u8, set: bool) -> u8 {
        if set {
            self.health.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.health.fetch_and(!flag, Ordering::AcqRel)
        }
    }

    pub(crate) fn outlier(&self) -> &EndpointOutlier {
        &self.outlier
    }

    /// Load balancing weight, at least 1 (Envoy's `load_balancing_weight`).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Priority level; 0 is the highest and gets traffic first.
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Requests currently in flight to this endpoint: an HTTP request from the start of
    /// `Cluster::send` until its response body ends, fails or is dropped (or `send`
    /// fails); a TCP proxy connection while it is open.
    #[inline]
    pub fn active_requests(&self) -> usize {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// Counts one request in flight to this endpoint until the guard is dropped.
    /// `Cluster::send` does this for HTTP (the guard then travels with the response
    /// body); the TCP proxy does it per connection. No allocation: the guard shares the
    /// endpoint's counter.
    pub fn track_request(&self) -> ActiveRequest {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(&self.active_requests))
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

    /// Forgets the shared HTTP/2 connection, whatever its generation; returns whether
    /// there was one. It closes once requests still using it have ended.
    pub(crate) fn discard_idle_http2(&self) -> bool {
        let mut slot = self.lock_http2();
        let sender = slot.1.take();
        drop(slot);
        sender.is_some()
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
pub struct ActiveRequest(Arc<AtomicUsize>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint as configured: its address, weight and priority (Envoy's `LbEndpoint`
/// with its locality's priority). Defaults: weight 1, priority 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbEndpoint {
    /// Where the endpoint listens.
    pub address: EndpointAddress,
    /// Share of traffic relative to the level's other endpoints; 0 is taken as 1.
    pub weight: u32,
    /// 0 is the highest priority; lower levels get traffic only as higher ones fail.
    pub priority: u32,
}

impl LbEndpoint {
    /// `address` with weight 1 and priority 0.
    pub fn new(address: EndpointAddress) -> Self {
        Self {
            address,
            weight: 1,
            priority: 0,
        }
    }

    /// Sets the load balancing weight (0 is taken as 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the priority level (0 is the highest).
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
