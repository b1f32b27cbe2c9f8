//! Reading request heads (RFC 9112 §3, §5) and how their bodies are delimited (§6.3).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header;
use http::{Method, Uri, Version, request};

use crate::http::wire::{Codings, ConnectionTokens, MAX_FIELDS, Spans, parse_length, tokens};
use crate::upstream::h1::Framing;

/// Fields the proxy typically adds to a request on its way upstream.
const ADDED_FIELDS: usize = 4;
/// The largest request head: Envoy's default `max_request_headers_kb` is 60 KiB.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request the client sent, ready for the pipeline.
#[derive(Debug)]
pub(super) struct RequestHead {
    pub(super) parts: request::Parts,
    pub(super) framing: Framing,
    /// Whether the client lets the connection carry another request after this one.
    pub(super) keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before its body.
    pub(super) expects_continue: bool,
    /// `TE: trailers`: the client reads trailer fields of a chunked response.
    pub(super) accepts_trailers: bool,
    /// `Connection: upgrade` with an `Upgrade` field on HTTP/1.1: the client may switch
    /// protocols after this request.
    pub(super) wants_upgrade: bool,
}

/// Why a request head was refused; each is answered before the connection closes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 400: malformed request line or fields, or framing that cannot be trusted.
    BadRequest(&'static str),
    /// 431: more than [`MAX_FIELDS`] fields or [`MAX_HEAD_BYTES`] bytes.
    TooLarge,
    /// 414: the request line alone is past [`MAX_HEAD_BYTES`].
    UriTooLong,
    /// 501: a transfer coding other than `chunked`, which the proxy cannot decode and
    /// must not pass on re-framed (RFC 9112 §6.1).
    NotImplemented,
}

/// Parses the request head at the start of `buf`, removing it from `buf`. `Ok(None)`:
/// the head is not complete yet.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<RequestHead>, Refusal> {
    let mut spans = Spans::new();
    let mut fields = Fields::default();
    let (len, method, target, version) = {
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            buf,
            &mut raw,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(too_large(buf));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
            Err(_) => return Err(Refusal::BadRequest("malformed request head")),
        };
        if len > MAX_HEAD_BYTES {
            return Err(too_large(buf));
        }
        let base = buf.as_ptr();
        for field in request.headers.iter() {
            if fields.note(field) {
                spans.push(base, field);
            }
        }
        let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
            .map_err(|_| Refusal::BadRequest("invalid method"))?;
        let target = request.path.unwrap_or_default();
        let start = target.as_ptr() as usize - base as usize;
        let target = start..start + target.len();
        let version = match request.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        (len, method, target, version)
    };
    // RFC 9112 §3.2: an HTTP/1.1 request names its host exactly once (an absolute-form
    // target carries it too, and wins).
    let has_authority = head_has_authority(&buf[target.clone()]);
    if fields.hosts > 1 || (fields.hosts == 0 && version == Version::HTTP_11 && !has_authority) {
        return Err(Refusal::BadRequest("missing or repeated host"));
    }
    let (framing, mut keep_alive) = fields.framing(version)?;
    keep_alive &= match version {
        Version::HTTP_10 => fields.connection.keep_alive,
        _ => !fields.connection.close,
    };

    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| Refusal::BadRequest("invalid request target"))?;
    // Room for the fields the proxy adds (`x-forwarded-for`, `x-forwarded-proto`,
    // `x-request-id`, ...) without the map growing and rehashing mid-request.
    let mut headers = spans
        .to_map(&head, ADDED_FIELDS)
        .map_err(Refusal::BadRequest)?;
    if fields.codings.present && fields.content_length.is_some() {
        // Transfer-Encoding wins (RFC 9112 §6.3 item 3); the length must not travel on.
        headers.remove(header::CONTENT_LENGTH);
    }
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive,
        expects_continue: fields.expects_continue && version == Version::HTTP_11,
        accepts_trailers: fields.accepts_trailers,
        wants_upgrade: fields.upgrade && fields.connection.upgrade && version == Version::HTTP_11,
    }))
}

/// What the framing and connection fields of a request head say, read from the raw
/// fields so nothing is looked up in the `HeaderMap` again.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<u64>,
    content_length_invalid: bool,
    codings: Codings,
    connection: ConnectionTokens,
    upgrade: bool,
    hosts: u8,
    expects_continue: bool,
    accepts_trailers: bool,
}

