//! Helpers for calling filter hooks directly in unit tests.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;

use crate::filter::{Flow, RequestInfo};
use crate::http::ResponseBody;

pub(crate) fn info() -> RequestInfo {
    RequestInfo {
        client_ip: None,
        listener: "test",
        route: "",
        start: Instant::now(),
    }
}

pub(crate) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

pub(crate) fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// Runs a future that must complete without waiting (the header hooks of filters that
/// do no I/O): a pending future is a test failure, not a hang.
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("hook did not complete immediately"),
    }
}

/// The local reply in `flow`; panics on `Continue`.
pub(crate) fn reply(flow: Flow) -> (http::response::Parts, Bytes) {
    match flow {
        Flow::Respond(response) => {
            let (parts, body) = response.into_parts();
            (parts, body_bytes(body))
        }
        Flow::Continue => panic!("expected a local reply, got Continue"),
    }
}

pub(crate) fn body_bytes(body: ResponseBody) -> Bytes {
    now(body.collect()).unwrap().to_bytes()
}

/// The value of `name`, as a string, or `None`.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// All values of `name`.
pub(crate) fn headers_all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}
