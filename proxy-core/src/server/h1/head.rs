//! Reading request heads (RFC 9112 §3, §5) and how their bodies are delimited (§6.3).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header;
use http::{Method, Uri, Version, request};

use crate::http::wire::{
    Codings, ConnectionTokens, MAX_FIELDS, Spans, is_lowercase, parse_length, tokens,
};
use crate::route::{RawRequest, Relay};
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

/// A request head, as the connection goes on with it.
#[derive(Debug)]
pub(super) enum Parsed {
    /// Built into a request for the pipeline. Boxed: a request head is ten times the
    /// size of a relayed one, and the connection task moves what it is given.
    Request(Box<RequestHead>),
    /// Taken by the relay path: its upstream head is already encoded.
    Relay(RelayHead),
}

/// What answering a relayed request needs to know of it.
#[derive(Debug)]
pub(super) struct RelayHead {
    pub(super) relay: Relay,
    pub(super) method: Method,
    pub(super) version: Version,
    pub(super) keep_alive: bool,
    /// `TE: trailers`: the client reads trailer fields of a chunked response.
    pub(super) accepts_trailers: bool,
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
///
/// A head the relay path can carry (no body, origin form, no field that asks for more
/// than the relay's own rewrite: see [`relayable`]) is first offered to `relay` as a
/// [`RawRequest`]; when it takes it, no request is built.
pub(super) fn parse(
    buf: &mut BytesMut,
    relay: impl FnOnce(&RawRequest<'_>) -> Option<Relay>,
) -> Result<Option<Parsed>, Refusal> {
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

    if framing == Framing::Empty && fields.relayable() {
        if let Some(raw) = raw_request(&buf[..len], &method, target.clone(), &spans) {
            if let Some(relay) = relay(&raw) {
                bytes::Buf::advance(buf, len);
                return Ok(Some(Parsed::Relay(RelayHead {
                    relay,
                    method,
                    version,
                    keep_alive,
                    accepts_trailers: fields.accepts_trailers,
                })));
            }
        }
    }

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
    Ok(Some(Parsed::Request(Box::new(RequestHead {
        parts,
        framing,
        keep_alive,
        expects_continue: fields.expects_continue && version == Version::HTTP_11,
        accepts_trailers: fields.accepts_trailers,
        wants_upgrade: fields.upgrade && fields.connection.upgrade && version == Version::HTTP_11,
    }))))
}

/// The head as the relay path sees it, when its target is one the relay may pass on as
/// it came: origin form made only of characters `http::Uri` takes as they are (RFC 3986
/// `pchar`s, `/` and `?`). Anything else (a fragment, characters `Uri` refuses or
/// re-checks as UTF-8) is left to the full path, which applies `Uri`'s own rules.
fn raw_request<'a>(
    head: &'a [u8],
    method: &'a Method,
    target: std::ops::Range<usize>,
    spans: &'a Spans,
) -> Option<RawRequest<'a>> {
    let target = &head[target];
    if target.first() != Some(&b'/') || !target.iter().all(|&b| PLAIN_TARGET[usize::from(b)]) {
        return None;
    }
    // Only ASCII: the bytes are a `str` as they are.
    let target = std::str::from_utf8(target).ok()?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let host = spans
        .fields(head)
        .find(|(name, _)| is_lowercase(name, b"host"))
        .map(|(_, value)| value);
    Some(RawRequest {
        method,
        target,
        path,
        host,
        head,
        spans,
    })
}

