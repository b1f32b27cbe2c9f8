//! The network (L4) filter trait and its static composition.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::config::EndpointAddress;

/// What a network filter hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum NetworkFlow {
    /// Go on: the next filter runs, then the proxy (connects upstream, or forwards the
    /// bytes).
    Continue,
    /// Close the connection now: both sockets are dropped, filters later in the chain do
    /// not run, and bytes not yet forwarded (including the chunk being looked at) are
    /// discarded.
    Close,
}

impl NetworkFlow {
    /// Whether this is [`NetworkFlow::Continue`].
    pub fn is_continue(self) -> bool {
        matches!(self, NetworkFlow::Continue)
    }
}

/// Facts about a downstream connection that filters may read.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The listener the connection arrived on.
    pub listener: &'static str,
    /// The client's IP; `None` for a client on a Unix socket.
    pub client_ip: Option<IpAddr>,
    /// The local port the connection arrived on; `None` on a Unix socket.
    pub local_port: Option<u16>,
    /// When the connection was accepted.
    pub start: Instant,
}

/// Why a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both directions finished: each side sent FIN and it was passed on to the other.
    Completed,
    /// [`NetworkFilter::on_new_connection`] returned [`NetworkFlow::Close`].
    Rejected,
    /// The cluster had no endpoint to pick.
    NoHealthyUpstream,
    /// Dialling the upstream endpoint failed or timed out.
    ConnectFailed,
    /// The cluster's `max_connections` circuit breaker was reached: closed without
    /// dialling (counted in the cluster's `upstream_cx_overflow`).
    UpstreamOverflow,
    /// [`NetworkFilter::on_read`] or [`NetworkFilter::on_write`] returned
    /// [`NetworkFlow::Close`].
    FilterClosed,
    /// No bytes moved in either direction for the proxy's `idle_timeout`.
    IdleTimeout,
    /// The connection reached the proxy's `max_connection_duration`.
    MaxDuration,
    /// The server shut down and the connection outlived the drain timeout.
    Drain,
    /// Reading from or writing to the client failed (e.g. it reset the connection).
    DownstreamError,
    /// Reading from or writing to the upstream failed (e.g. it reset the connection).
    UpstreamError,
}

/// What happened to a finished connection, for [`NetworkFilter::on_close`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSummary<'a> {
    pub reason: CloseReason,
    /// Bytes received from the client (before filters changed them).
    pub received_bytes: u64,
    /// Bytes written to the client (after filters changed them).
    pub sent_bytes: u64,
    /// From accept to close.
    pub duration: Duration,
    /// The upstream endpoint dialled, if one was picked.
    pub upstream: Option<&'a EndpointAddress>,
}

