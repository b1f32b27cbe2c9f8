//! Clusters and the address and duration expressions shared with listeners.

use std::net::SocketAddr;
use std::time::Duration;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use super::internal_error;
use super::paths::{
    ARC, BIND_ADDRESS, CLUSTER, CLUSTER_OPTIONS, DURATION, ENDPOINT_ADDRESS, PATH_BUF, SOCKET_V4,
    SOCKET_V6, UPSTREAM_PROTOCOL,
};
use crate::model::{Address, Cluster, Protocol, Target, ident_string};

/// `Arc::new(Cluster::new(..))`. Every option is set explicitly, defaults included, so
/// the running proxy is exactly what the summary shows.
pub fn new_cluster(cluster: &Cluster, inputs: &Ident) -> TokenStream {
    let name = ident_string(&cluster.name);
    let endpoints = cluster
        .endpoints
        .iter()
        .map(|endpoint| endpoint_address(&endpoint.value, inputs));
    let connect_timeout = duration(cluster.connect_timeout);
    let idle_timeout = duration(cluster.idle_timeout);
    let max_idle = Literal::u32_unsuffixed(cluster.max_idle_per_endpoint);
    let protocol = match cluster.protocol {
        Protocol::Http1 => quote!(#UPSTREAM_PROTOCOL::Http1),
        Protocol::Http2 => quote!(#UPSTREAM_PROTOCOL::Http2),
    };
    let cluster_value = quote! {
        #CLUSTER::new(
            #name,
            ::std::vec![#(#endpoints),*],
            #CLUSTER_OPTIONS::DEFAULT
                .connect_timeout(#connect_timeout)
                .protocol(#protocol)
                .max_idle_per_endpoint(#max_idle)
                .idle_timeout(#idle_timeout),
        )
    };
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
