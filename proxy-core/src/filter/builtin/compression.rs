//! Response compression with gzip and brotli, streamed chunk by chunk.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, HeaderMap, HeaderValue,
};
use http::{Method, StatusCode};

use super::util::{add_vary, has_token, trim};
use crate::filter::{Flow, HttpFilter, RequestInfo};
use crate::stats::Counter;

/// Brotli's sliding window, log2 bytes: 256 KiB, Envoy's default. A larger window
/// compresses a little better but costs memory per response in flight.
const BROTLI_WINDOW_BITS: u32 = 18;
/// The brotli writer's staging buffer.
const BROTLI_BUFFER: usize = 4096;

/// Compresses response bodies with brotli or gzip, as the client prefers.
///
/// The encoding is chosen from the request's `accept-encoding`, by q-value; on a tie
/// brotli wins (it is smaller for the same effort), `x-gzip` counts as `gzip`, `*`
/// stands for any encoding not listed, and `q=0` (or an unparseable q-value) rules an
/// encoding out. Without `accept-encoding`, nothing is compressed.
///
/// A response is *compressible* unless any of these holds:
///
/// * its status is 1xx, 204, 206 or 304, or it has `content-range`;
/// * it already has `content-encoding`;
/// * `cache-control` has `no-transform` (RFC 9110 §7.7);
/// * its `content-length` is below `min_content_length` (default 1024 bytes: below about
///   a kilobyte the response fits in one packet either way and the saving rarely pays
///   for setting up a compressor; Envoy's default is 30). A response of unknown length
///   (streamed) is compressible;
/// * its media type (before any `;`) is not in `content_types` (default: Envoy's list,
///   [`Compression::DEFAULT_CONTENT_TYPES`]) or it has no `content-type` at all (an
///   unlabelled body may well be compressed already; Envoy would compress it).
///
/// Every compressible response gets `vary: accept-encoding`, whether or not this client
/// accepted an encoding, so a shared cache keeps the variants apart. A compressible
/// response to a client that accepts an encoding, other than to `HEAD`, is compressed:
/// `content-length` and `accept-ranges` are removed (byte ranges of the encoded body
/// would not match the origin's), `content-encoding` is set and a strong `etag` is made
/// weak (`W/"..."`, as nginx does) since the bytes differ from the origin's.
///
/// The body is compressed as it streams: each chunk is compressed and flushed (a sync
/// flush), so the client receives every chunk as soon as the origin sends it; the
/// stream is finished on the end-of-stream call. Memory per response is the encoder's
/// state (gzip: its 32 KiB window and tables; brotli: a 256 KiB window) plus one
/// chunk's output.
#[derive(Debug)]
pub struct Compression {
    gzip: bool,
    brotli: bool,
    min_content_length: u64,
    content_types: &'static [&'static str],
    gzip_level: u32,
    brotli_quality: u32,
    remove_accept_encoding: bool,
    stats: CompressionStats,
}

/// Counters of one [`Compression`] (Envoy: `compressor.*`).
#[derive(Debug, Default)]
pub struct CompressionStats {
    pub compressed: Counter,
    pub not_compressed: Counter,
}

/// Per-request state of [`Compression`].
#[derive(Default)]
pub struct CompressionState {
    /// The encoding the client accepts, decided from the request.
    accepted: Option<Encoding>,
    head: bool,
    encoder: Option<Encoder>,
}

impl std::fmt::Debug for CompressionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressionState")
            .field("accepted", &self.accepted)
            .field("head", &self.head)
            .field("compressing", &self.encoder.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// A streaming encoder writing into a `Vec` that is drained after every chunk. Boxed:
/// the encoders' state is large and most requests carry none.
enum Encoder {
    Gzip(Box<GzEncoder<Vec<u8>>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(encoding: Encoding, gzip_level: u32, brotli_quality: u32) -> Self {
        match encoding {
            Encoding::Gzip => Encoder::Gzip(Box::new(GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(gzip_level),
            ))),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                brotli_quality,
                BROTLI_WINDOW_BITS,
            ))),
        }
    }

    /// Compresses `data` and sync-flushes, so everything written so far can be
    /// decoded; returns the output produced.
    fn compress_chunk(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                Ok(std::mem::take(encoder.get_mut()))
            }
            Encoder::Brotli(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                Ok(std::mem::take(encoder.get_mut()))
            }
        }
    }

    /// Compresses `data` and ends the stream; returns the rest of the output.
    fn finish(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(mut encoder) => {
                encoder.write_all(data)?;
                encoder.finish()
            }
            Encoder::Brotli(mut encoder) => {
                encoder.write_all(data)?;
                Ok(encoder.into_inner())
            }
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::new()
    }
}

