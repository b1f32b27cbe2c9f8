//! Request mirroring (Envoy's `request_mirror_policies`, "shadowing").
//!
//! For each of a route's mirrors, a request is copied to the mirror's cluster with
//! probability `percent / 100`. The copy is sent on its own task, fire-and-forget: the
//! primary request never waits for it, and nothing the mirror does (answering slowly,
//! failing, never answering) reaches the client's response.
//!
//! As in Envoy:
//! - the copy's `Host` (HTTP/1.1) or `:authority` (HTTP/2) gets the `-shadow` suffix,
//!   before any port (`api.example:8080` → `api.example-shadow:8080`), so the mirror's
//!   logs tell shadow traffic apart;
//! - the copy carries the request head and body as the primary upstream gets them
//!   (after the request filters);
//! - the mirror's response is read to its end and dropped; failures are logged at debug
//!   level and counted in the mirror cluster's own stats (`upstream_rq_*`,
//!   `upstream_cx_connect_fail`, `upstream_rq_timeout`);
//! - the route timeout bounds the whole mirrored exchange (head and body); on a route
//!   without one, copies to a mirror that never answers wait as long as it does (the
//!   mirror cluster's circuit breakers bound how many).
//!
//! Deviations: only bodiless requests and requests whose body has a declared length
//! within the replay buffer (the route's `max_buffered_body`, 64 KiB without a retry
//! policy) are mirrored, because the body must be kept to be sent twice; Envoy streams
//! larger and chunked bodies to the mirror too. Upgrade (WebSocket) requests are not
//! mirrored. A mirrored request with a body is buffered before its primary attempt
//! starts (it has a declared length, so the client sends it whole regardless).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, Uri};
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::body::BufferedBody;
use super::headers::into_upstream_form;
use super::{RequestBody, ResponseBody};
use crate::cluster::Cluster;
use crate::route::Mirror;

/// The mirrors that get a copy of this request: each drawn with its own probability.
/// No allocation unless at least one is drawn.
pub(crate) fn draw(mirrors: &'static [Mirror]) -> Vec<&'static Cluster> {
    mirrors
        .iter()
        .filter(|mirror| mirror.percent >= 100 || fastrand::u32(..100) < mirror.percent)
        .map(|mirror| &*mirror.cluster)
        .collect()
}

/// Sends a copy of the request (`parts`, a copy of the primary's head, and `body`) to
/// `cluster` on a new task, and returns at once.
pub(crate) fn spawn(
    cluster: &'static Cluster,
    mut parts: Parts,
    body: Option<Arc<BufferedBody>>,
    client_ip: Option<IpAddr>,
    timeout: Option<Duration>,
) {
    shadow_host(&mut parts);
    into_upstream_form(&mut parts, cluster.options().protocol);
    tokio::spawn(async move {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let Some(selection) = cluster.select(&parts, client_ip, &[]) else {
            tracing::debug!(cluster = cluster.name(), "mirror: no healthy upstream");
            return;
        };
        let endpoint = selection.endpoint;
        let body = body.map_or_else(RequestBody::empty, RequestBody::replay);
        let request = Request::from_parts(parts, body);
        let sent = cluster.send(endpoint, request);
        let response = match deadline {
            None => sent.await,
            Some(deadline) => match tokio::time::timeout_at(deadline, sent).await {
                Ok(result) => result,
                Err(_) => {
                    cluster.stats().upstream_rq_timeout.inc();
                    cluster.record_timeout(endpoint);
                    tracing::debug!(cluster = cluster.name(), "mirror: upstream timeout");
                    return;
                }
            },
        };
        match response {
            Ok(response) => drain(response, deadline).await,
            Err(error) => {
                tracing::debug!(cluster = cluster.name(), %error, "mirror: upstream error");
            }
        }
    });
}

/// Reads a mirror's response body to its end (so an HTTP/1.1 connection goes back to
/// its pool) and drops it.
async fn drain(response: Response<ResponseBody>, deadline: Option<Instant>) {
    let mut body = response.into_body();
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Err(error) = frame {
                tracing::debug!(%error, "mirror: response body failed");
                return;
            }
        }
    };
    match deadline {
        None => read.await,
        Some(deadline) => {
            if tokio::time::timeout_at(deadline, read).await.is_err() {
                tracing::debug!("mirror: response body timed out");
            }
        }
    }
}

/// Appends `-shadow` to the host in `Host` and in the URI authority (whichever the
/// request has), before the port. A value that would not be valid is left alone.
fn shadow_host(parts: &mut Parts) {
    if let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(value) = HeaderValue::try_from(shadowed(host)) {
            parts.headers.insert(header::HOST, value);
        }
    }
    if let Some(authority) = parts.uri.authority() {
        if let Ok(shadow) = Authority::try_from(shadowed(authority.as_str())) {
            let mut uri = parts.uri.clone().into_parts();
            uri.authority = Some(shadow);
            if let Ok(uri) = Uri::from_parts(uri) {
                parts.uri = uri;
            }
        }
    }
}

/// `host[:port]` → `host-shadow[:port]`.
fn shadowed(authority: &str) -> String {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    let mut shadow = String::with_capacity(authority.len() + 7);
    shadow.push_str(host);
    shadow.push_str("-shadow");
    if let Some(port) = port {
        shadow.push(':');
        shadow.push_str(port);
    }
    shadow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_suffix_goes_before_the_port() {
        assert_eq!(shadowed("api.example"), "api.example-shadow");
        assert_eq!(shadowed("api.example:8080"), "api.example-shadow:8080");
        assert_eq!(shadowed("127.0.0.1:80"), "127.0.0.1-shadow:80");
    }

    #[test]
    fn shadows_host_header_and_authority() {
        let (mut parts, ()) = Request::builder()
            .uri("http://a.example:8080/p?q")
            .header("host", "a.example:8080")
            .body(())
            .unwrap()
            .into_parts();
        shadow_host(&mut parts);
        assert_eq!(parts.headers["host"], "a.example-shadow:8080");
        assert_eq!(parts.uri, "http://a.example-shadow:8080/p?q");
    }
}
