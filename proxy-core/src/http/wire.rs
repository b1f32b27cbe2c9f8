//! HTTP/1.1 wire syntax shared by the native server codec (`server::h1`) and the origin
//! client (`upstream::h1`).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// The most header fields in one head (hyper's default).
pub(crate) const MAX_FIELDS: usize = 100;

/// Where the fields of a head lie in its buffer, recorded while `httparse` borrows it, so
/// the `HeaderMap` built afterwards shares the buffer (each value a `Bytes` slice of it)
/// instead of copying.
///
/// Room for [`MAX_FIELDS`] is reserved in place but not initialised: zeroing 1.6 KB cost
/// every request more than recording its few fields does.
pub(crate) struct Spans {
    spans: SmallVec<[[u32; 4]; MAX_FIELDS]>,
}

impl Spans {
    pub(crate) fn new() -> Self {
        Self {
            spans: SmallVec::new(),
        }
    }

    /// Records `field`, which `httparse` parsed out of the buffer starting at `base`
    /// (whose head is at most 64 KiB, so offsets fit in `u32`). Fields past
    /// [`MAX_FIELDS`] are ignored; `httparse` is never given room for more.
    pub(crate) fn push(&mut self, base: *const u8, field: &httparse::Header<'_>) {
        if self.spans.len() == MAX_FIELDS {
            return;
        }
        // Both slices point into the buffer that starts at `base` (httparse borrows,
        // never copies), so the differences are offsets within the head.
        let base = base as usize;
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        self.spans.push([
            name as u32,
            field.name.len() as u32,
            value as u32,
            field.value.len() as u32,
        ]);
    }

    /// The recorded fields' names and values, in order, over `head` (the buffer the
    /// offsets are into).
    pub(crate) fn fields<'h>(
        &'h self,
        head: &'h [u8],
    ) -> impl Iterator<Item = (&'h [u8], &'h [u8])> + 'h {
        self.spans
            .iter()
            .map(move |&[name, name_len, value, value_len]| {
                (
                    &head[name as usize..(name + name_len) as usize],
                    &head[value as usize..(value + value_len) as usize],
                )
            })
    }

    /// The recorded fields as a map over `head` (the buffer the offsets are into), with
    /// room for `spare` more fields. `Err` names the part that is invalid.
    pub(crate) fn to_map(&self, head: &Bytes, spare: usize) -> Result<HeaderMap, &'static str> {
        let mut headers = empty_map(self.spans.len() + spare);
        for &[name, name_len, value, value_len] in &self.spans {
            let name = &head[name as usize..(name + name_len) as usize];
            let name = match common_name(name) {
                Some(name) => name,
                None => HeaderName::from_bytes(name).map_err(|_| "invalid field name")?,
            };
            let value = head.slice(value as usize..(value + value_len) as usize);
            let value = HeaderValue::from_maybe_shared(value).map_err(|_| "invalid field value")?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

/// The `http` crate's constant for `name` (as `httparse` accepted it: a token) when it is
/// one of the names most heads carry, told by its length and one eight-bytes-at-a-time
/// compare. `HeaderName::from_bytes` finds the same constant through a per-byte table
/// walk, ≈ 115 instructions a name, four or five times per response head.
fn common_name(name: &[u8]) -> Option<HeaderName> {
    use http::header;
    let (lower, constant) = match name.len() {
        4 => match name[0] | 0x20 {
            b'd' => (&b"date"[..], header::DATE),
            b'h' => (&b"host"[..], header::HOST),
            b'e' => (&b"etag"[..], header::ETAG),
            b'v' => (&b"vary"[..], header::VARY),
            _ => return None,
        },
        6 => match name[0] | 0x20 {
            b's' => (&b"server"[..], header::SERVER),
            b'a' => (&b"accept"[..], header::ACCEPT),
            _ => return None,
        },
        10 => (&b"user-agent"[..], header::USER_AGENT),
        12 => (&b"content-type"[..], header::CONTENT_TYPE),
        13 => match name[0] | 0x20 {
            b'l' => (&b"last-modified"[..], header::LAST_MODIFIED),
            b'c' => (&b"cache-control"[..], header::CACHE_CONTROL),
            b'a' => (&b"accept-ranges"[..], header::ACCEPT_RANGES),
            _ => return None,
        },
        14 => (&b"content-length"[..], header::CONTENT_LENGTH),
        _ => return None,
    };
    is_lowercase(name, lower).then_some(constant)
}

/// Header maps a worker keeps for the heads it parses next: as many as an HTTP/2
/// connection's streams have in flight at once (`h2load -c 50 -m 10`: 500), else the
/// maps of requests sent upstream are freed while their responses' maps are allocated.
const KEPT_MAPS: usize = 1024;
/// A map grown past this many fields (an unusual head) is not kept.
const KEPT_MAP_CAPACITY: usize = 64;

thread_local! {
    /// A map's two blocks (its index and its entries) are, for a dozen fields, too large
    /// for glibc's per-thread cache: allocating them costs ≈ 4 slow `malloc`/`free`
    /// pairs per proxied request, so emptied maps are kept instead (no lock: each worker
    /// is one thread).
    static MAPS: std::cell::RefCell<Vec<HeaderMap>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn empty_map(capacity: usize) -> HeaderMap {
    match MAPS.try_with(|maps| maps.borrow_mut().pop()).ok().flatten() {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Gives back the map of a head that has been written out, for the next head parsed on
/// this thread. Its values (which share a read buffer) are dropped now.
pub(crate) fn recycle(mut map: HeaderMap) {
    if map.capacity() > KEPT_MAP_CAPACITY {
        return;
    }
    map.clear();
    let _ = MAPS.try_with(|maps| {
        let mut maps = maps.borrow_mut();
        if maps.len() < KEPT_MAPS {
            maps.push(map);
        }
    });
}

/// What the `Transfer-Encoding` fields of a head say, all of them together.
#[derive(Debug, Default)]
pub(crate) struct Codings {
    /// A `Transfer-Encoding` field is present.
    pub(crate) present: bool,
    /// The last coding named is `chunked`.
    pub(crate) chunked_last: bool,
    /// `chunked` is named more than once (RFC 9112 §7.1 forbids it).
    pub(crate) chunked_twice: bool,
    /// A coding other than `chunked` is named.
    pub(crate) other: bool,
    chunked_seen: bool,
}

impl Codings {
    pub(crate) fn note(&mut self, value: &[u8]) {
        self.present = true;
        for coding in tokens(value) {
            self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            if self.chunked_last {
                self.chunked_twice |= self.chunked_seen;
                self.chunked_seen = true;
            } else {
                self.other = true;
            }
        }
    }
}

/// What the `Connection` fields of a head say.
#[derive(Debug, Default)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// A token naming another field, which the hop-by-hop rules must remove.
    pub(crate) other: bool,
}

impl ConnectionTokens {
    pub(crate) fn note(&mut self, value: &[u8]) {
        // Nearly every `Connection` field is exactly one of these.
        if is_lowercase(value, b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        if is_lowercase(value, b"close") {
            self.close = true;
            return;
        }
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                self.other = true;
            }
        }
    }
}

/// The non-empty items of a comma-separated field value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// A `Content-Length` number: digits only (no sign, no list), at most 19 of them.
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')),
    )
}