impl Compression {
    /// One compressor per chain: a second would find `content-encoding` already set.
    pub const UNIQUE: bool = true;

    /// Envoy's default list of compressible media types.
    pub const DEFAULT_CONTENT_TYPES: &'static [&'static str] = &[
        "text/html",
        "text/plain",
        "text/css",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "text/x-javascript",
        "text/ecmascript",
        "text/js",
        "text/jscript",
        "text/x-js",
        "application/ecmascript",
        "application/x-json",
        "application/xml",
        "application/json",
        "image/svg+xml",
        "text/xml",
        "application/xhtml+xml",
    ];

    /// gzip and brotli enabled; gzip level 6 (zlib's default), brotli quality 3
    /// (Envoy's default, fast enough for on-the-fly compression).
    pub fn new() -> Self {
        Self {
            gzip: true,
            brotli: true,
            min_content_length: 1024,
            content_types: Self::DEFAULT_CONTENT_TYPES,
            gzip_level: 6,
            brotli_quality: 3,
            remove_accept_encoding: false,
            stats: CompressionStats::default(),
        }
    }

    /// Offer gzip (default `true`).
    pub fn gzip(mut self, enabled: bool) -> Self {
        self.gzip = enabled;
        self
    }

    /// Offer brotli (default `true`).
    pub fn brotli(mut self, enabled: bool) -> Self {
        self.brotli = enabled;
        self
    }

    /// Responses with a smaller `content-length` are sent as they are (default 1024).
    pub fn min_content_length(mut self, bytes: u64) -> Self {
        self.min_content_length = bytes;
        self
    }

    /// The compressible media types, compared case-insensitively without parameters;
    /// replaces the default list.
    pub fn content_types(mut self, types: &'static [&'static str]) -> Self {
        self.content_types = types;
        self
    }

    /// gzip level, 1 (fastest) to 9 (smallest); values outside are clamped. Default 6.
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.clamp(1, 9);
        self
    }

    /// brotli quality, 0 (fastest) to 11 (smallest); values above are clamped.
    /// Default 3.
    pub fn brotli_quality(mut self, quality: u32) -> Self {
        self.brotli_quality = quality.min(11);
        self
    }

    /// Removes `accept-encoding` from the request sent upstream, so the origin sends
    /// identity bodies for the proxy to compress (Envoy's
    /// `remove_accept_encoding_header`). Default `false`.
    pub fn remove_accept_encoding(mut self, remove: bool) -> Self {
        self.remove_accept_encoding = remove;
        self
    }

    pub fn stats(&self) -> &CompressionStats {
        &self.stats
    }

    /// The encoding to use for a client with these request headers, if any.
    fn choose(&self, headers: &HeaderMap) -> Option<Encoding> {
        let (mut br, mut gzip, mut any) = (None, None, None);
        for value in headers.get_all(ACCEPT_ENCODING) {
            for item in value.as_bytes().split(|&b| b == b',') {
                let mut params = item.split(|&b| b == b';');
                let coding = trim(params.next().unwrap_or_default());
                let mut q = Some(1000);
                for param in params {
                    let param = trim(param);
                    if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                        q = parse_q(trim(&param[2..]));
                    }
                }
                // An unparseable q-value rules the entry out (Envoy does the same).
                let Some(q) = q else { continue };
                let slot = if coding.eq_ignore_ascii_case(b"br") {
                    &mut br
                } else if coding.eq_ignore_ascii_case(b"gzip")
                    || coding.eq_ignore_ascii_case(b"x-gzip")
                {
                    &mut gzip
                } else if coding == b"*" {
                    &mut any
                } else {
                    continue;
                };
                // Listed twice: the most favourable weight counts.
                *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
            }
        }
        let br = if self.brotli {
            br.or(any).unwrap_or(0)
        } else {
            0
        };
        let gzip = if self.gzip {
            gzip.or(any).unwrap_or(0)
        } else {
            0
        };
        match (br, gzip) {
            (0, 0) => None,
            (br, gzip) if br >= gzip => Some(Encoding::Brotli),
            _ => Some(Encoding::Gzip),
        }
    }

    /// Whether the response may be compressed at all (see the type's docs).
    fn compressible(&self, response: &http::response::Parts) -> bool {
        if !self.gzip && !self.brotli {
            return false;
        }
        let status = response.status;
        if status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            return false;
        }
        let headers = &response.headers;
        if headers.contains_key(CONTENT_ENCODING)
            || headers.contains_key(CONTENT_RANGE)
            || has_token(headers, &CACHE_CONTROL, "no-transform")
        {
            return false;
        }
        if let Some(length) = headers.get(CONTENT_LENGTH) {
            match length
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
            {
                Some(length) if length >= self.min_content_length => {}
                _ => return false,
            }
        }
        let Some(content_type) = headers.get(CONTENT_TYPE) else {
            return false;
        };
        let media_type = content_type
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .map(trim)
            .unwrap_or_default();
        self.content_types
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(media_type))
    }
}

