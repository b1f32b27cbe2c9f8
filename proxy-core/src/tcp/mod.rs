//! The TCP proxy (L4): listeners that forward byte streams to a cluster, with network
//! filters on the way.
//!
//! A `tcp` listener has a chain of [`NetworkFilter`]s and ends in a [`TcpProxy`] (Envoy's
//! `tcp_proxy`): every admitted connection is forwarded to one endpoint of one cluster,
//! TCP or Unix socket on either side. [`Server::tcp`](crate::server::Server::tcp) serves
//! one.
//!
//! ## How a connection flows
//!
//! ```text
//! accept ─► admission (source_ips, destination_ports) ─► filters' on_new_connection
//!        ─► Cluster pick (round robin) ─► dial (cluster connect_timeout)
//!        ─► pipe: client ─on_read─► upstream, upstream ─on_write─► client
//!        ─► both sockets closed ─► filters' on_close
//! ```
//!
//! 1. **Admission.** A client IP outside [`SourceIps`] or a local port outside
//!    `destination_ports` closes the connection before a byte is read; filters do not see
//!    it. Neither rule applies on a Unix socket listener.
//! 2. **Filters** run [`on_new_connection`](NetworkFilter::on_new_connection) in chain
//!    order and may reject. Meanwhile the client's first bytes wait in the socket.
//! 3. **Upstream.** The cluster picks an endpoint round robin and it is dialled once
//!    (no retry on another endpoint). No endpoint, or a failed dial, closes the client
//!    connection.
//! 4. **The pipe** copies both directions in the connection's one task, through
//!    one 16 KiB buffer per direction reused for every chunk, calling
//!    [`on_read`](NetworkFilter::on_read) / [`on_write`](NetworkFilter::on_write) on each
//!    chunk. A direction reads the next chunk only once the previous one is fully written,
//!    so a slow reader slows its writer down (backpressure through both sockets'
//!    windows) and memory per connection is bounded.
//! 5. **Close.** Both sockets are dropped, counters are updated, and
//!    [`on_close`](NetworkFilter::on_close) gets a [`ConnectionSummary`].
//!
//! ## Half-close
//!
//! When one side sends FIN (a read returns end of stream), the proxy shuts down the
//! write half of the other side (`shutdown(SHUT_WR)`, a FIN there) and keeps copying the
//! other direction until it ends too. So a client that sends a request and shuts down its
//! write side still gets the whole reply, and an upstream that says goodbye first still
//! receives what the client sends afterwards. The connection is closed when both
//! directions have ended ([`CloseReason::Completed`]), or at once when:
//!
//! - reading or writing either side fails (a reset): the other side is closed too;
//! - a filter returns [`NetworkFlow::Close`];
//! - no byte moved either way for `idle_timeout` (default 1 h; counted from the upstream
//!   connect; bytes in either direction reset it, including while half-closed);
//! - `max_connection_duration` has passed since accept;
//! - the server is shutting down and the drain timeout has passed.
//!
//! Closing drops the sockets: the kernel sends FIN, or RST if unread bytes remain.
//!
//! ## Shutdown
//!
//! On shutdown the listener stops accepting and closes its socket at once. Open
//! connections carry on for up to the server's drain timeout, then the rest are closed
//! (`downstream_cx_drain_close`) and their filters' `on_close` runs. A Unix socket file
//! is removed with the others when the server has shut down.

mod filter;
mod pipe;
mod proxy;
mod serve;

pub use crate::stats::TcpProxyStats;
pub use filter::{CloseReason, ConnectionInfo, ConnectionSummary, NetworkFilter, NetworkFlow};
pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use proxy::{SourceIps, TcpProxy, TcpProxyOptions};
