use std::sync::atomic::{AtomicBool, Ordering};
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
    pool: Pool,
    /// The shared HTTP/2 connection and its generation, so a task that saw it fail can
    /// drop exactly that one and not a replacement another task just opened.
    http2: Mutex<(u64, Option<http2::SendRequest<RequestBody>>)>,
    http2_dial: tokio::sync::Mutex<()>,
}

impl Endpoint {
    pub(crate) fn new(address: EndpointAddress, options: &ClusterOptions) -> Self {
        Self {
            address,
            healthy: AtomicBool::new(true),
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
