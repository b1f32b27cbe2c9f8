//! The future [`Cluster::send`] returns.
//!
//! Hand-written rather than an `async fn`: an `async fn` keeps its arguments for its
//! whole life, so the request (328 bytes) would be stored in it and again in the
//! exchange it moves into — in every request's future, one per HTTP/2 stream in flight.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;

use super::{Cluster, Endpoint, UpstreamError};
use crate::future::InlineOrBoxed;
use crate::http::ResponseBody;

type Sent = Result<Response<ResponseBody>, UpstreamError>;

pin_project_lite::pin_project! {
    /// An exchange with one endpoint, counted in the cluster's stats and reported to
    /// outlier detection when it ends; a request refused admission is neither. The
    /// HTTP/2 exchange is boxed: hyper's send and the kept head for a replay make it a
    /// third larger than the HTTP/1.1 one, and every request's future would carry that
    /// size; an allocation is little next to an HTTP/2 upstream exchange's cost.
    pub(crate) struct Sending<'a, H1, H2> {
        cluster: &'a Cluster,
        endpoint: &'a Endpoint,
        admitted: bool,
        #[pin]
        exchange: InlineOrBoxed<Sent, H1, H2>,
    }
}

impl<'a, H1, H2> Sending<'a, H1, H2> {
    pub(super) fn refused(
        cluster: &'a Cluster,
        endpoint: &'a Endpoint,
        error: UpstreamError,
    ) -> Self {
        Self::new(cluster, endpoint, false, InlineOrBoxed::done(Err(error)))
    }

    pub(super) fn http1(cluster: &'a Cluster, endpoint: &'a Endpoint, exchange: H1) -> Self {
        Self::new(cluster, endpoint, true, InlineOrBoxed::inline(exchange))
    }

    pub(super) fn http2(cluster: &'a Cluster, endpoint: &'a Endpoint, exchange: H2) -> Self {
        Self::new(cluster, endpoint, true, InlineOrBoxed::boxed(exchange))
    }

    fn new(
        cluster: &'a Cluster,
        endpoint: &'a Endpoint,
        admitted: bool,
        exchange: InlineOrBoxed<Sent, H1, H2>,
    ) -> Self {
        Self {
            cluster,
            endpoint,
            admitted,
            exchange,
        }
    }
}

impl<H1, H2> Future for Sending<'_, H1, H2>
where
    H1: Future<Output = Sent>,
    H2: Future<Output = Sent>,
{
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        let this = self.project();
        let result = ready!(this.exchange.poll(cx));
        if *this.admitted {
            match &result {
                Ok(response) => this
                    .cluster
                    .count_response(this.endpoint, response.status().as_u16()),
                Err(error) => this.cluster.count_failure(this.endpoint, error),
            }
        }
        Poll::Ready(result)
    }
}