/// A network filter: code that sees every connection of a TCP proxy listener and the
/// bytes flowing through it in both directions.
///
/// Hooks run in this order for one connection; each defaults to doing nothing
/// ([`NetworkFlow::Continue`]):
///
/// | hook | runs | may |
/// |---|---|---|
/// | [`on_new_connection`](Self::on_new_connection) | once, after the proxy's source-IP and destination-port rules admitted the connection and before the upstream is dialled; filters in chain order | await (e.g. an external authorisation call), reject the connection |
/// | [`on_read`](Self::on_read) | for each chunk read from the client, before it is written upstream; filters in chain order | inspect, rewrite, grow or empty the chunk, close the connection |
/// | [`on_write`](Self::on_write) | for each chunk read from the upstream, before it is written to the client; filters in reverse order | the same, in the other direction |
/// | [`on_close`](Self::on_close) | once, when the connection has ended for any reason after `on_new_connection` ran; filters in reverse order | observe (e.g. an access log); must not block |
///
/// Per-connection state is [`State`](Self::State), created with `Default` when the
/// connection is accepted and handed to every hook. Both directions of a connection are
/// driven by one task, so hooks get `&mut` state without a lock, and never run
/// concurrently for the same connection.
///
/// [`on_new_connection`](Self::on_new_connection) is `async` (returns `impl Future`, never
/// a boxed one). The data hooks are synchronous: they run inside the copy loop's `poll`,
/// where an asynchronous hook would need a boxed future per chunk. A data hook cannot
/// hold bytes back: whatever `data` holds when every filter returned
/// [`NetworkFlow::Continue`] is forwarded, and an emptied chunk forwards nothing.
/// Chunks follow the transport's reads (at most 16 KiB before filters), not message
/// boundaries of the protocol inside.
///
/// Chains compose statically: `()` is the empty chain, `(A, B)` runs `A` then `B`, and
/// longer chains nest: `(A, (B, (C, ())))`. An `Arc<F>` shares one filter between
/// listeners.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a network filter",
    label = "this is listed in a TCP listener's `filters: [..]` but does not implement `proxy_core::tcp::NetworkFilter`",
    note = "implement `proxy_core::tcp::NetworkFilter` for it; HTTP filters (`proxy_core::filter::HttpFilter`) only run on `http` listeners"
)]
pub trait NetworkFilter: Send + Sync + 'static {
    /// Per-connection state, created with `Default` for each connection.
    type State: Default + Send + 'static;

    /// A connection was accepted and admitted by the proxy's rules. Runs before the
    /// upstream is dialled; the client's bytes wait in the socket meanwhile.
    ///
    /// [`NetworkFlow::Close`] closes the connection without dialling upstream (counted as
    /// `downstream_cx_filter_rejected`). Default: [`NetworkFlow::Continue`].
    fn on_new_connection(
        &self,
        state: &mut Self::State,
        info: &ConnectionInfo,
    ) -> impl Future<Output = NetworkFlow> + Send {
        let _ = (state, info);
        async { NetworkFlow::Continue }
    }

    /// Bytes read from the client, before they are written upstream. `data` may be
    /// changed in place, replaced, grown or emptied.
    ///
    /// [`NetworkFlow::Close`] closes both sides at once and discards `data` (counted as
    /// `downstream_cx_filter_closed`). Default: [`NetworkFlow::Continue`].
    fn on_read(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        let _ = (state, data);
        NetworkFlow::Continue
    }

    /// Bytes read from the upstream, before they are written to the client. As
    /// [`on_read`](Self::on_read), in the other direction. Default:
    /// [`NetworkFlow::Continue`].
    fn on_write(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        let _ = (state, data);
        NetworkFlow::Continue
    }

    /// The connection is closed (both sockets are already dropped). Runs for every
    /// connection `on_new_connection` ran for, including rejected ones. Runs on a worker
    /// thread: hand slow work (I/O) elsewhere. Default: nothing.
    fn on_close(&self, state: Self::State, info: &ConnectionInfo, summary: &ConnectionSummary<'_>) {
        let _ = (state, info, summary);
    }
}

/// The empty chain.
impl NetworkFilter for () {
    type State = ();
}

/// A chain of two: `A` is closer to the client. It runs first on new connections and on
/// client bytes, and last on upstream bytes and on close.
impl<A: NetworkFilter, B: NetworkFilter> NetworkFilter for (A, B) {
    type State = (A::State, B::State);

    async fn on_new_connection(
        &self,
        state: &mut Self::State,
        info: &ConnectionInfo,
    ) -> NetworkFlow {
        match self.0.on_new_connection(&mut state.0, info).await {
            NetworkFlow::Continue => self.1.on_new_connection(&mut state.1, info).await,
            NetworkFlow::Close => NetworkFlow::Close,
        }
    }

    #[inline]
    fn on_read(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        match self.0.on_read(&mut state.0, data) {
            NetworkFlow::Continue => self.1.on_read(&mut state.1, data),
            NetworkFlow::Close => NetworkFlow::Close,
        }
    }

    #[inline]
    fn on_write(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        // Reverse order: the filter closest to the upstream sees its bytes first.
        match self.1.on_write(&mut state.1, data) {
            NetworkFlow::Continue => self.0.on_write(&mut state.0, data),
            NetworkFlow::Close => NetworkFlow::Close,
        }
    }