/// Whether `bytes` (a field name or value as `httparse` or `http` accepted it) is
/// `lower`, ignoring ASCII case, compared eight bytes at a time (byte-by-byte compares
/// were ≈ 300 instructions of every relayed request). `lower` is made of lowercase
/// letters, digits and `-`, whose bytes all have the case bit (0x20) set. Setting that
/// bit maps only a capital letter onto a lowercase one among the bytes a name or value
/// may hold (tokens; tab, space, visible ASCII and bytes past 0x7F): the other bytes
/// it would map onto a digit or `-` are control characters, which neither accepts.
#[inline]
pub(crate) fn is_lowercase(bytes: &[u8], lower: &[u8]) -> bool {
    debug_assert!(
        lower
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{lower:?} is not a lowercase name"
    );
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    if bytes.len() != lower.len() {
        return false;
    }
    let mut names = bytes.chunks_exact(8);
    let mut lowers = lower.chunks_exact(8);
    for (a, b) in (&mut names).zip(&mut lowers) {
        let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
            return false;
        };
        if u64::from_ne_bytes(a) | CASE != u64::from_ne_bytes(b) {
            return false;
        }
    }
    names
        .remainder()
        .iter()
        .zip(lowers.remainder())
        .all(|(&a, &b)| a | 0x20 == b)
}

/// Whether `name` is `Connection` or one of the hop-by-hop fields RFC 9110 §7.6.1 lists
/// besides it (`Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => is_lowercase(name, b"te"),
        7 => is_lowercase(name, b"upgrade"),
        10 => is_lowercase(name, b"connection") || is_lowercase(name, b"keep-alive"),
        16 => is_lowercase(name, b"proxy-connection"),
        17 => is_lowercase(name, b"transfer-encoding"),
        _ => false,
    }
}

