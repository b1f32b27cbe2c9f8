//! The HTTP filter trait and its static composition.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use crate::http::ResponseBody;

/// What a hook decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on: the next filter runs, then the router (on the request side) or the client
    /// (on the response side).
    Continue,
    /// Stop the chain and answer with this response. From a request hook, the request is
    /// not forwarded (or, from a request-body hook, the upload is abandoned); from the
    /// response-headers hook, the upstream response is discarded and this one sent in its
    /// place. Filters later in the chain do not see the request; all filters' response
    /// hooks still see the reply.
    Respond(Response<ResponseBody>),
}

impl Flow {
    /// A `text/plain` local reply.
    pub fn respond(status: StatusCode, body: impl Into<Bytes>) -> Self {
        let body: Bytes = body.into();
        let mut response = Response::new(ResponseBody::full(body.clone()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if !body.is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
        }
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        Flow::Respond(response)
    }

    /// Whether this is [`Flow::Continue`].
    pub fn is_continue(&self) -> bool {
        matches!(self, Flow::Continue)
    }
}

/// Facts about the request that filters may read.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    /// The client's IP; `None` for a client on a Unix socket.
    pub client_ip: Option<IpAddr>,
    /// The listener the request arrived on.
    pub listener: &'static str,
    /// The chosen route, `listener/virtual_host/index`, or `""` when none matched.
    pub route: &'static str,
    /// When the request head was received.
    pub start: Instant,
}

/// How much of a request body has passed, for request-body hooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyProgress {
    /// Bytes before the current chunk.
    pub before: u64,
    /// Bytes including the current chunk.
    pub total: u64,
}

/// What happened to a finished exchange, for [`HttpFilter::on_complete`].
#[derive(Debug, Clone)]
pub struct Summary {
    /// The status sent to the client.
    pub status: StatusCode,
    /// Envoy response flags of a local reply (`NR`, `UF`, ...); empty otherwise.
    pub response_flags: &'static str,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// From the request head to the end of the response (or the client going away).
    pub duration: Duration,
    /// The upstream endpoint used, if the request was forwarded (`127.0.0.1:8081`,
    /// `unix:/path`).
    pub upstream: Option<String>,
    /// Whether the response body was sent completely.
    pub completed: bool,
}

/// An HTTP filter: code that sees, and may change or answer, every request on the routes
/// it is attached to, and their responses.
///
/// Hooks run in this order for one exchange; each defaults to doing nothing
/// ([`Flow::Continue`]):
///
/// | hook | runs | may |
/// |---|---|---|
/// | [`on_request_headers`](Self::on_request_headers) | once the route is chosen, before anything is sent upstream; filters in chain order | modify the request head, await (e.g. an auth call), answer locally |
/// | [`on_request_body`](Self::on_request_body) | for each request body chunk, as it streams upstream | modify the chunk, answer locally (e.g. 413) |
/// | [`on_request_trailers`](Self::on_request_trailers) | if the request has trailers | modify them, answer locally |
/// | [`on_response_headers`](Self::on_response_headers) | when the response head is known (upstream or local reply); filters in reverse order | modify the head, replace the response |
/// | [`on_response_body`](Self::on_response_body) | for each response body chunk, and once more with an empty chunk at the end | transform the chunk (e.g. compress) |
/// | [`on_response_trailers`](Self::on_response_trailers) | if the response has trailers | modify them |
/// | [`on_complete`](Self::on_complete) | once, when the response has ended or the client went away | observe (e.g. an access log); must not block |
///
/// Per-request state is [`State`](Self::State), created with `Default` when the request
/// arrives and handed to every hook except the request-body ones. Request-body hooks run
/// on the upstream connection's task while the response may already be streaming back on
/// another, so sharing the state with them would need a lock per request; they get the
/// filter itself and a [`BodyProgress`] instead.
///
/// Header hooks are `async` (return `impl Future`, never a boxed one). Body and trailer
/// hooks are synchronous: they run inside the body stream's `poll`, where an
/// asynchronous hook would need a boxed future per chunk.
///
/// A user's type goes into a chain by value: `filters: [my_filters::ApiKey::new("k")]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an HTTP filter",
    label = "this is listed in `filters: [..]` but does not implement `proxy_core::filter::HttpFilter`",
    note = "implement `proxy_core::filter::HttpFilter` for it, or use a built-in filter"
)]
pub trait HttpFilter: Send + Sync + 'static {
    /// Per-request state, created with `Default` for each request.
    type State: Default + Send + 'static;

    /// True only for chains with nothing in them, so the pipeline can skip the body
    /// wrappers entirely. Not for filters to set.
    #[doc(hidden)]
    const IS_NOOP: bool = false;

    /// The request head, before routing acts on it. `request` may be modified; the route
    /// already chosen is not re-evaluated.
    fn on_request_headers(
        &self,
        state: &mut Self::State,
        request: &mut http::request::Parts,
        info: &RequestInfo,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (state, request, info);
        async { Flow::Continue }
    }

    /// A chunk of the request body on its way upstream.
    fn on_request_body(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        let _ = (chunk, progress);
        Flow::Continue
    }

    /// The request trailers, if any.
    fn on_request_trailers(&self, trailers: &mut HeaderMap) -> Flow {
        let _ = trailers;
        Flow::Continue
    }

    /// The response head, from upstream or from a local reply.
    fn on_response_headers(
        &self,
        state: &mut Self::State,
        response: &mut http::response::Parts,
        info: &RequestInfo,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (state, response, info);
        async { Flow::Continue }
    }

    /// A chunk of the response body; at the end, called once more with an empty chunk
    /// and `end_of_stream` set, so a transforming filter can flush what it holds.
    fn on_response_body(&self, state: &mut Self::State, chunk: &mut Bytes, end_of_stream: bool) {
        let _ = (state, chunk, end_of_stream);
    }

    /// The response trailers, if any.
    fn on_response_trailers(&self, state: &mut Self::State, trailers: &mut HeaderMap) {
        let _ = (state, trailers);
    }

    /// The exchange is over. Runs on a worker thread: hand slow work (I/O) elsewhere.
    fn on_complete(&self, state: Self::State, info: &RequestInfo, summary: &Summary) {
        let _ = (state, info, summary);
    }
}

