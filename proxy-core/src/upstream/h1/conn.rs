use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, ReadBuf};

use crate::cluster::OpenConnection;
use crate::lent::Reading;
use crate::net::Stream;

/// The read buffer a connection keeps between its exchanges: a response head and a
/// small body in one read. A larger one, grown for a larger body, is lent by the
/// worker instead (see [`Connection::read_buf`]).
const READ_BUFFER: usize = 8 * 1024;
/// The least room a connection reads a response into: a head and a small body are a
/// few hundred bytes. Asking for a whole [`READ_BUFFER`] each time would make a reader
/// whose block is still shared replace it after one response instead of filling it.
const MIN_READ_ROOM: usize = 2 * 1024;
/// The most read buffer room a connection asks for by habit (a body's reads ask for up
/// to 64 KiB of what remains of it anyway).
const MAX_READ_SIZE: usize = 64 * 1024;

/// One HTTP/1.1 connection to an origin, owned by whichever request is using it (or by
/// its endpoint's pool while idle). Boxed where it travels, so moving it in and out of
/// the pool and response bodies moves a pointer, and its buffers are allocated once per
/// connection, not per request.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(super) io: Stream,
    /// Bytes read and not yet consumed: the next response head, or body bytes.
    ///
    /// A connection whose responses fit [`READ_BUFFER`] keeps its buffer while the
    /// block is its own: lending it costs ≈ 250 instructions per request and would save
    /// little. It goes back to the worker (`crate::lent`) once consumed if it was grown
    /// for larger responses — 50 connections relaying 16 KiB responses then hold one or
    /// two such buffers between them instead of 50 (≈ 1.2 MB less under that load) —
    /// or if its block is still shared by what was read into it: the field values and
    /// body chunks of a response relayed to an HTTP/2 client wait in that connection's
    /// queues until its next write. The next reader then fills the block's free end
    /// rather than every idle origin connection pinning a block of its own (500 of them
    /// under `h2load -m 10`, 4 MB). The connection borrows a buffer again when the
    /// origin's next bytes arrive.
    pub(super) read_buf: BytesMut,
    /// `read_buf` is the connection's (not given back).
    pub(super) has_buffer: bool,
    /// Room to read the next response into: as much as the last burst of reads took
    /// (at least [`MIN_READ_ROOM`], at most [`MAX_READ_SIZE`]), so a 16 KiB response is
    /// read in one system call rather than into a head-sized buffer and then again into
    /// another (which read such responses in two halves, each copied downstream: +25 %
    /// instructions).
    pub(super) read_size: usize,
    /// Bytes read since the read buffer was last emptied waiting for the origin.
    read_run: usize,
    /// The request head (and small body chunks) being written. Allocated by the first
    /// request that needs it: relayed requests are written from the client connection's
    /// buffer, and their connections never do. (Lending it per request instead saved
    /// 0.2 MB under `h2load -m 10` for 0.1k instructions a request: not kept.)
    pub(super) write_buf: Vec<u8>,
    /// Requests sent on this connection; 1 means new.
    pub(super) requests: u64,
    /// The connection's `max_connections` slot and its `upstream_cx_*` gauges.
    _open: OpenConnection,
}

impl Connection {
    pub(crate) fn new(io: Stream, open: OpenConnection) -> Box<Self> {
        Box::new(Self {
            io,
            read_buf: BytesMut::new(),
            has_buffer: false,
            read_size: MIN_READ_ROOM,
            read_run: 0,
            write_buf: Vec::new(),
            requests: 0,
            _open: open,
        })
    }

    /// The connection as a plain stream after `101 Switching Protocols`.
    pub(super) fn into_upgraded(self) -> super::upgraded::Upgraded {
        let Connection {
            io,
            read_buf,
            _open,
            ..
        } = self;
        crate::net::Rewound::guarded(read_buf, io, _open)
    }

    /// Whether the connection has carried no request yet.
    pub(crate) fn is_fresh(&self) -> bool {
        self.requests == 0
    }

    /// During an exchange: whether the connection carried a request before this one.
    pub(super) fn is_reused(&self) -> bool {
        self.requests > 1
    }

