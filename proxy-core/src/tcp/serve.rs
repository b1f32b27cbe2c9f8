//! Serving a TCP proxy listener: the accept loop, one task per connection, and drain.

use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};

use super::filter::{CloseReason, ConnectionInfo, ConnectionSummary, NetworkFilter, NetworkFlow};
use super::pipe::{Counts, Pipe};
use super::proxy::TcpProxy;
use crate::cluster::{Cluster, Endpoint};
use crate::config::{BindAddress, EndpointAddress};
use crate::listener::{BoundListener, ListenerConfig};
use crate::net::Stream;
use crate::server::{ServeError, Server};
use crate::stats::{ClusterStats, GaugeGuard, TcpProxyStats};
use crate::upstream::{ConnectError, connect};

impl Server {
    /// Binds `listener` and proxies every connection on it to `proxy`'s cluster through
    /// `filters` (a network filter chain; `()` for none). Must run inside the runtime; a
    /// bind failure is returned, not logged. Returns the address actually bound (the real
    /// port when `:0` was asked for).
    ///
    /// At shutdown the listener stops accepting at once; open connections may finish for
    /// up to the drain timeout and are then closed.
    pub fn tcp<F: NetworkFilter>(
        &mut self,
        listener: &ListenerConfig,
        filters: F,
        proxy: TcpProxy,
    ) -> Result<BindAddress, ServeError> {
        let (bound, address) = self.bind(listener)?;
        if bound[0].unix_path().is_some() && proxy.options().has_ip_rules() {
            tracing::warn!(
                listener = listener.name(),
                "source_ips and destination_ports do not apply on a Unix socket listener; \
                 use the socket's file mode to restrict clients"
            );
        }
        tracing::info!(
            listener = listener.name(),
            %address,
            cluster = proxy.cluster().name(),
            "listening (tcp proxy)"
        );
        let listener = Arc::new(Listener {
            name: listener.name(),
            filters,
            proxy,
        });
        let drain_timeout = self.settings.drain_timeout;
        self.spawn_accept_loops(bound, |bound, shutdown| {
            accept_loop(bound, Arc::clone(&listener), shutdown, drain_timeout)
        });
        Ok(address)
    }
}

/// What every connection of one listener shares.
struct Listener<F> {
    name: &'static str,
    filters: F,
    proxy: TcpProxy,
}

async fn accept_loop<F: NetworkFilter>(
    bound: BoundListener,
    listener: Arc<Listener<F>>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let bound = match bound.into_acceptor() {
        Ok(bound) => bound,
        Err(error) => {
            tracing::error!(listener = listener.name, %error, "cannot register the listening socket");
            return;
        }
    };
    // Flipped when the drain timeout has passed: every connection still open closes.
    let (force_close, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(finished) = connections.join_next() => {
                report(listener.name, finished);
                continue;
            }
            accepted = bound.accept() => accepted,
        };
        let (stream, client_ip) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory: the error repeats until something
                // closes, so back off instead of spinning a core.
                tracing::warn!(listener = listener.name, %error, "accept failed");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    () = sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        connections.spawn(serve_connection(
            Arc::clone(&listener),
            stream,
            client_ip,
            closing.clone(),
        ));
    }

    // New clients fail fast (or go to another instance) instead of queueing in the
    // backlog of a proxy that is going away.
    drop(bound);
    let drain = async {
        while let Some(finished) = connections.join_next().await {
            report(listener.name, finished);
        }
    };
    if tokio::time::timeout(drain_timeout, drain).await.is_err() {
        tracing::warn!(
            listener = listener.name,
            remaining = connections.len(),
            timeout = ?drain_timeout,
            "drain timeout reached; closing remaining TCP connections"
        );
        let _ = force_close.send(true);
        // Each connection drops its sockets and runs its filters' `on_close` at once.
        while let Some(finished) = connections.join_next().await {
            report(listener.name, finished);
        }
    }
}

