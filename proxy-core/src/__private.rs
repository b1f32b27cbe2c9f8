//! The one table of paths generated code uses (as Rocket's `exports.rs`): the macro
//! spells every item as `::proxy_core::__private::Name`, so users need no other
//! dependency and internal moves stay invisible to the macro.

pub use ::http;
pub use ::pin_project_lite::pin_project;
pub use ::regex::Regex;
pub use ::std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
pub use ::std::path::PathBuf;
pub use ::std::process::ExitCode;
pub use ::std::string::String;
pub use ::std::sync::Arc;
pub use ::std::time::Duration;
pub use ::std::vec::Vec;

pub use crate::app::App;
pub use crate::cluster::health::HealthCheck;
pub use crate::cluster::{
    CircuitBreakers, Cluster, ClusterOptions, DnsDiscovery, DnsFamily, DnsMode, DnsTarget,
    HashPolicy, LbEndpoint, LbPolicy, OutlierDetection, RetryBudget, SessionPersistence,
    UpstreamProtocol,
};
pub use crate::config::{BindAddress, EndpointAddress, Inputs};
pub use crate::filter::HttpFilter;
pub use crate::http::IncomingBody;
pub use crate::http::{Downstream, ResponseBody, exchange};
pub use crate::listener::{HttpOptions, ListenerConfig};
pub use crate::route::{
    DirectResponse, Pipeline, RawRequest, Redirect, Relay, RetryOn, RetryPolicy, Route,
    RouteAction, RoutePolicy, RouteRequest, Router, Targets, host_has_prefix, host_has_suffix,
    host_is, routed,
};
pub use ::http::{Request, Response};

pub use crate::tcp::{IpNet, Ipv4Net, Ipv6Net, NetworkFilter, TcpProxy, TcpProxyOptions};
pub use crate::tls::{CertificateSpec, ServerTlsSpec, TlsVersion, UpstreamTlsSpec};

/// As [`http_filter`], for a `tcp { filters: [..] }` entry.
#[inline(always)]
pub fn network_filter<F: NetworkFilter>(filter: F) -> F {
    filter
}

/// Names a filter expression's trait requirement at its own span, so a value that is not
/// an HTTP filter is reported where it is written (with the trait's diagnostic) instead
/// of deep inside generated code.
#[inline(always)]
pub fn http_filter<F: HttpFilter>(filter: F) -> F {
    filter
}
pub use crate::server::{ServeError, Server};
pub use crate::topology::Topology;

/// `ip:port` for an IPv4 literal, built at compile time.
pub const fn socket_v4(octets: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        port,
    )
}

/// `[ip]:port` for an IPv6 literal, built at compile time.
pub const fn socket_v6(s: [u16; 8], port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(
            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
        )),
        port,
    )
}
