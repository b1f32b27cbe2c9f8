//! Clusters: named sets of upstream endpoints, how one is chosen, and how a request is
//! sent to it.
//!
//! The macro builds each cluster once at start-up and gives routers direct references,
//! so choosing a cluster costs nothing per request. [`balance`] chooses the endpoint
//! ([`Cluster::pick_for`]): by priority and health, then by the cluster's [`LbPolicy`].
//! [`Cluster::select`] adds session persistence ([`SessionPersistence`]) and avoids
//! endpoints a request already tried.
//!
//! A static cluster's endpoints and balancer are fixed at start-up. A DNS cluster
//! ([`Cluster::from_dns`]) re-resolves host names in the background and swaps its host
//! set whole when the answers change; picks stay lock-free and still return `&Endpoint`
//! (see [`dns`](self::dns) for how).

pub mod balance;
mod breaker;
mod dns;
mod endpoint;
pub mod health;
mod options;
mod outlier;
mod render;
mod sending;
mod sticky;

pub use balance::{HashPolicy, LbPolicy};
pub use breaker::{CircuitBreakers, RetryBudget, RetryPermit};
pub(crate) use breaker::{ConnectionSlot, InFlight};
pub use dns::{DnsDiscovery, DnsFamily, DnsMode, DnsTarget, WARMING_TIMEOUT};
pub use endpoint::{ActiveRequest, Endpoint, LbEndpoint};
pub use options::{ClusterOptions, UpstreamProtocol};
pub use outlier::OutlierDetection;
pub use sticky::{Selection, SessionPersistence};

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::EndpointAddress;
use crate::http::{RequestBody, ResponseBody};
use crate::stats::{ClusterStats, TlsStats};
use crate::tls::{ClusterTls, UpstreamTls};
use crate::upstream::{ConnectError, connect, connect_tls, h1};