fn report(listener: &'static str, finished: Result<(), JoinError>) {
    if let Err(error) = finished {
        if error.is_panic() {
            tracing::error!(listener, %error, "TCP proxy connection task panicked");
        }
    }
}

/// One downstream connection, from admission to `on_close`.
async fn serve_connection<F: NetworkFilter>(
    listener: Arc<Listener<F>>,
    downstream: Stream,
    client_ip: Option<IpAddr>,
    mut closing: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let proxy = &listener.proxy;
    let stats = &**proxy.stats();
    stats.downstream_cx_total.inc();
    let _active = GaugeGuard::new(&stats.downstream_cx_active);

    let local_port = match downstream.tcp() {
        Some(stream) => match stream.local_addr() {
            Ok(local) => Some(local.port()),
            Err(error) => {
                tracing::debug!(listener = listener.name, %error, "connection gone before it was served");
                return;
            }
        },
        None => None,
    };
    let client_ip = client_ip.map(|ip| ip.to_canonical());
    if let Err(denied) = proxy.options().admit(client_ip, local_port) {
        stats.downstream_cx_denied.inc();
        tracing::debug!(
            listener = listener.name,
            client = ?client_ip,
            local_port,
            rule = denied.as_str(),
            "connection denied"
        );
        return;
    }

    let info = ConnectionInfo {
        listener: listener.name,
        client_ip,
        local_port,
        start: start.into_std(),
    };
    let mut state = F::State::default();
    let mut counts = Counts::default();
    let mut upstream = None;
    let deadline = proxy
        .options()
        .max_connection_duration
        .and_then(|max| start.checked_add(max));
    let reason = {
        let run = proxy_connection(
            &listener,
            &mut state,
            &info,
            downstream,
            &mut counts,
            &mut upstream,
        );
        // Not polled (so no timer is armed) when there is no deadline.
        let max_duration = sleep_until(deadline.unwrap_or(start));
        // Timers first: polling them is cheap, and a pipe that always has bytes ready
        // spends the task's cooperative budget, after which a timer polled second would
        // report `Pending` poll after poll.
        tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => CloseReason::Drain,
            () = max_duration, if deadline.is_some() => CloseReason::MaxDuration,
            reason = run => reason,
        }
        // `run` is dropped here, and with it both sockets.
    };
    count(stats, reason);
    let summary = ConnectionSummary {
        reason,
        received_bytes: counts.received,
        sent_bytes: counts.sent,
        duration: start.elapsed(),
        upstream,
    };
    tracing::debug!(
        listener = listener.name,
        client = ?client_ip,
        upstream = upstream.map(tracing::field::display),
        ?reason,
        received = counts.received,
        sent = counts.sent,
        "connection closed"
    );
    listener.filters.on_close(state, &info, &summary);
}

fn count(stats: &TcpProxyStats, reason: CloseReason) {
    let counter = match reason {
        CloseReason::Rejected => &stats.downstream_cx_filter_rejected,
        CloseReason::NoHealthyUpstream => &stats.no_healthy_upstream,
        CloseReason::ConnectFailed => &stats.upstream_cx_connect_fail,
        CloseReason::FilterClosed => &stats.downstream_cx_filter_closed,
        CloseReason::IdleTimeout => &stats.idle_timeout,
        CloseReason::MaxDuration => &stats.max_downstream_connection_duration,
        CloseReason::Drain => &stats.downstream_cx_drain_close,
        CloseReason::DownstreamError => &stats.downstream_cx_error,
        CloseReason::UpstreamError => &stats.upstream_cx_error,
        // Counted in the cluster's `upstream_cx_overflow`, as Envoy does.
        CloseReason::Completed | CloseReason::UpstreamOverflow => return,
    };
    counter.inc();
}

