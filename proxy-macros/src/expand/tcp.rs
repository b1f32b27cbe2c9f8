//! A `tcp { .. }` listener: its network filter chain and `TcpProxy`, built once in
//! `build` and handed to `Server::tcp`, monomorphized for the chain.

use std::net::IpAddr;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::paths::{
    ARC, IP_NET, IPV4_ADDR, IPV4_NET, IPV6_ADDR, IPV6_NET, NETWORK_FILTER, TCP_PROXY,
    TCP_PROXY_OPTIONS,
};
use super::{cluster, cluster_local, internal_error, local};
use crate::model::tcp::{Cidr, TcpProxy};
use crate::model::{FilterKind, Listener, Topology, ident_string};

pub struct Tcp {
    pub filters_field: Ident,
    pub proxy_field: Ident,
    /// The chain's type: nested tuples of `Arc<Filter>`.
    pub filters_ty: TokenStream,
    pub filters_init: TokenStream,
    pub proxy_init: TokenStream,
}

pub fn expand(topology: &Topology, listener: &Listener, tcp: &TcpProxy) -> Tcp {
    let filters_field = format_ident!("__tcp_filters_{}", listener.name, span = Span::call_site());
    let proxy_field = format_ident!("__tcp_proxy_{}", listener.name, span = Span::call_site());
    let mut ty = quote!(());
    let mut value = quote!(());
    for filter in tcp.filters.iter().rev() {
        let FilterKind::User {
            expr,
            ty: filter_ty,
        } = &filter.kind
        else {
            return invalid(filters_field, proxy_field);
        };
        let built = quote_spanned!(expr.span()=> #NETWORK_FILTER(#expr));
        ty = quote!((#ARC<#filter_ty>, #ty));
        value = quote!((#ARC::new(#built), #value));
    }
    let Some(cluster_id) = tcp.cluster else {
        return invalid(filters_field, proxy_field);
    };
    let cluster_local = cluster_local(topology.cluster(cluster_id));
    let prefix = tcp
        .stat_prefix
        .clone()
        .unwrap_or_else(|| ident_string(&listener.name));
    let mut options = quote!(#TCP_PROXY_OPTIONS::DEFAULT);
    if let Some(timeout) = tcp.idle_timeout {
        let timeout = optional_duration(timeout);
        options = quote!(#options.idle_timeout(#timeout));
    }
    if let Some(limit) = tcp.max_connection_duration {
        let limit = optional_duration(Some(limit));
        options = quote!(#options.max_connection_duration(#limit));
    }
    let mut consts = Vec::new();
    for (list, method, name) in [
        (&tcp.allow, "allow_source_ips", "ALLOW"),
        (&tcp.deny, "deny_source_ips", "DENY"),
    ] {
        if list.is_empty() {
            continue;
        }
        let constant = Ident::new(name, Span::call_site());
        let method = Ident::new(method, Span::call_site());
        let blocks = list.iter().map(cidr);
        consts.push(quote!(const #constant: &[#IP_NET] = &[#(#blocks),*];));
        options = quote!(#options.#method(#constant));
    }
    if !tcp.ports.value.is_empty() {
        let ports = tcp
            .ports
            .value
            .iter()
            .map(|port| Literal::u16_unsuffixed(*port));
        consts.push(quote!(const PORTS: &[u16] = &[#(#ports),*];));
        options = quote!(#options.destination_ports(PORTS));
    }
    let options_local = local("__options");
    let proxy_init = quote! {
        {
            #(#consts)*
            const OPTIONS: #TCP_PROXY_OPTIONS = #options;
            let #options_local = OPTIONS;
            #TCP_PROXY::new(#prefix, #ARC::clone(&#cluster_local), #options_local)
        }
    };
    Tcp {
        filters_field,
        proxy_field,
        filters_ty: ty,
        filters_init: value,
        proxy_init,
    }
}

fn invalid(filters_field: Ident, proxy_field: Ident) -> Tcp {
    let error = internal_error("a tcp block that failed its checks reached expansion");
    Tcp {
        filters_field,
        proxy_field,
        filters_ty: quote!(()),
        filters_init: error.clone(),
        proxy_init: error,
    }
}

fn optional_duration(duration: Option<std::time::Duration>) -> TokenStream {
    match duration {
        Some(duration) => {
            let duration = cluster::duration(duration);
            quote!(::core::option::Option::Some(#duration))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// A const-constructible block; the prefix length was checked, so `new_assert` cannot
/// fail (and would fail at compile time, in this const, if it could).
fn cidr(block: &Cidr) -> TokenStream {
    let prefix = Literal::u8_unsuffixed(block.prefix);
    match block.addr {
        IpAddr::V4(v4) => {
            let octets = v4.octets().map(Literal::u8_unsuffixed);
            quote!(#IP_NET::V4(#IPV4_NET::new_assert(#IPV4_ADDR::new(#(#octets),*), #prefix)))
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments().map(Literal::u16_unsuffixed);
            quote!(#IP_NET::V6(#IPV6_NET::new_assert(#IPV6_ADDR::new(#(#segments),*), #prefix)))
        }
    }
}
