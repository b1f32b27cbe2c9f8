//! An exchange given up by its client — an HTTP/2 stream reset, a connection closed —
//! while the response head was awaited, after the request went out whole. The origin
//! acts on the request and answers anyway; closing the connection then would throw
//! away a healthy connection and make the next request dial (and, over TLS, handshake)
//! a new one. So the answer is read in the background and dropped, and the connection
//! goes back to its pool, as HAProxy does by default (Envoy resets the upstream stream,
//! which for HTTP/1.1 closes the connection).
//!
//! Bounded: an answer that is not over within [`GRACE`], or whose body is longer than
//! [`BODY_LIMIT`], closes the connection. Exchanges dropped for any other reason — a
//! route or per-try timeout, a shutdown — close it at once, as before: a late origin is
//! not waited for.
//!
//! The relay path (`server::h1::relay`) hands its exchanges here the same way when its
//! client closes while the head is awaited.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, StatusCode};

use super::body::ResponseStream;
use super::exchange::{Exchanged, poll_head};
use super::{Connection, Error, decode};
use crate::cluster::InFlight;
use crate::upstream::Pool;

/// How long an abandoned exchange may take to finish before its connection is closed.
const GRACE: Duration = Duration::from_secs(1);
/// The most body bytes read (and dropped) to keep a connection.
const BODY_LIMIT: usize = 64 * 1024;

thread_local! {
    /// Set while a request is dropped because its client went away (workers are
    /// single-threaded, and dropping is synchronous).
    static CLIENT_GONE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `drop_request`, which drops a request's future because its client went away:
/// exchanges in it that await their response head finish in the background.
pub(crate) fn client_gone(drop_request: impl FnOnce()) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CLIENT_GONE.set(false);
        }
    }
    CLIENT_GONE.set(true);
    let _reset = Reset;
    drop_request();
}

/// The connection of an exchange whose request is out, while its response head is
/// awaited. Dropped with the connection still in it, it finishes the exchange on a task
/// of its own, which takes the request's `in_flight` along: the request counts as
/// active (and against `max_requests`) until its connection is back, and releasing it
/// then wakes a request waiting for a connection, as the end of any response body does.
pub(super) struct AwaitingHead<'a> {
    conn: Option<Box<Connection>>,
    method: &'a Method,
    pool: &'a Pool,
    in_flight: &'a mut Option<InFlight>,
}

impl<'a> AwaitingHead<'a> {
    pub(super) fn new(
        conn: Box<Connection>,
        method: &'a Method,
        pool: &'a Pool,
        in_flight: &'a mut Option<InFlight>,
    ) -> Self {
        Self {
            conn: Some(conn),
            method,
            pool,
            in_flight,
        }
    }

    pub(super) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<decode::Head, Error>> {
        match self.conn.as_mut() {
            Some(conn) => poll_head(conn, cx, self.method),
            None => Poll::Ready(Err(Error::Closed)),
        }
    }

    /// The connection, for the caller to go on with (the head came, or failed).
    pub(super) fn into_conn(mut self) -> Option<Box<Connection>> {
        self.conn.take()
    }
}

impl Drop for AwaitingHead<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !CLIENT_GONE.get() {
            return;
        }
        finish_in_background(
            conn,
            self.method.clone(),
            self.pool.clone(),
            self.in_flight.take(),
        );
    }
}

/// Finishes an exchange whose request went out whole and whose client has gone, on a
/// task of its own: `conn` goes back to `pool` if the answer is over in time, and
/// `in_flight` is released after that.
pub(crate) fn finish_in_background(
    conn: Box<Connection>,
    method: Method,
    pool: Pool,
    in_flight: Option<InFlight>,
) {
    // Outside a runtime (a test's or the process's end) there is nothing to finish on.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(finish(conn, method, pool, in_flight));
    }
}

/// Reads the abandoned exchange's response and drops it; the connection goes back to
/// `pool` when the body ends in time (the body stream releases it as any body's end
/// does), and closes otherwise.
async fn finish(
    mut conn: Box<Connection>,
    method: Method,
    pool: Pool,
    in_flight: Option<InFlight>,
) {
    let finished = tokio::time::timeout(GRACE, async move {
        let head = poll_fn(|cx| poll_head(&mut conn, cx, &method)).await.ok()?;
        if head.parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let (_, mut body) = ResponseStream::new(Exchanged::new(head, conn), pool);
        let mut read = 0;
        while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
            if let Some(data) = frame.ok()?.data_ref() {
                read += data.len();
                if read > BODY_LIMIT {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    // Released after the connection is back (or closed).
    drop(in_flight);
    let read_whole = matches!(finished, Ok(Some(())));
    tracing::debug!(read_whole, "finished an exchange its client abandoned");
}
