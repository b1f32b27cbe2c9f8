//! Copying bytes both ways between the client and the upstream, in one task.
//!
//! [`Pipe::poll`] drives both directions from one `poll`, so the filters' per-connection
//! state is a plain `&mut` (no lock, no second task). Each direction is a small state
//! machine over one reused buffer:
//!
//! ```text
//! Reading --bytes--> (filter hook) --> Writing --all written--> Reading
//!    |
//!    +--EOF--> ShuttingDown (FIN to the other side) --> Done
//! ```
//!
//! The directions take turns, one chunk each, so neither starves the other. The pipe
//! finishes when both directions are `Done`, or at the first I/O error or filter `Close`
//! in either direction.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use super::filter::{CloseReason, NetworkFilter, NetworkFlow};
use crate::stats::TcpProxyStats;

/// Bytes read per chunk and each direction's buffer capacity.
pub(crate) const BUFFER_SIZE: usize = 16 * 1024;

/// Byte totals of one connection, for the filters' summary.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// Read from the client.
    pub(crate) received: u64,
    /// Written to the client.
    pub(crate) sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream: filters' `on_read`.
    ToUpstream,
    /// Upstream to client: filters' `on_write`.
    ToDownstream,
}

impl Direction {
    /// The close reason for an error reading this direction's source.
    fn read_error(self) -> CloseReason {
        match self {
            Direction::ToUpstream => CloseReason::DownstreamError,
            Direction::ToDownstream => CloseReason::UpstreamError,
        }
    }

    /// The close reason for an error writing this direction's destination.
    fn write_error(self) -> CloseReason {
        match self {
            Direction::ToUpstream => CloseReason::UpstreamError,
            Direction::ToDownstream => CloseReason::DownstreamError,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for bytes from the source; the buffer is empty.
    Reading,
    /// Writing `buffer[written..]` to the destination.
    Writing,
    /// The source sent FIN; passing it on with `shutdown(SHUT_WR)` on the destination.
    ShuttingDown,
    Done,
}

/// One direction: its buffer, reused for every chunk, and where it is.
#[derive(Debug)]
struct Half {
    direction: Direction,
    buffer: BytesMut,
    written: usize,
    state: State,
}

impl Half {
    fn new(direction: Direction) -> Self {
        Self {
            direction,
            buffer: BytesMut::with_capacity(BUFFER_SIZE),
            written: 0,
            state: State::Reading,
        }
    }
}

/// What a direction needs besides its own streams and buffer.
struct Hooks<'p, F: NetworkFilter> {
    filters: &'p F,
    state: &'p mut F::State,
    stats: &'p TcpProxyStats,
    counts: &'p mut Counts,
    /// Set when bytes moved during this poll.
    moved: bool,
}

impl<F: NetworkFilter> Hooks<'_, F> {
    #[inline]
    fn on_chunk(&mut self, direction: Direction, data: &mut BytesMut) -> NetworkFlow {
        match direction {
            Direction::ToUpstream => {
                let n = data.len() as u64;
                self.counts.received += n;
                self.stats.downstream_cx_rx_bytes_total.add(n);
                self.filters.on_read(self.state, data)
            }
            Direction::ToDownstream => self.filters.on_write(self.state, data),
        }
    }

    #[inline]
    fn on_written(&mut self, direction: Direction, n: usize) {
        if direction == Direction::ToDownstream {
            let n = n as u64;
            self.counts.sent += n;
            self.stats.downstream_cx_tx_bytes_total.add(n);
        }
    }
}

/// Both directions of one proxied connection. See the module docs.
pub(crate) struct Pipe<'p, D, U, F: NetworkFilter> {
    downstream: D,
    upstream: U,
    to_upstream: Half,
    to_downstream: Half,
    hooks: Hooks<'p, F>,
    last_activity: Instant,
}

impl<'p, D, U, F> Pipe<'p, D, U, F>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    F: NetworkFilter,
{
    pub(crate) fn new(
        downstream: D,
        upstream: U,
        filters: &'p F,
        state: &'p mut F::State,
        stats: &'p TcpProxyStats,
        counts: &'p mut Counts,
    ) -> Self {
        Self {
            downstream,
            upstream,
            to_upstream: Half::new(Direction::ToUpstream),
            to_downstream: Half::new(Direction::ToDownstream),
            hooks: Hooks {
                filters,
                state,
                stats,
                counts,
                moved: false,
            },
            last_activity: Instant::now(),
        }
    }

    /// When bytes last moved in either direction (or the pipe was created).
    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Copies in both directions until both have finished ([`CloseReason::Completed`])
    /// or one fails. Dropping the pipe closes both streams.
    ///
    /// The directions take turns, one chunk each per round, until neither can move: a
    /// direction with bytes always ready (a bulk upload) would otherwise spend the
    /// task's whole cooperative budget and starve the other (the replies).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.hooks.moved = false;
        let outcome = loop {
            let up = match transfer(
                cx,
                &mut self.downstream,
                &mut self.upstream,
                &mut self.to_upstream,
                &mut self.hooks,
            ) {
                Ok(step) => step,
                Err(reason) => break Poll::Ready(reason),
            };
            let down = match transfer(
                cx,
                &mut self.upstream,
                &mut self.downstream,
                &mut self.to_downstream,
                &mut self.hooks,
            ) {
                Ok(step) => step,
                Err(reason) => break Poll::Ready(reason),
            };
            match (up, down) {
                (Step::Done, Step::Done) => break Poll::Ready(CloseReason::Completed),
                (Step::Yielded, _) | (_, Step::Yielded) => continue,
                // Each direction is done or registered for a wake-up.
                _ => break Poll::Pending,
            }
        };
        if self.hooks.moved {
            self.last_activity = Instant::now();
        }
        outcome
    }
}

