//! Reading responses: the head (RFC 9112 §4–5), how its body is delimited (§6.3), and
//! the body decoders (§7.1).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version, response};
use http_body::{Frame, SizeHint};

use super::{Error, MAX_HEAD_BYTES};
use crate::http::RESPONSE_FLAGS_NAME;
use crate::http::wire::{
    Codings, ConnectionTokens, MAX_FIELDS, Spans, is_forwardable_trailer, is_lowercase,
    parse_length,
};

/// The longest chunk-size line accepted (size, extensions, CRLF). Extensions are
/// ignored, so a long line only costs buffer; 4 KiB is far past any real one.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields accepted at the end of a chunked body.
const MAX_TRAILERS: usize = 32;

/// A parsed response head.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) parts: response::Parts,
    pub(super) framing: Framing,
    /// Whether the connection may carry another request after this response's body.
    pub(super) keep_alive: bool,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the origin closes the connection.
    UntilClose,
}

/// Parses the response head at the start of `buf`, removing it from `buf`.
/// `Ok(None)`: the head is not complete yet.
///
/// The fields that frame the message or describe the connection are read here, from
/// the raw bytes, and not stored: the response goes downstream re-framed, and looking
/// them up in a `HeaderMap` afterwards would hash each name again.
pub(super) fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, Error> {
    // Where each stored field's name and value lie within the head, so the values can
    // share the head's buffer instead of being copied.
    let mut spans = Spans::new();
    let mut fields = Fields::default();
    let (len, status, version) = {
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let Some((len, response)) = parse_status_head(buf, &mut raw)? else {
            return Ok(None);
        };
        let base = buf.as_ptr();
        for field in response.headers.iter() {
            if fields.take(field)? {
                spans.push(base, field);
            }
        }
        let status = response.code.unwrap_or_default();
        let version = version_of(&response);
        (len, status, version)
    };
    let status = StatusCode::from_u16(status).map_err(|_| Error::InvalidHeader("status"))?;
    let (framing, mut keep_alive) = fields.framing(method, status, version)?;
    keep_alive &= match version {
        Version::HTTP_10 => fields.connection.keep_alive,
        _ => !fields.connection.close,
    };
    let head = buf.split_to(len).freeze();
    // Room for one more field (hyper's HTTP/2 server adds `Date` when the origin sent
    // none), no more: the map usually comes from the worker's kept ones, and an HTTP/2
    // request's map has the smallest table (eight slots), which asking for room it
    // rarely needs would replace (two allocations and two frees per response).
    let mut headers = spans.to_map(&head, 1).map_err(Error::InvalidHeader)?;
    // One `Content-Length` goes on, whatever repeats the origin sent, and none beside
    // `Transfer-Encoding` (RFC 9112 §6.3 item 3) or when the values disagree.
    match (
        fields.codings.present || fields.content_length_invalid,
        fields.content_length,
    ) {
        (true, _) if fields.content_length_stored => {
            headers.remove(header::CONTENT_LENGTH);
        }
        (false, Some(length)) if !fields.content_length_stored => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        _ => {}
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
    }))
}

/// The proxy's own field, which no origin may set on a response it passes on.
const RESPONSE_FLAGS: &[u8] = RESPONSE_FLAGS_NAME.as_bytes();

/// A set of field positions in one head (at most [`MAX_FIELDS`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FieldSet(u128);

const _: () = assert!(MAX_FIELDS <= u128::BITS as usize);

impl FieldSet {
    fn insert_if(&mut self, index: usize, member: bool) {
        self.0 |= u128::from(member) << index;
    }

    pub(crate) fn contains(self, index: usize) -> bool {
        index < MAX_FIELDS && self.0 & (1 << index) != 0
    }
}

/// A response head as the relay path sees it (see [`peek_head`]).
#[derive(Debug)]
pub(crate) struct RawResponse<'b> {
    /// Bytes of the head, status line to the blank line.
    pub(crate) len: usize,
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this response's body.
    pub(crate) keep_alive: bool,
    /// The fields as the origin sent them, framing and hop-by-hop ones included.
    pub(crate) fields: &'b [httparse::Header<'b>],
    /// Which of `fields` go downstream (bit `i` for `fields[i]`): all but the
    /// hop-by-hop ones, the proxy's own response-flags field, and `Content-Length` on a
    /// `204` or `304`. Decided while the head is read, so the writer only copies.
    pub(crate) relayed: FieldSet,
    /// Whether the head has a `Date` field.
    pub(crate) dated: bool,
    /// The head's bytes, which `fields` point into.
    pub(crate) head: &'b [u8],
}

