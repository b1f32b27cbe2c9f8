//! Virtual-host selection helpers used by generated routers.
//!
//! Envoy semantics: domains match case-insensitively and ignore the port; a wildcard
//! never matches the empty string (`*.example.org` does not match `example.org`).

use http::request::Parts;

/// The request's host without port: the URI authority (HTTP/2 `:authority`, absolute-form
/// HTTP/1.1) if present, else the `Host` header, else `""` (which only `*` matches).
pub fn request_host(request: &Parts) -> &str {
    let raw = match request.uri.authority() {
        Some(authority) => authority.as_str(),
        None => match request.headers.get(http::header::HOST).map(|v| v.to_str()) {
            Some(Ok(host)) => host,
            _ => "",
        },
    };
    strip_port(raw)
}

/// `authority` without userinfo and port.
pub(crate) fn strip_port(authority: &str) -> &str {
    // Userinfo is not allowed in Host but may appear in an absolute-form URI.
    // Byte scans rather than `rsplit_once`: a host is a few bytes, shorter than what
    // `memrchr` sets up for (this runs once per request).
    let host = match authority.bytes().rposition(|b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop anything after `]`.
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.bytes().rposition(|b| b == b':') {
        Some(colon) if host.as_bytes()[colon + 1..].iter().all(u8::is_ascii_digit) => {
            &host[..colon]
        }
        _ => host,
    }
}

/// Exact domain match, ignoring ASCII case.
#[inline]
pub fn host_is(host: &str, domain: &str) -> bool {
    host.eq_ignore_ascii_case(domain)
}

/// `*suffix` match: `suffix` is the pattern without its leading `*` (e.g. `.example.org`).
#[inline]
pub fn host_has_suffix(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len()
        && host.as_bytes()[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `prefix*` match: `prefix` is the pattern without its trailing `*` (e.g. `api.`).
#[inline]
pub fn host_has_prefix(host: &str, prefix: &str) -> bool {
    host.len() > prefix.len()
        && host.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_comes_from_authority_then_header_without_port() {
        assert_eq!(
            request_host(&parts("http://a.example:8080/x", Some("b"))),
            "a.example"
        );
        assert_eq!(
            request_host(&parts("/x", Some("Blog.Example.org:80"))),
            "Blog.Example.org"
        );
        assert_eq!(request_host(&parts("/x", Some("[::1]:8080"))), "[::1]");
        assert_eq!(request_host(&parts("/x", None)), "");
    }

    #[test]
    fn wildcards_never_match_empty() {
        assert!(host_has_suffix("a.example.org", ".example.org"));
        assert!(host_has_suffix("A.EXAMPLE.ORG", ".example.org"));
        assert!(!host_has_suffix(".example.org", ".example.org"));
        assert!(!host_has_suffix("example.org", ".example.org"));
        assert!(host_has_prefix("api.example", "api."));
        assert!(!host_has_prefix("api.", "api."));
        assert!(host_is("Example.ORG", "example.org"));
    }
}
