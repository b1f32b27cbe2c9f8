//! The pieces of the request path that make one request into several attempts: the
//! deadlines that bound them, copies of the request head, and what each attempt ended
//! with. The loop itself is `exchange::forward`; the policy (conditions, backoff) is
//! [`RetryPolicy`], whose module docs give the semantics.
//!
//! Timing, as Envoy's router: the route timeout starts when the request body has been
//! received whole (at once for a bodiless or buffered request) and bounds every attempt
//! and backoff together; a per-try timeout starts with each attempt's wait for its
//! response head (for a streamed body, once the body has been sent) and bounds only
//! that attempt.
//!
//! The endpoint of every attempt comes from
//! [`Cluster::select`](crate::cluster::Cluster::select), told which endpoints the
//! request already tried. When the selection of the attempt whose response the client
//! gets carries a session-persistence header, it is added to that response (appended
//! for `set-cookie`, which may repeat; set otherwise). Local replies (`UF`, `UT`, ...)
//! get none: no endpoint served the request.

use std::future::Future;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ResponseBody;
use super::body::BodyOutcome;
use super::filtered::RequestBytes;
use super::timer::RouteTimer;
use crate::cluster::UpstreamError;
use crate::route::RetryPolicy;

/// The route deadline of one request, shared by its attempts.
pub(super) struct Clock {
    route_timeout: Option<Duration>,
    /// Set once the request body has been received: from then the route timeout runs.
    deadline: Option<Instant>,
}

impl Clock {
    pub(super) fn new(route_timeout: Option<Duration>) -> Self {
        Self {
            route_timeout,
            deadline: None,
        }
    }

    /// Starts the route timeout, unless it already runs. A timeout too large to add to
    /// the clock is no timeout.
    fn start(&mut self) {
        if self.deadline.is_none() {
            self.deadline = self
                .route_timeout
                .and_then(|timeout| Instant::now().checked_add(timeout));
        }
    }

    /// Waits out `backoff`, unless the route deadline comes first: then `false` (the
    /// route timed out).
    pub(super) async fn backoff(&mut self, backoff: Duration) -> bool {
        self.start();
        let Some(wake) = Instant::now().checked_add(backoff) else {
            return false;
        };
        match self.deadline {
            Some(deadline) if deadline <= wake => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            _ => {
                if !backoff.is_zero() {
                    tokio::time::sleep_until(wake).await;
                }
                true
            }
        }
    }
}

/// How waiting for one attempt's response head ended.
pub(super) enum RouteWait<T> {
    Response(T, RequestBytes),
    /// A request-body filter answered instead.
    Rejected(Response<ResponseBody>),
    /// The route timeout fired: the request is over (504 `UT`).
    TimedOut(RequestBytes),
    /// The attempt's per-try timeout fired first: the attempt failed, the request may
    /// be retried.
    PerTryTimedOut(RequestBytes),
}

/// Awaits one attempt's response head under the route and per-try timeouts.
///
/// The timeouts run from the end of the request (Envoy semantics): a large upload is
/// bounded by the client's pace, not by the route timeout. An origin may still answer
/// before the upload ends; then there is nothing left to time. A request-body filter may
/// reject the upload meanwhile; its reply wins.
pub(super) async fn wait_head<T>(
    mut sent: std::pin::Pin<&mut impl Future<Output = T>>,
    body_outcome: Option<oneshot::Receiver<BodyOutcome>>,
    clock: &mut Clock,
    per_try: Option<Duration>,
    timer: &RouteTimer,
) -> RouteWait<T> {
    let mut request_bytes = RequestBytes::Known(0);
    if let Some(mut body_outcome) = body_outcome {
        // A request-body filter that rejects the upload first reports its answer, then
        // fails the upstream send: checking the body first (and again if the send still
        // wins) makes its answer win over the resulting upstream error.
        tokio::select! {
            biased;
            ended = &mut body_outcome => match ended {
                Ok(BodyOutcome::Complete { bytes }) => request_bytes = RequestBytes::Known(bytes),
                Ok(BodyOutcome::Rejected(response)) => return RouteWait::Rejected(response),
                // The client went away mid-upload: the upstream call fails on its own.
                Err(_) => {}
            },
            result = &mut sent => {
                if let Ok(BodyOutcome::Rejected(response)) = body_outcome.try_recv() {
                    return RouteWait::Rejected(response);
                }
                return RouteWait::Response(result, RequestBytes::Pending(body_outcome));
            }
        }
    }
    clock.start();
    let per_try = per_try.and_then(|timeout| Instant::now().checked_add(timeout));
    let (limit, per_try_first) = match (clock.deadline, per_try) {
        (None, None) => return RouteWait::Response(sent.await, request_bytes),
        (Some(route), None) => (route, false),
        (None, Some(per_try)) => (per_try, true),
        (Some(route), Some(per_try)) if per_try < route => (per_try, true),
        (Some(route), Some(_)) => (route, false),
    };
    match timer.limit(limit, sent).await {
        Some(result) => RouteWait::Response(result, request_bytes),
        None if per_try_first => RouteWait::PerTryTimedOut(request_bytes),
        None => RouteWait::TimedOut(request_bytes),
    }
}

/// What one attempt ended with.
pub(super) enum Attempt {
    Response(Response<ResponseBody>),
    Failed(UpstreamError),
    PerTryTimeout,
}

impl Attempt {
    /// Whether `policy` retries this outcome. A circuit-breaker overflow never is
    /// (Envoy's behaviour: retrying would only add load to a saturated cluster).
    pub(super) fn is_retriable(&self, policy: &RetryPolicy) -> bool {
        match self {
            Attempt::Response(response) => policy.retries_status(response.status().as_u16()),
            Attempt::Failed(UpstreamError::Connect(_)) => policy.retries_connect_failure(),
            Attempt::Failed(UpstreamError::Reset(_)) | Attempt::PerTryTimeout => {
                policy.retries_reset()
            }
            Attempt::Failed(UpstreamError::Overflow(_) | UpstreamError::Downstream(_)) => false,
        }
    }
}

/// A copy of a request head for another attempt or a mirror: method, target, version
/// and headers. Extensions are per-connection state (the client's TLS session, its
/// upgrade handle) and stay with the original.
pub(super) fn copy_parts(parts: &Parts) -> Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}