    fn on_close(&self, state: Self::State, info: &ConnectionInfo, summary: &ConnectionSummary<'_>) {
        self.1.on_close(state.1, info, summary);
        self.0.on_close(state.0, info, summary);
    }
}

/// A filter shared between chains (e.g. one connection limit across several listeners).
impl<F: NetworkFilter> NetworkFilter for std::sync::Arc<F> {
    type State = F::State;

    fn on_new_connection(
        &self,
        state: &mut Self::State,
        info: &ConnectionInfo,
    ) -> impl Future<Output = NetworkFlow> + Send {
        (**self).on_new_connection(state, info)
    }

    #[inline]
    fn on_read(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        (**self).on_read(state, data)
    }

    #[inline]
    fn on_write(&self, state: &mut Self::State, data: &mut BytesMut) -> NetworkFlow {
        (**self).on_write(state, data)
    }

    fn on_close(&self, state: Self::State, info: &ConnectionInfo, summary: &ConnectionSummary<'_>) {
        (**self).on_close(state, info, summary);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the order hooks ran in and appends its tag to every chunk.
    struct Tag(&'static str, std::sync::Arc<Mutex<Vec<String>>>);

    impl NetworkFilter for Tag {
        type State = u32;

        async fn on_new_connection(&self, state: &mut u32, _: &ConnectionInfo) -> NetworkFlow {
            *state += 1;
            self.log(format!("new {}", self.0));
            if self.0 == "reject" {
                NetworkFlow::Close
            } else {
                NetworkFlow::Continue
            }
        }

        fn on_read(&self, state: &mut u32, data: &mut BytesMut) -> NetworkFlow {
            *state += 1;
            data.extend_from_slice(self.0.as_bytes());
            NetworkFlow::Continue
        }

        fn on_write(&self, state: &mut u32, data: &mut BytesMut) -> NetworkFlow {
            *state += 1;
            data.extend_from_slice(self.0.as_bytes());
            NetworkFlow::Continue
        }

        fn on_close(&self, state: u32, _: &ConnectionInfo, _: &ConnectionSummary<'_>) {
            self.log(format!("close {} after {state} hooks", self.0));
        }
    }

    impl Tag {
        fn log(&self, line: String) {
            self.1.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    }

    fn info() -> ConnectionInfo {
        ConnectionInfo {
            listener: "t",
            client_ip: None,
            local_port: None,
            start: Instant::now(),
        }
    }

    fn summary() -> ConnectionSummary<'static> {
        ConnectionSummary {
            reason: CloseReason::Completed,
            received_bytes: 0,
            sent_bytes: 0,
            duration: Duration::ZERO,
            upstream: None,
        }
    }

    #[tokio::test]
    async fn chain_runs_in_order_and_reverse_order_and_stops_at_close() {
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let chain = (
            Tag("a", log.clone()),
            (std::sync::Arc::new(Tag("b", log.clone())), ()),
        );
        let mut state = Default::default();
        let flow = chain.on_new_connection(&mut state, &info()).await;
        assert_eq!(flow, NetworkFlow::Continue);

        let mut data = BytesMut::from(&b">"[..]);
        assert!(chain.on_read(&mut state, &mut data).is_continue());
        assert_eq!(&data[..], b">ab");
        let mut data = BytesMut::from(&b"<"[..]);
        assert!(chain.on_write(&mut state, &mut data).is_continue());
        assert_eq!(&data[..], b"<ba");

        chain.on_close(state, &info(), &summary());
        let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            log,
            [
                "new a",
                "new b",
                "close b after 3 hooks",
                "close a after 3 hooks"
            ]
        );

        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let chain = (Tag("reject", log.clone()), Tag("never", log.clone()));
        let mut state = Default::default();
        let flow = chain.on_new_connection(&mut state, &info()).await;
        assert_eq!(flow, NetworkFlow::Close);
        assert_eq!(
            *log.lock().unwrap_or_else(|p| p.into_inner()),
            ["new reject"]
        );
    }
}