/// The empty chain.
impl HttpFilter for () {
    type State = ();
    const IS_NOOP: bool = true;
}

/// A chain of two: `A` runs first on the request and last on the response. Longer chains
/// nest: `(A, (B, (C, ())))`.
impl<A: HttpFilter, B: HttpFilter> HttpFilter for (A, B) {
    type State = (A::State, B::State);
    const IS_NOOP: bool = A::IS_NOOP && B::IS_NOOP;

    async fn on_request_headers(
        &self,
        state: &mut Self::State,
        request: &mut http::request::Parts,
        info: &RequestInfo,
    ) -> Flow {
        match self.0.on_request_headers(&mut state.0, request, info).await {
            Flow::Continue => self.1.on_request_headers(&mut state.1, request, info).await,
            respond => respond,
        }
    }

    #[inline]
    fn on_request_body(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        match self.0.on_request_body(chunk, progress) {
            Flow::Continue => self.1.on_request_body(chunk, progress),
            respond => respond,
        }
    }

    #[inline]
    fn on_request_trailers(&self, trailers: &mut HeaderMap) -> Flow {
        match self.0.on_request_trailers(trailers) {
            Flow::Continue => self.1.on_request_trailers(trailers),
            respond => respond,
        }
    }

    async fn on_response_headers(
        &self,
        state: &mut Self::State,
        response: &mut http::response::Parts,
        info: &RequestInfo,
    ) -> Flow {
        // Reverse order: the filter closest to the router sees the response first.
        match self
            .1
            .on_response_headers(&mut state.1, response, info)
            .await
        {
            Flow::Continue => {
                self.0
                    .on_response_headers(&mut state.0, response, info)
                    .await
            }
            respond => respond,
        }
    }

    #[inline]
    fn on_response_body(&self, state: &mut Self::State, chunk: &mut Bytes, end_of_stream: bool) {
        self.1.on_response_body(&mut state.1, chunk, end_of_stream);
        self.0.on_response_body(&mut state.0, chunk, end_of_stream);
    }

    #[inline]
    fn on_response_trailers(&self, state: &mut Self::State, trailers: &mut HeaderMap) {
        self.1.on_response_trailers(&mut state.1, trailers);
        self.0.on_response_trailers(&mut state.0, trailers);
    }

    fn on_complete(&self, state: Self::State, info: &RequestInfo, summary: &Summary) {
        self.1.on_complete(state.1, info, summary);
        self.0.on_complete(state.0, info, summary);
    }
}

/// A filter shared between chains: a listener's or virtual host's filter is one instance
/// in every route chain below it, so (for example) a listener-wide rate limit is one
/// bucket, not one per route.
impl<F: HttpFilter> HttpFilter for std::sync::Arc<F> {
    type State = F::State;
    const IS_NOOP: bool = F::IS_NOOP;

    fn on_request_headers(
        &self,
        state: &mut Self::State,
        request: &mut http::request::Parts,
        info: &RequestInfo,
    ) -> impl Future<Output = Flow> + Send {
        (**self).on_request_headers(state, request, info)
    }

    #[inline]
    fn on_request_body(&self, chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        (**self).on_request_body(chunk, progress)
    }

    #[inline]
    fn on_request_trailers(&self, trailers: &mut HeaderMap) -> Flow {
        (**self).on_request_trailers(trailers)
    }

    fn on_response_headers(
        &self,
        state: &mut Self::State,
        response: &mut http::response::Parts,
        info: &RequestInfo,
    ) -> impl Future<Output = Flow> + Send {
        (**self).on_response_headers(state, response, info)
    }

    #[inline]
    fn on_response_body(&self, state: &mut Self::State, chunk: &mut Bytes, end_of_stream: bool) {
        (**self).on_response_body(state, chunk, end_of_stream);
    }

    #[inline]
    fn on_response_trailers(&self, state: &mut Self::State, trailers: &mut HeaderMap) {
        (**self).on_response_trailers(state, trailers);
    }

    fn on_complete(&self, state: Self::State, info: &RequestInfo, summary: &Summary) {
        (**self).on_complete(state, info, summary);
    }
}
