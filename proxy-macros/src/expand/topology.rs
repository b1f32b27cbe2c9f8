//! `pub struct Proxy` and its `Topology` implementation: fields for listeners, routers
//! and clusters; `build` creates them from the start-up inputs; `serve` hands each
//! listener and a copy of its router to the server.

use proc_macro2::TokenStream;
use quote::quote;

use super::paths::{
    APP, ARC, CLUSTER, EXIT_CODE, HTTP_OPTIONS, INPUTS, LISTENER_CONFIG, SERVE_ERROR, SERVER,
    TCP_PROXY, TOPOLOGY,
};
use super::{
    cluster, cluster_field, cluster_local, internal_error, listener_field, local, router,
    router_field, summary, tcp,
};
use crate::model::{Listener, Topology, ident_string};

pub fn expand(topology: &Topology) -> TokenStream {
    let inputs = local("__inputs");
    let server = local("__server");
    let summary = summary::render(topology);

    // Only a cluster's first definition exists once checked; all are distinct here.
    let clusters = &topology.clusters;
    let cluster_fields: Vec<_> = clusters.iter().map(cluster_field).collect();
    let cluster_locals: Vec<_> = clusters.iter().map(cluster_local).collect();
    let new_clusters = clusters
        .iter()
        .map(|cluster| cluster::new_cluster(cluster, &inputs));

    let listeners = &topology.listeners;
    let listener_fields: Vec<_> = listeners.iter().map(listener_field).collect();
    let http_listeners: Vec<_> = listeners
        .iter()
        .filter(|listener| listener.tcp.is_none())
        .collect();
    let http_listener_fields: Vec<_> = http_listeners
        .iter()
        .map(|listener| listener_field(listener))
        .collect();
    let router_fields: Vec<_> = http_listeners
        .iter()
        .map(|listener| router_field(listener))
        .collect();
    let routers: Vec<_> = http_listeners
        .iter()
        .map(|listener| router::expand(topology, listener, &inputs))
        .collect();
    let tcps: Vec<_> = listeners
        .iter()
        .filter_map(|listener| {
            let tcp = listener.tcp.as_ref()?;
            Some((
                listener_field(listener),
                tcp::expand(topology, listener, tcp),
            ))
        })
        .collect();
    let tcp_listener_fields: Vec<_> = tcps.iter().map(|(field, _)| field).collect();
    let tcp_filter_fields: Vec<_> = tcps.iter().map(|(_, tcp)| &tcp.filters_field).collect();
    let tcp_proxy_fields: Vec<_> = tcps.iter().map(|(_, tcp)| &tcp.proxy_field).collect();
    let tcp_filter_inits = tcps.iter().map(|(_, tcp)| &tcp.filters_init);
    let tcp_proxy_inits = tcps.iter().map(|(_, tcp)| &tcp.proxy_init);
    let router_types = routers.iter().map(|router| &router.ty);
    let router_items = routers.iter().map(|router| &router.items);
    let router_inits = routers.iter().map(|router| &router.init);
    let new_listeners = listeners.iter().map(|listener| {
        let name = ident_string(&listener.name);
        let Some(bind) = &listener.bind else {
            return internal_error("a listener without a bind address passed the checks");
        };
        let bind = cluster::bind_address(&bind.value, &inputs);
        // The user's own octal literal, more readable than its decimal value.
        let mode = listener
            .socket_mode
            .as_ref()
            .map(|mode| quote!(.socket_mode(#mode)));
        let options = http_options(listener);
        let config = quote!(#LISTENER_CONFIG::new(#name, #bind) #mode #options);
        match &listener.tls {
            Some(tls) => {
                let spec = super::tls::listener_spec(tls, &inputs);
                // Both arguments read `inputs` too: evaluated first, then handed over.
                let (config_local, spec_local) = (local("__config"), local("__spec"));
                quote!({
                    let #config_local = #config;
                    let #spec_local = #spec;
                    #inputs.listener_tls(#config_local, #spec_local)
                })
            }
            None => config,
        }
    });

    // Path constants cannot appear inside `#(..)*` (quote binds repetition variables
    // with `let`), so repeated pieces are built first.
    let fields = listener_fields
        .iter()
        .map(|field| quote!(#field: #LISTENER_CONFIG,))
        .chain(
            router_fields
                .iter()
                .zip(router_types)
                .map(|(field, ty)| quote!(#field: #ty,)),
        )
        .chain(tcps.iter().map(|(_, tcp)| {
            let (filters, ty, proxy) = (&tcp.filters_field, &tcp.filters_ty, &tcp.proxy_field);
            quote!(#filters: #ty, #proxy: #TCP_PROXY,)
        }))
        .chain(
            cluster_fields
                .iter()
                .map(|field| quote!(#field: #ARC<#CLUSTER>,)),
        );

    quote! {
        /// The proxy topology compiled from `proxy!`: its listeners, their routers and
        /// the clusters they forward to.
        #[allow(non_snake_case)]
        pub struct Proxy {
            #(#fields)*
        }

        #(#router_items)*

        #[automatically_derived]
        impl #TOPOLOGY for Proxy {
            const SUMMARY: &'static str = #summary;

            #[allow(non_snake_case)]
            fn build(#inputs: &mut #INPUTS) -> Self {
                #(let #cluster_locals = #new_clusters;)*
                Self {
                    #(#listener_fields: #new_listeners,)*
                    #(#router_fields: #router_inits,)*
                    #(#tcp_filter_fields: #tcp_filter_inits,)*
                    #(#tcp_proxy_fields: #tcp_proxy_inits,)*
                    #(#cluster_fields: #cluster_locals,)*
                }
            }

            fn listeners(&self) -> ::std::vec::Vec<&#LISTENER_CONFIG> {
                ::std::vec![#(&self.#listener_fields),*]
            }

            fn clusters(&self) -> ::std::vec::Vec<&#CLUSTER> {
                ::std::vec![#(&*self.#cluster_fields),*]
            }

            fn serve(&'static self, #server: &mut #SERVER) -> ::core::result::Result<(), #SERVE_ERROR> {
                #(#server.http(&self.#http_listener_fields, &self.#router_fields)?;)*
                #(#server.tcp(
                    &self.#tcp_listener_fields,
                    ::core::clone::Clone::clone(&self.#tcp_filter_fields),
                    ::core::clone::Clone::clone(&self.#tcp_proxy_fields),
                )?;)*
                ::core::result::Result::Ok(())
            }
        }

        impl Proxy {
            /// Runs this proxy with the standard command line (`--help`, `--check`, ..)
            /// and returns the process exit code.
            pub fn main() -> #EXIT_CODE {
                Self::app().run()
            }

            /// The launcher for this proxy, named after the crate that defines it, for
            /// binaries that add start-up work (`App::before_serve`) before running.
            pub fn app() -> #APP<Self> {
                // Expanded in the user's crate, so these are the app's name and version.
                #APP::<Self>::new().identity(::core::env!("CARGO_PKG_NAME"), ::core::env!("CARGO_PKG_VERSION"))
            }
        }
    }
}

/// `.http_options(..)` for a listener whose `http` block sets `generate_request_id` or
/// `skip_xff_append`; nothing when it keeps the defaults.
fn http_options(listener: &Listener) -> Option<TokenStream> {
    if listener.generate_request_id.is_none() && listener.skip_xff_append.is_none() {
        return None;
    }
    let generate = listener
        .generate_request_id
        .map(|generate| quote!(.generate_request_id(#generate)));
    let skip = listener
        .skip_xff_append
        .map(|skip| quote!(.skip_xff_append(#skip)));
    Some(quote!(.http_options(#HTTP_OPTIONS::DEFAULT #generate #skip)))
}