/// Filters' `on_new_connection`, the upstream dial, then the pipe until it ends or
/// idles out. Cancelled (and both sockets closed) by the caller on drain or max duration.
async fn proxy_connection<'l, F: NetworkFilter>(
    listener: &'l Listener<F>,
    state: &mut F::State,
    info: &ConnectionInfo,
    downstream: Stream,
    counts: &mut Counts,
    upstream_address: &mut Option<&'l EndpointAddress>,
) -> CloseReason {
    if listener.filters.on_new_connection(state, info).await == NetworkFlow::Close {
        return CloseReason::Rejected;
    }
    let cluster: &Cluster = listener.proxy.cluster();
    let Some(endpoint) = cluster.pick_for(cluster.connection_hash(info.client_ip)) else {
        tracing::debug!(
            listener = listener.name,
            cluster = cluster.name(),
            "no endpoint to pick"
        );
        return CloseReason::NoHealthyUpstream;
    };
    *upstream_address = Some(endpoint.address());
    // Held until the pipe ends: the connection counts against the cluster's
    // `max_connections` like an HTTP one, and does not wait for a slot.
    let Some(_slot) = cluster.tcp_connection_slot(endpoint) else {
        tracing::debug!(
            listener = listener.name,
            cluster = cluster.name(),
            "circuit breaker max_connections reached; closing"
        );
        return CloseReason::UpstreamOverflow;
    };
    let upstream = match dial(cluster, endpoint).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(listener = listener.name, cluster = cluster.name(), %error, "upstream connect failed");
            return CloseReason::ConnectFailed;
        }
    };
    let _upstream = UpstreamConnection::new(cluster.stats());
    // A connection is the L4 unit of work: least-request balances by open connections.
    let _active = endpoint.track_request();

    let stats = &**listener.proxy.stats();
    let mut pipe = Pipe::new(
        downstream,
        upstream,
        &listener.filters,
        state,
        stats,
        counts,
    );
    let Some(idle_timeout) = listener.proxy.options().idle_timeout else {
        return poll_fn(|cx| pipe.poll(cx)).await;
    };
    // Armed once and moved forward lazily: bytes moving only record an instant, and the
    // timer is re-armed when it fires early. No timer update per chunk.
    let idle = sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased; // the timer first, as in `serve_connection`
            () = &mut idle => {
                match pipe.last_activity().checked_add(idle_timeout) {
                    Some(deadline) if deadline > Instant::now() => idle.as_mut().reset(deadline),
                    Some(_) => return CloseReason::IdleTimeout,
                    // Too far in the future to represent: never idles out.
                    None => return poll_fn(|cx| pipe.poll(cx)).await,
                }
            }
            reason = poll_fn(|cx| pipe.poll(cx)) => return reason,
        }
    }
}

/// Dials `endpoint` with the cluster's connect timeout, counting in the cluster's stats
/// as its HTTP connections do.
async fn dial(cluster: &Cluster, endpoint: &Endpoint) -> Result<Stream, ConnectError> {
    let stats = cluster.stats();
    let dialled = connect(endpoint.address(), cluster.options().connect_timeout).await;
    cluster.outlier_connect(endpoint, dialled.is_ok());
    match dialled {
        Ok(stream) => {
            stats.upstream_cx_total.inc();
            Ok(stream)
        }
        Err(error) => {
            stats.upstream_cx_connect_fail.inc();
            if matches!(error, ConnectError::Timeout { .. }) {
                stats.upstream_cx_connect_timeout.inc();
            }
            Err(error)
        }
    }
}

/// Counts an open upstream connection in the cluster's stats until dropped.
struct UpstreamConnection<'a>(&'a ClusterStats);

impl<'a> UpstreamConnection<'a> {
    fn new(stats: &'a ClusterStats) -> Self {
        stats.upstream_cx_active.inc();
        Self(stats)
    }
}

impl Drop for UpstreamConnection<'_> {
    fn drop(&mut self) {
        self.0.upstream_cx_active.dec();
        self.0.upstream_cx_destroy.inc();
    }
}
