//! Clusters: named sets of upstream endpoints, how one is chosen, and how a request is
//! sent to it.
//!
//! The macro builds each cluster once at start-up and gives routers direct references,
//! so choosing a cluster costs nothing per request. [`balance`] chooses the endpoint
//! ([`Cluster::pick_for`]): by priority and health, then by the cluster's [`LbPolicy`].

pub mod balance;
mod breaker;
mod endpoint;
pub mod health;
mod options;
mod outlier;
mod sticky;

pub use balance::{HashPolicy, LbPolicy};
pub use breaker::{CircuitBreakers, RetryBudget, RetryPermit};
pub use endpoint::{ActiveRequest, Endpoint, LbEndpoint};
pub use options::{ClusterOptions, UpstreamProtocol};
pub use outlier::OutlierDetection;
pub use sticky::{Selection, SessionPersistence};

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::EndpointAddress;
use crate::http::{RequestBody, ResponseBody};
use crate::stats::{ClusterStats, TlsStats};
use crate::tls::{ClusterTls, UpstreamTls};
use crate::upstream::{ConnectError, connect, connect_tls};

/// Tries of one request over HTTP/2 when connections hand it back unsent.
const HTTP2_ATTEMPTS: u32 = 3;

/// A copy of a request head that may safely be sent again: no body, idempotent method.
struct ReplayableHead(Request<()>);

impl ReplayableHead {
    fn request(&self) -> Request<RequestBody> {
        copy_head(&self.0).map(|()| RequestBody::empty())
    }
}

fn replayable_head(request: &Request<RequestBody>) -> Option<ReplayableHead> {
    use http_body::Body as _;
    let replayable = request.body().is_end_stream() && request.method().is_idempotent();
    replayable.then(|| ReplayableHead(copy_head(request)))
}

/// Method, target, version and headers of `request` (extensions are per-attempt state).
fn copy_head<B>(request: &Request<B>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

fn handshake_failed(endpoint: &Endpoint) -> impl FnOnce(hyper::Error) -> ConnectError + '_ {
    |source| ConnectError::Handshake {
        address: endpoint.address().to_string(),
        source,
    }
}

/// Whether the origin said it did not process the stream: REFUSED_STREAM, or a graceful
/// GOAWAY (NO_ERROR) that the stream was beyond. A GOAWAY error can also reach streams
/// that were processed if the origin then closes abruptly, which is why only bodiless
/// idempotent requests are ever replayed on this signal.
fn was_not_processed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = cause.source();
    }
    false
}

/// Why a request could not get a response from upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The endpoint could not be reached: 502, flag `UF`.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection failed or was reset before response headers: 502, flag `UC`.
    #[error("upstream connection failed before response headers: {0}")]
    Reset(#[source] hyper::Error),
    /// A circuit breaker is open (too many connections, pending requests or requests):
    /// 503, flag `UO`.
    #[error("upstream overflow: circuit breaker `{0}` is open")]
    Overflow(&'static str),
}

/// A named set of endpoints. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    name: &'static str,
    endpoints: Box<[Endpoint]>,
    options: ClusterOptions,
    balancer: balance::Balancer,
    stats: Arc<ClusterStats>,
    /// TLS origination, when the cluster has `tls` settings. Kept here rather than in
    /// [`ClusterOptions`], which stays `Copy` and `const`: TLS settings are loaded from
    /// files at start-up and carry per-cluster handshake counters.
    tls: Option<ClusterTls>,
    /// Active health checking settings and counters; see [`health`].
    health: health::ClusterHealth,
}

impl Cluster {
    /// Builds a cluster whose endpoints all have weight 1 and priority 0. Called once by
    /// generated code at start-up.
    pub fn new(
        name: &'static str,
        endpoints: Vec<EndpointAddress>,
        options: ClusterOptions,
    ) -> Self {
        Self::with_lb_endpoints(
            name,
            endpoints.into_iter().map(LbEndpoint::new).collect(),
            options,
        )
    }

    /// Builds a cluster from endpoints with weights and priorities. The balancer (ring,
    /// Maglev table, round robin schedule) is built here, once.
    pub fn with_lb_endpoints(
        name: &'static str,
        endpoints: Vec<LbEndpoint>,
        options: ClusterOptions,
    ) -> Self {
        let keys: Vec<String> = endpoints.iter().map(|e| e.address.to_string()).collect();
        let specs: Vec<balance::Spec<'_>> = endpoints
            .iter()
            .zip(&keys)
            .map(|(endpoint, key)| balance::Spec {
                key,
                weight: endpoint.weight,
                priority: endpoint.priority,
            })
            .collect();
        let balancer = balance::Balancer::new(
            name,
            &specs,
            options.lb_policy,
            options.overprovisioning_factor,
            options.healthy_panic_threshold,
        );
        let endpoints = endpoints
            .into_iter()
            .map(|endpoint| Endpoint::new(endpoint, &options))
            .collect();
        Self {
            name,
            endpoints,
            options,
            balancer,
            stats: Arc::default(),
            tls: None,
            health: health::ClusterHealth::default(),
        }
    }

