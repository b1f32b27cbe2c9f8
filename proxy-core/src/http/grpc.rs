//! gRPC awareness in the connection manager: replies the proxy generates for a gRPC
//! request are gRPC responses, and the request's `grpc-timeout` bounds the route timeout.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::ResponseBody;

/// Whether the request is a gRPC call (`content-type: application/grpc`, `+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The request's deadline from `grpc-timeout` (up to 8 digits and a unit: `H`, `M`, `S`,
/// `m`, `u`, `n`); `None` if absent or malformed.
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount.saturating_mul(3600)),
        b'M' => Duration::from_secs(amount.saturating_mul(60)),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// gRPC status codes used for proxy-generated replies.
const UNKNOWN: u8 = 2;
const DEADLINE_EXCEEDED: u8 = 4;
const PERMISSION_DENIED: u8 = 7;
const UNIMPLEMENTED: u8 = 12;
const INTERNAL: u8 = 13;
const UNAVAILABLE: u8 = 14;
const UNAUTHENTICATED: u8 = 16;

/// The gRPC status for an HTTP status, as gRPC's HTTP mapping (and Envoy) define it.
fn status_for(http: StatusCode) -> u8 {
    match http.as_u16() {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// Turns a local reply into a trailers-only gRPC response: HTTP 200 with `grpc-status`
/// and `grpc-message`, as gRPC clients expect (they read the status, not the HTTP code).
/// The reply's other headers (`x-proxy-response-flags`, `retry-after`, ...) are kept.
pub(crate) fn into_grpc_reply(
    response: Response<ResponseBody>,
    deadline_exceeded: bool,
) -> Response<ResponseBody> {
    let (mut head, body) = response.into_parts();
    let code = if deadline_exceeded {
        DEADLINE_EXCEEDED
    } else {
        status_for(head.status)
    };
    let message = body
        .as_full_bytes()
        .map(|bytes| String::from_utf8_lossy(bytes).trim_end().to_owned());
    let message = message.filter(|text| !text.is_empty()).unwrap_or_else(|| {
        head.status
            .canonical_reason()
            .unwrap_or("")
            .to_ascii_lowercase()
    });
    head.status = StatusCode::OK;
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    head.headers
        .insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::try_from(percent_encode(&message)) {
        head.headers.insert("grpc-message", message);
    }
    Response::from_parts(head, ResponseBody::empty())
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the rest `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(
            timeout(&headers(&[("grpc-timeout", "500m")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            timeout(&headers(&[("grpc-timeout", "2S")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            timeout(&headers(&[("grpc-timeout", "1H")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(timeout(&headers(&[("grpc-timeout", "123456789S")])), None);
        assert_eq!(timeout(&headers(&[("grpc-timeout", "5x")])), None);
        assert_eq!(timeout(&headers(&[("grpc-timeout", "m")])), None);
        assert_eq!(timeout(&headers(&[])), None);
    }

    #[test]
    fn detects_grpc() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
    }

    #[test]
    fn local_replies_become_trailers_only_grpc_responses() {
        let reply = super::super::LocalReply::ConnectFailure.into_response();
        let grpc = into_grpc_reply(reply, false);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "upstream connect error");
        assert_eq!(grpc.headers()["content-type"], "application/grpc");
        assert_eq!(grpc.headers()["x-proxy-response-flags"], "UF");
        assert!(!grpc.headers().contains_key("content-length"));

        let timeout = into_grpc_reply(
            super::super::LocalReply::UpstreamTimeout.into_response(),
            true,
        );
        assert_eq!(timeout.headers()["grpc-status"], "4");
        let no_route = into_grpc_reply(super::super::LocalReply::NoRoute.into_response(), false);
        assert_eq!(no_route.headers()["grpc-status"], "12");
        assert_eq!(percent_encode("50% ünïcode"), "50%25 %C3%BCn%C3%AFcode");
    }
}
