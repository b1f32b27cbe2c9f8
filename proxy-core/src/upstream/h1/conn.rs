use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, ReadBuf};

use crate::cluster::OpenConnection;
use crate::net::Stream;

/// Initial read buffer: a response head and a small body in one read. Grows for larger
/// messages; the allocation is reused for the connection's next response.
const READ_BUFFER: usize = 8 * 1024;

/// One HTTP/1.1 connection to an origin, owned by whichever request is using it (or by
/// its endpoint's pool while idle). Boxed where it travels, so moving it in and out of
/// the pool and response bodies moves a pointer, and its buffers are allocated once per
/// connection, not per request.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(super) io: Stream,
    /// Bytes read and not yet consumed: the next response head, or body bytes.
    pub(super) read_buf: BytesMut,
    /// The request head (and small body chunks) being written.
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
            read_buf: BytesMut::with_capacity(READ_BUFFER),
            write_buf: Vec::with_capacity(1024),
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

    /// Reads more bytes into `read_buf`, growing it by at least `want` bytes of room.
    /// `Ready(Ok(0))` is end of stream.
    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        crate::net::poll_read_into(&mut self.io, &mut self.read_buf, cx, want)
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