/// What [`peek_head`] found at the front of a read buffer.
#[derive(Debug)]
pub(crate) enum Peeked<'b> {
    /// No complete head yet.
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    /// A final response the relay can pass on field by field: delimited by at most one
    /// plain `Content-Length` (or bodiless), no `Transfer-Encoding`, and no
    /// `Connection` field naming others.
    Relayable(RawResponse<'b>),
    /// A response that needs [`parse_head`]'s rules (re-framing, removing named fields,
    /// a `101`); the buffer is untouched.
    Generic,
}

/// Parses the response head at the start of `buf` in place, without building a header
/// map or consuming it. Refuses exactly what [`parse_head`] refuses, with the same
/// errors; `storage` holds the parsed fields.
pub(crate) fn peek_head<'b>(
    buf: &'b [u8],
    storage: &'b mut [MaybeUninit<httparse::Header<'b>>; MAX_FIELDS],
    method: &Method,
) -> Result<Peeked<'b>, Error> {
    let Some((len, mut response)) = parse_status_head(buf, storage)? else {
        return Ok(Peeked::Partial);
    };
    let status = StatusCode::from_u16(response.code.unwrap_or_default())
        .map_err(|_| Error::InvalidHeader("status"))?;
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let mut fields = Fields::default();
    let mut lengths = 0;
    let mut relayed = FieldSet::default();
    let mut dated = false;
    for (index, field) in response.headers.iter().enumerate() {
        let name = field.name.as_bytes();
        // What the upstream codec would not store is hop-by-hop or framing; of the rest,
        // a few fields are not the origin's to pass on. The hop-by-hop names left after
        // `take` are spelled out rather than asked of `wire::is_hop_by_hop` (a second
        // switch per field, ≈ 100 instructions a response); a test in `server::h1::write`
        // holds the two lists together.
        let stored = fields.take(field)?;
        let passed_on = match name.len() {
            2 => !is_lowercase(name, b"te"),
            4 => {
                dated |= is_lowercase(name, b"date");
                true
            }
            7 => !is_lowercase(name, b"upgrade"),
            14 if is_lowercase(name, b"content-length") => {
                lengths += 1;
                !bodiless
            }
            len if len == RESPONSE_FLAGS.len() => !is_lowercase(name, RESPONSE_FLAGS),
            _ => true,
        };
        relayed.insert_if(index, stored && passed_on);
    }
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Peeked::Generic);
        }
        return Ok(Peeked::Interim(len));
    }
    let version = version_of(&response);
    let (framing, mut keep_alive) = fields.framing(method, status, version)?;
    keep_alive &= match version {
        Version::HTTP_10 => fields.connection.keep_alive,
        _ => !fields.connection.close,
    };
    let plain_length = lengths == 0 || (lengths == 1 && fields.content_length_stored);
    let relayable = matches!(framing, Framing::Empty | Framing::Length(_))
        && plain_length
        && !fields.codings.present
        && !fields.connection.other;
    if !relayable {
        return Ok(Peeked::Generic);
    }
    let fields: &'b mut [httparse::Header<'b>] = std::mem::take(&mut response.headers);
    Ok(Peeked::Relayable(RawResponse {
        len,
        status,
        version,
        framing,
        keep_alive,
        fields,
        relayed,
        dated,
        head: &buf[..len],
    }))
}

/// Runs `httparse` over the response head at the start of `buf`: its length and the
/// parsed head, `None` while incomplete, with the same errors for both readers.
fn parse_status_head<'b>(
    buf: &'b [u8],
    storage: &'b mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<(usize, httparse::Response<'b, 'b>)>, Error> {
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        storage,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(Error::Parse(error)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Error::HeadTooLarge);
    }
    Ok(Some((len, response)))
}

