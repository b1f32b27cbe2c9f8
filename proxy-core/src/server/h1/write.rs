//! Writing responses: the head (RFC 9112 §4), the body's framing (§6), and the `Date`
//! field.

use std::cell::RefCell;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{StatusCode, Version, response};
use http_body::Body;

use std::sync::Mutex;

use super::conn::{Client, Io, lock};
use crate::http::wire::{field, is_forwardable_trailer, parse_length};
use crate::http::{ResponseBody, ResponseBodyError};
use crate::upstream::h1::{Framing as UpstreamFraming, RawResponse};

/// Body chunks up to this size are copied behind the head (one write for a whole small
/// response); larger ones are written from their own buffer, beside the head.
pub(super) const COPY_LIMIT: usize = 8 * 1024;

/// What the request said that decides how its response is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    pub(super) version: Version,
    pub(super) is_head: bool,
    pub(super) accepts_trailers: bool,
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Nothing follows the head.
    None,
    Length(u64),
    Chunked,
    /// The body ends when the connection closes (an HTTP/1.0 client, unknown length).
    Close,
}

/// Appends the response head to `buf`; returns the body's framing and whether the
/// connection must close after the response (`close` in, possibly more out).
pub(super) fn head(
    buf: &mut Vec<u8>,
    head: &response::Parts,
    body: &ResponseBody,
    request: Answering,
    mut close: bool,
) -> (Framing, bool) {
    let status = head.status;
    status_line(buf, status, head.version, request);

    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let headers = &head.headers;
    let mut declared = None;
    let mut dated = false;
    for (name, value) in headers {
        dated |= name == header::DATE;
        if name == header::TRANSFER_ENCODING {
            // The body is framed here, whatever a filter or origin said.
            continue;
        }
        if name == header::CONTENT_LENGTH {
            if bodiless {
                continue;
            }
            declared = declared.or_else(|| parse_length(value.as_bytes()));
        }
        if name == header::CONNECTION
            && value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            close = true;
            continue;
        }
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        DATE.with_borrow_mut(|date| field(buf, b"date", date.now()));
    }

    let framing = if bodiless {
        Framing::None
    } else if request.is_head {
        // A HEAD response describes the GET one and carries no body; the length it
        // declares, if any, was written above.
        Framing::None
    } else if let Some(length) = declared {
        Framing::Length(length)
    } else if body.is_end_stream() {
        field(buf, b"content-length", b"0");
        Framing::None
    } else if let Some(length) = body.size_hint().exact() {
        let _ = write!(buf, "content-length: {length}\r\n");
        Framing::Length(length)
    } else if request.version == Version::HTTP_11 {
        field(buf, b"transfer-encoding", b"chunked");
        Framing::Chunked
    } else {
        close = true;
        Framing::Close
    };
    connection_field(buf, close, request.version);
    buf.extend_from_slice(b"\r\n");
    (framing, close)
}

