use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::headers::{prepare_request, prepare_response};
use super::local_reply::plain_text;
use super::{LocalReply, RequestBody, ResponseBody};
use crate::cluster::{Cluster, UpstreamError};
use crate::route::{DirectResponse, Redirect, RouteAction, RoutePolicy, Router, request_host};
use crate::stats::{GaugeGuard, ListenerStats};

/// What the proxy knows about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    /// The client's IP, pre-formatted once per connection for `x-forwarded-for`.
    /// `None` for Unix-socket clients, which have no IP to report.
    pub(crate) peer: Option<HeaderValue>,
    /// `http` or `https`: the scheme this proxy was reached over.
    pub(crate) scheme: &'static str,
}

impl Downstream {
    pub(crate) fn new(peer: Option<IpAddr>) -> Self {
        let peer = peer.and_then(|ip| HeaderValue::try_from(ip.to_string()).ok());
        Self {
            peer,
            scheme: "http",
        }
    }
}

/// One listener's request pipeline: route, then answer locally or forward.
///
/// Generic over the generated router, so each listener gets its own copy of this code
/// with the route matcher inlined.
#[derive(Debug)]
pub(crate) struct ConnectionManager<R> {
    router: R,
    stats: Arc<ListenerStats>,
}

impl<R: Router> ConnectionManager<R> {
    pub(crate) fn new(router: R, stats: Arc<ListenerStats>) -> Self {
        Self { router, stats }
    }

    pub(crate) fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// Produces the response for one request. Never fails: every problem becomes a
    /// documented local reply.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        downstream: &Downstream,
    ) -> Response<ResponseBody> {
        self.stats.downstream_rq_total.inc();
        let _active = GaugeGuard::new(&self.stats.downstream_rq_active);
        let (parts, body) = request.into_parts();
        let is_head = parts.method == http::Method::HEAD;
        let mut response = match self.router.route(&parts) {
            RouteAction::Forward(cluster, policy) => {
                self.forward(cluster, policy, parts, body, downstream).await
            }
            RouteAction::Direct(direct) => direct_response(direct),
            RouteAction::Redirect(redirect) => redirect_response(redirect, &parts, downstream),
            RouteAction::NoRoute => self.local_reply(LocalReply::NoRoute),
        };
        if is_head {
            // Local replies carry a body and `content-length`. HEAD keeps the length but
            // must not send the bytes; hyper drops them on HTTP/1.1 but would send them as
            // DATA on HTTP/2, which the client then resets. (A forwarded HEAD response's
            // body is already empty.)
            *response.body_mut() = ResponseBody::empty();
        }
        self.stats.count_status(response.status().as_u16());
        response
    }

    async fn forward(
        &self,
        cluster: &Cluster,
        policy: &RoutePolicy,
        mut parts: Parts,
        body: Incoming,
        downstream: &Downstream,
    ) -> Response<ResponseBody> {
        let Some(endpoint) = cluster.pick() else {
            return self.local_reply(LocalReply::NoHealthyUpstream);
        };
        prepare_request(&mut parts, downstream, cluster.options().protocol);
        let (body, body_sent) = RequestBody::new(body);
        let request = Request::from_parts(parts, body);
        let _in_flight = GaugeGuard::new(&cluster.stats().upstream_rq_active);
        let sent = cluster.send(endpoint, request);
        let Some(result) = within_route_timeout(sent, policy.timeout, body_sent).await else {
            // Dropping the send closes that upstream connection: it has a request in
            // flight whose response nobody will read.
            cluster.stats().upstream_rq_timeout.inc();
            tracing::debug!(route = policy.name, cluster = cluster.name(), timeout = ?policy.timeout, "upstream timeout");
            return self.local_reply(LocalReply::UpstreamTimeout);
        };
        match result {
            Ok(mut response) => {
                prepare_response(&mut response);
                response
            }
            Err(UpstreamError::Connect(error)) => {
                tracing::debug!(route = policy.name, cluster = cluster.name(), %error, "upstream connect failure");
                self.local_reply(LocalReply::ConnectFailure)
            }
            Err(UpstreamError::Reset(error)) => {
                tracing::debug!(route = policy.name, cluster = cluster.name(), %error, "upstream reset");
                self.local_reply(LocalReply::UpstreamReset)
            }
        }
    }

    fn local_reply(&self, reply: LocalReply) -> Response<ResponseBody> {
        let counter = match reply {
            LocalReply::NoRoute => &self.stats.no_route,
            LocalReply::NoHealthyUpstream => &self.stats.no_healthy_upstream,
            LocalReply::ConnectFailure => &self.stats.upstream_connect_fail,
            LocalReply::UpstreamReset => &self.stats.upstream_reset,
            LocalReply::UpstreamTimeout => &self.stats.upstream_timeout,
        };
        counter.inc();
        reply.into_response()
    }
}

/// Awaits the upstream response head; `None` when the route timeout expired first.
///
/// The timeout runs from the end of the request (Envoy semantics): a large upload is
/// bounded by the client's pace, not by the route timeout. An origin may still answer
/// before the upload ends; then there is nothing left to time.
async fn within_route_timeout<T>(
    sent: impl Future<Output = T>,
    timeout: Option<Duration>,
    body_sent: Option<oneshot::Receiver<()>>,
) -> Option<T> {
    let Some(timeout) = timeout else {
        return Some(sent.await);
    };
    let mut sent = std::pin::pin!(sent);
    if let Some(body_sent) = body_sent {
        tokio::select! {
            result = &mut sent => return Some(result),
            _ = body_sent => {}
        }
    }
    tokio::time::timeout(timeout, sent).await.ok()
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
        let downstream = Downstream::new(None);
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
