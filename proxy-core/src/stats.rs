//! Counters and gauges with Envoy's names.
//!
//! Every counter a topology can have is known when it is compiled, so stats are plain
//! struct fields of atomics, not a string-keyed registry: incrementing one is a single
//! relaxed atomic add. They are read by `--check`-style reports now and by the admin
//! listener later.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (active connections, requests in flight).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Replaces the value; for gauges computed rather than counted (certificate expiry).
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Decrements a gauge when dropped, so every exit path of a connection or request
/// (including cancellation) is counted.
#[derive(Debug)]
pub(crate) struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

macro_rules! stats_struct {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $kind:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $(#[doc = concat!("`", stringify!($field), "`")] pub $field: $kind,)*
        }

        impl $name {
            /// Appends `prefix.name value` lines, Envoy's text stats format.
            pub fn render(&self, prefix: &str, out: &mut String) {
                $(let _ = writeln!(out, "{}.{}: {}", prefix, stringify!($field), self.$field.get());)*
            }
        }
    };
}

stats_struct! {
    /// `cluster.<name>.*`, Envoy's cluster traffic counters. Notes on the ones whose
    /// meaning is not obvious from Envoy's docs:
    ///
    /// | stat | counts |
    /// |---|---|
    /// | `upstream_cx_total` | connections established (HTTP and TCP proxy; failed dials are `upstream_cx_connect_fail`) |
    /// | `upstream_cx_active` (gauge) | connections open now |
    /// | `upstream_rq_total` | requests admitted by `max_requests` and sent to an endpoint |
    /// | `upstream_rq_active` (gauge) | admitted requests not yet over: until the response body ends, fails or is dropped (a request waiting for a connection counts too; one its client abandoned while its HTTP/1.1 response head was awaited, until that answer is read in the background or its connection closes) |
    /// | `upstream_rq_5xx` | 5xx response heads, plus connect failures and resets (charged as 503) and timeouts reported with `Cluster::record_timeout` (charged as 504), as Envoy charges them |
    /// | `upstream_rq_pending_overflow` | requests refused by `max_requests` or `max_pending_requests` (503 `UO`) |
    /// | `upstream_rq_pending_total`, `upstream_rq_pending_active` (gauge) | requests that waited (now waiting) for a connection under `max_connections` |
    /// | `upstream_cx_overflow` | times a connection was needed while `max_connections` was reached (once per waiting request or refused TCP proxy connection) |
    /// | `upstream_rq_retry_overflow` | retries refused by `max_retries` or the retry budget |
    ClusterStats {
        upstream_cx_total: Counter,
        upstream_cx_active: Gauge,
        upstream_cx_connect_fail: Counter,
        upstream_cx_connect_timeout: Counter,
        upstream_cx_destroy: Counter,
        upstream_rq_total: Counter,
        upstream_rq_active: Gauge,
        // DNS discovery, per target resolution (Envoy's names; see `cluster::dns`).
        update_attempt: Counter,
        update_success: Counter,
        update_failure: Counter,
        update_no_rebuild: Counter,
        membership_change: Counter,
        upstream_rq_timeout: Counter,
        upstream_rq_2xx: Counter,
        upstream_rq_3xx: Counter,
        upstream_rq_4xx: Counter,
        upstream_rq_5xx: Counter,
        upstream_cx_reuse: Counter,
        upstream_rq_reset: Counter,
        upstream_rq_retry: Counter,
        upstream_rq_retry_success: Counter,
        upstream_rq_retry_overflow: Counter,
        upstream_rq_retry_limit_exceeded: Counter,
        upstream_rq_per_try_timeout: Counter,
        upstream_rq_pending_overflow: Counter,
        upstream_rq_pending_total: Counter,
        upstream_rq_pending_active: Gauge,
        upstream_cx_overflow: Counter,
    }
}

stats_struct! {
    /// `http.<listener>.*` (Envoy's connection-manager stats, keyed by listener here).
    ListenerStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
        downstream_rq_total: Counter,
        downstream_rq_active: Gauge,
        downstream_rq_2xx: Counter,
        downstream_rq_3xx: Counter,
        downstream_rq_4xx: Counter,
        downstream_rq_5xx: Counter,
        no_route: Counter,
        no_healthy_upstream: Counter,
        downstream_cx_upgrades_total: Counter,
        downstream_cx_upgrades_active: Gauge,
        downstream_rq_ws_on_non_ws_route: Counter,
        upstream_connect_fail: Counter,
        upstream_reset: Counter,
        upstream_timeout: Counter,
        upstream_overflow: Counter,
    }
}

