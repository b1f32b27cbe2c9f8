use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::body::{BodyOutcome, RequestBodyFilter};
use super::filtered::{Exchange, FilteredBody, RequestBytes};
use super::grpc;
use super::headers::{into_upstream_form, prepare_response, sanitize_request};
use super::local_reply::plain_text;
use super::{LocalReply, RequestBody, ResponseBody};
use crate::cluster::{Cluster, Endpoint, UpstreamError};
use crate::filter::{Flow, HttpFilter, RequestInfo};
use crate::route::{DirectResponse, Redirect, Route, RouteAction, RoutePolicy, request_host};
use crate::stats::{GaugeGuard, ListenerStats};

/// What the proxy knows about the downstream connection a request arrived on. Built
/// once per connection by the accept loop.
#[derive(Debug)]
pub struct Downstream {
    /// The client's IP, pre-formatted once per connection for `x-forwarded-for`.
    /// `None` for Unix-socket clients, which have no IP to report.
    pub(crate) peer: Option<HeaderValue>,
    pub(crate) client_ip: Option<IpAddr>,
    /// `http` or `https`: the scheme this proxy was reached over.
    pub(crate) scheme: &'static str,
    pub(crate) listener: &'static str,
    pub(crate) stats: Arc<ListenerStats>,
}

impl Downstream {
    pub(crate) fn new(
        client_ip: Option<IpAddr>,
        listener: &'static str,
        stats: Arc<ListenerStats>,
    ) -> Self {
        let peer = client_ip.and_then(|ip| HeaderValue::try_from(ip.to_string()).ok());
        Self {
            peer,
            client_ip,
            scheme: "http",
            listener,
            stats,
        }
    }
}

/// One request through `chain` and `route`'s action: the whole HTTP connection-manager
/// path. Never fails: every problem becomes a documented local reply.
///
/// Generic over the chain, so each distinct chain of a topology gets its own copy with
/// every hook inlined; the generated pipeline picks the copy by the route's chain index.
pub async fn exchange<C: HttpFilter>(
    chain: &'static C,
    downstream: &Downstream,
    route: Route<'static>,
    mut parts: Parts,
    body: Incoming,
) -> Response<ResponseBody> {
    let stats = &downstream.stats;
    stats.downstream_rq_total.inc();
    let _active = GaugeGuard::new(&stats.downstream_rq_active);
    let info = RequestInfo {
        client_ip: downstream.client_ip,
        listener: downstream.listener,
        route: route.name,
        start: Instant::now(),
    };
    let is_head = parts.method == http::Method::HEAD;
    let mut state = C::State::default();

    let grpc = grpc::is_grpc(&parts.headers);
    // Taken before the hop-by-hop rules remove `Upgrade` and `Connection`.
    let upgrade = Upgrade::requested(&mut parts);
    sanitize_request(&mut parts, downstream);
    let mut outcome = match chain
        .on_request_headers(&mut state, &mut parts, &info)
        .await
    {
        Flow::Respond(response) => Outcome::refusal(response),
        Flow::Continue => act(chain, route.action, parts, body, downstream, upgrade).await,
    };

    if grpc && outcome.proxy_error {
        // As Envoy does for local replies: gRPC clients read `grpc-status`, not the HTTP
        // status, so the filters below see (and the client gets) a gRPC response.
        let response =
            std::mem::replace(&mut outcome.response, Response::new(ResponseBody::empty()));
        outcome.response = grpc::into_grpc_reply(response, outcome.deadline_exceeded);
    }
    let (mut head, mut body) = outcome.response.into_parts();
    if let Flow::Respond(replacement) = chain
        .on_response_headers(&mut state, &mut head, &info)
        .await
    {
        (head, body) = replacement.into_parts();
    }
    if is_head {
        // Local replies carry a body and `content-length`. HEAD keeps the length but must
        // not send the bytes; hyper drops them on HTTP/1.1 but would send them as DATA on
        // HTTP/2, which the client then resets. (A forwarded HEAD response's body is
        // already empty.)
        body = ResponseBody::empty();
    }
    stats.count_status(head.status.as_u16());
    if C::IS_NOOP {
        return Response::from_parts(head, body);
    }
    let exchange = Exchange {
        status: head.status,
        response_flags: outcome.flags,
        upstream: outcome.upstream,
        request_bytes: std::mem::replace(&mut outcome.request_bytes, RequestBytes::Known(0)),
    };
    let body = FilteredBody::new(body, chain, state, info, exchange);
    Response::from_parts(head, ResponseBody::filtered(body))
}

