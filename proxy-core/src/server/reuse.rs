//! Memory a connection needs only while it serves a request — its read buffer, a large
//! write buffer (both in `crate::lent`) and the request's future (here) — is lent by the
//! worker thread rather than owned by the connection. An idle keep-alive connection then
//! costs ≈ 3.4 KB instead of ≈ 15 KB, while a busy one takes and returns the same blocks
//! every request: no allocator call on the hot path (glibc's malloc for blocks of this
//! size costs more than the rest of the codec).
//!
//! hyper's connections (HTTP/2, and HTTP/1.1 under `--http1 hyper`) use the handlers
//! too: hyper runs a boxed future per HTTP/2 stream holding the service's future, which
//! with a lent handler is a few words instead of the whole exchange.
//!
//! Workers are single-threaded runtimes, so a thread-local list is each worker's own,
//! with no contention; it keeps at most [`KEPT_HANDLERS`] handlers.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{Request, Response};

use crate::http::{Downstream, IncomingBody, ResponseBody};
use crate::lent::give;
use crate::route::Pipeline;

/// Handlers a worker keeps. Only requests in flight hold one, and HTTP/2 multiplexes
/// hundreds per connection (`h2load -c 50 -m 10` keeps 500 in flight): with a list
/// shorter than that, most streams built a handler and freed one (a slow allocation
/// and a copy of the whole future each). Keeping them adds nothing to the peak memory
/// they were allocated at.
const KEPT_HANDLERS: usize = 1024;

thread_local! {
    static HANDLERS: RefCell<Vec<Handler>> = const { RefCell::new(Vec::new()) };
}

/// Runs a pipeline's requests one after another inside one long-lived future.
///
/// A request's future is kilobytes (the whole exchange's state machine). Creating one
/// per request and moving it into a box costs a copy of all of it at every move; a
/// handler instead is created once, boxed once, and fed requests through its slot, so
/// the state machine is written in place and never moved. Between requests it holds
/// nothing but its memory, and goes back to the worker's list.
pub(super) struct Handler {
    future: Pin<Box<dyn Future<Output = Infallible> + Send>>,
    slot: Arc<Mutex<Slot>>,
    /// The pipeline this handler runs, by address: handlers of different listeners share
    /// the worker's list.
    pipeline: usize,
}

/// What passes between a handler's owner and its future. One at a time, so one value
/// and not a field for each: the slot's memory is a request's too.
#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Request(Request<IncomingBody>, Arc<Downstream>),
    Response(Response<ResponseBody>),
}

impl Slot {
    // Each looks before it takes: taking moves the whole slot, and a handler is polled
    // for its response many times while the slot is empty.
    fn take_request(&mut self) -> Option<(Request<IncomingBody>, Arc<Downstream>)> {
        if !matches!(self, Slot::Request(..)) {
            return None;
        }
        match std::mem::take(self) {
            Slot::Request(request, downstream) => Some((request, downstream)),
            _ => None,
        }
    }

    fn take_response(&mut self) -> Option<Response<ResponseBody>> {
        if !matches!(self, Slot::Response(_)) {
            return None;
        }
        match std::mem::take(self) {
            Slot::Response(response) => Some(response),
            _ => None,
        }
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // Nothing panics while the slot is held, so a poisoned lock is still consistent.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn address<P>(pipeline: &'static P) -> usize {
    std::ptr::from_ref(pipeline).addr()
}

impl Handler {
    /// A handler for `pipeline` with `request` started: one of this worker's free ones
    /// when it has one.
    pub(super) fn start<P: Pipeline>(
        pipeline: &'static P,
        request: Request<IncomingBody>,
        downstream: Arc<Downstream>,
    ) -> Self {
        let wanted = address(pipeline);
        let free = HANDLERS
            .try_with(|list| {
                let mut list = list.borrow_mut();
                let index = list
                    .iter()
                    .rposition(|handler| handler.pipeline == wanted)?;
                Some(list.swap_remove(index))
            })
            .ok()
            .flatten();
        let handler = free.unwrap_or_else(|| Self::new(pipeline));
        *lock(&handler.slot) = Slot::Request(request, downstream);
        handler
    }

