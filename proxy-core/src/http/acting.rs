//! The future a route's action returns: an answer known at once, or an exchange with
//! the upstream run inline or, when it is large and rare, boxed.
//!
//! The steps from the pipeline to the upstream (`act`, `forward`) are plain functions
//! returning this rather than `async fn`s: an `async fn` keeps its arguments for its
//! whole life, so the request's parts, body and upgrade (≈ 320 bytes) were stored at
//! each level again after they moved on, and each level's own locals beside them — in
//! every request's future, one per HTTP/2 stream in flight.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    #[project = ActingProjection]
    pub(super) enum Acting<T, Inline, Boxed> {
        /// `None` once taken.
        Done { output: Option<T> },
        Inline { #[pin] future: Inline },
        Boxed { future: Pin<Box<Boxed>> },
    }
}

impl<T, Inline, Boxed> Acting<T, Inline, Boxed> {
    pub(super) fn done(output: T) -> Self {
        Self::Done {
            output: Some(output),
        }
    }

    pub(super) fn inline(future: Inline) -> Self {
        Self::Inline { future }
    }

    pub(super) fn boxed(future: Boxed) -> Self {
        Self::Boxed {
            future: Box::pin(future),
        }
    }
}

impl<T, Inline, Boxed> Future for Acting<T, Inline, Boxed>
where
    Inline: Future<Output = T>,
    Boxed: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            // Polled again after it completed: it never completes again.
            ActingProjection::Done { output } => output.take().map_or(Poll::Pending, Poll::Ready),
            ActingProjection::Inline { future } => future.poll(cx),
            ActingProjection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
