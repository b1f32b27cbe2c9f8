//! Header rules applied to every proxied message (RFC 9110 §7.6, RFC 9112).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Response, Version};

use super::exchange::Downstream;
use super::request_id;
use super::{RESPONSE_FLAGS_HEADER, ResponseBody};
use crate::cluster::UpstreamProtocol;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Rewrites a downstream request head into the one sent upstream.
#[cfg(test)]
pub(crate) fn prepare_request(
    parts: &mut Parts,
    downstream: &Downstream,
    protocol: UpstreamProtocol,
) {
    sanitize_request(parts, downstream);
    into_upstream_form(parts, protocol);
}

/// The connection manager's own edits, made before any filter runs (as Envoy's HCM
/// does), so filters and the access log see `x-forwarded-for` and `x-request-id`.
pub(crate) fn sanitize_request(parts: &mut Parts, downstream: &Downstream) {
    let headers = &mut parts.headers;
    let mut seen = Seen::scan(headers);
    let te_trailers = seen.te
        && headers
            .get(header::TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if remove_hop_by_hop(headers, &seen) {
        seen = Seen::scan(headers);
    }
    // `te: trailers` is the one TE value that is end-to-end in practice (gRPC needs it).
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // 100-continue is answered by the downstream codec when the body is first read; the
    // upstream sees a plain request.
    if seen.expect {
        headers.remove(header::EXPECT);
    }

    if let Some(peer) = &downstream.peer {
        if seen.forwarded_for {
            append_forwarded_for(headers, peer);
        } else {
            headers.insert(X_FORWARDED_FOR, peer.clone());
        }
    }
    // Without a list of trusted hops, a client-supplied value is not believable: the
    // scheme this proxy saw replaces it (Envoy's behaviour for untrusted downstreams).
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(downstream.scheme),
    );
    if !seen.request_id && downstream.generate_request_id {
        headers.insert(X_REQUEST_ID, request_id::generate());
    }
    // A client cannot vouch for its own certificate: what it sent is dropped, and on a
    // mutual-TLS connection the verified identity is set (Envoy's `SANITIZE_SET`).
    if seen.client_cert {
        headers.remove(X_FORWARDED_CLIENT_CERT);
    }
    let identity = parts
        .extensions
        .get::<std::sync::Arc<crate::tls::TlsSession>>()
        .and_then(|session| session.client());
    if let Some(value) = identity.and_then(|client| HeaderValue::try_from(client.xfcc()).ok()) {
        parts.headers.insert(X_FORWARDED_CLIENT_CERT, value);
    }
}

/// The request target in the form the upstream protocol needs.
pub(crate) fn into_upstream_form(parts: &mut Parts, protocol: UpstreamProtocol) {
    match protocol {
        UpstreamProtocol::Http1 => into_origin_form(parts),
        UpstreamProtocol::Http2 => into_absolute_form(parts),
    }
}

/// Removes hop-by-hop fields from an upstream response before it goes downstream.
/// An upstream cannot set the proxy's own response flags: that header is how clients tell
/// a proxy-generated reply from an origin's.
pub(crate) fn prepare_response(response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    let mut seen = Seen::scan(headers);
    if remove_hop_by_hop(headers, &seen) {
        seen = Seen::scan(headers);
    }
    if seen.response_flags {
        headers.remove(RESPONSE_FLAGS_HEADER);
    }
}

/// Which of the fields the proxy removes or edits a message carries, from one pass over
/// its names: most messages carry none of them, and every lookup hashes a name and
/// probes the map.
#[derive(Debug, Default)]
struct Seen {
    connection: bool,
    /// One of the hop-by-hop fields RFC 9110 §7.6.1 lists besides `Connection`.
    fixed_hop_by_hop: bool,
    te: bool,
    expect: bool,
    forwarded_for: bool,
    request_id: bool,
    client_cert: bool,
    response_flags: bool,
}