/// Whether a trailer field is passed on. Fields that frame, route or authorize a
/// message, or describe its content, are needed before the content (RFC 9110 §6.5.1):
/// arriving after it, a recipient that merged them into the head would act on them too
/// late — a `Content-Length` in a request's trailers is a second, unchecked length — and
/// connection-specific ones make an HTTP/2 message malformed (RFC 9113 §8.2.2). The list
/// is hyper's HTTP/1.1 encoder's, plus the connection-specific fields.
pub(crate) fn is_forwardable_trailer(name: &HeaderName) -> bool {
    use http::header::*;
    !matches!(
        *name,
        AUTHORIZATION
            | CACHE_CONTROL
            | CONNECTION
            | CONTENT_ENCODING
            | CONTENT_LENGTH
            | CONTENT_RANGE
            | CONTENT_TYPE
            | HOST
            | MAX_FORWARDS
            | PROXY_AUTHORIZATION
            | SET_COOKIE
            | TE
            | TRAILER
            | TRANSFER_ENCODING
            | UPGRADE
    ) && !matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Appends `name: value` and its CRLF.
pub(crate) fn field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_lowercase_agrees_with_a_case_insensitive_compare() {
        // Every byte a field value may hold (names are a subset).
        let allowed: Vec<u8> = (0..=255u8)
            .filter(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
            .collect();
        let needles: [&[u8]; 6] = [
            b"te",
            b"date",
            b"connection",
            b"content-length",
            b"x-forwarded-client-cert",
            b"x-proxy-response-flags",
        ];
        for needle in needles {
            assert!(is_lowercase(needle, needle));
            assert!(is_lowercase(&needle.to_ascii_uppercase(), needle));
            assert!(!is_lowercase(&needle[1..], needle));
            // Every allowed byte in every position: only the needle's byte or its capital
            // matches there.
            for position in 0..needle.len() {
                for &byte in &allowed {
                    let mut name = needle.to_vec();
                    name[position] = byte;
                    assert_eq!(
                        is_lowercase(&name, needle),
                        name.eq_ignore_ascii_case(needle),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(needle)
                    );
                }
            }
        }
    }

    fn parse(head: &'static [u8]) -> HeaderMap {
        let head = Bytes::from_static(head);
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut fields);
        assert!(request.parse(&head).unwrap().is_complete());
        let mut spans = Spans::new();
        for field in request.headers.iter() {
            spans.push(head.as_ptr(), field);
        }
        spans.to_map(&head, 2).unwrap()
    }

    #[test]
    fn common_names_are_the_constants_from_bytes_finds() {
        let common: [&[u8]; 12] = [
            b"Date",
            b"HOST",
            b"etag",
            b"Vary",
            b"Server",
            b"accept",
            b"User-Agent",
            b"Content-Type",
            b"Last-Modified",
            b"cache-control",
            b"Accept-Ranges",
            b"Content-Length",
        ];
        for name in common {
            let standard = HeaderName::from_bytes(name).unwrap();
            assert_eq!(common_name(name), Some(standard), "{name:?}");
        }
        // Same lengths and first letters, other names.
        let others: [&[u8]; 6] = [
            b"dat3",
            b"x-type",
            b"Content-Typo",
            b"cache-contro1",
            b"Content-Lengthy",
            b"x-user-age",
        ];
        for name in others {
            assert_eq!(common_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn a_recycled_map_comes_back_empty_and_lets_go_of_its_buffer() {
        std::thread::spawn(|| {
            let mut buffer = Bytes::from(b"x-old: 1\r\n".to_vec());
            let value = HeaderValue::from_maybe_shared(buffer.split_to(8)).unwrap();
            let mut old = parse(b"GET / HTTP/1.1\r\nhost: a\r\nx-old: 1\r\n\r\n");
            old.insert("x-shared", value);
            recycle(old);
            assert!(buffer.is_unique(), "the recycled map's values are dropped");

            let map = parse(b"GET / HTTP/1.1\r\nhost: b\r\n\r\n");
            assert_eq!(map.len(), 1);
            assert_eq!(map["host"], "b");
            assert_eq!(
                MAPS.with(|maps| maps.borrow().len()),
                0,
                "the kept map was used"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn lengths_are_plain_digits() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"0x5",
            b"5, 5",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_skip_empty_items() {
        let items: Vec<&[u8]> = tokens(b" gzip, ,chunked ").collect();
        assert_eq!(items, [&b"gzip"[..], b"chunked"]);
    }
}