fn version_of(response: &httparse::Response<'_, '_>) -> Version {
    match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// What the framing and connection fields of a response head say.
#[derive(Debug, Default)]
struct Fields {
    /// The value every `Content-Length` agrees on; `Err` if they disagree or one is not
    /// a number.
    content_length: Option<u64>,
    content_length_invalid: bool,
    /// The first `Content-Length` field, when it is a plain number, is stored as it
    /// came; later ones are not.
    content_length_stored: bool,
    codings: Codings,
    /// When `Connection` names another field, which the hop-by-hop rules must remove,
    /// the field is kept for them.
    connection: ConnectionTokens,
}

impl Fields {
    /// Notes `field` if it frames the message or describes the connection; returns
    /// whether it is stored in the response's header map.
    fn take(&mut self, field: &httparse::Header<'_>) -> Result<bool, Error> {
        let name = field.name.as_bytes();
        let value = field.value;
        // By length first: most fields are none of these, and are told apart without a
        // comparison.
        match name.len() {
            14 if is_lowercase(name, b"content-length") => {
                self.content_length(value);
                let store = !self.content_length_stored && value.iter().all(u8::is_ascii_digit);
                self.content_length_stored |= store;
                Ok(store)
            }
            17 if is_lowercase(name, b"transfer-encoding") => {
                self.codings.note(value);
                Ok(false)
            }
            10 if is_lowercase(name, b"connection") => {
                self.connection.note(value);
                Ok(self.connection.other)
            }
            10 => Ok(!is_lowercase(name, b"keep-alive")),
            16 => Ok(!is_lowercase(name, b"proxy-connection")),
            _ => Ok(true),
        }
    }

    /// Repeats of the same number are allowed (RFC 9110 §8.6); anything else makes the
    /// length invalid.
    fn content_length(&mut self, value: &[u8]) {
        for item in value.split(|&b| b == b',') {
            let Some(parsed) = parse_length(item) else {
                self.content_length_invalid = true;
                continue;
            };
            if self.content_length.is_some_and(|seen| seen != parsed) {
                self.content_length_invalid = true;
            }
            self.content_length = Some(parsed);
        }
    }

    /// RFC 9112 §6.3, for a response: how the body is delimited, and whether the
    /// framing still lets the connection be reused.
    fn framing(
        &self,
        method: &Method,
        status: StatusCode,
        version: Version,
    ) -> Result<(Framing, bool), Error> {
        if method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Empty, true));
        }
        if self.codings.present {
            // Transfer-Encoding overrides Content-Length, which is not passed on (the
            // response goes downstream re-framed). Both at once is a smuggling pattern,
            // so the connection is not trusted with another request (§6.3 item 3).
            // HTTP/1.0 has no transfer codings: its framing is faulty whatever it says
            // (§6.1), so the body runs to the close.
            if version == Version::HTTP_10 || !self.codings.chunked_last {
                return Ok((Framing::UntilClose, false));
            }
            // Chunked may be applied once (§7.1).
            if self.codings.chunked_twice {
                return Err(Error::InvalidHeader("transfer-encoding: chunked twice"));
            }
            let both = self.content_length.is_some() || self.content_length_invalid;
            return Ok((Framing::Chunked, !both));
        }
        if self.content_length_invalid {
            return Err(Error::InvalidContentLength);
        }
        match self.content_length {
            Some(length) => Ok((Framing::Length(length), true)),
            None => Ok((Framing::UntilClose, false)),
        }
    }
}

/// Decodes a response body out of the connection's read buffer.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Where a chunked body decoder is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then the final CRLF.
    Trailers,
}

/// One step of a decoder.
#[derive(Debug)]
pub(crate) enum Decoded {
    Frame(Frame<Bytes>),
    /// More bytes are needed.
    More,
    /// The body ended.
    End,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(length) => Decoder::Length(length),
            Framing::Chunked => Decoder::Chunked(Chunk::Size),
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// What is known of the body's remaining size.
    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            Decoder::Length(left) => SizeHint::with_exact(*left),
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Chunked(_) | Decoder::UntilClose => SizeHint::default(),
        }
    }

    /// Bytes of buffer room worth having for the next read: the rest of a known-length
    /// body up to 64 KiB, or 8 KiB.
    pub(crate) fn read_hint(&self) -> usize {
        match self {
            Decoder::Length(left) => (*left).clamp(1, 64 * 1024) as usize,
            Decoder::Chunked(Chunk::Data(left)) => (*left).clamp(1024, 64 * 1024) as usize,
            _ => 8 * 1024,
        }
    }

    /// The next frame from `buf`, taking its bytes out of it.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = (*left).min(buf.len() as u64) as usize;
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())));
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
                }
                Decoder::Chunked(chunk) => match chunk {
                    Chunk::Size => match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((consumed, size))) => {
                            // httparse lets a bare CR or LF through in an extension; a
                            // line is one CRLF-terminated line (as hyper reads it).
                            let line = &buf[..consumed];
                            let (body, end) = line.split_at(consumed.saturating_sub(2));
                            if end != b"\r\n" || body.iter().any(|&b| b == b'\r' || b == b'\n') {
                                return Err(Error::Chunked("invalid chunk-size line"));
                            }
                            let _ = buf.split_to(consumed);
                            *chunk = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                            return Err(Error::Chunked("chunk-size line too long"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                        Err(_) => return Err(Error::Chunked("invalid chunk size")),
                    },
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Decoded::More);
                        }
                        let take = (*left).min(buf.len() as u64) as usize;
                        *left -= take as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Decoded::More);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(Error::Chunked("chunk data not followed by CRLF"));
                        }
                        let _ = buf.split_to(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        let Some(trailers) = parse_trailers(buf)? else {
                            return Ok(Decoded::More);
                        };
                        *self = Decoder::Done;
                        if !trailers.is_empty() {
                            return Ok(Decoded::Frame(Frame::trailers(trailers)));
                        }
                    }
                },
            }
        }
    }
}