/// A q-value (RFC 9110 §12.4.2) in thousandths; `None` if malformed.
fn parse_q(value: &[u8]) -> Option<u16> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `"abc"` becomes `W/"abc"`; weak tags stay as they are.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(ETAG) else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.len() >= 2 && bytes[..2].eq_ignore_ascii_case(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(bytes.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(bytes);
    match HeaderValue::from_maybe_shared(Bytes::from(weak)) {
        Ok(weak) => {
            headers.insert(ETAG, weak);
        }
        Err(_) => {
            headers.remove(ETAG);
        }
    }
}

impl HttpFilter for Compression {
    type State = CompressionState;

    async fn on_request_headers(
        &self,
        state: &mut CompressionState,
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        state.accepted = self.choose(&request.headers);
        state.head = request.method == Method::HEAD;
        if self.remove_accept_encoding {
            request.headers.remove(ACCEPT_ENCODING);
        }
        Flow::Continue
    }

    async fn on_response_headers(
        &self,
        state: &mut CompressionState,
        response: &mut http::response::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        if !self.compressible(response) {
            self.stats.not_compressed.inc();
            return Flow::Continue;
        }
        add_vary(&mut response.headers, "accept-encoding");
        let encoding = match state.accepted {
            Some(encoding) if !state.head => encoding,
            _ => {
                self.stats.not_compressed.inc();
                return Flow::Continue;
            }
        };
        let headers = &mut response.headers;
        headers.remove(CONTENT_LENGTH);
        headers.remove(ACCEPT_RANGES);
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        weaken_etag(headers);
        state.encoder = Some(Encoder::new(encoding, self.gzip_level, self.brotli_quality));
        self.stats.compressed.inc();
        Flow::Continue
    }

    fn on_response_body(
        &self,
        state: &mut CompressionState,
        chunk: &mut Bytes,
        end_of_stream: bool,
    ) {
        let output = if end_of_stream {
            let Some(encoder) = state.encoder.take() else {
                return;
            };
            encoder.finish(chunk)
        } else {
            let Some(encoder) = state.encoder.as_mut() else {
                return;
            };
            if chunk.is_empty() {
                return;
            }
            encoder.compress_chunk(chunk)
        };
        match output {
            Ok(output) => *chunk = Bytes::from(output),
            Err(error) => {
                // Encoders write into memory, so this is unreachable in practice; the
                // response can no longer be made whole either way.
                tracing::warn!(%error, "response compression failed; body truncated");
                state.encoder = None;
                *chunk = Bytes::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::filter::builtin::test_util::{header, headers_all, info, now, request, response};

    fn accept(filter: &Compression, accept_encoding: &str) -> Option<Encoding> {
        let parts = request("GET", "/", &[("accept-encoding", accept_encoding)]);
        filter.choose(&parts.headers)
    }

    #[test]
    fn encoding_choice_follows_q_values() {
        let both = Compression::new();
        let cases = [
            ("gzip", Some(Encoding::Gzip)),
            ("br", Some(Encoding::Brotli)),
            ("gzip, deflate, br", Some(Encoding::Brotli)),
            ("br;q=0.5, gzip;q=0.8", Some(Encoding::Gzip)),
            ("br;q=0.8, gzip;q=0.8", Some(Encoding::Brotli)),
            ("BR;Q=1.0, GZIP", Some(Encoding::Brotli)),
            ("x-gzip", Some(Encoding::Gzip)),
            ("*", Some(Encoding::Brotli)),
            ("br;q=0, *", Some(Encoding::Gzip)),
            ("br;q=0, gzip;q=0", None),
            ("*;q=0", None),
            ("identity", None),
            ("deflate", None),
            ("gzip;q=bogus", None),
            ("gzip;q=1.5", None),
            ("gzip;q=0.0001", None),
            ("", None),
            (" gzip ; q=0.5 , br ; q=0.4 ", Some(Encoding::Gzip)),
        ];
        for (header, expected) in cases {
            assert_eq!(accept(&both, header), expected, "{header:?}");
        }
        assert_eq!(
            accept(&Compression::new().brotli(false), "br, gzip;q=0.1"),
            Some(Encoding::Gzip)
        );
        assert_eq!(accept(&Compression::new().gzip(false), "gzip"), None);
        let parts = request("GET", "/", &[]);
        assert_eq!(both.choose(&parts.headers), None);
    }

    #[test]
    fn q_value_parsing() {
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"1.000"), Some(1000));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.123"), Some(123));
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0."), Some(0));
        assert_eq!(parse_q(b"1.001"), None);
        assert_eq!(parse_q(b"2"), None);
        assert_eq!(parse_q(b""), None);
        assert_eq!(parse_q(b"0.x"), None);
    }

    struct Exchange {
        headers: HeaderMap,
        body: Vec<u8>,
        outputs: Vec<Bytes>,
    }

    /// Sends a request and a chunked response through `filter`.
    fn exchange(
        filter: &Compression,
        method: &str,
        req: &[(&str, &str)],
        status: u16,
        resp: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> Exchange {
        let mut state = CompressionState::default();
        let mut parts = request(method, "/", req);
        now(filter.on_request_headers(&mut state, &mut parts, &info()));
        let mut head = response(status, resp);
        now(filter.on_response_headers(&mut state, &mut head, &info()));
        let mut outputs = Vec::new();
        for chunk in chunks {
            let mut chunk = Bytes::copy_from_slice(chunk);
            filter.on_response_body(&mut state, &mut chunk, false);
            outputs.push(chunk);
        }
        let mut last = Bytes::new();
        filter.on_response_body(&mut state, &mut last, true);
        outputs.push(last);
        Exchange {
            headers: head.headers,
            body: outputs.concat(),
            outputs,
        }
    }

    fn text(len: usize) -> Vec<u8> {
        b"The quick brown fox jumps over the lazy dog. "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // Read errors on a truncated stream are expected for partial input; what was
        // decoded so far stays in `out`.
        let _ = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
        out
    }

    fn unbrotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = brotli::Decompressor::new(data, 4096).read_to_end(&mut out);
        out
    }

    const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");

    #[test]
    fn gzip_streams_and_flushes_every_chunk() {
        let body = text(20_000);
        let chunks: Vec<&[u8]> = body.chunks(4096).collect();
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[HTML],
            &chunks,
        );
        assert_eq!(header(&x.headers, "content-encoding"), Some("gzip"));
        assert_eq!(header(&x.headers, "content-length"), None);
        assert_eq!(header(&x.headers, "vary"), Some("accept-encoding"));
        assert_eq!(gunzip(&x.body), body);
        assert!(x.body.len() < body.len() / 4, "{} bytes", x.body.len());
        // Sync flush: every chunk produced output, and the first output alone already
        // decodes to the first chunk, so nothing waits for more input.
        assert!(x.outputs[..chunks.len()].iter().all(|o| !o.is_empty()));
        assert_eq!(gunzip(&x.outputs[0]), chunks[0]);
    }

    #[test]
    fn brotli_streams_and_flushes_every_chunk() {
        let body = text(20_000);
        let chunks: Vec<&[u8]> = body.chunks(4096).collect();
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "br")],
            200,
            &[HTML],
            &chunks,
        );
        assert_eq!(header(&x.headers, "content-encoding"), Some("br"));
        assert_eq!(unbrotli(&x.body), body);
        assert!(x.body.len() < body.len() / 4, "{} bytes", x.body.len());
        assert!(x.outputs[..chunks.len()].iter().all(|o| !o.is_empty()));
        assert_eq!(unbrotli(&x.outputs[0]), chunks[0]);
    }

    #[test]
    fn body_of_unknown_length_is_compressed() {
        let body = text(100);
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[HTML],
            &[&body],
        );
        assert_eq!(header(&x.headers, "content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&x.body), body);
    }

    #[test]
    fn empty_chunks_and_empty_bodies() {
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[HTML],
            &[b"", b"abc", b""],
        );
        assert!(x.outputs[0].is_empty() && x.outputs[2].is_empty());
        assert_eq!(gunzip(&x.body), b"abc");
        // No data at all: still a complete (empty) stream.
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "br")],
            200,
            &[HTML],
            &[],
        );
        assert!(!x.body.is_empty());
        assert_eq!(unbrotli(&x.body), b"");
    }

    #[test]
    fn compressed_response_headers() {
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[
                HTML,
                ("content-length", "4096"),
                ("accept-ranges", "bytes"),
                ("etag", "\"v1\""),
                ("vary", "cookie"),
            ],
            &[&text(4096)],
        );
        assert_eq!(header(&x.headers, "content-length"), None);
        assert_eq!(header(&x.headers, "accept-ranges"), None);
        assert_eq!(header(&x.headers, "etag"), Some("W/\"v1\""));
        assert_eq!(
            headers_all(&x.headers, "vary"),
            ["cookie", "accept-encoding"]
        );
        // A weak tag stays as it is.
        let x = exchange(
            &Compression::new(),
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[HTML, ("etag", "W/\"v1\"")],
            &[b"x"],
        );
        assert_eq!(header(&x.headers, "etag"), Some("W/\"v1\""));
    }

    /// Responses that are left alone, and whether they still get `vary`.
    #[test]
    fn responses_that_are_not_compressed() {
        let gzip = &[("accept-encoding", "gzip")][..];
        type Headers = &'static [(&'static str, &'static str)];
        // (method, request headers, status, response headers, gets `vary`)
        let cases: &[(&str, Headers, u16, Headers, bool)] = &[
            ("GET", gzip, 200, &[HTML, ("content-encoding", "br")], false),
            ("GET", gzip, 200, &[HTML, ("content-length", "1023")], false),
            ("GET", gzip, 200, &[HTML, ("content-length", "junk")], false),
            ("GET", gzip, 204, &[HTML], false),
            ("GET", gzip, 304, &[HTML], false),
            ("GET", gzip, 206, &[HTML], false),
            (
                "GET",
                gzip,
                200,
                &[HTML, ("content-range", "bytes 0-9/100")],
                false,
            ),
            (
                "GET",
                gzip,
                200,
                &[HTML, ("cache-control", "public, No-Transform")],
                false,
            ),
            ("GET", gzip, 200, &[("content-type", "image/png")], false),
            ("GET", gzip, 200, &[], false),
            // Compressible, but this request cannot have it: `vary` still tells caches.
            ("HEAD", gzip, 200, &[HTML], true),
            ("GET", &[], 200, &[HTML], true),
            (
                "GET",
                &[("accept-encoding", "identity")],
                200,
                &[HTML],
                true,
            ),
        ];
        for (method, req, status, resp, vary) in cases {
            let filter = Compression::new();
            let x = exchange(&filter, method, req, *status, resp, &[b"body"]);
            let context = format!("{method} {req:?} {status} {resp:?}");
            assert_eq!(x.body, b"body", "{context}");
            assert_ne!(
                header(&x.headers, "content-encoding"),
                Some("gzip"),
                "{context}"
            );
            assert_eq!(
                header(&x.headers, "vary") == Some("accept-encoding"),
                *vary,
                "{context}"
            );
            assert_eq!(filter.stats().not_compressed.get(), 1, "{context}");
        }
    }

    #[test]
    fn content_types_and_minimum_are_configurable() {
        let filter = Compression::new()
            .content_types(&["application/wasm"])
            .min_content_length(10);
        let x = exchange(
            &filter,
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[
                ("content-type", "Application/WASM"),
                ("content-length", "10"),
            ],
            &[b"0123456789"],
        );
        assert_eq!(header(&x.headers, "content-encoding"), Some("gzip"));
        let x = exchange(
            &filter,
            "GET",
            &[("accept-encoding", "gzip")],
            200,
            &[HTML],
            &[b"x"],
        );
        assert_eq!(header(&x.headers, "content-encoding"), None);
    }

    #[test]
    fn accept_encoding_can_be_removed_upstream() {
        for (remove, expected) in [(true, None), (false, Some("gzip"))] {
            let filter = Compression::new().remove_accept_encoding(remove);
            let mut state = CompressionState::default();
            let mut parts = request("GET", "/", &[("accept-encoding", "gzip")]);
            now(filter.on_request_headers(&mut state, &mut parts, &info()));
            assert_eq!(header(&parts.headers, "accept-encoding"), expected);
            // The client's preference is remembered either way.
            assert_eq!(state.accepted, Some(Encoding::Gzip));
        }
    }

    #[test]
    fn levels_are_clamped() {
        let f = Compression::new().gzip_level(0).brotli_quality(99);
        assert_eq!((f.gzip_level, f.brotli_quality), (1, 11));
        let body = text(5000);
        let x = exchange(
            &f,
            "GET",
            &[("accept-encoding", "br")],
            200,
            &[HTML],
            &[&body],
        );
        assert_eq!(unbrotli(&x.body), body);
    }
}
