use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::decode::{Decoded, Decoder};
use super::exchange::Exchanged;
use super::{Connection, Error};
use crate::upstream::Pool;

/// A response body read straight off its connection. When the body is complete the
/// connection goes back to its endpoint's pool (if it may carry another request);
/// dropped earlier, it closes with the body, because unread response bytes would
/// corrupt the next exchange.
#[derive(Debug)]
pub(crate) struct ResponseStream {
    /// `None` once the body has ended.
    conn: Option<Box<Connection>>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Pool,
    /// An error held back for one poll; see [`Self::fail`].
    failed: Option<Error>,
}

impl ResponseStream {
    pub(crate) fn new(exchanged: Exchanged, pool: Pool) -> (http::response::Parts, Self) {
        let Exchanged {
            head,
            conn,
            decoder,
            keep_alive,
        } = exchanged;
        (head, Self::start(conn, decoder, keep_alive, pool))
    }

    pub(crate) fn start(
        conn: Box<Connection>,
        decoder: Decoder,
        keep_alive: bool,
        pool: Pool,
    ) -> Self {
        let mut stream = Self {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool,
            failed: None,
        };
        if stream.decoder.is_done() {
            stream.finish();
        }
        stream
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.failed.is_none()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.decoder.decode(&mut conn.read_buf) {
                Ok(Decoded::Frame(frame)) => {
                    if self.decoder.is_done() {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(error) => return self.fail(error, cx),
            }
            let want = self.decoder.read_hint();
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) if matches!(self.decoder, Decoder::UntilClose) => {
                    self.decoder = Decoder::Done;
                    self.keep_alive = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail(Error::Closed, cx),
                Ok(_) => {}
                Err(error) => return self.fail(error.into(), cx),
            }
        }
    }

    /// The body is complete: the connection goes back to the pool if nothing else is
    /// pending on it.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        release(conn, self.keep_alive, &self.pool);
    }

    /// Closes the connection and reports `error` on the next poll, not this one: the
    /// downstream codec flushes what it has buffered when a body is pending, so the
    /// client gets the head and the data that arrived intact before the connection is
    /// cut, whether the bad bytes came in the same read or a later one.
    fn fail<T>(&mut self, error: Error, cx: &mut Context<'_>) -> Poll<T> {
        self.conn = None;
        self.decoder = Decoder::Done;
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A connection whose response has been read whole: back to `pool` if it may carry
/// another request, closed otherwise. Bytes past the end of the response were never
/// asked for: the origin is confused or hostile, and the connection is not reused.
pub(super) fn release(conn: Box<Connection>, keep_alive: bool, pool: &Pool) {
    if keep_alive && conn.read_buf.is_empty() {
        pool.put(conn);
    }
}