impl ClusterStats {
    pub(crate) fn count_status(&self, status: u16) {
        match status / 100 {
            2 => self.upstream_rq_2xx.inc(),
            3 => self.upstream_rq_3xx.inc(),
            4 => self.upstream_rq_4xx.inc(),
            5 => self.upstream_rq_5xx.inc(),
            _ => {}
        }
    }
}

impl ListenerStats {
    pub(crate) fn count_status(&self, status: u16) {
        match status / 100 {
            2 => self.downstream_rq_2xx.inc(),
            3 => self.downstream_rq_3xx.inc(),
            4 => self.downstream_rq_4xx.inc(),
            5 => self.downstream_rq_5xx.inc(),
            _ => {}
        }
    }
}

stats_struct! {
    /// `tcp.<stat_prefix>.*`: a TCP proxy's connections. Envoy's `tcp_proxy` names where
    /// Envoy has the counter; outcomes Envoy counts in other filters (RBAC) or not at all
    /// are named in the same style.
    ///
    /// | counter | counts |
    /// |---|---|
    /// | `downstream_cx_total` | connections accepted, admitted or not |
    /// | `downstream_cx_active` (gauge) | connections open now |
    /// | `downstream_cx_denied` | refused by `source_ips` or `destination_ports`, closed without reading |
    /// | `downstream_cx_filter_rejected` | refused by a network filter's `on_new_connection` |
    /// | `downstream_cx_filter_closed` | closed by a network filter's `on_read` or `on_write` |
    /// | `no_healthy_upstream` | the cluster had no endpoint to pick |
    /// | `upstream_cx_connect_fail` | dialling the endpoint failed or timed out (also in `cluster.<name>.*`) |
    /// | `downstream_cx_rx_bytes_total` | bytes read from clients |
    /// | `downstream_cx_tx_bytes_total` | bytes written to clients |
    /// | `idle_timeout` | closed after `idle_timeout` without bytes either way |
    /// | `max_downstream_connection_duration` | closed at `max_connection_duration` |
    /// | `downstream_cx_drain_close` | still open when the drain timeout ended at shutdown |
    /// | `downstream_cx_error` | reading from or writing to the client failed (e.g. reset) |
    /// | `upstream_cx_error` | reading from or writing to the upstream failed (e.g. reset) |
    TcpProxyStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
        downstream_cx_denied: Counter,
        downstream_cx_filter_rejected: Counter,
        downstream_cx_filter_closed: Counter,
        no_healthy_upstream: Counter,
        upstream_cx_connect_fail: Counter,
        downstream_cx_rx_bytes_total: Counter,
        downstream_cx_tx_bytes_total: Counter,
        idle_timeout: Counter,
        max_downstream_connection_duration: Counter,
        downstream_cx_drain_close: Counter,
        downstream_cx_error: Counter,
        upstream_cx_error: Counter,
    }
}

/// `<listener or cluster prefix>.ssl.*`: TLS handshakes on one listener (downstream, TLS
/// terminated here) or one cluster (upstream, TLS originated here). Counted once per
/// handshake, never per request. Envoy's names where Envoy has the counter; the
/// `fail_*` breakdown of `connection_error` is ours.
///
/// | counter | counts |
/// |---|---|
/// | `handshake` | completed handshakes |
/// | `session_reused` | completed handshakes that resumed a session |
/// | `no_certificate` | completed downstream handshakes without a client certificate |
/// | `connection_error` | failed handshakes, except certificate-verification failures (Envoy's meaning) |
/// | `fail_verify_no_cert` | the peer sent no certificate and one is required |
/// | `fail_verify_error` | the peer's certificate failed verification (unknown CA, expired, wrong name, ...) |
/// | `fail_handshake_timeout` | the handshake did not finish within its timeout (also `connection_error`) |
/// | `fail_incompatible` | no common protocol version, cipher suite or ALPN protocol (also `connection_error`) |
/// | `fail_peer_alert` | the peer aborted with an alert, e.g. it rejected our certificate (also `connection_error`) |
/// | `fail_protocol` | malformed or unexpected TLS messages (also `connection_error`) |
/// | `fail_io` | the transport failed or closed mid-handshake (also `connection_error`) |
/// | `versions.TLSv1.2`, `versions.TLSv1.3` | completed handshakes by negotiated version |
#[derive(Debug, Default)]
pub struct TlsStats {
    /// See the table above.
    pub handshake: Counter,
    /// See the table above.
    pub session_reused: Counter,
    /// See the table above.
    pub no_certificate: Counter,
    /// See the table above.
    pub connection_error: Counter,
    /// See the table above.
    pub fail_verify_no_cert: Counter,
    /// See the table above.
    pub fail_verify_error: Counter,
    /// See the table above.
    pub fail_handshake_timeout: Counter,
    /// See the table above.
    pub fail_incompatible: Counter,
    /// See the table above.
    pub fail_peer_alert: Counter,
    /// See the table above.
    pub fail_protocol: Counter,
    /// See the table above.
    pub fail_io: Counter,
    /// See the table above.
    pub versions_tls1_2: Counter,
    /// See the table above.
    pub versions_tls1_3: Counter,
}