use breaker::Waited;
use sending::Sending;

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
    Reset(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client's request body failed while it was being sent (the client went away or
    /// sent a malformed body): 400, and not the endpoint's fault.
    #[error("downstream request body failed: {0}")]
    Downstream(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// Circuit breaker counts (shared with the guards that release them); see [`breaker`].
    breakers: Arc<breaker::Breakers>,
    /// Outlier detection counters and state; see [`outlier`].
    outlier: outlier::ClusterOutlier,
    /// Session persistence, when configured (and valid); see [`SessionPersistence`].
    sessions: Option<sticky::Sessions>,
    /// Tokens of `endpoints`; empty without session persistence.
    session_table: sticky::SessionTable,
    /// Endpoints discovered by DNS, for a cluster built with [`Cluster::from_dns`]; its
    /// `endpoints` and `balancer` are then empty and unused. See [`dns`].
    dns: Option<Box<dns::DnsHosts>>,
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
        let sessions = sticky::Sessions::new(name, options.session_persistence);
        let session_table = sessions
            .as_ref()
            .map(|sessions| sessions.table(endpoints.iter().map(|e| &e.address)))
            .unwrap_or_default();
        let endpoints = endpoints
            .into_iter()
            .map(|endpoint| Endpoint::new(endpoint, &options))
            .collect();
        let stats = Arc::new(ClusterStats::default());
        Self {
            name,
            endpoints,
            options,
            balancer,
            stats: Arc::clone(&stats),
            tls: None,
            health: health::ClusterHealth::default(),
            breakers: Arc::new(breaker::Breakers::new(stats)),
            outlier: outlier::ClusterOutlier::default(),
            sessions,
            session_table,
            dns: None,
        }
    }

    /// Originates TLS to every endpoint with `tls`, offering ALPN for the cluster's
    /// protocol. Each endpoint's server name is `tls`'s `sni`, else its IP address (a
    /// DNS cluster's: the target's host name); a Unix-socket endpoint without `sni`
    /// fails to connect (502 `UF`).
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

    /// The endpoints of a static cluster, in configuration order (indices match
    /// [`Self::pick_for`]'s world). Empty for a DNS cluster, whose endpoints change:
    /// see [`Self::current_endpoints`].
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoints traffic may go to now: a static cluster's endpoints, or a DNS
    /// cluster's latest resolution. Allocates; for reports, admin and tests.
    pub fn current_endpoints(&self) -> Vec<&Endpoint> {
        let mut endpoints = Vec::new();
        self.for_each_endpoint(|endpoint| endpoints.push(endpoint));
        endpoints
    }

    /// Calls `f` on each of [`Self::current_endpoints`], without allocating.
    pub(crate) fn for_each_endpoint<'a>(&'a self, f: impl FnMut(&'a Endpoint)) {
        match self.dns.as_deref() {
            Some(dns) => dns.for_each_member(f),
            None => self.endpoints.iter().for_each(f),
        }
    }

    /// The TLS server name to dial `endpoint` with: from `sni`, the host name it was
    /// configured or resolved from, or its IP address. `None` without TLS, or for a
    /// Unix socket without `sni`.
    pub(crate) fn tls_server_name(
        &self,
        endpoint: &Endpoint,
    ) -> Option<&rustls_pki_types::ServerName<'static>> {
        let tls = self.tls.as_ref()?;
        if let Some(dns) = self.dns.as_deref() {
            return dns.server_name(endpoint);
        }
        let index = self
            .endpoints
            .iter()
            .position(|candidate| std::ptr::eq(candidate, endpoint))?;
        tls.server_name(index)
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
        if let Some(dns) = self.dns.as_deref() {
            let set = dns.current();
            let index = set.balancer.pick(|i| dns.member(&set, i), key, &[])?;
            return dns.member(&set, index);
        }
        let index = self
            .balancer
            .pick(|index| self.endpoints.get(index), key, &[])?;
        self.endpoints.get(index)
    }

    /// The endpoint for one attempt of an HTTP request: the endpoint the request's
    /// session names (see [`SessionPersistence`]) while it is usable, else the
    /// balancer's pick under the cluster's hash policy. Endpoints in `tried` (earlier
    /// attempts of the same request) are avoided while another one is available (see
    /// [`balance`]); a session endpoint in `tried` is passed over like an unhealthy one.
    /// `session` is set whenever the balancer picked and persistence is on. Lock-free
    /// and allocation-free (a cookie's value is shared, not copied).
    /// `None`: no endpoint is available (503, flag `UH`).
    pub fn select(
        &self,
        parts: &http::request::Parts,
        client_ip: Option<IpAddr>,
        tried: &[&Endpoint],
    ) -> Option<Selection<'_>> {
        let key = self.request_hash(parts, client_ip);
        if let Some(dns) = self.dns.as_deref() {
            let set = dns.current();
            return self.select_in(
                |index| dns.member(&set, index),
                &set.balancer,
                &set.sessions,
                parts,
                key,
                tried,
            );
        }
        self.select_in(
            |index| self.endpoints.get(index),
            &self.balancer,
            &self.session_table,
            parts,
            key,
            tried,
        )
    }

    /// [`Self::select`] over one set of endpoints: `endpoint` maps the indices that
    /// `balancer` and `table` use to endpoints.
    fn select_in<'e>(
        &self,
        endpoint: impl Fn(usize) -> Option<&'e Endpoint>,
        balancer: &balance::Balancer,
        table: &sticky::SessionTable,
        parts: &http::request::Parts,
        key: Option<u64>,
        tried: &[&Endpoint],
    ) -> Option<Selection<'e>> {
        let Some(sessions) = &self.sessions else {
            let endpoint = endpoint(balancer.pick(&endpoint, key, tried)?)?;
            return Some(Selection {
                endpoint,
                session: None,
            });
        };
        let usable = |candidate: &Endpoint| {
            candidate.is_healthy() && !tried.iter().any(|t| std::ptr::eq(*t, candidate))
        };
        let named = sessions
            .requested(parts)
            .filter_map(|token| endpoint(table.find(token)?))
            .find(|candidate| usable(candidate));
        if let Some(endpoint) = named {
            return Some(Selection {
                endpoint,
                session: None,
            });
        }
        let index = balancer.pick(&endpoint, key, tried)?;
        let session = table
            .header(index)
            .map(|value| (sessions.header_name().clone(), value.clone()));
        Some(Selection {
            endpoint: endpoint(index)?,
            session,
        })
    }

    /// Whether choosing an endpoint reads the request: session persistence, or
    /// consistent hashing under a hash policy. Otherwise [`Self::select`] for a first
    /// attempt is [`Self::pick`].
    pub(crate) fn selects_by_request(&self) -> bool {
        self.sessions.is_some()
            || (self.options.lb_policy.is_consistent_hash() && self.options.hash_policy.is_some())
    }

    /// Tells outlier detection that a request to `endpoint` timed out (the route's or a
    /// per-try timeout): a gateway failure, though `send` never returned.
    ///
    /// Counts `upstream_rq_5xx` (Envoy charges a timeout as 504) and reports a 504 to
    /// outlier detection: an error for both consecutive detectors.
    pub fn record_timeout(&self, endpoint: &Endpoint) {
        self.stats.upstream_rq_5xx.inc();
        self.outlier_status(endpoint, outlier::TIMEOUT_STATUS);
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
        if let Some(dns) = self.dns.as_deref() {
            dns.prune_idle();
        }
    }

    /// Sends `request` to `endpoint` and returns its response head with a streaming body.
    ///
    /// The request is admitted under `max_requests` first and then holds its slot and
    /// its endpoint's least-request count until its response body ends, fails or is
    /// dropped (see [`breaker`]); a request that needs a new connection while
    /// `max_connections` is reached waits as a pending request. The outcome is counted
    /// (`upstream_rq_<class>` for a response; `upstream_rq_5xx` too for a connect
    /// failure or reset, which Envoy charges as 503) and reported to outlier detection.
    pub(crate) fn send<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        request: Request<RequestBody>,
    ) -> Sending<
        'a,
        impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + 'a,
        impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + 'a,
    > {
        let in_flight = match self.admit(endpoint) {
            Ok(in_flight) => in_flight,
            Err(error) => return Sending::refused(self, endpoint, error),
        };
        match self.options.protocol {
            UpstreamProtocol::Http1 => Sending::http1(
                self,
                endpoint,
                self.send_http1(endpoint, request, in_flight),
            ),
            UpstreamProtocol::Http2 => Sending::http2(
                self,
                endpoint,
                self.send_http2(endpoint, request, in_flight),
            ),
        }
    }

    /// A request's admission under `max_requests`, counted in `upstream_rq_total`: the
    /// first step of [`Self::send`] (and of the relay path, which then counts its outcome
    /// with [`Self::count_response`] or [`Self::count_failure`], as `send` does).
    pub(crate) fn admit(&self, endpoint: &Endpoint) -> Result<InFlight, UpstreamError> {
        let in_flight = self.admit_request(endpoint)?;
        self.stats.upstream_rq_total.inc();
        Ok(in_flight)
    }

    /// An upstream response head from `endpoint`: `upstream_rq_<class>` and outlier
    /// detection.
    pub(crate) fn count_response(&self, endpoint: &Endpoint, status: u16) {
        self.stats.count_status(status);
        self.outlier_status(endpoint, status);
    }

    /// A request that got no response from `endpoint`: a connect failure or reset is
    /// charged as a 503 (Envoy's accounting) and reported to outlier detection.
    pub(crate) fn count_failure(&self, endpoint: &Endpoint, error: &UpstreamError) {
        match error {
            UpstreamError::Reset(_) => {
                self.stats.upstream_rq_reset.inc();
                self.stats.upstream_rq_5xx.inc();
                self.outlier_status(endpoint, outlier::LOCAL_FAILURE_STATUS);
            }
            UpstreamError::Connect(_) => {
                self.stats.upstream_rq_5xx.inc();
                self.outlier_status(endpoint, outlier::LOCAL_FAILURE_STATUS);
            }
            // The proxy's own limit, or the client's doing: not the endpoint's.
            UpstreamError::Overflow(_) | UpstreamError::Downstream(_) => {}
        }
    }

    /// Not an `async fn`, which would keep `request` beside its parts (see [`Sending`]).
    fn send_http1<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        request: Request<RequestBody>,
        in_flight: InFlight,
    ) -> impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + 'a {
        let (parts, mut body) = request.into_parts();
        // Taken by the exchange only if it is abandoned, which also ends this future.
        let mut in_flight = Some(in_flight);
        async move {
            loop {
                let conn = self.http1_connection(endpoint).await?;
                let pool = endpoint.pool();
                let exchanged = match h1::send(conn, &parts, &mut body, pool, &mut in_flight).await
                {
                    Ok(exchanged) => exchanged,
                    // The origin had closed an idle connection and saw nothing of the request:
                    // it goes out again, on another connection, unchanged.
                    Err(h1::SendError::Stale(error)) => {
                        tracing::debug!(cluster = self.name, %error, "pooled connection was closed; sending again");
                        continue;
                    }
                    Err(error) => {
                        return Err(match error.into_error() {
                            h1::Error::RequestBody(error) => UpstreamError::Downstream(error),
                            error => UpstreamError::Reset(Box::new(error)),
                        });
                    }
                };
                // The request head is written: its map serves the next head parsed here.
                crate::http::wire::recycle(parts.headers);
                let Some(in_flight) = in_flight.take() else {
                    return Err(UpstreamError::Reset(Box::new(h1::Error::Closed)));
                };
                return Ok(Self::http1_response(exchanged, endpoint, in_flight));
            }
        }
    }

    /// The response of an HTTP/1.1 exchange, its body read off the connection (which
    /// then goes back to `endpoint`'s pool), or after a `101` the connection itself for
    /// the tunnel.
    pub(crate) fn http1_response(
        exchanged: h1::Exchanged,
        endpoint: &Endpoint,
        in_flight: InFlight,
    ) -> Response<ResponseBody> {
        if exchanged.head.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel, not the pool.
            let mut response = Response::from_parts(exchanged.head, ResponseBody::empty());
            response
                .extensions_mut()
                .insert(h1::UpstreamUpgrade::new(*exchanged.conn));
            return response;
        }
        let (head, stream) = h1::ResponseStream::new(exchanged, endpoint.pool().clone());
        Response::from_parts(head, ResponseBody::http1(stream, in_flight))
    }

    /// A connection to `endpoint`: an idle pooled one, else a new one, waiting as a
    /// pending request while `max_connections` is reached.
    ///
    /// Only the pooled case is inline: dialling and waiting are boxed. Every request's
    /// future is as large as the largest path through it, and each caller up to hyper
    /// stores (and moves) it whole; the dial path (TCP or TLS connect, handshake) is
    /// kilobytes that a request on a pooled connection would otherwise carry and copy.
    pub(crate) async fn http1_connection(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Box<h1::Connection>, UpstreamError> {
        if let Some(conn) = self.pooled_http1_connection(endpoint) {
            return Ok(conn);
        }
        let conn = Box::pin(self.new_http1_connection(endpoint)).await?;
        if !conn.is_fresh() {
            self.stats.upstream_cx_reuse.inc();
        }
        Ok(conn)
    }

    /// An idle pooled connection to `endpoint`, counted as reused.
    pub(crate) fn pooled_http1_connection(
        &self,
        endpoint: &Endpoint,
    ) -> Option<Box<h1::Connection>> {
        let conn = endpoint.pool().checkout()?;
        if !conn.is_fresh() {
            self.stats.upstream_cx_reuse.inc();
        }
        Some(conn)
    }

    /// [`Self::http1_connection`] when the pool had nothing: wait for a slot (or a
    /// connection coming back) under `max_connections`, then dial.
    async fn new_http1_connection(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Box<h1::Connection>, UpstreamError> {
        let slot = match self.connection_slot() {
            Some(slot) => slot,
            None => {
                // Any worker's idle connection will do rather than wait for a slot.
                let checkout = || endpoint.pool().checkout_any();
                match self.wait_for_connection(endpoint, checkout).await? {
                    Waited::Reuse(conn) => return Ok(conn),
                    Waited::Slot(slot) => slot,
                }
            }
        };
        let stream = self.dial(endpoint).await?;
        Ok(h1::Connection::new(stream, self.open_connection(slot)))
    }

    async fn send_http2(
        &self,
        endpoint: &Endpoint,
        mut request: Request<RequestBody>,
        in_flight: InFlight,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        // A bodiless idempotent request can be rebuilt if the origin turns its stream
        // away unprocessed; keep a copy of its head for that (HTTP/2 clusters only).
        let mut replay = replayable_head(&request);
        let mut attempt = 1;
        loop {
            let (generation, mut sender) = match endpoint.http2_sender() {
                Some(cached) => cached,
                // Boxed for the same reason as `new_http1_sender`.
                None => Box::pin(self.connect_http2(endpoint)).await?,
            };
            let error = match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| ResponseBody::upstream(body, in_flight)));
                }
                Err(error) => error,
            };
            // Whatever went wrong, this connection is not to be used again.
            endpoint.discard_http2_sender(generation);
            if attempt >= HTTP2_ATTEMPTS {
                return Err(UpstreamError::Reset(Box::new(error.into_error())));
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
                (None, _) => return Err(UpstreamError::Reset(Box::new(error.into_error()))),
            };
        }
    }

    /// One shared HTTP/2 connection per endpoint. Concurrent first requests wait for a
    /// single dial instead of each opening their own; the dialling one waits as a
    /// pending request while `max_connections` is reached.
    async fn connect_http2(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(u64, http2::SendRequest<RequestBody>), UpstreamError> {
        let _dialing = endpoint.http2_dial_lock().await;
        if let Some(cached) = endpoint.http2_sender() {
            return Ok(cached);
        }
        let slot = match self.connection_slot() {
            Some(slot) => slot,
            None => {
                let shared = || endpoint.http2_sender();
                match self.wait_for_connection(endpoint, shared).await? {
                    Waited::Reuse(cached) => return Ok(cached),
                    Waited::Slot(slot) => slot,
                }
            }
        };
        let stream = self.dial(endpoint).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(handshake_failed(endpoint))?;
        self.spawn_connection(connection, slot);
        let generation = endpoint.set_http2_sender(sender.clone());
        Ok((generation, sender))
    }

    async fn dial(&self, endpoint: &Endpoint) -> Result<crate::net::Stream, ConnectError> {
        let timeout = self.options.connect_timeout;
        let dialled = match &self.tls {
            None => connect(endpoint.address(), timeout).await,
            Some(tls) => {
                let server_name = self.tls_server_name(endpoint);
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

    /// Counts a connection as open until the returned guard drops; the guard also holds
    /// the connection's `max_connections` slot.
    fn open_connection(&self, slot: ConnectionSlot) -> OpenConnection {
        self.stats.upstream_cx_active.inc();
        OpenConnection {
            stats: Arc::clone(&self.stats),
            _slot: slot,
        }
    }

    /// A connection slot taken regardless of limits, for tests that drive connections
    /// without a cluster's send path.
    #[cfg(test)]
    pub(crate) fn open_connection_for_tests(&self) -> OpenConnection {
        self.open_connection(breaker::ConnectionSlot::for_tests(&self.breakers))
    }

    /// Drives an upstream HTTP/2 connection on its own task until either side closes it.
    fn spawn_connection<C>(&self, connection: C, slot: ConnectionSlot)
    where
        C: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let open = self.open_connection(slot);
        let cluster = self.name;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(cluster, %error, "upstream connection closed with error");
            }
            drop(open);
        });
    }
}

/// An open upstream connection, as the cluster counts it: `upstream_cx_active` while it
/// lives, `upstream_cx_destroy` when it goes, and its `max_connections` slot meanwhile.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    stats: Arc<ClusterStats>,
    _slot: ConnectionSlot,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.upstream_cx_active.dec();
        self.stats.upstream_cx_destroy.inc();
    }
}
