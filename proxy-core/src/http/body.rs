//! Body types at the seam between the connection layer and the proxy layer.
//!
//! Both are enums over the concrete sources a body can have, so bodies stream through
//! without boxing and a future HTTP/1.1 fast path can add a variant without touching
//! routing or clusters.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::upstream::PoolReturn;

/// A request body on its way upstream.
#[derive(Debug)]
pub struct RequestBody {
    /// `None` for a body known to be empty, such as a replayed bodiless request.
    inner: Option<Incoming>,
    /// Told when the last byte has been handed to the upstream connection: the route
    /// timeout starts then, as Envoy's does, so a slow upload is not a slow upstream.
    on_end: Option<oneshot::Sender<()>>,
}

impl RequestBody {
    /// Wraps `inner`. When it has content, also returns a receiver that completes once
    /// the body has been fully read (or is dropped unfinished); `None` for an empty body,
    /// which needs no allocation.
    pub(crate) fn new(inner: Incoming) -> (Self, Option<oneshot::Receiver<()>>) {
        if inner.is_end_stream() {
            return (
                Self {
                    inner: Some(inner),
                    on_end: None,
                },
                None,
            );
        }
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner: Some(inner),
                on_end: Some(tx),
            },
            Some(rx),
        )
    }

    /// A body with no bytes.
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            on_end: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        if frame.is_none() || inner.is_end_stream() {
            if let Some(done) = self.on_end.take() {
                let _ = done.send(());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// A response body on its way downstream.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        on_end: Option<PoolReturn>,
    },
}

impl ResponseBody {
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self {
                kind: Kind::Full(Some(bytes)),
            }
        }
    }

    /// Streams `body` from upstream. `on_end` (an HTTP/1.1 connection) goes back to its
    /// pool as soon as the body is complete: immediately if it is already empty.
    pub(crate) fn upstream(body: Incoming, on_end: Option<PoolReturn>) -> Self {
        if body.is_end_stream() {
            if let Some(conn) = on_end {
                conn.release();
            }
            return Self {
                kind: Kind::Upstream { body, on_end: None },
            };
        }
        Self {
            kind: Kind::Upstream { body, on_end },
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { body, on_end } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(conn) = on_end.take() {
                            conn.release();
                        }
                    }
                    Some(Ok(_)) if body.is_end_stream() => {
                        if let Some(conn) = on_end.take() {
                            conn.release();
                        }
                    }
                    Some(Err(_)) => drop(on_end.take()),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
