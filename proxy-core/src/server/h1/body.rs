use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::conn::{Io, lock};
use crate::upstream::h1::{Decoded, Error};

/// The body of the request a native HTTP/1.1 connection is serving, read straight off
/// the connection when the proxy asks for it (so an upload streams upstream at the
/// pace both sides allow). Shares the connection with the task that will write the
/// response. Both usually run in that connection's task, so the lock is not contended;
/// an HTTP/2 upstream reads the body from a task of its own, possibly on another
/// worker, which is why the connection's watch hands socket wake-ups on to the body
/// (`Io::body_waker`).
#[derive(Debug)]
pub(crate) struct RequestStream {
    io: Arc<Mutex<Io>>,
    /// Set once the last frame was returned or reading failed: the connection no longer
    /// needs to be looked at for this body.
    done: bool,
    /// The connection's `body_serial` when this body's request started.
    serial: u32,
}

impl RequestStream {
    pub(super) fn new(io: Arc<Mutex<Io>>, serial: u32) -> Self {
        Self {
            io,
            done: false,
            serial,
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let io = lock(&self.io);
        if io.body_serial != self.serial {
            return SizeHint::with_exact(0);
        }
        io.body.size_hint()
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut io = lock(&self.io);
        let io = &mut *io;
        if io.body_serial != self.serial {
            self.done = true;
            return Poll::Ready(Some(Err(Error::RequestBodyAbandoned)));
        }
        // The client waits for this before it sends the body (RFC 9110 §10.1.1).
        if let Err(error) = ready!(io.poll_continue(cx)) {
            self.done = true;
            return Poll::Ready(Some(Err(error.into())));
        }
        loop {
            match io.body.decode(&mut io.read_buf) {
                Ok(Decoded::Frame(frame)) => {
                    self.done = io.body.is_done();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::End) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(error) => {
                    self.done = true;
                    io.body_failed = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            let want = io.body.read_hint();
            let filled = io.poll_fill(cx, want);
            if filled.is_pending() {
                io.wait_for_body_bytes(cx.waker());
                return Poll::Pending;
            }
            match ready!(filled) {
                Ok(0) => {
                    self.done = true;
                    io.body_failed = true;
                    return Poll::Ready(Some(Err(Error::ClientClosed)));
                }
                Ok(_) => {}
                Err(error) => {
                    self.done = true;
                    io.body_failed = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }
}