    fn new<P: Pipeline>(pipeline: &'static P) -> Self {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let jobs = Arc::clone(&slot);
        let future = Box::pin(async move {
            loop {
                let (request, downstream) = poll_fn(|_| match lock(&jobs).take_request() {
                    Some(job) => Poll::Ready(job),
                    // Only after a response, before the next `start`: nobody polls
                    // a handler then, so there is no waker to keep.
                    None => Poll::Pending,
                })
                .await;
                let response = pipeline.handle(request, &downstream).await;
                drop(downstream);
                *lock(&jobs) = Slot::Response(response);
            }
        });
        Self {
            future,
            slot,
            pipeline: address(pipeline),
        }
    }

    /// Drives the started request; `Ready` with its response.
    pub(super) fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<Response<ResponseBody>> {
        if let Poll::Ready(never) = self.future.as_mut().poll(cx) {
            match never {}
        }
        match lock(&self.slot).take_response() {
            Some(response) => Poll::Ready(response),
            None => Poll::Pending,
        }
    }

    /// Back to the worker, once its response has been taken. A handler dropped in the
    /// middle of a request is dropped instead, with the request's upstream state.
    pub(super) fn finished(self) {
        give(&HANDLERS, self, KEPT_HANDLERS);
    }
}

impl Drop for Handler {
    /// A handler is dropped with a request in it only when the request's client went
    /// away (an HTTP/2 stream reset, a closed connection): an upstream exchange that
    /// awaits its response head then finishes in the background, keeping its
    /// connection (`upstream::h1::client_gone`). A handler between requests holds none.
    fn drop(&mut self) {
        let future = std::mem::replace(&mut self.future, Box::pin(std::future::pending()));
        crate::upstream::h1::client_gone(|| drop(future));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with the request's path; a path of `/wait` never completes.
    struct Echo;

    impl Pipeline for Echo {
        async fn handle(
            &'static self,
            request: Request<IncomingBody>,
            _downstream: &Downstream,
        ) -> Response<ResponseBody> {
            if request.uri().path() == "/wait" {
                std::future::pending::<()>().await;
            }
            Response::new(ResponseBody::full(request.uri().path().to_owned()))
        }
    }

    static ECHO: Echo = Echo;

    fn request(path: &str) -> Request<IncomingBody> {
        Request::builder()
            .uri(path)
            .body(IncomingBody::empty())
            .unwrap()
    }

    fn respond(handler: &mut Handler) -> Poll<Response<ResponseBody>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        handler.poll_response(&mut cx)
    }

    async fn body(response: Response<ResponseBody>) -> bytes::Bytes {
        use http_body_util::BodyExt;
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn one_handler_serves_request_after_request_in_place() {
        let downstream = Arc::new(Downstream::new(None, "test", Arc::default()));
        let mut first = Handler::start(&ECHO, request("/a"), Arc::clone(&downstream));
        let Poll::Ready(response) = respond(&mut first) else {
            panic!("the echo answers at once");
        };
        assert_eq!(body(response).await, "/a");
        assert_eq!(
            Arc::strong_count(&downstream),
            1,
            "a finished request holds nothing"
        );
        let block = std::ptr::from_ref(&*first.future).addr();
        first.finished();

        let mut second = Handler::start(&ECHO, request("/b"), Arc::clone(&downstream));
        assert_eq!(std::ptr::from_ref(&*second.future).addr(), block);
        let Poll::Ready(response) = respond(&mut second) else {
            panic!("the echo answers at once");
        };
        assert_eq!(body(response).await, "/b");
        assert!(
            respond(&mut second).is_pending(),
            "one response per request"
        );
        second.finished();
    }

    #[tokio::test]
    async fn a_handler_dropped_mid_request_releases_it_and_is_not_kept() {
        let downstream = Arc::new(Downstream::new(None, "test", Arc::default()));
        let kept = || HANDLERS.with(|list| list.borrow().len());
        let before = kept();
        let mut waiting = Handler::start(&ECHO, request("/wait"), Arc::clone(&downstream));
        assert!(respond(&mut waiting).is_pending());
        assert_eq!(Arc::strong_count(&downstream), 2);
        drop(waiting);
        assert_eq!(Arc::strong_count(&downstream), 1);
        assert_eq!(kept(), before);
    }
}
