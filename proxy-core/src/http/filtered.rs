//! The response side of a filter chain: body hooks and completion.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::body::BodyOutcome;
use super::{ResponseBody, ResponseBodyError};
use crate::cluster::Endpoint;
use crate::filter::{HttpFilter, RequestInfo, Summary};

/// How many request-body bytes the exchange saw, or a way to learn it at completion
/// (the upload may still be running when the response starts).
pub(crate) enum RequestBytes {
    Known(u64),
    Pending(oneshot::Receiver<BodyOutcome>),
}

impl RequestBytes {
    fn resolve(&mut self) -> u64 {
        match self {
            RequestBytes::Known(bytes) => *bytes,
            RequestBytes::Pending(outcome) => match outcome.try_recv() {
                Ok(BodyOutcome::Complete { bytes }) => {
                    *self = RequestBytes::Known(bytes);
                    bytes
                }
                // Unfinished or rejected uploads: their size is not known here.
                _ => 0,
            },
        }
    }
}

/// What the exchange knows at the response head, for the completion summary.
pub(crate) struct Exchange {
    pub(crate) status: StatusCode,
    pub(crate) response_flags: &'static str,
    pub(crate) upstream: Option<&'static Endpoint>,
    pub(crate) request_bytes: RequestBytes,
}

/// A response body passing through `chain`'s response-body hooks. Calls
/// `on_complete` exactly once: at the end of the body, or when dropped early (the client
/// went away).
pub(crate) struct FilteredBody<C: HttpFilter> {
    inner: ResponseBody,
    chain: &'static C,
    state: Option<C::State>,
    info: RequestInfo,
    exchange: Exchange,
    sent: u64,
    /// Trailers held back while the chain's end-of-body output goes first.
    held_trailers: Option<Frame<Bytes>>,
    ended: bool,
}

impl<C: HttpFilter> FilteredBody<C> {
    pub(crate) fn new(
        inner: ResponseBody,
        chain: &'static C,
        state: C::State,
        info: RequestInfo,
        exchange: Exchange,
    ) -> Self {
        Self {
            inner,
            chain,
            state: Some(state),
            info,
            exchange,
            sent: 0,
            held_trailers: None,
            ended: false,
        }
    }

    /// Runs the end-of-body hook; its output (e.g. a compressor's tail) is sent before
    /// anything else that follows.
    fn end_chunk(&mut self) -> Option<Frame<Bytes>> {
        self.ended = true;
        let state = self.state.as_mut()?;
        let mut tail = Bytes::new();
        self.chain.on_response_body(state, &mut tail, true);
        self.sent += tail.len() as u64;
        (!tail.is_empty()).then(|| Frame::data(tail))
    }

    fn complete(&mut self, completed: bool) {
        let Some(state) = self.state.take() else {
            return;
        };
        let summary = Summary {
            status: self.exchange.status,
            response_flags: self.exchange.response_flags,
            bytes_received: self.exchange.request_bytes.resolve(),
            bytes_sent: self.sent,
            duration: self.info.start.elapsed(),
            upstream: self
                .exchange
                .upstream
                .map(|endpoint| endpoint.address().to_string()),
            completed,
        };
        self.chain.on_complete(state, &self.info, &summary);
    }
}

impl<C: HttpFilter> Body for FilteredBody<C> {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        // All fields are Unpin (`C::State` is boxed with us), so this is plain access.
        let this = &mut *self;
        if this.ended {
            let held = this.held_trailers.take();
            if held.is_none() {
                this.complete(true);
            }
            return Poll::Ready(held.map(Ok));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => match this.end_chunk() {
                Some(tail) => Poll::Ready(Some(Ok(tail))),
                None => {
                    this.complete(true);
                    Poll::Ready(None)
                }
            },
            Some(Err(error)) => {
                this.complete(false);
                Poll::Ready(Some(Err(error)))
            }
            Some(Ok(mut frame)) => {
                if let Some(data) = frame.data_mut() {
                    if let Some(state) = this.state.as_mut() {
                        this.chain.on_response_body(state, data, false);
                    }
                    this.sent += data.len() as u64;
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(trailers) = frame.trailers_mut() {
                    if let Some(state) = this.state.as_mut() {
                        this.chain.on_response_trailers(state, trailers);
                    }
                    if let Some(tail) = this.end_chunk() {
                        this.held_trailers = Some(frame);
                        return Poll::Ready(Some(Ok(tail)));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not known until the end hook ran: a transforming filter may still emit bytes.
        self.ended && self.held_trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Filters may change the length (compression), so only "unknown" is honest.
        SizeHint::default()
    }
}

impl<C: HttpFilter> Drop for FilteredBody<C> {
    fn drop(&mut self) {
        let completed = self.ended || self.inner.is_end_stream();
        self.complete(completed);
    }
}

// No field is structurally pinned: the inner body is polled through `Pin::new` (it is
// `Unpin`) and the chain state is only ever used through `&mut`, never pinned. So moving
// a `FilteredBody` is fine whatever `C::State` is.
impl<C: HttpFilter> Unpin for FilteredBody<C> {}
