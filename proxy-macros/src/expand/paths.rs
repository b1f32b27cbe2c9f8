//! The one table of runtime items generated code names (as Rocket's `exports.rs`).
//!
//! Every item is spelled `::proxy_core::__private::..`, so the user needs no other
//! dependency and no imports, and nothing they define can shadow it. This list is the
//! macro's whole contract with `proxy-core`.

use proc_macro2::{Ident, Punct, Spacing, Span, TokenStream};
use quote::{ToTokens, TokenStreamExt};

/// A path below `::proxy_core::__private`, `::`-separated.
pub struct Private(&'static str);

impl ToTokens for Private {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let separator = |tokens: &mut TokenStream| {
            tokens.append(Punct::new(':', Spacing::Joint));
            tokens.append(Punct::new(':', Spacing::Alone));
        };
        for segment in ["proxy_core", "__private"]
            .into_iter()
            .chain(self.0.split("::"))
        {
            separator(tokens);
            tokens.append(Ident::new(segment, Span::call_site()));
        }
    }
}

// std re-exports.
pub const ARC: Private = Private("Arc");
pub const DURATION: Private = Private("Duration");
pub const PATH_BUF: Private = Private("PathBuf");
pub const EXIT_CODE: Private = Private("ExitCode");
pub const REGEX: Private = Private("Regex");

// The `http` crate.
pub const METHOD: Private = Private("http::Method");
pub const HEADER_NAME: Private = Private("http::HeaderName");

// Addresses.
pub const SOCKET_V4: Private = Private("socket_v4");
pub const SOCKET_V6: Private = Private("socket_v6");
pub const SOCKET_ADDR: Private = Private("SocketAddr");
pub const BIND_ADDRESS: Private = Private("BindAddress");
pub const ENDPOINT_ADDRESS: Private = Private("EndpointAddress");
pub const INPUTS: Private = Private("Inputs");

// Listeners, clusters and routes.
pub const LISTENER_CONFIG: Private = Private("ListenerConfig");
pub const HTTP_OPTIONS: Private = Private("HttpOptions");
pub const CLUSTER: Private = Private("Cluster");
pub const CLUSTER_OPTIONS: Private = Private("ClusterOptions");
pub const UPSTREAM_PROTOCOL: Private = Private("UpstreamProtocol");
pub const LB_POLICY: Private = Private("LbPolicy");
pub const HASH_POLICY: Private = Private("HashPolicy");
pub const LB_ENDPOINT: Private = Private("LbEndpoint");
pub const HEALTH_CHECK: Private = Private("HealthCheck");
pub const OUTLIER_DETECTION: Private = Private("OutlierDetection");
pub const CIRCUIT_BREAKERS: Private = Private("CircuitBreakers");
pub const RETRY_BUDGET: Private = Private("RetryBudget");
pub const SESSION_PERSISTENCE: Private = Private("SessionPersistence");
pub const DNS_DISCOVERY: Private = Private("DnsDiscovery");
pub const DNS_FAMILY: Private = Private("DnsFamily");
pub const DNS_TARGET: Private = Private("DnsTarget");
pub const STRING: Private = Private("String");
pub const RETRY_POLICY: Private = Private("RetryPolicy");
pub const RETRY_ON: Private = Private("RetryOn");
pub const TARGETS: Private = Private("Targets");
pub const ROUTE_POLICY: Private = Private("RoutePolicy");
pub const DIRECT_RESPONSE: Private = Private("DirectResponse");
pub const REDIRECT: Private = Private("Redirect");
pub const ROUTE_ACTION: Private = Private("RouteAction");
pub const ROUTER: Private = Private("Router");
pub const ROUTE_REQUEST: Private = Private("RouteRequest");
pub const RAW_REQUEST: Private = Private("RawRequest");
pub const RELAY: Private = Private("Relay");
pub const ROUTE: Private = Private("Route");
pub const PIPELINE: Private = Private("Pipeline");
pub const EXCHANGE: Private = Private("exchange");
pub const ROUTED: Private = Private("routed");
pub const DOWNSTREAM: Private = Private("Downstream");
pub const REQUEST: Private = Private("Request");
pub const RESPONSE: Private = Private("Response");
pub const RESPONSE_BODY: Private = Private("ResponseBody");
pub const INCOMING: Private = Private("IncomingBody");
pub const HTTP_FILTER: Private = Private("http_filter");
pub const SERVER_TLS_SPEC: Private = Private("ServerTlsSpec");
pub const CERTIFICATE_SPEC: Private = Private("CertificateSpec");
pub const UPSTREAM_TLS_SPEC: Private = Private("UpstreamTlsSpec");
pub const TLS_VERSION: Private = Private("TlsVersion");
pub const NETWORK_FILTER: Private = Private("network_filter");
pub const TCP_PROXY: Private = Private("TcpProxy");
pub const TCP_PROXY_OPTIONS: Private = Private("TcpProxyOptions");
pub const IP_NET: Private = Private("IpNet");
pub const IPV4_NET: Private = Private("Ipv4Net");
pub const IPV6_NET: Private = Private("Ipv6Net");
pub const IPV4_ADDR: Private = Private("Ipv4Addr");
pub const IPV6_ADDR: Private = Private("Ipv6Addr");

// Request matching helpers.
pub const HOST_IS: Private = Private("host_is");
pub const HOST_HAS_SUFFIX: Private = Private("host_has_suffix");
pub const HOST_HAS_PREFIX: Private = Private("host_has_prefix");

// Running.
pub const TOPOLOGY: Private = Private("Topology");
pub const SERVER: Private = Private("Server");
pub const SERVE_ERROR: Private = Private("ServeError");
pub const APP: Private = Private("App");

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn paths_are_absolute() {
        assert_eq!(
            quote!(#ROUTE_REQUEST).to_string(),
            ":: proxy_core :: __private :: RouteRequest"
        );
    }
}