    /// Watches an idle connection: `waker` is woken when it turns readable, which for a
    /// connection nobody sent a request on means the origin closed it (or sent bytes
    /// nobody asked for). Returns `false` if that has already happened.
    ///
    /// Answered from the runtime's readiness flag when it is clear (no system call);
    /// when set, a peek (or, on a Unix socket, a one-byte read: any byte there is
    /// garbage) settles it and re-arms the readiness.
    pub(crate) fn park(&self, waker: &Waker) -> bool {
        let mut cx = Context::from_waker(waker);
        let mut byte = [0u8; 1];
        match &self.io {
            Stream::Tcp(tcp) => tcp
                .poll_peek(&mut cx, &mut ReadBuf::new(&mut byte))
                .is_pending(),
            Stream::Unix(unix) => park_unix(unix, &mut cx),
            // Peeking under TLS would not consume TLS records, so it is safe there too.
            Stream::TlsClient(tls) => match tls.get_ref().0 {
                Stream::Tcp(tcp) => tcp
                    .poll_peek(&mut cx, &mut ReadBuf::new(&mut byte))
                    .is_pending(),
                // No peek on a Unix socket: a readable one is not trusted.
                Stream::Unix(unix) => unix.poll_read_ready(&mut cx).is_pending(),
                _ => false,
            },
            Stream::TlsServer(_) => false,
        }
    }

    /// Reads more of a response head (and what follows it) into `read_buf`, with as
    /// much room as the connection's last responses took.
    pub(super) fn poll_fill_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.poll_fill(cx, self.read_size)
    }

    /// Reads more bytes into `read_buf`, growing it by at least `want` bytes of room.
    /// `Ready(Ok(0))` is end of stream.
    ///
    /// A connection that gave its buffer back waits for the origin without one, and
    /// borrows one only when there is something to read.
    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        if !self.has_buffer {
            ready!(self.io.poll_read_ready(cx))?;
            let room = want.max(self.read_size);
            self.read_buf = crate::lent::read_buffer(Reading::Responses, room, READ_BUFFER);
            self.has_buffer = true;
        }
        let read = crate::net::poll_read_into(&mut self.io, &mut self.read_buf, cx, want);
        match read {
            Poll::Ready(Ok(n)) => self.read_run += n,
            Poll::Pending => self.lend_back_read_buf(),
            Poll::Ready(Err(_)) => {}
        }
        read
    }

    /// Once everything read is consumed: keeps the read buffer if it is a head-sized
    /// block of the connection's own, else gives it back to the worker (see
    /// [`Connection::read_buf`]).
    pub(super) fn lend_back_read_buf(&mut self) {
        if !self.has_buffer || !self.read_buf.is_empty() {
            return;
        }
        let size = self.read_run.clamp(MIN_READ_ROOM, MAX_READ_SIZE);
        // Whether the buffer may have grown: asking the block costs as much again.
        let grown = size.max(self.read_size) > READ_BUFFER;
        self.read_size = size;
        self.read_run = 0;
        // `try_reclaim` succeeds without allocating only when nothing else shares the
        // block.
        let keep = if grown {
            // A grown block still shared by a body chunk on its way downstream is
            // usually free again by this connection's next read: given to another
            // reader now, it would have to be replaced by a new allocation.
            !self.read_buf.try_reclaim(READ_BUFFER + 1)
        } else {
            // A head-sized block of its own.
            self.read_buf.try_reclaim(READ_BUFFER) && self.read_buf.capacity() <= READ_BUFFER
        };
        if keep {
            return;
        }
        self.has_buffer = false;
        let buffer = std::mem::take(&mut self.read_buf);
        crate::lent::give_read_buffer(Reading::Responses, buffer);
    }

    /// Writes `write_buf[*written..]`, advancing `written`; `Ready(Ok(()))` once all of it
    /// is written.
    pub(super) fn poll_flush_buf(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *written < self.write_buf.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.io).poll_write(cx, &self.write_buf[*written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        // TLS buffers records: they must reach the socket before the response is awaited.
        if matches!(self.io, Stream::TlsClient(_)) {
            std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

/// [`Connection::park`] for a plain Unix socket: readiness that a non-blocking read
/// finds empty was stale, and is re-armed by that read.
fn park_unix(unix: &tokio::net::UnixStream, cx: &mut Context<'_>) -> bool {
    for _ in 0..2 {
        match unix.poll_read_ready(cx) {
            Poll::Pending => return true,
            Poll::Ready(Err(_)) => return false,
            Poll::Ready(Ok(())) => match unix.try_read(&mut [0]) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                _ => return false,
            },
        }
    }
    false
}