impl Seen {
    fn scan(headers: &HeaderMap) -> Self {
        let mut seen = Seen::default();
        for name in headers.keys() {
            if name == header::CONNECTION {
                seen.connection = true;
            } else if name == header::TE {
                seen.te = true;
                seen.fixed_hop_by_hop = true;
            } else if is_fixed_hop_by_hop(name) {
                seen.fixed_hop_by_hop = true;
            } else if name == header::EXPECT {
                seen.expect = true;
            } else if name == X_FORWARDED_FOR {
                seen.forwarded_for = true;
            } else if name == X_REQUEST_ID {
                seen.request_id = true;
            } else if name == X_FORWARDED_CLIENT_CERT {
                seen.client_cert = true;
            } else if name == RESPONSE_FLAGS_HEADER {
                seen.response_flags = true;
            }
        }
        seen
    }
}

/// Drops the fields that describe one connection rather than the message: those named
/// in `Connection`, and the fixed set RFC 9110 §7.6.1 lists. `true` when `Connection`
/// named other fields, which are gone now too (so `seen` no longer describes `headers`).
fn remove_hop_by_hop(headers: &mut HeaderMap, seen: &Seen) -> bool {
    let mut named_others = false;
    if seen.connection {
        if names_other_fields(headers) {
            named_others = true;
            let named: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
                .collect();
            for name in named {
                headers.remove(name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    if seen.fixed_hop_by_hop {
        for name in [
            KEEP_ALIVE,
            PROXY_CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::TE,
        ] {
            headers.remove(name);
        }
    }
    named_others
}

/// The hop-by-hop fields RFC 9110 §7.6.1 lists besides `Connection`.
fn is_fixed_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Whether `Connection` names a field other than `keep-alive` and `close`. Nearly every
/// message says only one of those, which name nothing beyond the fixed set removed
/// anyway: then no list of names is built (an allocation per message otherwise).
fn names_other_fields(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"keep-alive")
                && !token.eq_ignore_ascii_case(b"close")
        })
    })
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    let mut existing = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if existing.peek().is_none() {
        headers.insert(X_FORWARDED_FOR, peer.clone());
        return;
    }
    let mut joined = String::with_capacity(64);
    for value in existing {
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(value);
    }
    joined.push_str(", ");
    joined.push_str(peer.to_str().unwrap_or_default());
    match HeaderValue::try_from(joined) {
        Ok(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        Err(_) => {
            headers.insert(X_FORWARDED_FOR, peer.clone());
        }
    }
}

/// HTTP/1.1 upstream: `GET /path?q HTTP/1.1` with the authority in `Host`.
///
/// The target stays as received: the HTTP/1.1 encoder (`upstream::h1::encode`) writes
/// its path and, when it has an authority (HTTP/1.1 absolute-form, HTTP/2
/// `:authority`), the `Host` line from it in place of any `Host` field (RFC 9112
/// §3.2.2, RFC 9113 §8.3.1) — the same authority routing chose the virtual host by, so
/// the origin and the router never disagree on the host. Rebuilding the URI and copying
/// the authority into a new field here cost ≈ 1k instructions per HTTP/2 request.
fn into_origin_form(parts: &mut Parts) {
    parts.version = Version::HTTP_11;
}

