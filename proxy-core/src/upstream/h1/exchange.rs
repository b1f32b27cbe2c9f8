//! One request and its response head over a connection the calling task owns.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{HeaderMap, StatusCode, response};
use http_body::Body;

use super::abandoned::AwaitingHead;
use super::decode::{self, Decoder, Framing};
use super::encode::{self, Encoder};
use super::{Connection, Error};
use crate::cluster::InFlight;
use crate::http::RequestBody;
use crate::upstream::Pool;

/// Request body bytes buffered before they are written: small chunks coalesce with the
/// head into one write, large ones are written as they come.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Why [`send`] failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// A reused connection turned out closed before the origin saw anything it could
    /// have acted on, and the request body was not touched: the same request can go out
    /// again on another connection.
    Stale(Error),
    Failed(Error),
}

impl SendError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            SendError::Stale(error) | SendError::Failed(error) => error,
        }
    }
}

/// A response head and what is needed to read its body.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub(crate) head: response::Parts,
    pub(crate) conn: Box<Connection>,
    pub(super) decoder: Decoder,
    /// Whether the connection may carry another request once the body is read.
    pub(super) keep_alive: bool,
}

/// How far the request has gone out.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes of `write_buf` already written.
    written: usize,
    body_done: bool,
    /// A frame was taken from the request body: the request cannot be sent again.
    body_touched: bool,
    /// The origin answered before the whole request was sent.
    early: bool,
    /// A write failed: the origin never took the request.
    write_failed: bool,
    trailers: Option<HeaderMap>,
}

/// Sends `parts` and `body` on `conn` and reads the response head, skipping interim
/// (1xx) responses other than `101 Switching Protocols`. The request body streams out
/// while the connection is watched, so an origin that answers early (a 413, say) is
/// heard without waiting for an upload it will not read.
///
/// Dropped while the head is awaited (the client gave up), the exchange finishes in the
/// background, `conn` goes back to `pool`, and the request's `in_flight` is released
/// after that (`abandoned.rs`); otherwise `in_flight` is left as it is.
pub(crate) async fn send(
    mut conn: Box<Connection>,
    parts: &Parts,
    body: &mut RequestBody,
    pool: &Pool,
    in_flight: &mut Option<InFlight>,
) -> Result<Exchanged, SendError> {
    conn.requests += 1;
    conn.write_buf.clear();
    let body_is_empty = body.is_end_stream();
    let mut encoder = encode::head(
        &mut conn.write_buf,
        parts,
        body_is_empty,
        body.size_hint().exact(),
    );
    let mut progress = Progress {
        body_done: body_is_empty || encoder == Encoder::Empty,
        ..Progress::default()
    };
    let sent = poll_fn(|cx| poll_send(&mut conn, cx, body, &mut encoder, &mut progress)).await;
    if let Err(error) = sent {
        return Err(classify(&conn, &progress, parts, error));
    }
    let method = &parts.method;
    let head = if progress.early {
        // The origin answered before the whole request went out: the connection carries
        // no other request, so nothing is kept if this one is given up.
        poll_fn(|cx| poll_head(&mut conn, cx, method)).await
    } else {
        let mut awaiting = AwaitingHead::new(conn, method, pool, in_flight);
        let head = poll_fn(|cx| awaiting.poll_head(cx)).await;
        match awaiting.into_conn() {
            Some(taken) => conn = taken,
            None => return Err(SendError::Failed(Error::Closed)),
        }
        head
    };
    let head = match head {
        Ok(head) => head,
        Err(error) => return Err(classify(&conn, &progress, parts, error)),
    };
    Ok(Exchanged::new(head, conn, progress.early))
}

impl Exchanged {
    /// After a `101` the connection is the tunnel's: no body, not reused. An origin that
    /// answered `early` (before the whole request was sent) leaves the connection in no
    /// state to carry another request.
    pub(super) fn new(head: decode::Head, conn: Box<Connection>, early: bool) -> Self {
        let switching = head.parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let framing = if switching {
            Framing::Empty
        } else {
            head.framing
        };
        Exchanged {
            head: head.parts,
            conn,
            decoder: Decoder::new(framing),
            keep_alive: head.keep_alive && !early && !switching,
        }
    }
}

/// Whether a failure may be retried on another connection: only on a reused connection
/// that yielded no response byte, with the body untouched, and only if the origin
/// cannot have acted on the request (a write failed) or acting twice is harmless (an
/// idempotent method).
fn classify(conn: &Connection, progress: &Progress, parts: &Parts, error: Error) -> SendError {
    let silent = conn.read_buf.is_empty() && !progress.early;
    let repeatable = progress.write_failed || parts.method.is_idempotent();
    if conn.is_reused() && silent && !progress.body_touched && repeatable {
        SendError::Stale(error)
    } else {
        SendError::Failed(error)
    }
}

fn poll_send(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    body: &mut RequestBody,
    encoder: &mut Encoder,
    progress: &mut Progress,
) -> Poll<Result<(), Error>> {
    loop {
        // Body first: a chunk that is ready goes out in the same write as the head, and
        // a body that fails at once leaves nothing half-sent on the connection.
        let unwritten = conn.write_buf.len() - progress.written;
        if !progress.body_done && unwritten < WRITE_HIGH_WATER {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    progress.body_touched = true;
                    match frame.into_data() {
                        Ok(data) => encoder.data(&mut conn.write_buf, &data)?,
                        Err(frame) => progress.trailers = frame.into_trailers().ok(),
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    encoder.end(&mut conn.write_buf, progress.trailers.as_ref())?;
                    progress.body_done = true;
                    continue;
                }
                Poll::Ready(Some(Err(error))) => {
                    progress.body_touched = true;
                    return Poll::Ready(Err(Error::RequestBody(Box::new(error))));
                }
                Poll::Pending => {}
            }
        }
        let mut wrote_all = progress.written == conn.write_buf.len();
        if !wrote_all {
            match conn.poll_flush_buf(cx, &mut progress.written) {
                Poll::Ready(Ok(())) => wrote_all = true,
                Poll::Ready(Err(error)) => {
                    progress.write_failed = true;
                    return Poll::Ready(Err(error.into()));
                }
                Poll::Pending => {}
            }
            if wrote_all {
                conn.write_buf.clear();
                progress.written = 0;
                if !progress.body_done {
                    continue;
                }
            }
        }
        if progress.body_done && wrote_all {
            return Poll::Ready(Ok(()));
        }
        // Waiting on the socket or the client: meanwhile, anything from the origin is
        // an early response (or a close) that ends the upload.
        match ready!(conn.poll_fill_head(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => {
                progress.early = true;
                return Poll::Ready(Ok(()));
            }
            Err(error) => return Poll::Ready(Err(error.into())),
        }
    }
}

pub(super) fn poll_head(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    method: &http::Method,
) -> Poll<Result<decode::Head, Error>> {
    loop {
        if !conn.read_buf.is_empty() {
            if let Some(head) = decode::parse_head(&mut conn.read_buf, method)? {
                let interim = head.parts.status.is_informational()
                    && head.parts.status != StatusCode::SWITCHING_PROTOCOLS;
                if !interim {
                    return Poll::Ready(Ok(head));
                }
                continue;
            }
        }
        match ready!(conn.poll_fill_head(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => {}
            Err(error) => return Poll::Ready(Err(error.into())),
        }
    }
}