/// The flag a filter put on its local reply (`RL`, `FI`, ...), as a `'static` string for
/// the summary; unknown text is not trusted into a log.
fn response_flags(response: &Response<ResponseBody>) -> &'static str {
    const KNOWN: &[&str] = &[
        "NR", "UH", "UF", "UC", "UT", "UO", "RL", "FI", "DI", "UAEX", "DPE",
    ];
    let Some(value) = response.headers().get(super::RESPONSE_FLAGS_HEADER) else {
        return "";
    };
    KNOWN
        .iter()
        .find(|flag| value.as_bytes() == flag.as_bytes())
        .copied()
        .unwrap_or("")
}

/// A response and what produced it.
struct Outcome {
    response: Response<ResponseBody>,
    flags: &'static str,
    upstream: Option<&'static Endpoint>,
    request_bytes: RequestBytes,
    /// The proxy answered in place of an upstream or an action (a local reply, a filter's
    /// refusal): for a gRPC request it becomes a gRPC status.
    proxy_error: bool,
    /// The route timeout that fired was the request's own `grpc-timeout`.
    deadline_exceeded: bool,
}

impl Outcome {
    fn local(response: Response<ResponseBody>, flags: &'static str) -> Self {
        Self {
            response,
            flags,
            upstream: None,
            request_bytes: RequestBytes::Known(0),
            proxy_error: false,
            deadline_exceeded: false,
        }
    }

    /// A reply the proxy made instead of an answer (see [`Outcome::proxy_error`]).
    fn refusal(response: Response<ResponseBody>) -> Self {
        let flags = response_flags(&response);
        Self {
            proxy_error: true,
            ..Self::local(response, flags)
        }
    }

    fn reply(reply: LocalReply, stats: &ListenerStats) -> Self {
        let counter = match reply {
            LocalReply::NoRoute => &stats.no_route,
            LocalReply::NoHealthyUpstream => &stats.no_healthy_upstream,
            LocalReply::ConnectFailure => &stats.upstream_connect_fail,
            LocalReply::UpstreamReset => &stats.upstream_reset,
            LocalReply::UpstreamTimeout => &stats.upstream_timeout,
            LocalReply::UpstreamOverflow => &stats.upstream_overflow,
        };
        counter.inc();
        Self {
            proxy_error: true,
            ..Self::local(reply.into_response(), reply.flag())
        }
    }
}

