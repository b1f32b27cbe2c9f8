//! Body types at the seam between the connection layer and the proxy layer.
//!
//! Both are enums over the concrete sources a body can have, so bodies stream through
//! without boxing and a future HTTP/1.1 fast path can add a variant without touching
//! routing or clusters.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::cluster::InFlight;
use crate::filter::{BodyProgress, Flow, HttpFilter};
use crate::upstream::h1;

/// A boxed error from a body's source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body as it arrives from the client: from hyper's codec (HTTP/2, or
/// HTTP/1.1 with `--http1 hyper`) or from the native HTTP/1.1 codec (`server::h1`).
pub struct IncomingBody {
    source: Source,
}

enum Source {
    Empty,
    Hyper(Incoming),
    Native(crate::server::h1::RequestStream),
}

impl fmt::Debug for IncomingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Empty => "empty",
            Source::Hyper(_) => "hyper",
            Source::Native(_) => "native",
        };
        f.debug_struct("IncomingBody")
            .field("source", &source)
            .finish()
    }
}

impl IncomingBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self {
            source: Source::Empty,
        }
    }

    pub(crate) fn native(stream: crate::server::h1::RequestStream) -> Self {
        Self {
            source: Source::Native(stream),
        }
    }
}

impl From<Incoming> for IncomingBody {
    fn from(body: Incoming) -> Self {
        Self {
            source: Source::Hyper(body),
        }
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.source {
            Source::Empty => Poll::Ready(None),
            Source::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(BoxError::from))),
            Source::Native(body) => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Hyper(body) => body.is_end_stream(),
            Source::Native(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Hyper(body) => body.size_hint(),
            Source::Native(body) => body.size_hint(),
        }
    }
}

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading from the client failed (it went away, or sent a malformed body).
    #[error("downstream request body: {0}")]
    Downstream(#[source] BoxError),
    /// A filter answered the request while its body was streaming (e.g. 413).
    #[error("request body rejected by a filter")]
    Rejected,
}

/// How a request body ended, reported to the exchange that sent it.
#[derive(Debug)]
pub(crate) enum BodyOutcome {
    /// Every byte was handed upstream.
    Complete { bytes: u64 },
    /// A request-body hook answered instead; the upload was abandoned.
    Rejected(Response<ResponseBody>),
}

/// The request-body half of a filter chain, reachable without knowing the chain's type:
/// a request body is one concrete type for every route (the upstream pool is typed on
/// it), and chains live as long as the process, so a `&'static dyn` costs nothing.
pub(crate) trait RequestBodyFilter: Send + Sync {
    fn on_data(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow;
    fn on_trailers(&self, trailers: &mut HeaderMap) -> Flow;
}

impl<C: HttpFilter> RequestBodyFilter for C {
    #[inline]
    fn on_data(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        self.on_request_body(chunk, progress)
    }

    #[inline]
    fn on_trailers(&self, trailers: &mut HeaderMap) -> Flow {
        self.on_request_trailers(trailers)
    }
}

/// How much of a rejected upload is still read (and thrown away) so the client, which is
/// usually still sending, reads the answer instead of a connection reset (nginx's
/// "lingering close"). Past either bound the connection is closed.
const DISCARD_BYTES: u64 = 8 * 1024 * 1024;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn discard(mut body: IncomingBody) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len() as u64);
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// A request body kept in memory so it can be sent more than once (retries, mirrors):
/// its data chunks, already through the request-body filters, and its trailers. Every
/// attempt reads the same chunks (`Bytes` clones, never a copy).
#[derive(Debug, Default)]
pub(crate) struct BufferedBody {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

impl BufferedBody {
    /// Data bytes held.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Reads a [`BufferedBody`] from the start: its chunks, then its trailers.
#[derive(Debug)]
struct Replay {
    buffer: Arc<BufferedBody>,
    /// The next chunk; `chunks.len()` means the trailers are next.
    next: usize,
    done: bool,
}

impl Replay {
    fn new(buffer: Arc<BufferedBody>) -> Self {
        let done = buffer.chunks.is_empty() && buffer.trailers.is_none();
        Self {
            buffer,
            next: 0,
            done,
        }
    }

    fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if self.done {
            return None;
        }
        if let Some(chunk) = self.buffer.chunks.get(self.next) {
            self.next += 1;
            self.done = self.next == self.buffer.chunks.len() && self.buffer.trailers.is_none();
            return Some(Frame::data(chunk.clone()));
        }
        self.done = true;
        self.buffer.trailers.clone().map(Frame::trailers)
    }

