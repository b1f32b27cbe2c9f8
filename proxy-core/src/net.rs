//! Byte streams over TCP or Unix sockets, with or without TLS, for both sides of the proxy.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected transport. An enum rather than a boxed trait object: one HTTP connection
/// type serves every transport without a virtual call per read or write.
///
/// The TLS variants wrap a plain stream. They are boxed because a rustls connection is
/// large; plaintext connections keep the enum small.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS terminated by this proxy (a downstream connection).
    TlsServer(Box<tokio_rustls::server::TlsStream<Stream>>),
    /// TLS originated by this proxy (an upstream connection).
    TlsClient(Box<tokio_rustls::client::TlsStream<Stream>>),
}

impl Stream {
    /// The TCP socket underneath, through any TLS layer; `None` over a Unix socket.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(stream) => Some(stream),
            Stream::Unix(_) => None,
            Stream::TlsServer(tls) => tls.get_ref().0.tcp(),
            Stream::TlsClient(tls) => tls.get_ref().0.tcp(),
        }
    }

    /// Ready once a read would make progress, so a caller can wait for a peer without
    /// holding a buffer. A TLS stream reports ready at once: its records may already hold
    /// plaintext, which only a read can tell.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(stream) => stream.poll_read_ready(cx),
            Stream::Unix(stream) => stream.poll_read_ready(cx),
            Stream::TlsServer(_) | Stream::TlsClient(_) => Poll::Ready(Ok(())),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::TlsServer($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::TlsClient($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

/// A plain socket's write, tried before the readiness poll: a socket nearly always has
/// room, and `try_write` checks the same readiness (clearing it on `WouldBlock`) without
/// the poll's cooperative-budget and waker bookkeeping (≈ 100 instructions per write).
/// Only a write that would block polls, which registers the waker.
macro_rules! write_now {
    ($self:ident, $cx:ident, $try_write:ident($arg:expr), $poll_write:ident) => {
        match $self.get_mut() {
            Stream::Tcp(s) => match s.$try_write($arg) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    Pin::new(s).$poll_write($cx, $arg)
                }
                written => Poll::Ready(written),
            },
            Stream::Unix(s) => match s.$try_write($arg) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    Pin::new(s).$poll_write($cx, $arg)
                }
                written => Poll::Ready(written),
            },
            Stream::TlsServer(s) => Pin::new(s).$poll_write($cx, $arg),
            Stream::TlsClient(s) => Pin::new(s).$poll_write($cx, $arg),
        }
    };
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        write_now!(self, cx, try_write(buf), poll_write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        write_now!(self, cx, try_write_vectored(bufs), poll_write_vectored)
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::TlsServer(s) => s.is_write_vectored(),
            Stream::TlsClient(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Reads from `stream` into `buf`, first making room for at least `want` more bytes.
/// `Ready(Ok(0))` is end of stream. The buffer's allocation is reused once the bytes
/// split off it earlier have been dropped.
pub(crate) fn poll_read_into(
    stream: &mut Stream,
    buf: &mut bytes::BytesMut,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < want {
        buf.reserve(want);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

/// A stream with bytes already read off it put back in front: what the server read while
/// telling HTTP/2 from HTTP/1.1, or what a client sent behind an upgrade request.
///
/// `G` is held for as long as the stream lives: an upstream connection's accounting guard,
/// released when the tunnel closes.
#[derive(Debug)]
pub(crate) struct Rewound<G = ()> {
    prefix: bytes::BytesMut,
    stream: Stream,
    _guard: G,
}

impl Rewound {
    pub(crate) fn new(prefix: bytes::BytesMut, stream: Stream) -> Self {
        Self::guarded(prefix, stream, ())
    }
}

impl<G> Rewound<G> {
    pub(crate) fn guarded(prefix: bytes::BytesMut, stream: Stream, guard: G) -> Self {
        Self {
            prefix,
            stream,
            _guard: guard,
        }
    }
}

impl<G: Unpin> AsyncRead for Rewound<G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // Emptied, it would still hold its whole block (a read buffer, 8 KiB or
                // more) for as long as the connection lives: every HTTP/2 connection
                // and both sides of every tunnel.
                this.prefix = bytes::BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<G: Unpin> AsyncWrite for Rewound<G> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn a_rewound_stream_frees_its_prefix_block_once_it_is_read() {
        let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
        let mut prefix = bytes::BytesMut::with_capacity(8192);
        prefix.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut rewound = Rewound::new(prefix, Stream::Unix(ours));
        let mut read = [0u8; 10];
        rewound.read_exact(&mut read).await.unwrap();
        assert!(
            rewound.prefix.capacity() > 0,
            "a prefix partly read is kept"
        );
        let mut rest = [0u8; 14];
        rewound.read_exact(&mut rest).await.unwrap();
        assert_eq!(
            [&read[..], &rest[..]].concat(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        );
        assert_eq!(rewound.prefix.capacity(), 0, "the emptied block is kept");
    }
}
