//! One request and its response head over a connection the calling task owns.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, response};
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
    /// The rest of a request whose response began before it was sent whole: it goes
    /// on while the response body is read.
    pub(super) upload: Option<Box<Upload>>,
}

/// The part of a request still to be written after the origin has answered: an origin
/// may answer at once and go on reading (a streaming echo, say), and RFC 9112 asks a
/// client to stop sending only when the response says the connection is closing.
#[derive(Debug)]
pub(crate) struct Upload {
    body: RequestBody,
    encoder: Encoder,
    progress: Progress,
}

impl Upload {
    /// Writes what the request body has ready: `Ready(Ok(()))` once all of it is out.
    pub(super) fn poll(
        &mut self,
        conn: &mut Connection,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        poll_write_request(
            conn,
            cx,
            &mut self.body,
            &mut self.encoder,
            &mut self.progress,
        )
    }
}

/// How far the request has gone out.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes of `write_buf` already written.
    written: usize,
    body_done: bool,
    /// A frame was taken from the request body: the request cannot be sent again.
    body_touched: bool,
    /// Response bytes arrived before the whole request was sent: the origin may have
    /// acted on it, so it is not sent again.
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
    let method = &parts.method;
    let sent =
        poll_fn(|cx| poll_send(&mut conn, cx, body, &mut encoder, &mut progress, method)).await;
    let early = match sent {
        Ok(early) => early,
        Err(error) => return Err(classify(&conn, &progress, parts, error)),
    };
    if let Some(head) = early {
        // The origin answered before the whole request went out. Unless it says it is
        // closing (or switching protocols), the rest of the request follows while the
        // response is read, and the connection is reused only if both end whole.
        let closing = !head.keep_alive || head.parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let mut exchanged = Exchanged::new(*head, conn);
        if !closing {
            exchanged.upload = Some(Box::new(Upload {
                body: std::mem::replace(body, RequestBody::empty()),
                encoder,
                progress,
            }));
        }
        return Ok(exchanged);
    }
    let mut awaiting = AwaitingHead::new(conn, method, pool, in_flight);
    let head = poll_fn(|cx| awaiting.poll_head(cx)).await;
    match awaiting.into_conn() {
        Some(taken) => conn = taken,
        None => return Err(SendError::Failed(Error::Closed)),
    }
    let head = match head {
        Ok(head) => head,
        Err(error) => return Err(classify(&conn, &progress, parts, error)),
    };
    // An interim response that came while the request went out leaves the connection
    // as clean as none: the whole request went out before the final head.
    Ok(Exchanged::new(head, conn))
}

impl Exchanged {
    /// After a `101` the connection is the tunnel's: no body, not reused.
    pub(super) fn new(head: decode::Head, conn: Box<Connection>) -> Self {
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
            keep_alive: head.keep_alive && !switching,
            upload: None,
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

/// Writes the request and watches the connection meanwhile: `Ready(Ok(Some(head)))` if
/// a final response head arrived before the request was all written, `Ready(Ok(None))`
/// once it was.
fn poll_send(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    body: &mut RequestBody,
    encoder: &mut Encoder,
    progress: &mut Progress,
    method: &Method,
) -> Poll<Result<Option<Box<decode::Head>>, Error>> {
    loop {
        if poll_write_request(conn, cx, body, encoder, progress)?.is_ready() {
            return Poll::Ready(Ok(None));
        }
        // Waiting on the socket or the client: meanwhile the origin may answer (before
        // the upload ends, or with an interim response) or close.
        match ready!(conn.poll_fill_head(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => {
                progress.early = true;
                if let Some(head) = final_head(conn, method)? {
                    // Boxed: the common case (no early answer) then moves a pointer's
                    // worth, not a whole head, out of every poll.
                    return Poll::Ready(Ok(Some(Box::new(head))));
                }
            }
            Err(error) => return Poll::Ready(Err(error.into())),
        }
    }
}

/// Writes what the request body has ready after the head: `Ready(Ok(()))` once the
/// whole request is written, `Pending` while the body or the socket has nothing more.
fn poll_write_request(
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
        return Poll::Pending;
    }
}

/// The final response head in what `conn` has read, interim (1xx) ones other than
/// `101 Switching Protocols` skipped; `None` while it is incomplete.
fn final_head(conn: &mut Connection, method: &Method) -> Result<Option<decode::Head>, Error> {
    while !conn.read_buf.is_empty() {
        let Some(head) = decode::parse_head(&mut conn.read_buf, method)? else {
            return Ok(None);
        };
        let interim = head.parts.status.is_informational()
            && head.parts.status != StatusCode::SWITCHING_PROTOCOLS;
        if !interim {
            return Ok(Some(head));
        }
    }
    Ok(None)
}

pub(super) fn poll_head(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    method: &Method,
) -> Poll<Result<decode::Head, Error>> {
    loop {
        if let Some(head) = final_head(conn, method)? {
            return Poll::Ready(Ok(head));
        }
        match ready!(conn.poll_fill_head(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => {}
            Err(error) => return Poll::Ready(Err(error.into())),
        }
    }
}
