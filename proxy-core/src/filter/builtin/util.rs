//! Small pieces several built-ins share.

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue, VARY};

use crate::filter::Flow;
use crate::http::RESPONSE_FLAGS_HEADER;

/// A `text/plain` local reply carrying an Envoy response flag, like the proxy's own
/// local replies, so a client (or a test) can tell who answered.
pub(crate) fn local_reply(status: StatusCode, body: &'static str, flag: &'static str) -> Flow {
    let mut flow = Flow::respond(status, body);
    if let Flow::Respond(response) = &mut flow {
        response
            .headers_mut()
            .insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static(flag));
    }
    flow
}

/// Whether any `name` field line contains `token` in its comma-separated list
/// (case-insensitive, as list-valued fields such as `Vary` and `Cache-Control` are).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| trim(item).eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Adds `token` to `Vary` unless it (or `*`, which already covers everything) is there.
/// A separate field line is appended rather than the existing one rewritten: RFC 9110
/// §5.3 makes the two equivalent, and it avoids re-allocating the existing value.
pub(crate) fn add_vary(headers: &mut HeaderMap, token: &'static str) {
    if has_token(headers, &VARY, token) || has_token(headers, &VARY, "*") {
        return;
    }
    headers.append(VARY, HeaderValue::from_static(token));
}

/// Trims optional whitespace (RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A static string as a header value without copying it, or `None` if it holds bytes a
/// field value may not (`HeaderValue::from_static` would panic on those).
pub(crate) fn static_value(value: &'static str) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_static(value.as_bytes())).ok()
}

/// `items` joined with `", "`, as a header value; `None` when empty or invalid.
pub(crate) fn joined_value(items: &[&str]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::try_from(items.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_extended_once() {
        let mut headers = HeaderMap::new();
        add_vary(&mut headers, "origin");
        add_vary(&mut headers, "Origin");
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        headers.insert(VARY, HeaderValue::from_static("Cookie, Origin"));
        add_vary(&mut headers, "origin");
        add_vary(&mut headers, "accept-encoding");
        let values: Vec<_> = headers.get_all(VARY).iter().collect();
        assert_eq!(values, ["Cookie, Origin", "accept-encoding"]);
        headers.insert(VARY, HeaderValue::from_static("*"));
        add_vary(&mut headers, "origin");
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn trims_whitespace() {
        assert_eq!(trim(b"  a b\t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    #[test]
    fn static_values_reject_control_characters() {
        assert!(static_value("ok").is_some());
        assert!(static_value("bad\r\nvalue").is_none());
    }
}