    fn remaining(&self) -> u64 {
        let rest = self.buffer.chunks.get(self.next..).unwrap_or_default();
        rest.iter().map(|chunk| chunk.len() as u64).sum()
    }
}

/// How reading a request body into memory ended ([`RequestBody::buffer`]).
pub(crate) enum Buffering {
    /// The whole body fit: it can be replayed.
    Complete(Arc<BufferedBody>),
    /// The body outgrew the limit: this body sends what was read, then streams the rest.
    TooLarge(RequestBody),
    /// A request-body filter answered; its response is in the body's outcome channel.
    Rejected,
    /// Reading from the client failed.
    Failed(BoxError),
}

/// A request body on its way upstream.
pub struct RequestBody {
    /// Frames already read (and filtered) that go out before anything from `inner`: a
    /// replayed body, or the prefix of one that outgrew the replay buffer. `None` on
    /// the plain streaming path, which stays as cheap as without retries.
    buffered: Option<Replay>,
    /// `None` for a body known to be empty (such as a replayed bodiless request) or
    /// abandoned after a filter rejected it.
    inner: Option<IncomingBody>,
    filter: Option<&'static dyn RequestBodyFilter>,
    received: u64,
    /// Told when the body has been fully handed upstream (the route timeout starts then,
    /// as Envoy's does, so a slow upload is not a slow upstream) or was rejected.
    on_end: Option<oneshot::Sender<BodyOutcome>>,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("received", &self.received)
            .field("filtered", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    /// Wraps `inner`, running `filter`'s request-body hooks on it. When the body has
    /// content, also returns a receiver told how it ended; `None` for an empty body,
    /// which needs no allocation.
    pub(crate) fn new(
        inner: IncomingBody,
        filter: Option<&'static dyn RequestBodyFilter>,
    ) -> (Self, Option<oneshot::Receiver<BodyOutcome>>) {
        if inner.is_end_stream() {
            return (
                Self {
                    buffered: None,
                    inner: Some(inner),
                    filter,
                    received: 0,
                    on_end: None,
                },
                None,
            );
        }
        let (tx, rx) = oneshot::channel();
        (
            Self {
                buffered: None,
                inner: Some(inner),
                filter,
                received: 0,
                on_end: Some(tx),
            },
            Some(rx),
        )
    }

    /// A body with no bytes.
    pub(crate) fn empty() -> Self {
        Self {
            buffered: None,
            inner: None,
            filter: None,
            received: 0,
            on_end: None,
        }
    }

    /// A body that sends `buffer` (already filtered): one attempt of a replayed request.
    pub(crate) fn replay(buffer: Arc<BufferedBody>) -> Self {
        Self {
            buffered: Some(Replay::new(buffer)),
            ..Self::empty()
        }
    }

    /// Reads the body (running the request-body filters over each chunk, once) until it
    /// ends or more than `limit` bytes have arrived, so a request can be replayed.
    pub(crate) async fn buffer(mut self, limit: usize) -> Buffering {
        use http_body_util::BodyExt;
        let limit = limit as u64;
        let mut body = BufferedBody::default();
        loop {
            match self.frame().await {
                None => return Buffering::Complete(Arc::new(body)),
                Some(Err(BodyError::Rejected)) => return Buffering::Rejected,
                Some(Err(BodyError::Downstream(error))) => return Buffering::Failed(error),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        body.len += chunk.len() as u64;
                        if !chunk.is_empty() {
                            body.chunks.push(chunk);
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            body.trailers = Some(trailers);
                        }
                    }
                },
            }
            if body.len > limit {
                // Too large to keep: what was read goes out first, then the rest streams
                // through this same body (filters and outcome reporting carry on).
                self.buffered = Some(Replay::new(Arc::new(body)));
                return Buffering::TooLarge(self);
            }
        }
    }