/// Carries out the route's action.
async fn act<C: HttpFilter>(
    chain: &'static C,
    action: RouteAction<'static>,
    parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    upgrade: Option<Upgrade>,
) -> Outcome {
    // An upgrade goes only where a route allows it (Envoy's per-route `upgrade_configs`);
    // anywhere else it is refused rather than silently served as a plain request.
    if let Some(requested) = &upgrade {
        let allowed = match action {
            RouteAction::Forward(cluster, policy) => {
                policy.allows_upgrade(requested.protocol.as_bytes())
                    && cluster.options().protocol == crate::cluster::UpstreamProtocol::Http1
            }
            RouteAction::Split(targets, policy) => {
                policy.allows_upgrade(requested.protocol.as_bytes())
                    && targets.weighted().iter().all(|(cluster, _)| {
                        cluster.options().protocol == crate::cluster::UpstreamProtocol::Http1
                    })
            }
            _ => false,
        };
        if !allowed {
            downstream.stats.downstream_rq_ws_on_non_ws_route.inc();
            return Outcome::refusal(plain_text(
                StatusCode::FORBIDDEN,
                "upgrade not allowed on this route\n",
            ));
        }
    }
    match action {
        RouteAction::Forward(cluster, policy) => {
            forward(chain, cluster, policy, parts, body, downstream, upgrade).await
        }
        RouteAction::Split(targets, policy) => match targets.choose() {
            Some(cluster) => {
                forward(chain, cluster, policy, parts, body, downstream, upgrade).await
            }
            None => Outcome::reply(LocalReply::NoHealthyUpstream, &downstream.stats),
        },
        RouteAction::Direct(direct) => Outcome::local(direct_response(direct), ""),
        RouteAction::Redirect(redirect) => {
            Outcome::local(redirect_response(redirect, &parts, downstream), "")
        }
        RouteAction::NoRoute => Outcome::reply(LocalReply::NoRoute, &downstream.stats),
    }
}

async fn forward<C: HttpFilter>(
    chain: &'static C,
    cluster: &'static Cluster,
    policy: &'static RoutePolicy,
    mut parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    upgrade: Option<Upgrade>,
) -> Outcome {
    // Computed on the request as received (before the upstream form), and only when the
    // cluster balances by a hash.
    let hash = cluster.request_hash(&parts, downstream.client_ip);
    let Some(endpoint) = cluster.pick_for(hash) else {
        return Outcome::reply(LocalReply::NoHealthyUpstream, &downstream.stats);
    };
    // A gRPC caller's own deadline bounds the wait when it is the shorter one (only for
    // gRPC requests, as Envoy: the header means nothing to other protocols).
    let deadline = grpc::is_grpc(&parts.headers)
        .then(|| grpc::timeout(&parts.headers))
        .flatten();
    let (timeout, deadline_bound) = match (policy.timeout, deadline) {
        (Some(route), Some(deadline)) if deadline < route => (Some(deadline), true),
        (None, Some(deadline)) => (Some(deadline), true),
        (route, _) => (route, false),
    };
    into_upstream_form(&mut parts, cluster.options().protocol);
    if let Some(upgrade) = &upgrade {
        upgrade.restore_request_headers(&mut parts.headers);
    }
    let body_filter: Option<&'static dyn RequestBodyFilter> =
        if C::IS_NOOP { None } else { Some(chain) };
    let (body, body_outcome) = RequestBody::new(body, body_filter);
    let request = Request::from_parts(parts, body);
    let _in_flight = GaugeGuard::new(&cluster.stats().upstream_rq_active);
    let sent = cluster.send(endpoint, request);
    let (result, request_bytes) = match within_route_timeout(sent, timeout, body_outcome).await {
        RouteWait::Response(result, request_bytes) => (result, request_bytes),
        RouteWait::Rejected(response) => return Outcome::refusal(response),
        RouteWait::TimedOut => {
            // Dropping the send closes that upstream connection: it has a request in
            // flight whose response nobody will read.
            cluster.stats().upstream_rq_timeout.inc();
            tracing::debug!(
                route = policy.name,
                cluster = cluster.name(),
                ?timeout,
                "upstream timeout"
            );
            let reply = Outcome::reply(LocalReply::UpstreamTimeout, &downstream.stats);
            return Outcome {
                deadline_exceeded: deadline_bound,
                ..reply
            };
        }
    };
    let mut outcome = match result {
        Ok(mut response) => {
            let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            match upgrade {
                Some(upgrade) if switched => upgrade.tunnel(&mut response, &downstream.stats),
                _ => prepare_response(&mut response),
            }
            Outcome::local(response, "")
        }
        Err(UpstreamError::Connect(error)) => {
            tracing::debug!(route = policy.name, cluster = cluster.name(), %error, "upstream connect failure");
            Outcome::reply(LocalReply::ConnectFailure, &downstream.stats)
        }
        Err(UpstreamError::Reset(error)) => {
            tracing::debug!(route = policy.name, cluster = cluster.name(), %error, "upstream reset");
            Outcome::reply(LocalReply::UpstreamReset, &downstream.stats)
        }
        Err(UpstreamError::Overflow(breaker)) => {
            tracing::debug!(
                route = policy.name,
                cluster = cluster.name(),
                breaker,
                "upstream overflow"
            );
            Outcome::reply(LocalReply::UpstreamOverflow, &downstream.stats)
        }
    };
    outcome.upstream = Some(endpoint);
    outcome.request_bytes = request_bytes;
    outcome
}

