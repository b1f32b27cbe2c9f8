//! The TCP proxy's configuration: its cluster, timeouts and admission rules.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::cluster::Cluster;
use crate::stats::TcpProxyStats;

/// Which client addresses a TCP proxy admits, as CIDR blocks (Envoy's RBAC
/// `source_ip` / `direct_remote_ip` principals, reduced to allow and deny lists).
///
/// A client is admitted when its IP is in no `deny` block and, if `allow` is not empty, in
/// at least one `allow` block: deny wins over allow. IPv4-mapped IPv6 clients
/// (`::ffff:10.0.0.1`) are matched as the IPv4 address. Lists are scanned linearly, once
/// per connection.
///
/// Clients on a Unix socket have no IP and are not subject to these lists; file
/// permissions (the listener's `socket_mode`) control who may connect there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceIps {
    pub allow: &'static [IpNet],
    pub deny: &'static [IpNet],
}

impl SourceIps {
    /// Every client.
    pub const ANY: SourceIps = SourceIps {
        allow: &[],
        deny: &[],
    };

    /// Whether a client at `ip` is admitted.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let matches = |block: &IpNet| block.contains(&ip);
        !self.deny.iter().any(matches) && (self.allow.is_empty() || self.allow.iter().any(matches))
    }
}

/// TCP proxy settings, `const`-constructible so the macro can emit them as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProxyOptions {
    /// Close the connection when no bytes moved in either direction for this long
    /// (Envoy's `idle_timeout`). Counted from the moment the upstream is connected.
    /// Default 1 h, as Envoy; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Close the connection this long after it was accepted, however busy (Envoy's
    /// `max_downstream_connection_duration`). Default: none.
    pub max_connection_duration: Option<Duration>,
    /// Which client IPs are admitted. Default: all.
    pub source_ips: SourceIps,
    /// Admit only connections that arrived on one of these local ports; empty admits
    /// every port (the default). Ports do not apply to Unix socket listeners.
    ///
    /// With a listener bound to one port, the local port is that port; the list guards
    /// against a bind address supplied at start-up (`env(..)`) that is not the one the
    /// rules were written for.
    pub destination_ports: &'static [u16],
}

impl TcpProxyOptions {
    pub const DEFAULT: TcpProxyOptions = TcpProxyOptions {
        idle_timeout: Some(Duration::from_secs(3600)),
        max_connection_duration: None,
        source_ips: SourceIps::ANY,
        destination_ports: &[],
    };

    pub const fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    pub const fn max_connection_duration(mut self, duration: Option<Duration>) -> Self {
        self.max_connection_duration = duration;
        self
    }

    /// Admit only clients in these blocks (unless denied).
    pub const fn allow_source_ips(mut self, blocks: &'static [IpNet]) -> Self {
        self.source_ips.allow = blocks;
        self
    }

    /// Refuse clients in these blocks.
    pub const fn deny_source_ips(mut self, blocks: &'static [IpNet]) -> Self {
        self.source_ips.deny = blocks;
        self
    }

    pub const fn destination_ports(mut self, ports: &'static [u16]) -> Self {
        self.destination_ports = ports;
        self
    }

    /// Whether the rules apply to a Unix socket listener: they do not, so a non-empty
    /// list there is worth a warning at bind time.
    pub(crate) fn has_ip_rules(&self) -> bool {
        !self.source_ips.allow.is_empty()
            || !self.source_ips.deny.is_empty()
            || !self.destination_ports.is_empty()
    }

    /// Checks a connection against the admission rules. `client_ip` and `local_port` are
    /// `None` on a Unix socket, where the rules do not apply.
    pub(crate) fn admit(
        &self,
        client_ip: Option<IpAddr>,
        local_port: Option<u16>,
    ) -> Result<(), Denied> {
        if let Some(ip) = client_ip {
            if !self.source_ips.admits(ip) {
                return Err(Denied::SourceIp);
            }
        }
        if let Some(port) = local_port {
            if !self.destination_ports.is_empty() && !self.destination_ports.contains(&port) {
                return Err(Denied::DestinationPort);
            }
        }
        Ok(())
    }
}