    fn finish(&mut self, outcome: BodyOutcome) {
        if let Some(done) = self.on_end.take() {
            let _ = done.send(outcome);
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(replay) = this.buffered.as_mut() {
            if let Some(frame) = replay.next_frame() {
                return Poll::Ready(Some(Ok(frame)));
            }
            this.buffered = None;
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let mut frame = match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
            None => {
                this.finish(BodyOutcome::Complete {
                    bytes: this.received,
                });
                return Poll::Ready(None);
            }
            // Dropping `on_end` tells the exchange the body ended without completing.
            Some(Err(error)) => {
                this.on_end = None;
                return Poll::Ready(Some(Err(BodyError::Downstream(error))));
            }
            Some(Ok(frame)) => frame,
        };
        let ended = inner.is_end_stream();
        let before = this.received;
        if let Some(data) = frame.data_ref() {
            this.received += data.len() as u64;
        }
        if let Some(filter) = this.filter {
            let flow = if let Some(data) = frame.data_mut() {
                filter.on_data(
                    data,
                    BodyProgress {
                        before,
                        total: this.received,
                    },
                )
            } else if let Some(trailers) = frame.trailers_mut() {
                filter.on_trailers(trailers)
            } else {
                Flow::Continue
            };
            if let Flow::Respond(response) = flow {
                if let Some(rest) = this.inner.take() {
                    tokio::spawn(discard(rest));
                }
                this.finish(BodyOutcome::Rejected(response));
                return Poll::Ready(Some(Err(BodyError::Rejected)));
            }
        }
        if ended {
            this.finish(BodyOutcome::Complete {
                bytes: this.received,
            });
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.as_ref().is_none_or(|replay| replay.done)
            && self.inner.as_ref().is_none_or(IncomingBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), IncomingBody::size_hint);
        let Some(replay) = &self.buffered else {
            return hint;
        };
        let buffered = replay.remaining();
        let mut total = SizeHint::new();
        total.set_lower(hint.lower().saturating_add(buffered));
        if let Some(upper) = hint.upper() {
            total.set_upper(upper.saturating_add(buffered));
        }
        total
    }
}

/// A response body on its way downstream.
pub struct ResponseBody {
    kind: Kind,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Filtered(_) => "filtered",
            Kind::Upstream { .. } => "upstream",
            Kind::Http1 { .. } => "http1",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    /// Runs a filter chain's response-body hooks (one allocation per request, only on
    /// routes with filters: the chain's per-request state travels with the body).
    Filtered(Pin<Box<dyn Body<Data = Bytes, Error = ResponseBodyError> + Send>>),
    /// A body from an HTTP/2 upstream. `in_flight` (the request's circuit-breaker slot
    /// and its endpoint's least-request count) is released when the body ends, fails or
    /// is dropped.
    Upstream {
        body: Incoming,
        in_flight: Option<InFlight>,
    },
    /// A body read off an HTTP/1.1 upstream connection, which goes back to its pool when
    /// the body ends; `in_flight` is released then, after the connection is back so a
    /// pending request woken by it finds it (and dropped, `stream` drops first).
    Http1 {
        stream: h1::ResponseStream,
        in_flight: Option<InFlight>,
    },
}

/// Why a response body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    #[error("upstream response body: {0}")]
    Http2(#[from] hyper::Error),
    #[error("upstream response body: {0}")]
    Http1(#[from] h1::Error),
}

impl ResponseBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// A body of `bytes`, built whole by the proxy (a local reply).
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

    /// The bytes of a body built whole by the proxy (a local reply); `None` otherwise.
    pub(crate) fn as_full_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref(),
            _ => None,
        }
    }

    /// `inner` with a filter chain's response-body hooks applied.
    pub(crate) fn filtered(
        body: impl Body<Data = Bytes, Error = ResponseBodyError> + Send + 'static,
    ) -> Self {
        Self {
            kind: Kind::Filtered(Box::pin(body)),
        }
    }

    /// Streams `body` from an HTTP/2 upstream; `in_flight` is released when it ends (at
    /// once if it is already empty).
    pub(crate) fn upstream(body: Incoming, in_flight: InFlight) -> Self {
        let in_flight = (!body.is_end_stream()).then_some(in_flight);
        Self {
            kind: Kind::Upstream { body, in_flight },
        }
    }

    /// Streams a body off an HTTP/1.1 upstream connection; `in_flight` is released when
    /// it ends (at once if it already has).
    pub(crate) fn http1(stream: h1::ResponseStream, in_flight: InFlight) -> Self {
        let in_flight = (!stream.is_settled()).then_some(in_flight);
        Self {
            kind: Kind::Http1 { stream, in_flight },
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Filtered(body) => body.as_mut().poll_frame(cx),
            Kind::Upstream { body, in_flight } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                if !matches!(frame, Some(Ok(_))) || body.is_end_stream() {
                    drop(in_flight.take());
                }
                Poll::Ready(frame.map(|frame| frame.map_err(ResponseBodyError::from)))
            }
            Kind::Http1 { stream, in_flight } => {
                let frame = ready!(stream.poll_frame(cx));
                // Released once the stream has put its connection back (or closed it),
                // which is at the poll after the last frame; a body dropped then drops
                // `stream` first.
                if stream.is_settled() {
                    drop(in_flight.take());
                }
                Poll::Ready(frame.map(|frame| frame.map_err(ResponseBodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Filtered(body) => body.is_end_stream(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Http1 { stream, .. } => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Filtered(body) => body.size_hint(),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Http1 { stream, .. } => stream.size_hint(),
        }
    }
}