/// An HTTP/1.1 upgrade the client asked for (`Connection: upgrade` + `Upgrade: ..`).
pub(crate) struct Upgrade {
    protocol: HeaderValue,
    /// The client's side of the connection once the `101` has been sent.
    downstream: Option<OnUpgrade>,
}

impl Upgrade {
    fn requested(parts: &mut Parts) -> Option<Self> {
        let wants = parts.version == http::Version::HTTP_11
            && parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|value| {
                    value
                        .as_bytes()
                        .split(|b| *b == b',')
                        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
                });
        let protocol = parts
            .headers
            .get(header::UPGRADE)
            .filter(|_| wants)?
            .clone();
        let downstream = parts.extensions.remove::<OnUpgrade>();
        Some(Upgrade {
            protocol,
            downstream,
        })
    }

    /// The upgrade headers the hop-by-hop rules removed, put back for the upstream.
    fn restore_request_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The upstream switched protocols: answer the client's `101` with the upstream's
    /// `Upgrade`, and splice the two connections once both sides have switched. From
    /// there bytes are copied both ways (half-close respected) until either side closes.
    fn tunnel(self, response: &mut Response<ResponseBody>, stats: &Arc<ListenerStats>) {
        let upstream = response.extensions_mut().remove::<OnUpgrade>();
        let protocol = response
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        prepare_response(response);
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
        let (Some(downstream), Some(upstream)) = (self.downstream, upstream) else {
            return;
        };
        let stats = Arc::clone(stats);
        tokio::spawn(async move {
            let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "upgrade did not complete");
                    return;
                }
            };
            stats.downstream_cx_upgrades_total.inc();
            let _active = GaugeGuard::new(&stats.downstream_cx_upgrades_active);
            let mut downstream = TokioIo::new(downstream);
            let mut upstream = TokioIo::new(upstream);
            if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
            {
                tracing::debug!(%error, "upgraded connection closed with error");
            }
        });
    }
}

/// How waiting for the upstream response head ended.
enum RouteWait<T> {
    Response(T, RequestBytes),
    /// A request-body filter answered instead.
    Rejected(Response<ResponseBody>),
    TimedOut,
}

/// Awaits the upstream response head under the route timeout.
///
/// The timeout runs from the end of the request (Envoy semantics): a large upload is
/// bounded by the client's pace, not by the route timeout. An origin may still answer
/// before the upload ends; then there is nothing left to time. A request-body filter may
/// reject the upload meanwhile; its reply wins.
async fn within_route_timeout<T>(
    sent: impl Future<Output = T>,
    timeout: Option<Duration>,
    body_outcome: Option<oneshot::Receiver<BodyOutcome>>,
) -> RouteWait<T> {
    let mut sent = std::pin::pin!(sent);
    let mut request_bytes = RequestBytes::Known(0);
    if let Some(mut body_outcome) = body_outcome {
        // A request-body filter that rejects the upload first reports its answer, then
        // fails the upstream send: checking the body first (and again if the send still
        // wins) makes its answer win over the resulting upstream error.
        tokio::select! {
            biased;
            ended = &mut body_outcome => match ended {
                Ok(BodyOutcome::Complete { bytes }) => request_bytes = RequestBytes::Known(bytes),
                Ok(BodyOutcome::Rejected(response)) => return RouteWait::Rejected(response),
                // The client went away mid-upload: the upstream call fails on its own.
                Err(_) => {}
            },
            result = &mut sent => {
                if let Ok(BodyOutcome::Rejected(response)) = body_outcome.try_recv() {
                    return RouteWait::Rejected(response);
                }
                return RouteWait::Response(result, RequestBytes::Pending(body_outcome));
            }
        }
    }
    match timeout {
        None => RouteWait::Response(sent.await, request_bytes),
        Some(timeout) => match tokio::time::timeout(timeout, sent).await {
            Ok(result) => RouteWait::Response(result, request_bytes),
            Err(_) => RouteWait::TimedOut,
        },
    }
}