impl Fields {
    /// Notes `field` if it frames the message or describes the connection; returns
    /// whether it is stored in the request's header map (one `Content-Length` is, however
    /// many identical ones came).
    fn note(&mut self, field: &httparse::Header<'_>) -> bool {
        let name = field.name.as_bytes();
        let value = field.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            // One number per field: a list is refused even when its items agree (as
            // hyper does), repeated fields only when they agree.
            let first = self.content_length.is_none() && !self.content_length_invalid;
            match parse_length(value.trim_ascii()) {
                Some(length) if self.content_length.is_none_or(|seen| seen == length) => {
                    self.content_length = Some(length);
                }
                _ => self.content_length_invalid = true,
            }
            return first;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.codings.note(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection.note(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts = self.hosts.saturating_add(1);
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expects_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"te") {
            self.accepts_trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        }
        true
    }

    /// RFC 9112 §6.3 for a request: a body is delimited by chunked (which must be the
    /// final coding, once) or by one agreed length, never by the close.
    fn framing(&self, version: Version) -> Result<(Framing, bool), Refusal> {
        if self.codings.present {
            if version == Version::HTTP_10 {
                return Err(Refusal::BadRequest(
                    "transfer-encoding in an HTTP/1.0 request",
                ));
            }
            if !self.codings.chunked_last || self.codings.chunked_twice {
                return Err(Refusal::BadRequest("unsupported transfer-encoding"));
            }
            // Forwarded re-framed as plain chunked, a `gzip, chunked` body would reach the
            // origin still gzip-coded with nothing saying so.
            if self.codings.other {
                return Err(Refusal::NotImplemented);
            }
            // Both framings at once is a smuggling pattern: served, but the connection
            // is closed after the response (§6.3 item 3).
            let both = self.content_length.is_some() || self.content_length_invalid;
            return Ok((Framing::Chunked, !both));
        }
        if self.content_length_invalid {
            return Err(Refusal::BadRequest("invalid content-length"));
        }
        Ok(match self.content_length {
            Some(0) | None => (Framing::Empty, true),
            Some(length) => (Framing::Length(length), true),
        })
    }
}

/// Whether a request target is in absolute form (`scheme://authority/...`) or authority
/// form (CONNECT's `host:port`), which name the host themselves.
fn head_has_authority(target: &[u8]) -> bool {
    !target.starts_with(b"/") && target != b"*"
}

/// 414 when the request line alone is past the limit (as hyper answers), else 431.
fn too_large(buf: &[u8]) -> Refusal {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end <= MAX_HEAD_BYTES => Refusal::TooLarge,
        _ => Refusal::UriTooLong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `raw`, with a `Host` field added to an HTTP/1.1 head that has none (the
    /// host rules have their own test).
    fn parse_str(raw: &str) -> Result<Option<RequestHead>, Refusal> {
        let mut raw = raw.to_owned();
        if !raw.to_ascii_lowercase().contains("\nhost:") {
            if let Some(end) = raw.find("HTTP/1.1\r\n") {
                raw.insert_str(end + 10, "Host: h\r\n");
            }
        }
        parse(&mut BytesMut::from(raw.as_str()))
    }

    #[test]
    fn a_request_head_is_parsed_and_split_off() {
        let mut buf =
            BytesMut::from("POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(head.parts.method, Method::POST);
        assert_eq!(head.parts.uri, "/a?b");
        assert_eq!(head.parts.headers["host"], "h");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", Framing::Empty, true),
            (
                "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
                Framing::Empty,
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", Framing::Empty, false),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
                false,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let head = parse_str(raw).unwrap().unwrap();
            assert_eq!(
                (head.framing, head.keep_alive),
                (framing, keep_alive),
                "{raw:?}"
            );
        }
        let twice = parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(
            twice
                .unwrap()
                .unwrap()
                .parts
                .headers
                .get_all("content-length")
                .iter()
                .count(),
            1
        );
        let both =
            parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(
            !both
                .unwrap()
                .unwrap()
                .parts
                .headers
                .contains_key("content-length")
        );
    }

    #[test]
    fn untrustworthy_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nX Y: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            "G@T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert!(
                matches!(parse_str(raw), Err(Refusal::BadRequest(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn unimplemented_transfer_codings_are_refused_with_501() {
        let gzip = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(parse_str(gzip).unwrap_err(), Refusal::NotImplemented);
    }

    #[test]
    fn http_1_1_requests_name_their_host_once() {
        let parse_raw = |raw: &str| parse(&mut BytesMut::from(raw));
        assert!(parse_raw("GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(
            parse_raw("GET http://h/ HTTP/1.1\r\n\r\n")
                .unwrap()
                .is_some()
        );
        assert!(parse_raw("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn oversized_heads_are_refused_with_431() {
        let long = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(parse_str(&long).unwrap_err(), Refusal::TooLarge);
        let target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_str(&target).unwrap_err(), Refusal::UriTooLong);
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            Refusal::TooLarge
        );
        assert!(parse_str("GET / HTTP/1.1\r\nHost: a").unwrap().is_none());
    }
}