/// The trailer section ending a chunked body (possibly empty), taken out of `buf`;
/// `None` until it is complete.
fn parse_trailers(buf: &mut BytesMut) -> Result<Option<HeaderMap>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let (consumed, trailers) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((consumed, fields))) => {
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| Error::Chunked("invalid trailer name"))?;
                if !is_forwardable_trailer(&name) {
                    continue;
                }
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| Error::Chunked("invalid trailer value"))?;
                trailers.append(name, value);
            }
            (consumed, trailers)
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Error::Chunked("trailers too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Error::Chunked("malformed trailers")),
    };
    let _ = buf.split_to(consumed);
    Ok(Some(trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(raw), &method)
    }

    fn framing_of(raw: &str) -> (Framing, bool) {
        let head = head(raw, Method::GET).unwrap().unwrap();
        (head.framing, head.keep_alive)
    }

    /// Runs `raw` through a decoder of `framing`, fed one byte at a time, so every
    /// state boundary is crossed with a partial buffer.
    fn decode_bytewise(
        framing: Framing,
        raw: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut input = raw.iter();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Frame(frame) => match frame.into_data() {
                    Ok(data) => body.extend_from_slice(&data),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Decoded::End => return Ok((body, trailers)),
                Decoded::More => match input.next() {
                    Some(&byte) => buf.extend_from_slice(&[byte]),
                    None => return Err(Error::Closed),
                },
            }
        }
    }

    #[test]
    fn head_is_parsed_and_split_off() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi");
        let head = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(head.parts.status, 200);
        assert_eq!(head.parts.headers["x-a"], "b");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_fail() {
        assert!(
            head("HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
                .unwrap()
                .is_none()
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(head(&huge, Method::GET), Err(Error::HeadTooLarge)));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: v\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(matches!(head(&many, Method::GET), Err(Error::Parse(_))));
    }

    #[test]
    fn malformed_fields_are_rejected() {
        for raw in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(head(raw, Method::GET).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                (Length(5), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                (Length(5), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                (Chunked, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n",
                (Chunked, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                (Chunked, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
                (UntilClose, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                (UntilClose, false),
            ),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                (UntilClose, false),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", (UntilClose, false)),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                (Empty, true),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                (Empty, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                (Length(5), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                (Length(5), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n",
                (Length(5), true),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(framing_of(raw), expected, "{raw:?}");
        }
        let head = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD);
        assert_eq!(head.unwrap().unwrap().framing, Framing::Empty);
    }

    #[test]
    fn conflicting_lengths_and_doubled_chunked_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(head(raw, Method::GET).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\n";
        let (body, trailers) = decode_bytewise(Framing::Chunked, raw).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
        let (body, trailers) = decode_bytewise(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn trailers_that_frame_route_or_belong_to_the_connection_are_dropped() {
        let raw = b"3\r\nabc\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\
                    Host: evil\r\nConnection: close\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
                    Trailer: x\r\ngrpc-status: 0\r\nx-sum: 1\r\n\r\n";
        let (body, trailers) = decode_bytewise(Framing::Chunked, raw).unwrap();
        assert_eq!(body, b"abc");
        let trailers = trailers.unwrap();
        let names: Vec<&str> = trailers.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["grpc-status", "x-sum"]);
    }

    #[test]
    fn bad_chunks_are_errors() {
        for raw in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"ffffffffffffffffffff\r\n",
            b"-1\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
        ] {
            assert!(decode_bytewise(Framing::Chunked, raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut buf = BytesMut::from("helloEXTRA");
        let mut decoder = Decoder::new(Framing::Length(5));
        let Decoded::Frame(frame) = decoder.decode(&mut buf).unwrap() else {
            panic!("expected a frame");
        };
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"EXTRA");
    }
}
