//! A cluster's counters as text, with Envoy's names (for the admin endpoint).

use super::Cluster;

impl Cluster {
    /// Appends every `cluster.<name>.<stat>: <value>` line of this cluster, Envoy's text
    /// stats format: the traffic counters ([`ClusterStats`](crate::stats::ClusterStats)),
    /// `circuit_breakers.default.*`, `membership_healthy` and `membership_total`, then
    /// `outlier_detection.*` when the cluster has outlier detection, `health_check.*`
    /// when it has active health checking and `ssl.*` when it originates TLS (Envoy
    /// creates those only when configured, too).
    pub fn render_stats(&self, out: &mut String) {
        let prefix = format!("cluster.{}", self.name);
        self.stats.render(&prefix, out);
        self.circuit_breaker_stats()
            .render(&format!("{prefix}.circuit_breakers.default"), out);
        self.membership_stats().render(&prefix, out);
        if self.options.outlier_detection.is_some() {
            self.outlier_stats()
                .render(&format!("{prefix}.outlier_detection"), out);
        }
        if self.health_check_settings().is_some() {
            self.health_check_stats()
                .render(&format!("{prefix}.health_check"), out);
        }
        if let Some(tls) = self.tls_stats() {
            tls.render(&prefix, out);
        }
    }
}