/// Target bytes the relay passes on unchanged: RFC 3986 unreserved, sub-delims, `:`,
/// `@`, `%` (escapes), `/` and `?`.
static PLAIN_TARGET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'%'
                    | b'/'
                    | b'?'
            );
        b += 1;
    }
    table
};

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
        if is_lowercase(name, b"content-length") {
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
        } else if is_lowercase(name, b"transfer-encoding") {
            self.codings.note(value);
        } else if is_lowercase(name, b"connection") {
            self.connection.note(value);
        } else if is_lowercase(name, b"upgrade") {
            self.upgrade = true;
        } else if is_lowercase(name, b"host") {
            self.hosts = self.hosts.saturating_add(1);
        } else if is_lowercase(name, b"expect") {
            self.expects_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if is_lowercase(name, b"te") {
            self.accepts_trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        }
        true
    }

    /// Whether the fields leave nothing for the relay path to decide beyond its own
    /// rewrite: no upgrade, and `Connection` naming nothing but `close`/`keep-alive`.
    fn relayable(&self) -> bool {
        !self.upgrade && !self.connection.other && !self.codings.present
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

    /// Parses with no relay, so every head is built into a request.
    fn built(buf: &mut BytesMut) -> Result<Option<RequestHead>, Refusal> {
        parse(buf, |_| None).map(|parsed| {
            parsed.map(|parsed| match parsed {
                Parsed::Request(head) => *head,
                Parsed::Relay(_) => unreachable!("no relay offered"),
            })
        })
    }

    /// Parses `raw`, with a `Host` field added to an HTTP/1.1 head that has none (the
    /// host rules have their own test).
    fn parse_str(raw: &str) -> Result<Option<RequestHead>, Refusal> {
        let mut raw = raw.to_owned();
        if !raw.to_ascii_lowercase().contains("\nhost:") {
            if let Some(end) = raw.find("HTTP/1.1\r\n") {
                raw.insert_str(end + 10, "Host: h\r\n");
            }
        }
        built(&mut BytesMut::from(raw.as_str()))
    }

    #[test]
    fn a_request_head_is_parsed_and_split_off() {
        let mut buf =
            BytesMut::from("POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
        let head = built(&mut buf).unwrap().unwrap();
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
        let parse_raw = |raw: &str| built(&mut BytesMut::from(raw));
        assert!(parse_raw("GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(
            parse_raw("GET http://h/ HTTP/1.1\r\n\r\n")
                .unwrap()
                .is_some()
        );
        assert!(parse_raw("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    /// Parses with a relay that takes every head offered; `true` if it was relayed.
    fn relayed(raw: &str) -> bool {
        static POLICY: crate::route::RoutePolicy = crate::route::RoutePolicy::new("t", None);
        let cluster: &'static crate::cluster::Cluster = Box::leak(Box::new(
            crate::cluster::Cluster::new("t", Vec::new(), crate::cluster::ClusterOptions::DEFAULT),
        ));
        let relay = Relay {
            cluster,
            policy: &POLICY,
        };
        let mut buf = BytesMut::from(raw);
        match parse(&mut buf, |_| Some(relay)).unwrap().unwrap() {
            Parsed::Relay(_) => {
                assert!(buf.is_empty(), "the relayed head is consumed");
                true
            }
            Parsed::Request(_) => false,
        }
    }

    #[test]
    fn only_plain_bodiless_origin_form_heads_are_offered_to_the_relay() {
        for plain in [
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: h:80\r\nConnection: keep-alive\r\n\r\n",
            "HEAD /x HTTP/1.0\r\n\r\n",
            "DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(relayed(plain), "{plain:?}");
        }
        for full in [
            // A body, however framed.
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // An upgrade, or `Connection` naming a field to remove.
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n",
            // Targets `Uri` rewrites or re-checks, or not in origin form.
            "GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /a|b HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(!relayed(full), "{full:?}");
        }
    }

    #[test]
    fn the_relay_routes_on_the_raw_head_as_on_the_request() {
        use crate::route::RouteRequest;
        let raw = "GET /p/q?x=1 HTTP/1.1\r\nHost: Example.org:8080\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        // What a router can ask of either form.
        type Answers = (String, String, http::Method, bool, bool, bool, bool);
        fn answers(request: &(impl RouteRequest + ?Sized)) -> Answers {
            let a = http::HeaderName::from_static("x-a");
            (
                request.path().to_owned(),
                request.host().to_owned(),
                request.method().clone(),
                request.header_present(&a),
                request.header_value_is(&a, b"2"),
                request.header_value_is(&a, b"3"),
                request.header_present(&http::HeaderName::from_static("x-b")),
            )
        }
        let mut seen = None;
        let mut buf = BytesMut::from(raw);
        let _ = parse(&mut buf, |request| {
            seen = Some(answers(request));
            None
        });
        let built = built(&mut BytesMut::from(raw)).unwrap().unwrap().parts;
        assert_eq!(seen, Some(answers(&built)));
        assert_eq!(built.path(), "/p/q", "the query is not part of the path");
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