/// An HTTP/1.0 client gets an HTTP/1.0 status line (as from hyper), whatever the origin
/// spoke; the reason phrase is the status's canonical one.
fn status_line(buf: &mut Vec<u8>, status: StatusCode, version: Version, request: Answering) {
    let http10 = version == Version::HTTP_10 || request.version == Version::HTTP_10;
    buf.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// `Connection` when it differs from the client's version's default.
fn connection_field(buf: &mut Vec<u8>, close: bool, version: Version) {
    match (close, version) {
        (true, Version::HTTP_11) => field(buf, b"connection", b"close"),
        (false, Version::HTTP_10) => field(buf, b"connection", b"keep-alive"),
        _ => {}
    }
}

/// [`head`] for a response the relay passes on field by field (see
/// `upstream::h1::relay`): the head `head` writes for that response once the
/// upstream codec and the exchange have made it a `Response` (hop-by-hop fields and the
/// proxy's response-flags field dropped, one `Content-Length`, `Date` added when
/// absent), minus the header map, and with names as the origin wrote them. The
/// connection closes after it when `close` says so: the relayed fields never include
/// `Connection`.
pub(super) fn relayed_head(
    buf: &mut Vec<u8>,
    response: &RawResponse<'_>,
    request: Answering,
    close: bool,
) -> Framing {
    let status = response.status;
    status_line(buf, status, response.version, request);

    copy_lines(buf, response);
    if !response.dated {
        DATE.with_borrow_mut(|date| field(buf, b"date", date.now()));
    }
    // The upstream codec only relays a bodiless response (HEAD, 204, 304) or one of a
    // declared length.
    let framing = match response.framing {
        UpstreamFraming::Length(length) => Framing::Length(length),
        _ => Framing::None,
    };
    connection_field(buf, close, request.version);
    buf.extend_from_slice(b"\r\n");
    framing
}

/// Copies the relayed fields' lines as they stand in the origin's head, consecutive
/// kept lines in one copy. Lines follow one another (`httparse` takes no folded
/// lines), so a line ends where the next begins, and the last where the blank line
/// begins: only its CRLF needs checking. A line ending in a bare LF (which `httparse`
/// also takes) is rebuilt with CRLF.
fn copy_lines(buf: &mut Vec<u8>, response: &RawResponse<'_>) {
    let head = response.head;
    let fields = response.fields;
    let base = head.as_ptr() as usize;
    // Where line `index` starts in the head; past the last field, where the blank line
    // (a CRLF) starts.
    let line_start = |index: usize| match fields.get(index) {
        Some(field) => (field.name.as_ptr() as usize).checked_sub(base),
        None => head.len().checked_sub(2),
    };
    let mut run: Option<(usize, usize)> = None;
    let mut start = line_start(0);
    for (index, relayed) in fields.iter().enumerate() {
        let end = line_start(index + 1);
        if response.relayed.contains(index) {
            let whole = start.zip(end).filter(|&(start, end)| {
                start + 2 <= end && head.get(end - 2..end) == Some(b"\r\n".as_slice())
            });
            match (whole, &mut run) {
                (Some((start, end)), Some((_, run_end))) if *run_end == start => *run_end = end,
                (Some(line), _) => {
                    flush(buf, head, run.replace(line));
                }
                (None, _) => {
                    flush(buf, head, run.take());
                    field(buf, relayed.name.as_bytes(), relayed.value);
                }
            }
        } else {
            flush(buf, head, run.take());
        }
        start = end;
    }
    flush(buf, head, run);
}

fn flush(buf: &mut Vec<u8>, head: &[u8], run: Option<(usize, usize)>) {
    if let Some(line) = run.and_then(|(start, end)| head.get(start..end)) {
        buf.extend_from_slice(line);
    }
}

/// Why a response could not be written whole; the connection is then closed.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("writing to the client: {0}")]
    Io(#[from] std::io::Error),
    #[error("response body: {0}")]
    Body(#[from] ResponseBodyError),
    #[error("response body length differs from its content-length")]
    Length,
    #[error("the client closed the connection")]
    ClientGone,
}

/// Streams a response (its head already in `io.write_buf`) to the client: body frames
/// that are ready join the head in one write; later ones follow as they come.
pub(super) struct BodyWriter {
    framing: Framing,
    accepts_trailers: bool,
    /// Bytes of `io.write_buf` already written.
    written: usize,
    /// A large chunk written from its own buffer, after `write_buf`.
    large: Option<Bytes>,
    /// Written after `large`: the CRLF closing a chunk.
    large_tail: &'static [u8],
    /// Boxed: rare, and a map inline would make the writer (which every connection's
    /// task holds room for) twice as large.
    trailers: Option<Box<HeaderMap>>,
    body_done: bool,
}

impl BodyWriter {
    pub(super) fn new(framing: Framing, request: Answering) -> Self {
        Self {
            framing,
            accepts_trailers: request.accepts_trailers,
            written: 0,
            large: None,
            large_tail: b"",
            trailers: None,
            body_done: framing == Framing::None,
        }
    }

    /// The connection is locked only around its own use, never while the body is
    /// polled: a body may be anything (a filter's, an upstream's), and must not find the
    /// connection held.
    pub(super) fn poll_write(
        &mut self,
        io: &Mutex<Io>,
        body: &mut ResponseBody,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            // Body first: bytes that are ready leave with the head, in one write.
            let mut body_pending = false;
            if !self.body_done && self.large.is_none() && self.queued(io) < COPY_LIMIT {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        match frame.into_data() {
                            Ok(data) => self.queue_data(&mut lock(io), data)?,
                            Err(frame) => self.trailers = frame.into_trailers().ok().map(Box::new),
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        self.finish(&mut lock(io))?;
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error.into())),
                    Poll::Pending => body_pending = true,
                }
            }
            let mut io = lock(io);
            if self.written < io.write_buf.len() || self.large.is_some() {
                match self.poll_flush_queued(&mut io, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error.into())),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.body_done {
                return io.poll_flush_stream(cx).map_err(WriteError::from);
            }
            if !body_pending {
                continue;
            }
            // Everything the proxy has is out; the body is waiting on its source.
            match io.poll_client(cx) {
                Client::Quiet => return Poll::Pending,
                Client::Sent => continue,
                Client::Gone => return Poll::Ready(Err(WriteError::ClientGone)),
            }
        }
    }

    /// Bytes queued and not yet written.
    fn queued(&self, io: &Mutex<Io>) -> usize {
        lock(io).write_buf.len() - self.written
    }

    fn queue_data(&mut self, io: &mut Io, data: Bytes) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        let buf = &mut io.write_buf;
        match &mut self.framing {
            Framing::None => return Ok(()),
            Framing::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(WriteError::Length)?;
            }
            Framing::Chunked => {
                let _ = write!(buf, "{:x}\r\n", data.len());
            }
            Framing::Close => {}
        }
        let chunk_tail: &'static [u8] = match self.framing {
            Framing::Chunked => b"\r\n",
            _ => b"",
        };
        if data.len() <= COPY_LIMIT {
            buf.extend_from_slice(&data);
            buf.extend_from_slice(chunk_tail);
        } else {
            self.large = Some(data);
            self.large_tail = chunk_tail;
        }
        Ok(())
    }

    fn finish(&mut self, io: &mut Io) -> Result<(), WriteError> {
        self.body_done = true;
        match self.framing {
            Framing::Length(0) | Framing::None | Framing::Close => Ok(()),
            Framing::Length(_) => Err(WriteError::Length),
            Framing::Chunked => {
                let buf = &mut io.write_buf;
                buf.extend_from_slice(b"0\r\n");
                if self.accepts_trailers {
                    let trailers = self.trailers.iter().flat_map(|trailers| trailers.iter());
                    for (name, value) in trailers.filter(|(name, _)| is_forwardable_trailer(name)) {
                        field(buf, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
                buf.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    fn poll_flush_queued(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let head_len = io.write_buf.len() - self.written;
            let large = self.large.as_deref().unwrap_or_default();
            if head_len == 0 && large.is_empty() {
                if !self.large_tail.is_empty() {
                    io.write_buf.clear();
                    self.written = 0;
                    io.write_buf.extend_from_slice(self.large_tail);
                    self.large_tail = b"";
                    self.large = None;
                    continue;
                }
                io.write_buf.clear();
                self.written = 0;
                self.large = None;
                return Poll::Ready(Ok(()));
            }
            let n = std::task::ready!(io.poll_write_two(cx, self.written, large))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(head_len);
            self.written += from_head;
            if let Some(large) = &mut self.large {
                let from_large = n - from_head;
                let _ = large.split_to(from_large);
                if large.is_empty() && self.large_tail.is_empty() {
                    self.large = None;
                }
            }
        }
    }
}

/// The `Date` field, formatted once a second per thread.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

thread_local! {
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: 0, text: [0; 29] }) };
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::*;
    use crate::http::wire::MAX_FIELDS;
    use crate::upstream::h1::{Peeked, peek_head};

    fn relayed(raw: &[u8], request: Answering, close: bool) -> (String, Framing) {
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let Ok(Peeked::Relayable(response)) = peek_head(raw, &mut storage, &http::Method::GET)
        else {
            panic!("not relayable: {raw:?}");
        };
        let mut buf = Vec::new();
        let framing = relayed_head(&mut buf, &response, request, close);
        (String::from_utf8(buf).unwrap(), framing)
    }

    const HTTP11: Answering = Answering {
        version: Version::HTTP_11,
        is_head: false,
        accepts_trailers: false,
    };

    #[test]
    fn relayed_heads_keep_their_lines_and_drop_the_hop_by_hop_ones() {
        let (head, framing) = relayed(
            b"HTTP/1.1 200 Fine\r\nServer: origin\r\nDate: today\r\nKeep-Alive: 5\r\n\
              Content-Length: 2\r\nX-Proxy-Response-Flags: UF\r\nX-Bare: lf\n\
              X-Spaced:  a b \r\nConnection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n\
              Accept-Charset: x\r\nEmpty:\r\nLast: 1\r\n\r\nok",
            HTTP11,
            true,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: origin\r\nDate: today\r\nContent-Length: 2\r\n\
             X-Bare: lf\r\nX-Spaced:  a b \r\nAccept-Charset: x\r\nEmpty:\r\nLast: 1\r\n\
             connection: close\r\n\r\n"
        );
        assert_eq!(framing, Framing::Length(2));
    }

    #[test]
    fn relayed_heads_drop_every_hop_by_hop_field() {
        // A `Connection` naming another field is left to the full path.
        let fields = [
            ("Connection", "keep-alive"),
            ("Keep-Alive", "5"),
            ("Proxy-Connection", "x"),
            ("TE", "x"),
            ("Upgrade", "x"),
        ];
        for (name, value) in fields {
            let lower = name.to_ascii_lowercase();
            assert!(crate::http::wire::is_hop_by_hop(lower.as_bytes()));
            let raw = format!(
                "HTTP/1.1 200 OK\r\nDate: d\r\n{name}: {value}\r\nContent-Length: 0\r\n\r\n"
            );
            let (head, _) = relayed(raw.as_bytes(), HTTP11, false);
            assert_eq!(
                head, "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\n\r\n",
                "{name}"
            );
        }
    }

    #[test]
    fn relayed_heads_ending_in_bare_line_feeds_get_crlf() {
        let (head, _) = relayed(
            b"HTTP/1.1 200 OK\nDate: d\nContent-Length: 0\nA: 1\r\nB: 2\n\n",
            HTTP11,
            false,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\nA: 1\r\nB: 2\r\n\r\n"
        );
    }

    #[test]
    fn relayed_heads_drop_fields_up_to_the_last_position() {
        // The hundredth field (the last a head may have) is told apart like the first.
        let mut raw = String::from("HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\n");
        for index in 2..99 {
            raw.push_str(&format!("X-{index}: {index}\r\n"));
        }
        raw.push_str("Keep-Alive: 5\r\n\r\n");
        let (head, _) = relayed(raw.as_bytes(), HTTP11, false);
        assert!(head.contains("\r\nX-98: 98\r\n"), "{head}");
        assert!(!head.contains("Keep-Alive"), "{head}");
        assert_eq!(head.matches("\r\nX-").count(), 97);
    }

    #[test]
    fn relayed_bodiless_responses_and_http_1_0_clients() {
        let http10 = Answering {
            version: Version::HTTP_10,
            ..HTTP11
        };
        let (head, framing) = relayed(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nETag: x\r\n\r\n",
            http10,
            false,
        );
        assert!(
            head.starts_with("HTTP/1.0 304 Not Modified\r\nETag: x\r\ndate: "),
            "{head}"
        );
        assert!(
            head.ends_with("\r\nconnection: keep-alive\r\n\r\n"),
            "{head}"
        );
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(framing, Framing::None);
    }
}
