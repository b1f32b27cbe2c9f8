//! The upstream half of the relay path (`server::h1::relay`): the request head goes out
//! as the relay encoded it, and the response head is parsed in place and, when the
//! relay can pass it on field by field, handed to the downstream writer without a
//! header map. A head that needs the full rules is left where it is for
//! [`generic_head`], which reads it exactly as [`send`](super::send) would.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf as _;
use http::{Method, StatusCode};
use tokio::io::AsyncWrite;

use super::decode::{self, Decoder, Framing, Peeked, RawResponse};
use super::exchange::Exchanged;
use super::{Connection, Error, ResponseStream};
use crate::http::wire::MAX_FIELDS;
use crate::net::Stream;
use crate::upstream::Pool;

/// How far one relayed request has gone out.
#[derive(Debug, Default)]
pub(crate) struct Sending {
    written: usize,
    write_failed: bool,
    /// All of it written, and flushed (TLS buffers records until flushed).
    done: bool,
}

impl Sending {
    /// The whole request reached the connection.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

/// How a relayed exchange's response head was taken.
#[derive(Debug)]
pub(crate) enum Answer {
    /// `write_head` wrote it downstream and it was consumed; the body follows.
    Relayed {
        status: StatusCode,
        framing: Framing,
        keep_alive: bool,
    },
    /// It needs the full rules: still at the front of the read buffer, for
    /// [`generic_head`].
    Generic,
}

/// Marks `conn` as carrying one more request (as [`send`](super::send) does).
pub(crate) fn begin(conn: &mut Connection) {
    conn.requests += 1;
}

/// Writes the request head in `buf` (from `sending`'s offset), then reads until a final
/// response head is complete (interim responses are skipped). A relayable head is
/// handed to `write_head` with `buf`, emptied: the request is all written by then, and
/// the downstream head goes in the same buffer.
pub(crate) fn poll_exchange(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
    sending: &mut Sending,
    method: &Method,
    write_head: impl FnOnce(&mut Vec<u8>, &RawResponse<'_>),
) -> Poll<Result<Answer, Error>> {
    while sending.written < buf.len() {
        match ready!(Pin::new(&mut conn.io).poll_write(cx, &buf[sending.written..])) {
            Ok(0) => {
                sending.write_failed = true;
                return Poll::Ready(Err(
                    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                ));
            }
            Ok(n) => sending.written += n,
            Err(error) => {
                sending.write_failed = true;
                return Poll::Ready(Err(error.into()));
            }
        }
    }
    if !sending.done {
        // TLS buffers records: they must reach the socket before the response is
        // awaited (a flush that waits is taken up again at the next poll).
        if matches!(conn.io, Stream::TlsClient(_))
            && let Err(error) = ready!(Pin::new(&mut conn.io).poll_flush(cx))
        {
            sending.write_failed = true;
            return Poll::Ready(Err(error.into()));
        }
        sending.done = true;
    }
    loop {
        if !conn.read_buf.is_empty() {
            let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
            match decode::peek_head(&conn.read_buf, &mut storage, method)? {
                Peeked::Partial => {}
                Peeked::Interim(len) => {
                    conn.read_buf.advance(len);
                    continue;
                }
                Peeked::Generic => return Poll::Ready(Ok(Answer::Generic)),
                Peeked::Relayable(raw) => {
                    buf.clear();
                    write_head(buf, &raw);
                    let answer = Answer::Relayed {
                        status: raw.status,
                        framing: raw.framing,
                        keep_alive: raw.keep_alive,
                    };
                    let len = raw.len;
                    conn.read_buf.advance(len);
                    return Poll::Ready(Ok(answer));
                }
            }
        }
        match ready!(conn.poll_fill_head(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => {}
            Err(error) => return Poll::Ready(Err(error.into())),
        }
    }
}

/// Whether a failed relayed request may go out again on another connection, by the rule
/// [`send`](super::send) applies: a reused connection that yielded no response byte, and
/// the origin cannot have acted on the request (the write failed) or acting twice is
/// harmless (an idempotent method). A relayed request has no body to have touched.
pub(crate) fn is_stale(conn: &Connection, sending: &Sending, method: &Method) -> bool {
    conn.is_reused() && conn.read_buf.is_empty() && (sending.write_failed || method.is_idempotent())
}

/// The head [`poll_exchange`] left as [`Answer::Generic`], read by the full rules.
pub(crate) fn generic_head(mut conn: Box<Connection>, method: &Method) -> Result<Exchanged, Error> {
    let head = decode::parse_head(&mut conn.read_buf, method)?.ok_or(Error::Closed)?;
    Ok(Exchanged::new(head, conn))
}

/// The body of a relayed response, read off `conn` as [`ResponseStream`] reads any.
pub(crate) fn body(
    conn: Box<Connection>,
    framing: Framing,
    keep_alive: bool,
    pool: Pool,
) -> ResponseStream {
    ResponseStream::start(conn, Decoder::new(framing), keep_alive, pool, None)
}

/// The whole body of a relayed response when it came with its head and is at most
/// `limit` bytes (or there is none): appended to `out`, and the connection released as
/// at the end of any body. Otherwise the connection is handed back, for [`body`].
///
/// A small response then leaves in one write with no body stream at all: most
/// responses to bodiless requests are a few hundred bytes that arrive in one read.
pub(crate) fn take_whole_body(
    conn: Box<Connection>,
    framing: Framing,
    keep_alive: bool,
    pool: &Pool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), Box<Connection>> {
    let length = match framing {
        Framing::Empty => 0,
        Framing::Length(length) if length <= limit as u64 => length as usize,
        _ => return Err(conn),
    };
    let mut conn = conn;
    if conn.read_buf.len() < length {
        return Err(conn);
    }
    out.extend_from_slice(&conn.read_buf[..length]);
    conn.read_buf.advance(length);
    super::body::release(conn, keep_alive, pool);
    Ok(())
}