    /// Originates TLS to every endpoint with `tls`, offering ALPN for the cluster's
    /// protocol. Each endpoint's server name is `tls`'s `sni`, else its IP address; a
    /// Unix-socket endpoint without `sni` fails to connect (502 `UF`).
    /// [`Inputs::cluster_tls`](crate::config::Inputs::cluster_tls) also uses the host
    /// names endpoints were resolved from, and reports a missing name at start-up.
    pub fn tls(self, tls: Arc<UpstreamTls>) -> Self {
        self.tls_with_hosts(tls, |_| None)
    }

    pub(crate) fn tls_with_hosts<'h>(
        mut self,
        tls: Arc<UpstreamTls>,
        hosts: impl Fn(&EndpointAddress) -> Option<&'h str>,
    ) -> Self {
        let addresses = self.endpoints.iter().map(Endpoint::address);
        let cluster_tls = ClusterTls::new(tls, self.options.protocol, addresses, hosts);
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if cluster_tls.server_name(index).is_none() {
                tracing::warn!(
                    cluster = self.name,
                    endpoint = %endpoint.address(),
                    "no TLS server name for this endpoint; set `sni`"
                );
            }
        }
        self.tls = Some(cluster_tls);
        self
    }

    /// The TLS settings this cluster originates with, if any.
    pub fn tls_settings(&self) -> Option<&Arc<UpstreamTls>> {
        self.tls.as_ref().map(ClusterTls::upstream)
    }

    /// Upstream TLS handshake counters (`cluster.<name>.ssl.*`), if the cluster
    /// originates TLS.
    pub fn tls_stats(&self) -> Option<&TlsStats> {
        self.tls.as_ref().map(ClusterTls::stats)
    }

    /// Whether endpoint `index` has a TLS server name (always, without TLS).
    pub(crate) fn has_tls_server_name(&self, index: usize) -> bool {
        self.tls
            .as_ref()
            .is_none_or(|tls| tls.server_name(index).is_some())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The endpoint for the next request without a request hash; see [`Self::pick_for`].
    pub fn pick(&self) -> Option<&Endpoint> {
        self.pick_for(None)
    }

    /// The endpoint for the next request, or `None` when the cluster has none available:
    /// the client then gets 503 with flag `UH`. `key` is the request hash
    /// ([`Self::request_hash`]); only the consistent-hash policies use it, and without
    /// one they pick at random. See [`balance`] for the rules.
    pub fn pick_for(&self, key: Option<u64>) -> Option<&Endpoint> {
        let index = self.balancer.pick(&self.endpoints, key)?;
        self.endpoints.get(index)
    }

    /// The endpoint for one attempt of an HTTP request: the endpoint the request's
    /// session names (see [`SessionPersistence`]) while it is usable, else the
    /// balancer's pick under the cluster's hash policy. Endpoints in `tried` (earlier
    /// attempts of the same request) are avoided while another one is available.
    /// `None`: no endpoint is available (503, flag `UH`).
    pub fn select(
        &self,
        parts: &http::request::Parts,
        client_ip: Option<IpAddr>,
        tried: &[&Endpoint],
    ) -> Option<Selection<'_>> {
        // Interface only: session persistence and avoidance of tried endpoints are
        // the session-persistence work (issue 4).
        let _ = tried;
        let endpoint = self.pick_for(self.request_hash(parts, client_ip))?;
        Some(Selection {
            endpoint,
            session: None,
        })
    }

    /// Tells outlier detection that a request to `endpoint` timed out (the route's or a
    /// per-try timeout): a gateway failure, though `send` never returned.
    pub fn record_timeout(&self, endpoint: &Endpoint) {
        // Interface only: counted by outlier detection (issue 4).
        let _ = endpoint;
    }

    /// The hash key of an HTTP request under the cluster's [`HashPolicy`], for
    /// [`Self::pick_for`]; `None` when the policy is not consistent hashing, there is no
    /// hash policy, or the request lacks the hashed value. `client_ip` is the
    /// downstream peer (`None` on a Unix socket).
    pub fn request_hash(
        &self,
        parts: &http::request::Parts,
        client_ip: Option<IpAddr>,
    ) -> Option<u64> {
        if !self.options.lb_policy.is_consistent_hash() {
            return None;
        }
        balance::request_key(self.options.hash_policy?, parts, client_ip)
    }

    /// The hash key of a TCP connection: its client IP under the `SourceIp` policy
    /// (the only one a connection can satisfy), else `None`.
    pub fn connection_hash(&self, client_ip: Option<IpAddr>) -> Option<u64> {
        let options = &self.options;
        match (options.lb_policy.is_consistent_hash(), options.hash_policy) {
            (true, Some(HashPolicy::SourceIp)) => client_ip.map(balance::ip_key),
            _ => None,
        }
    }

    /// Drops idle connections past their timeout. Run periodically by the server.
    pub(crate) fn prune_idle(&self) {
        for endpoint in self.endpoints.iter() {
            endpoint.pool().prune();
        }
    }

    /// Sends `request` to `endpoint` and returns its response head with a streaming body.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        self.stats.upstream_rq_total.inc();
        let _active = endpoint.track_request();
        let result = match self.options.protocol {
            UpstreamProtocol::Http1 => self.send_http1(endpoint, request).await,
            UpstreamProtocol::Http2 => self.send_http2(endpoint, request).await,
        };
        match &result {
            Ok(response) => self.stats.count_status(response.status().as_u16()),
            Err(UpstreamError::Reset(_)) => self.stats.upstream_rq_reset.inc(),
            Err(UpstreamError::Connect(_) | UpstreamError::Overflow(_)) => {}
        }
        result
    }

    async fn send_http1(
        &self,
        endpoint: &Endpoint,
        mut request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        loop {
            let (mut sender, reused) = match endpoint.pool().checkout() {
                Some(sender) => (sender, true),
                None => (self.connect_http1(endpoint).await?, false),
            };
            if reused {
                // The previous exchange may still be settling on the connection task.
                if sender.ready().await.is_err() {
                    continue;
                }
                self.stats.upstream_cx_reuse.inc();
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // After a 101 the connection belongs to the tunnel, not the pool.
                    let returner = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| endpoint.pool().returner(sender));
                    return Ok(response.map(|body| ResponseBody::upstream(body, returner)));
                }
                Err(mut error) => match error.take_message() {
                    // A pooled connection the origin closed while it sat idle hands the
                    // request back unsent; that is safe to retry on another connection,
                    // whatever the method, because not one byte of it left the proxy.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Reset(error.into_error())),
                },
            }
        }
    }

    async fn connect_http1(
        &self,
        endpoint: &Endpoint,
    ) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
        let stream = self.dial(endpoint).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(handshake_failed(endpoint))?;
        self.spawn_connection(connection.with_upgrades());
        Ok(sender)
    }

    async fn send_http2(
        &self,
        endpoint: &Endpoint,
        mut request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        // A bodiless idempotent request can be rebuilt if the origin turns its stream
        // away unprocessed; keep a copy of its head for that (HTTP/2 clusters only).
        let mut replay = replayable_head(&request);
        let mut attempt = 1;
        loop {
            let (generation, mut sender) = match endpoint.http2_sender() {
                Some(cached) => cached,
                None => self.connect_http2(endpoint).await?,
            };
            let error = match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| ResponseBody::upstream(body, None)));
                }
                Err(error) => error,
            };
            // Whatever went wrong, this connection is not to be used again.
            endpoint.discard_http2_sender(generation);
            if attempt >= HTTP2_ATTEMPTS {
                return Err(UpstreamError::Reset(error.into_error()));
            }
            attempt += 1;
            // The connection was closing (GOAWAY, max requests reached) and handed the
            // request back unsent, or the origin refused the stream before processing it
            // (RFC 9113 §8.7): either way it goes out again on a fresh connection.
            let mut error = error;
            request = match (error.take_message(), replay.take()) {
                (Some(unsent), head) => {
                    replay = head;
                    unsent
                }
                (None, Some(head)) if was_not_processed(error.error()) => {
                    let retry = head.request();
                    replay = Some(head);
                    retry
                }
                (None, _) => return Err(UpstreamError::Reset(error.into_error())),
            };
        }
    }

    /// One shared HTTP/2 connection per endpoint. Concurrent first requests wait for a
    /// single dial instead of each opening their own.
    async fn connect_http2(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(u64, http2::SendRequest<RequestBody>), UpstreamError> {
        let _dialing = endpoint.http2_dial_lock().await;
        if let Some(cached) = endpoint.http2_sender() {
            return Ok(cached);
        }
        let stream = self.dial(endpoint).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(handshake_failed(endpoint))?;
        self.spawn_connection(connection);
        let generation = endpoint.set_http2_sender(sender.clone());
        Ok((generation, sender))
    }

    async fn dial(&self, endpoint: &Endpoint) -> Result<crate::net::Stream, ConnectError> {
        let timeout = self.options.connect_timeout;
        let dialled = match &self.tls {
            None => connect(endpoint.address(), timeout).await,
            Some(tls) => {
                let index = self
                    .endpoints
                    .iter()
                    .position(|candidate| std::ptr::eq(candidate, endpoint));
                let server_name = index.and_then(|index| tls.server_name(index));
                connect_tls(endpoint.address(), timeout, tls, server_name).await
            }
        };
        match dialled {
            Ok(stream) => {
                self.stats.upstream_cx_total.inc();
                Ok(stream)
            }
            Err(error) => {
                self.stats.upstream_cx_connect_fail.inc();
                if matches!(error, ConnectError::Timeout { .. }) {
                    self.stats.upstream_cx_connect_timeout.inc();
                }
                Err(error)
            }
        }
    }

    /// Drives an upstream connection on its own task until either side closes it.
    fn spawn_connection<C>(&self, connection: C)
    where
        C: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let stats = Arc::clone(&self.stats);
        let cluster = self.name;
        stats.upstream_cx_active.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(cluster, %error, "upstream connection closed with error");
            }
            stats.upstream_cx_active.dec();
            stats.upstream_cx_destroy.inc();
        });
    }
}