impl Default for TcpProxyOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which admission rule refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    SourceIp,
    DestinationPort,
}

impl Denied {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Denied::SourceIp => "source ip",
            Denied::DestinationPort => "destination port",
        }
    }
}

/// The terminal network filter of a TCP listener: forwards every admitted connection to
/// an endpoint of one cluster (Envoy's `envoy.filters.network.tcp_proxy`).
#[derive(Debug, Clone)]
pub struct TcpProxy {
    stat_prefix: &'static str,
    cluster: Arc<Cluster>,
    options: TcpProxyOptions,
    stats: Arc<TcpProxyStats>,
}

impl TcpProxy {
    /// A proxy to `cluster` whose counters are `tcp.<stat_prefix>.*`. Called once by
    /// generated code at start-up.
    pub fn new(stat_prefix: &'static str, cluster: Arc<Cluster>, options: TcpProxyOptions) -> Self {
        Self {
            stat_prefix,
            cluster,
            options,
            stats: Arc::default(),
        }
    }

    pub fn stat_prefix(&self) -> &'static str {
        self.stat_prefix
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn options(&self) -> &TcpProxyOptions {
        &self.options
    }

    /// The proxy's counters; clone the `Arc` before handing the proxy to
    /// [`Server::tcp`](crate::server::Server::tcp) to read them while it runs.
    pub fn stats(&self) -> &Arc<TcpProxyStats> {
        &self.stats
    }

    /// Appends `tcp.<stat_prefix>.name value` lines.
    pub fn render_stats(&self, out: &mut String) {
        self.stats.render(&format!("tcp.{}", self.stat_prefix), out);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};

    use super::*;

    const LOOPBACK: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8));
    const TEN: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8));
    const TEN_ONE: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 1, 0, 0), 16));
    const ULA: IpNet = IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
        8,
    ));

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn deny_wins_over_allow_and_empty_allow_admits_all() {
        const OPTIONS: TcpProxyOptions = TcpProxyOptions::DEFAULT
            .allow_source_ips(&[TEN, ULA])
            .deny_source_ips(&[TEN_ONE]);
        let rules = OPTIONS.source_ips;
        assert!(rules.admits(ip("10.2.3.4")));
        assert!(
            !rules.admits(ip("10.1.3.4")),
            "denied block inside allowed one"
        );
        assert!(!rules.admits(ip("192.168.0.1")), "not in allow list");
        assert!(rules.admits(ip("fd12::1")));
        assert!(!rules.admits(ip("fe80::1")));
        assert!(
            rules.admits(ip("::ffff:10.2.3.4")),
            "v4-mapped matches as v4"
        );
        assert!(!rules.admits(ip("::ffff:10.1.0.1")));

        let deny_only = SourceIps {
            allow: &[],
            deny: &[LOOPBACK],
        };
        assert!(!deny_only.admits(ip("127.0.0.1")));
        assert!(deny_only.admits(ip("10.0.0.1")));
        assert!(SourceIps::ANY.admits(ip("::1")));
    }

    #[test]
    fn destination_ports_apply_to_tcp_only() {
        let options = TcpProxyOptions::DEFAULT
            .destination_ports(&[6379, 6380])
            .deny_source_ips(&[LOOPBACK]);
        assert_eq!(options.admit(Some(ip("10.0.0.1")), Some(6380)), Ok(()));
        assert_eq!(
            options.admit(Some(ip("10.0.0.1")), Some(1)),
            Err(Denied::DestinationPort)
        );
        assert_eq!(
            options.admit(Some(ip("127.0.0.2")), Some(6379)),
            Err(Denied::SourceIp)
        );
        assert_eq!(options.admit(None, None), Ok(()), "Unix socket client");
        assert!(options.has_ip_rules());
        assert!(!TcpProxyOptions::DEFAULT.has_ip_rules());
        assert_eq!(
            TcpProxyOptions::DEFAULT.admit(Some(ip("1.2.3.4")), Some(1)),
            Ok(())
        );
    }
}
