//! Clusters and the address and duration expressions shared with listeners.

use std::net::SocketAddr;
use std::time::Duration;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use super::internal_error;
use super::paths::{
    ARC, BIND_ADDRESS, CLUSTER, CLUSTER_OPTIONS, DNS_DISCOVERY, DNS_FAMILY, DNS_TARGET, DURATION,
    ENDPOINT_ADDRESS, HASH_POLICY, LB_ENDPOINT, LB_POLICY, PATH_BUF, SOCKET_ADDR, SOCKET_V4,
    SOCKET_V6, STRING, UPSTREAM_PROTOCOL,
};
use crate::model::{
    Address, Cluster, Discovery, DnsFamily, DnsSettings, EndpointLb, HashPolicy, LbPolicy,
    Protocol, Target, ident_string,
};

/// `Arc::new(Cluster::..(..))`. Every option is set explicitly, defaults included, so
/// the running proxy is exactly what the summary shows.
pub fn new_cluster(cluster: &Cluster, inputs: &Ident) -> TokenStream {
    let name = ident_string(&cluster.name);
    let options = options(cluster);
    let mut cluster_value = match &cluster.discovery {
        Discovery::Static => {
            let endpoints =
                cluster
                    .endpoints
                    .iter()
                    .zip(&cluster.endpoint_lb)
                    .map(|(endpoint, lb)| {
                        let address = endpoint_address(&endpoint.value, inputs);
                        let weight = Literal::u32_unsuffixed(lb.weight);
                        let priority = Literal::u32_unsuffixed(lb.priority);
                        quote!(#LB_ENDPOINT::new(#address).weight(#weight).priority(#priority))
                    });
            quote!(#CLUSTER::with_lb_endpoints(#name, ::std::vec![#(#endpoints),*], #options))
        }
        Discovery::Dns(dns) => {
            let targets = cluster
                .endpoints
                .iter()
                .zip(&cluster.endpoint_lb)
                .map(|(endpoint, lb)| dns_target(&endpoint.value, *lb, inputs));
            let discovery = dns_discovery(dns);
            quote!(#CLUSTER::from_dns(#name, ::std::vec![#(#targets),*], #options, #discovery))
        }
    };
    if let Some(check) = &cluster.health_check {
        let check = super::resilience::health_check(check);
        cluster_value = quote!(#cluster_value.health_check(#check));
    }
    match &cluster.tls {
        Some(tls) => {
            let spec = super::tls::cluster_spec(tls, inputs);
            // Both arguments read `inputs` too: evaluated first, then handed over.
            let (cluster_local, spec_local) = (super::local("__cluster"), super::local("__spec"));
            quote!(#ARC::new({
                let #cluster_local = #cluster_value;
                let #spec_local = #spec;
                #inputs.cluster_tls(#cluster_local, #spec_local)
            }))
        }
        None => quote!(#ARC::new(#cluster_value)),
    }
}

/// `ClusterOptions::DEFAULT.connect_timeout(..)...`, a constant expression.
fn options(cluster: &Cluster) -> TokenStream {
    let connect_timeout = duration(cluster.connect_timeout);
    let idle_timeout = duration(cluster.idle_timeout);
    let max_idle = Literal::u32_unsuffixed(cluster.max_idle_per_endpoint);
    let protocol = match cluster.protocol {
        Protocol::Http1 => quote!(#UPSTREAM_PROTOCOL::Http1),
        Protocol::Http2 => quote!(#UPSTREAM_PROTOCOL::Http2),
    };
    let lb = match cluster.lb {
        LbPolicy::RoundRobin => quote!(#LB_POLICY::RoundRobin),
        LbPolicy::LeastRequest { choice_count } => {
            let count = Literal::u32_unsuffixed(choice_count);
            quote!(#LB_POLICY::LeastRequest { choice_count: #count })
        }
        LbPolicy::Random => quote!(#LB_POLICY::Random),
        LbPolicy::RingHash { minimum_ring_size } => {
            let size = Literal::u32_unsuffixed(minimum_ring_size);
            quote!(#LB_POLICY::RingHash { minimum_ring_size: #size })
        }
        LbPolicy::Maglev { table_size } => {
            let size = Literal::u32_unsuffixed(table_size);
            quote!(#LB_POLICY::Maglev { table_size: #size })
        }
    };
    let panic =
        Literal::u8_unsuffixed(u8::try_from(cluster.healthy_panic_threshold).unwrap_or(100));
    let overprovisioning = Literal::u32_unsuffixed(cluster.overprovisioning_factor);
    let breakers = super::resilience::circuit_breakers(&cluster.circuit_breakers);
    let mut options = quote! {
        #CLUSTER_OPTIONS::DEFAULT
            .connect_timeout(#connect_timeout)
            .protocol(#protocol)
            .max_idle_per_endpoint(#max_idle)
            .idle_timeout(#idle_timeout)
            .lb(#lb)
            .healthy_panic_threshold(#panic)
            .overprovisioning_factor(#overprovisioning)
            .circuit_breakers(#breakers)
    };
    if let Some(policy) = &cluster.hash_policy {
        let policy = match policy {
            HashPolicy::Header(name) => quote!(#HASH_POLICY::Header(#name)),
            HashPolicy::Cookie(name) => quote!(#HASH_POLICY::Cookie(#name)),
            HashPolicy::SourceIp => quote!(#HASH_POLICY::SourceIp),
        };
        options = quote!(#options.hash_policy(#policy));
    }
    if let Some(detection) = &cluster.outlier_detection {
        let detection = super::resilience::outlier_detection(detection);
        options = quote!(#options.outlier_detection(#detection));
    }
    if let Some(persistence) = &cluster.session_persistence {
        let persistence = super::resilience::session_persistence(persistence);
        options = quote!(#options.session_persistence(#persistence));
    }
    options
}

/// A `DnsTarget`: the host and port split here for literals, at start-up for `env(..)`.
fn dns_target(address: &Address, lb: EndpointLb, inputs: &Ident) -> TokenStream {
    let weight = Literal::u32_unsuffixed(lb.weight);
    let priority = Literal::u32_unsuffixed(lb.priority);
    let (host, port) = match address {
        Address::Fixed(Target::Tcp(addr)) => {
            let host = addr.ip().to_string();
            let port = Literal::u16_unsuffixed(addr.port());
            (quote!(#STRING::from(#host)), quote!(#port))
        }
        Address::Fixed(Target::Host(host_port)) => {
            // The model accepted it as `host:port`, so the split cannot fail.
            let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "0"));
            let port = Literal::u16_unsuffixed(port.parse().unwrap_or(0));
            (quote!(#STRING::from(#host)), quote!(#port))
        }
        Address::Env { var, default, .. } => {
            let pair = super::local("__host_port");
            return quote!({
                let #pair = #inputs.host_port_env(#var, #default);
                #DNS_TARGET { host: #pair.0, port: #pair.1, weight: #weight, priority: #priority }
            });
        }
        Address::Fixed(Target::Unix(_)) | Address::PipeEnv { .. } => {
            return internal_error("a DNS cluster has a Unix-socket endpoint");
        }
    };
    quote!(#DNS_TARGET { host: #host, port: #port, weight: #weight, priority: #priority })
}

fn dns_discovery(dns: &DnsSettings) -> TokenStream {
    let mode = if dns.logical {
        quote!(#DNS_DISCOVERY::logical())
    } else {
        quote!(#DNS_DISCOVERY::strict())
    };
    let refresh = duration(dns.refresh_rate);
    let respect = dns.respect_ttl;
    let family = match dns.family {
        DnsFamily::Auto => quote!(#DNS_FAMILY::Auto),
        DnsFamily::V4Only => quote!(#DNS_FAMILY::V4Only),
        DnsFamily::V6Only => quote!(#DNS_FAMILY::V6Only),
    };
    let resolvers = dns.resolvers.iter().map(|address| socket_addr(*address));
    // A `const` item: calls (even to `const fn`s) are not promoted to `'static` in place.
    quote! {
        #mode
            .refresh_rate(#refresh)
            .respect_ttl(#respect)
            .family(#family)
            .resolvers({
                const RESOLVERS: &[#SOCKET_ADDR] = &[#(#resolvers),*];
                RESOLVERS
            })
    }
}

pub fn bind_address(address: &Address, inputs: &Ident) -> TokenStream {
    match address {
        Address::Fixed(Target::Tcp(addr)) => {
            let addr = socket_addr(*addr);
            quote!(#BIND_ADDRESS::Tcp(#addr))
        }
        Address::Fixed(Target::Unix(path)) => quote!(#BIND_ADDRESS::Unix(#PATH_BUF::from(#path))),
        Address::Fixed(Target::Host(_)) => internal_error("a listener binds to a host name"),
        Address::Env { var, default, .. } => quote!(#inputs.bind_env(#var, #default)),
        Address::PipeEnv { var, default } => {
            quote!(#BIND_ADDRESS::Unix(#inputs.pipe_env(#var, #default)))
        }
    }
}

fn endpoint_address(address: &Address, inputs: &Ident) -> TokenStream {
    match address {
        Address::Fixed(Target::Tcp(addr)) => {
            let addr = socket_addr(*addr);
            quote!(#ENDPOINT_ADDRESS::Tcp(#addr))
        }
        Address::Fixed(Target::Unix(path)) => {
            quote!(#ENDPOINT_ADDRESS::Unix(#PATH_BUF::from(#path)))
        }
        Address::Fixed(Target::Host(host_port)) => quote!(#inputs.resolve_host(#host_port)),
        Address::Env { var, default, .. } => quote!(#inputs.endpoint_env(#var, #default)),
        Address::PipeEnv { var, default } => {
            quote!(#ENDPOINT_ADDRESS::Unix(#inputs.pipe_env(#var, #default)))
        }
    }
}

/// A `const fn` call, so literal addresses cost nothing at start-up and cannot fail.
fn socket_addr(addr: SocketAddr) -> TokenStream {
    let port = Literal::u16_unsuffixed(addr.port());
    match addr {
        SocketAddr::V4(v4) => {
            let octets = v4.ip().octets().map(Literal::u8_unsuffixed);
            quote!(#SOCKET_V4([#(#octets),*], #port))
        }
        SocketAddr::V6(v6) => {
            let segments = v6.ip().segments().map(Literal::u16_unsuffixed);
            quote!(#SOCKET_V6([#(#segments),*], #port))
        }
    }
}

/// `Duration::from_millis(..)` when exact in milliseconds (the common case, readable in
/// expanded code), otherwise nanoseconds.
pub fn duration(duration: Duration) -> TokenStream {
    let nanos = duration.as_nanos();
    if nanos % 1_000_000 == 0 {
        let millis = Literal::u128_unsuffixed(nanos / 1_000_000);
        quote!(#DURATION::from_millis(#millis))
    } else {
        let nanos = Literal::u128_unsuffixed(nanos);
        quote!(#DURATION::from_nanos(#nanos))
    }
}