/// HTTP/2 upstream: `:scheme`, `:authority` and `:path` pseudo-headers, no `Host`.
fn into_absolute_form(parts: &mut Parts) {
    let authority = match parts.uri.authority() {
        Some(authority) => Some(authority.clone()),
        None => parts
            .headers
            .get(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
    };
    if let Some(authority) = authority {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        if let Ok(absolute) = Uri::from_parts(uri) {
            parts.uri = absolute;
            parts.headers.remove(header::HOST);
        }
    }
    parts.version = Version::HTTP_2;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream() -> Downstream {
        Downstream::new(
            Some([10, 1, 2, 3].into()),
            "test",
            std::sync::Arc::default(),
        )
    }

    fn request(build: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Parts {
        build(http::Request::builder())
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn strips_hop_by_hop_including_connection_named_fields() {
        let mut parts = request(|b| {
            b.uri("/x")
                .header("host", "example.org")
                .header("connection", "keep-alive, X-Secret")
                .header("x-secret", "1")
                .header("keep-alive", "timeout=5")
                .header("upgrade", "websocket")
                .header("proxy-connection", "keep-alive")
                .header("te", "gzip")
                .header("expect", "100-continue")
                .header("x-kept", "yes")
        });
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http1);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "upgrade",
            "proxy-connection",
            "te",
            "expect",
        ] {
            assert!(
                !parts.headers.contains_key(gone),
                "{gone} should be removed"
            );
        }
        assert_eq!(parts.headers["x-kept"], "yes");
        assert_eq!(parts.headers["host"], "example.org");
    }

    #[test]
    fn keeps_te_trailers_and_appends_forwarding_headers() {
        let mut parts = request(|b| {
            b.uri("/")
                .header("te", "trailers")
                .header("x-forwarded-for", "1.1.1.1")
                .header("x-forwarded-proto", "https")
        });
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http1);
        assert_eq!(parts.headers["te"], "trailers");
        assert_eq!(parts.headers["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
        assert_eq!(parts.headers["x-request-id"].len(), 36);
    }

    #[test]
    fn keeps_an_existing_request_id() {
        let mut parts = request(|b| b.uri("/").header("x-request-id", "abc"));
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http1);
        assert_eq!(parts.headers["x-request-id"], "abc");
    }

    #[test]
    fn fields_connection_names_are_gone_before_the_proxy_adds_its_own() {
        // `Connection` naming the proxy's own fields: the client's values are hop-by-hop,
        // so the proxy's edits see them absent (a fresh id, a fresh forwarding chain).
        let mut parts = request(|b| {
            b.uri("/")
                .header(
                    "connection",
                    "x-request-id, x-forwarded-for, x-forwarded-client-cert",
                )
                .header("x-request-id", "from-the-client")
                .header("x-forwarded-for", "6.6.6.6")
                .header("x-forwarded-client-cert", "By=forged")
        });
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http1);
        assert_eq!(parts.headers["x-request-id"].len(), 36);
        assert_eq!(parts.headers["x-forwarded-for"], "10.1.2.3");
        assert!(!parts.headers.contains_key("x-forwarded-client-cert"));
        assert!(!parts.headers.contains_key("connection"));
    }

    #[test]
    fn an_origin_cannot_set_the_proxy_response_flags_or_hop_by_hop_fields() {
        let mut response = http::Response::builder()
            .header("connection", "close, x-private")
            .header("x-private", "1")
            .header("transfer-encoding", "chunked")
            .header(RESPONSE_FLAGS_HEADER, "UF")
            .header("content-type", "text/plain")
            .body(ResponseBody::empty())
            .unwrap();
        prepare_response(&mut response);
        let names: Vec<&str> = response
            .headers()
            .keys()
            .map(|name| name.as_str())
            .collect();
        assert_eq!(names, ["content-type"]);
    }

    #[test]
    fn h2_downstream_to_h1_upstream_gets_host_and_origin_form() {
        let mut parts = request(|b| {
            b.uri("http://example.org:8080/a?b=1")
                .version(Version::HTTP_2)
        });
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http1);
        // The encoder writes `/a?b=1` and `host: example.org:8080` from it
        // (`upstream::h1::encode` tests).
        assert_eq!(parts.uri, "http://example.org:8080/a?b=1");
        assert_eq!(parts.version, Version::HTTP_11);
    }

    #[test]
    fn h1_downstream_to_h2_upstream_gets_authority() {
        let mut parts = request(|b| b.uri("/a?b=1").header("host", "example.org"));
        prepare_request(&mut parts, &downstream(), UpstreamProtocol::Http2);
        assert_eq!(parts.uri, "http://example.org/a?b=1");
        assert!(!parts.headers.contains_key("host"));
        assert_eq!(parts.version, Version::HTTP_2);
    }
}
