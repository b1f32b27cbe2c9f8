use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Connection;

/// An origin connection after `101 Switching Protocols`: a plain byte stream. Bytes the
/// origin sent right behind its `101` head were read with it; they come out first.
#[derive(Debug)]
pub(crate) struct Upgraded {
    conn: Box<Connection>,
}

/// Hands an [`Upgraded`] connection from the cluster to the exchange that splices it,
/// through the response's extensions (which must be `Clone`).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl UpstreamUpgrade {
    pub(crate) fn new(conn: Box<Connection>) -> Self {
        Self(Arc::new(Mutex::new(Some(Upgraded { conn }))))
    }

    pub(crate) fn take(&self) -> Option<Upgraded> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut *self.get_mut().conn;
        if !conn.read_buf.is_empty() {
            let n = conn.read_buf.len().min(buf.remaining());
            buf.put_slice(&conn.read_buf[..n]);
            conn.read_buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut conn.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_shutdown(cx)
    }
}