impl TlsStats {
    /// Appends `prefix.ssl.name value` lines with Envoy's names, e.g.
    /// `listener.edge.ssl.versions.TLSv1.3: 12`.
    pub fn render(&self, prefix: &str, out: &mut String) {
        let rows: [(&str, &Counter); 13] = [
            ("handshake", &self.handshake),
            ("session_reused", &self.session_reused),
            ("no_certificate", &self.no_certificate),
            ("connection_error", &self.connection_error),
            ("fail_verify_no_cert", &self.fail_verify_no_cert),
            ("fail_verify_error", &self.fail_verify_error),
            ("fail_handshake_timeout", &self.fail_handshake_timeout),
            ("fail_incompatible", &self.fail_incompatible),
            ("fail_peer_alert", &self.fail_peer_alert),
            ("fail_protocol", &self.fail_protocol),
            ("fail_io", &self.fail_io),
            ("versions.TLSv1.2", &self.versions_tls1_2),
            ("versions.TLSv1.3", &self.versions_tls1_3),
        ];
        for (name, counter) in rows {
            let _ = writeln!(out, "{prefix}.ssl.{name}: {}", counter.get());
        }
    }
}

stats_struct! {
    /// `cluster.<name>.health_check.*`, Envoy's active health checking counters.
    HealthCheckStats {
        attempt: Counter,
        success: Counter,
        failure: Counter,
        network_failure: Counter,
        passive_failure: Counter,
        verify_cluster: Counter,
        healthy: Gauge,
    }
}

stats_struct! {
    /// `cluster.<name>.outlier_detection.*`, Envoy's outlier detection counters (only the
    /// consecutive-error detectors exist here).
    ///
    /// | stat | counts |
    /// |---|---|
    /// | `ejections_active` (gauge) | endpoints ejected now |
    /// | `ejections_total` | ejections carried out, whatever the detector (Envoy's deprecated total) |
    /// | `ejections_overflow` | ejections skipped because `max_ejection_percent` was reached |
    /// | `ejections_enforced_total` | ejections carried out |
    /// | `ejections_detected_consecutive_5xx` | times an endpoint reached `consecutive_5xx`, ejected or not |
    /// | `ejections_enforced_consecutive_5xx` | of those, ejections carried out |
    /// | `ejections_detected_consecutive_gateway_failure` | times an endpoint reached `consecutive_gateway_failure` |
    /// | `ejections_enforced_consecutive_gateway_failure` | of those, ejections carried out |
    OutlierStats {
        ejections_active: Gauge,
        ejections_total: Counter,
        ejections_overflow: Counter,
        ejections_enforced_total: Counter,
        ejections_detected_consecutive_5xx: Counter,
        ejections_enforced_consecutive_5xx: Counter,
        ejections_detected_consecutive_gateway_failure: Counter,
        ejections_enforced_consecutive_gateway_failure: Counter,
    }
}

stats_struct! {
    /// `cluster.<name>.circuit_breakers.default.*`: a snapshot of the cluster's circuit
    /// breakers (Envoy's default priority), taken when read. The `*_open` gauges are 1
    /// while that resource is at its limit, else 0; `remaining_*` is what is left below
    /// the limit. `cx_pool_open` is always 0: there is no limit on connection pools.
    CircuitBreakerStats {
        cx_open: Gauge,
        cx_pool_open: Gauge,
        rq_pending_open: Gauge,
        rq_open: Gauge,
        rq_retry_open: Gauge,
        remaining_cx: Gauge,
        remaining_pending: Gauge,
        remaining_rq: Gauge,
        remaining_retries: Gauge,
    }
}

stats_struct! {
    /// `cluster.<name>.membership_*`: endpoints in the cluster, and those healthy.
    MembershipStats {
        membership_total: Gauge,
        membership_healthy: Gauge,
    }
}