/// How far one turn of a direction got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A chunk was written; the direction may have more. Not registered for a wake-up:
    /// the caller must come back.
    Yielded,
    /// Waiting for its source or destination, which will wake the task.
    Pending,
    /// The source's FIN was passed on.
    Done,
}

/// One turn of one direction: up to one chunk read, filtered and written, or the FIN
/// passed on. `Err` when the connection must close.
fn transfer<R, W, F>(
    cx: &mut Context<'_>,
    source: &mut R,
    destination: &mut W,
    half: &mut Half,
    hooks: &mut Hooks<'_, F>,
) -> Result<Step, CloseReason>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: NetworkFilter,
{
    let direction = half.direction;
    loop {
        match half.state {
            State::Reading => {
                // Empty, and back to full capacity: a no-op unless a filter took the
                // buffer's memory, in which case the allocation is reclaimed or replaced.
                half.buffer.clear();
                half.buffer.reserve(BUFFER_SIZE);
                let Poll::Ready(read) = poll_read_buf(Pin::new(&mut *source), cx, &mut half.buffer)
                else {
                    return Ok(Step::Pending);
                };
                match read {
                    Ok(0) => half.state = State::ShuttingDown,
                    Ok(_) => {
                        hooks.moved = true;
                        if hooks.on_chunk(direction, &mut half.buffer) == NetworkFlow::Close {
                            return Err(CloseReason::FilterClosed);
                        }
                        half.written = 0;
                        half.state = State::Writing;
                    }
                    Err(error) => {
                        tracing::debug!(?direction, %error, "read failed");
                        return Err(direction.read_error());
                    }
                }
            }
            State::Writing => {
                while let Some(rest) = half.buffer.get(half.written..).filter(|r| !r.is_empty()) {
                    let Poll::Ready(written) = Pin::new(&mut *destination).poll_write(cx, rest)
                    else {
                        return Ok(Step::Pending);
                    };
                    match written {
                        Ok(n) if n > 0 => {
                            half.written += n;
                            hooks.moved = true;
                            hooks.on_written(direction, n);
                        }
                        Ok(_) => {
                            tracing::debug!(?direction, "write accepted no bytes");
                            return Err(direction.write_error());
                        }
                        Err(error) => {
                            tracing::debug!(?direction, %error, "write failed");
                            return Err(direction.write_error());
                        }
                    }
                }
                // A no-op on sockets; kept so a transport that buffers (TLS) works as is.
                match Pin::new(&mut *destination).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(?direction, %error, "flush failed");
                        return Err(direction.write_error());
                    }
                    Poll::Pending => return Ok(Step::Pending),
                }
                half.state = State::Reading;
                return Ok(Step::Yielded);
            }
            State::ShuttingDown => {
                // The destination may already be gone (reset); then the other direction
                // reports it, and nothing of this one is lost: every byte was written.
                match Pin::new(&mut *destination).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(?direction, %error, "shutdown failed");
                    }
                    Poll::Pending => return Ok(Step::Pending),
                }
                half.state = State::Done;
            }
            State::Done => return Ok(Step::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    /// Uppercases client bytes and drops upstream bytes after a `!`.
    struct Shout;

    impl NetworkFilter for Shout {
        type State = usize;

        fn on_read(&self, chunks: &mut usize, data: &mut BytesMut) -> NetworkFlow {
            *chunks += 1;
            data.make_ascii_uppercase();
            NetworkFlow::Continue
        }

        fn on_write(&self, _: &mut usize, data: &mut BytesMut) -> NetworkFlow {
            if let Some(end) = data.iter().position(|b| *b == b'!') {
                data.truncate(end);
            }
            NetworkFlow::Continue
        }
    }

    #[tokio::test]
    async fn copies_both_ways_through_filters_and_passes_each_fin_on() {
        let (mut client, proxy_downstream) = duplex(64);
        let (proxy_upstream, mut origin) = duplex(64);
        let stats = TcpProxyStats::default();
        let mut state = 0;
        let mut counts = Counts::default();
        let reason = {
            let mut pipe = Pipe::new(
                proxy_downstream,
                proxy_upstream,
                &Shout,
                &mut state,
                &stats,
                &mut counts,
            );
            let run = poll_fn(|cx| pipe.poll(cx));
            // More than the duplex capacity, so both sides see backpressure.
            let client_side = async {
                client.write_all(&[b'a'; 1000]).await.unwrap();
                client.shutdown().await.unwrap();
                // The client's write side is closed; its read side still works.
                let mut reply = Vec::new();
                client.read_to_end(&mut reply).await.unwrap();
                reply
            };
            let origin_side = async {
                let mut seen = Vec::new();
                origin.read_to_end(&mut seen).await.unwrap();
                origin.write_all(b"reply!hidden").await.unwrap();
                origin.shutdown().await.unwrap();
                seen
            };
            let (reason, reply, seen) = tokio::join!(run, client_side, origin_side);
            assert_eq!(seen, vec![b'A'; 1000]);
            assert_eq!(reply, b"reply");
            reason
        };
        assert_eq!(reason, CloseReason::Completed);
        assert_eq!(counts.received, 1000);
        assert_eq!(counts.sent, 5);
        assert!(state >= 1);
        assert_eq!(stats.downstream_cx_rx_bytes_total.get(), 1000);
        assert_eq!(stats.downstream_cx_tx_bytes_total.get(), 5);
    }
}
