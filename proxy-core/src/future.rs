//! A future that is an output known at once, a future run inline, or a large and rare
//! one boxed.
//!
//! `Cluster::send` is a plain function returning this rather than an `async fn`: an
//! `async fn` keeps its arguments for its whole life, so the request (328 bytes) would
//! be stored in it again after it moved on — in every request's future, one per HTTP/2
//! stream in flight. (`act` and `forward` in `http::exchange` return one too, and are
//! inlined into the stage that keeps it: a future returned by value from a call is
//! copied whole on the way.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    #[project = Projection]
    pub(crate) enum InlineOrBoxed<T, Inline, Boxed> {
        /// `None` once taken.
        Done { output: Option<T> },
        Inline { #[pin] future: Inline },
        Boxed { future: Pin<Box<Boxed>> },
    }
}

impl<T, Inline, Boxed> InlineOrBoxed<T, Inline, Boxed> {
    pub(crate) fn done(output: T) -> Self {
        Self::Done {
            output: Some(output),
        }
    }

    pub(crate) fn inline(future: Inline) -> Self {
        Self::Inline { future }
    }

    pub(crate) fn boxed(future: Boxed) -> Self {
        Self::Boxed {
            future: Box::pin(future),
        }
    }
}

impl<T, Inline, Boxed> Future for InlineOrBoxed<T, Inline, Boxed>
where
    Inline: Future<Output = T>,
    Boxed: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            // Polled again after it completed: it never completes again.
            Projection::Done { output } => output.take().map_or(Poll::Pending, Poll::Ready),
            Projection::Inline { future } => future.poll(cx),
            Projection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