fn direct_response(direct: &DirectResponse) -> Response<ResponseBody> {
    // The macro only admits 100..=599 (a valid StatusCode); anything else is a bug that
    // should surface as a 500, not a panic.
    let status = StatusCode::from_u16(direct.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    plain_text(status, direct.body)
}

/// Builds `Location` from the request and the configured replacements (Envoy's
/// `RedirectAction`): unset parts keep the request's values.
fn redirect_response(
    redirect: &Redirect,
    parts: &Parts,
    downstream: &Downstream,
) -> Response<ResponseBody> {
    let mut location = String::with_capacity(128);
    location.push_str(redirect.scheme.unwrap_or(downstream.scheme));
    location.push_str("://");
    match redirect.host {
        Some(host) => location.push_str(host),
        None => location.push_str(request_host(parts)),
    }
    match redirect.port {
        Some(port) => {
            let _ = write!(location, ":{port}");
        }
        // Keep the request's explicit port when neither host nor scheme changed.
        None if redirect.host.is_none() && redirect.scheme.is_none() => {
            if let Some(port) = request_port(parts) {
                location.push(':');
                location.push_str(port);
            }
        }
        None => {}
    }
    let path = parts.uri.path();
    match (redirect.path, redirect.prefix_rewrite) {
        (Some(new_path), _) => location.push_str(new_path),
        (None, Some((matched, replacement))) if path.starts_with(matched) => {
            location.push_str(replacement);
            location.push_str(&path[matched.len()..]);
        }
        _ => location.push_str(path),
    }
    if !redirect.strip_query {
        if let Some(query) = parts.uri.query() {
            location.push('?');
            location.push_str(query);
        }
    }
    let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let mut response = plain_text(status, "");
    match HeaderValue::try_from(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        // Only reachable with a Host header that cannot appear in a URL.
        Err(_) => plain_text(StatusCode::BAD_REQUEST, "bad host\n"),
    }
}

fn request_port(parts: &Parts) -> Option<&str> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
    };
    let (_, port) = authority.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> Parts {
        http::Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn location(redirect: &Redirect, uri: &str, host: &str) -> String {
        let downstream = Downstream::new(None, "test", Arc::default());
        let response = redirect_response(redirect, &parts(uri, host), &downstream);
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    #[test]
    fn redirect_keeps_unset_parts() {
        static R: Redirect = Redirect::new(301).path("/new");
        assert_eq!(
            location(&R, "/old?x=1", "example.org:8080"),
            "http://example.org:8080/new?x=1"
        );
    }

    #[test]
    fn redirect_to_https_host_with_prefix_rewrite() {
        static R: Redirect = Redirect::new(308)
            .scheme("https")
            .host("new.example")
            .prefix_rewrite("/old/", "/v2/");
        assert_eq!(
            location(&R, "/old/a/b?q", "example.org:8080"),
            "https://new.example/v2/a/b?q"
        );
    }

    #[test]
    fn redirect_strips_query() {
        static R: Redirect = Redirect::new(302).port(8443).strip_query(true);
        assert_eq!(
            location(&R, "/p?secret=1", "example.org"),
            "http://example.org:8443/p"
        );
    }
}
