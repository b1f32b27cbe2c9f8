//! One `Router` type per listener: virtual-host selection, then one generated method
//! per virtual host testing its routes in order with string comparisons. Route actions
//! are `static`s (or a field, for the cluster), so routing borrows and never allocates.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::filters::Chains;
use super::paths::{
    ARC, CLUSTER, DIRECT_RESPONSE, DOWNSTREAM, DURATION, EXCHANGE, HEADER_NAME, HEADER_PRESENT,
    HEADER_VALUE_IS, HOST_HAS_PREFIX, HOST_HAS_SUFFIX, HOST_IS, INCOMING, METHOD, PIPELINE,
    REDIRECT, REGEX, REQUEST, REQUEST_HOST, REQUEST_PARTS, RESPONSE, RESPONSE_BODY, ROUTE,
    ROUTE_ACTION, ROUTE_POLICY, ROUTER, TARGETS,
};
use super::{cluster, cluster_field, cluster_local, local, router_type};
use crate::model::{
    Action, ClusterId, Domain, Listener, Method, PathMatch, Redirect, Route, Topology, VirtualHost,
    ident_string,
};

/// What the routes of a listener need from its router besides code: regexes to compile,
/// clusters to hold, and multi-cluster targets to build at start-up.
#[derive(Default)]
struct Collected {
    regexes: Vec<String>,
    clusters: BTreeSet<ClusterId>,
    /// Field name and initializer of each `Targets`.
    targets: Vec<(Ident, TokenStream)>,
}

/// A listener's router: its items, and the expression that builds it in `build`.
pub struct Router {
    pub ty: Ident,
    pub items: TokenStream,
    pub init: TokenStream,
}

/// Builds `listener`'s router from `inputs` (for regexes) and the `Arc<Cluster>` locals
/// of `build` (named as the cluster fields).
pub fn expand(topology: &Topology, listener: &Listener, inputs: &Ident) -> Router {
    let ty = router_type(listener);
    let mut collected = Collected::default();
    let request = local("__request");
    let chains = Chains::of(listener);
    let vhosts: Vec<TokenStream> = listener
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(index, vhost)| {
            virtual_host(topology, &chains, index, vhost, &request, &mut collected)
        })
        .collect();
    let select = select_virtual_host(listener, &chains, &request);
    let pipeline = pipeline(&ty, &chains);
    let Collected {
        regexes,
        clusters,
        targets,
    } = collected;

    let cluster_fields: Vec<Ident> = clusters
        .iter()
        .map(|id| cluster_field(topology.cluster(*id)))
        .collect();
    let cluster_locals: Vec<Ident> = clusters
        .iter()
        .map(|id| cluster_local(topology.cluster(*id)))
        .collect();
    let regex_fields: Vec<Ident> = (0..regexes.len()).map(regex_field).collect();
    // Path constants cannot appear inside `#(..)*` (quote binds repetition variables
    // with `let`), so repeated pieces are built first.
    let fields = cluster_fields
        .iter()
        .map(|field| quote!(#field: #ARC<#CLUSTER>,))
        .chain(regex_fields.iter().map(|field| quote!(#field: #REGEX,)))
        .chain(targets.iter().map(|(field, _)| quote!(#field: #TARGETS,)))
        .chain(chains.fields());
    let inits = cluster_fields
        .iter()
        .zip(&cluster_locals)
        .map(|(field, local)| quote!(#field: #ARC::clone(&#local),))
        .chain(
            regex_fields
                .iter()
                .zip(&regexes)
                .map(|(field, regex)| quote!(#field: #inputs.regex(#regex),)),
        )
        .chain(targets.iter().map(|(field, init)| quote!(#field: #init,)))
        .chain(chains.inits());
    let items = quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case)]
        pub struct #ty {
            #(#fields)*
        }

        #[automatically_derived]
        impl #ROUTER for #ty {
            #[inline]
            fn route(&self, #request: &#REQUEST_PARTS) -> #ROUTE<'_> {
                #select
            }
        }

        #pipeline

        #[allow(non_snake_case)]
        impl #ty {
            #(#vhosts)*
        }
    };
    let declarations = chains.declarations(inputs);
    let init = quote! {
        {
            #declarations
            #ty {
                #(#inits)*
            }
        }
    };
    Router { ty, items, init }
}

/// The listener's whole request path: route, then the chosen chain's copy of
/// `exchange`. One arm per distinct chain, so every chain is monomorphized.
fn pipeline(ty: &Ident, chains: &Chains<'_>) -> TokenStream {
    let request = local("__request");
    let downstream = local("__downstream");
    let parts = local("__parts");
    let body = local("__body");
    let route = local("__route");
    let arms = chains.arms().map(|(index, field, span)| {
        let chain = quote_spanned!(span=> &self.#field);
        quote!(#index => #EXCHANGE(#chain, #downstream, #route, #parts, #body).await,)
    });
    quote! {
        #[automatically_derived]
        impl #PIPELINE for #ty {
            async fn handle(
                &'static self,
                #request: #REQUEST<#INCOMING>,
                #downstream: &#DOWNSTREAM,
            ) -> #RESPONSE<#RESPONSE_BODY> {
                let (#parts, #body) = #request.into_parts();
                let #route = #ROUTER::route(self, &#parts);
                match #route.chain {
                    #(#arms)*
                    // The chain with no filters.
                    _ => #EXCHANGE(&(), #downstream, #route, #parts, #body).await,
                }
            }
        }
    }
}

fn regex_field(index: usize) -> Ident {
    format_ident!("__regex_{}", index, span = Span::call_site())
}

fn vhost_method(vhost: &VirtualHost) -> Ident {
    format_ident!("__vhost_{}", vhost.name, span = Span::call_site())
}

/// Envoy's precedence: exact domains, then `*suffix` patterns longest first, then
/// `prefix*` patterns longest first, then `*`; ties in definition order.
fn select_virtual_host(listener: &Listener, chains: &Chains<'_>, request: &Ident) -> TokenStream {
    let mut exact = Vec::new();
    let mut suffixes = Vec::new();
    let mut prefixes = Vec::new();
    let mut any = None;
    for vhost in &listener.virtual_hosts {
        let method = vhost_method(vhost);
        for domain in &vhost.domains {
            match &domain.value {
                Domain::Exact(host) => exact.push((host, method.clone())),
                Domain::Suffix(suffix) => suffixes.push((suffix, method.clone())),
                Domain::Prefix(prefix) => prefixes.push((prefix, method.clone())),
                Domain::Any => any = any.or_else(|| Some(method.clone())),
            }
        }
    }
    suffixes.sort_by_key(|(suffix, _)| Reverse(suffix.len()));
    prefixes.sort_by_key(|(prefix, _)| Reverse(prefix.len()));

    let host = local("__host");
    let tests = exact
        .iter()
        .map(|(domain, method)| (quote!(#HOST_IS(#host, #domain)), method))
        .chain(
            suffixes
                .iter()
                .map(|(suffix, method)| (quote!(#HOST_HAS_SUFFIX(#host, #suffix)), method)),
        )
        .chain(
            prefixes
                .iter()
                .map(|(prefix, method)| (quote!(#HOST_HAS_PREFIX(#host, #prefix)), method)),
        )
        .map(|(test, method)| quote!(if #test { return self.#method(#request); }));
    let fallback = match any {
        Some(method) => quote!(self.#method(#request)),
        None => {
            let chain = chains.listener_chain();
            quote!(#ROUTE::none(#chain))
        }
    };
    if exact.is_empty() && suffixes.is_empty() && prefixes.is_empty() {
        return fallback;
    }
    quote! {
        let #host = #REQUEST_HOST(#request);
        #(#tests)*
        #fallback
    }
}

fn virtual_host(
    topology: &Topology,
    chains: &Chains<'_>,
    vhost_index: usize,
    vhost: &VirtualHost,
    request: &Ident,
    collected: &mut Collected,
) -> TokenStream {
    let method = vhost_method(vhost);
    let path = local("__path");
    let mut statics = Vec::new();
    let mut tests = Vec::new();
    for (index, route) in vhost.routes.iter().enumerate() {
        let mut conditions = vec![path_condition(route, &path, &mut collected.regexes)];
        if !route.methods.is_empty() {
            conditions.push(method_condition(&route.methods, request));
        }
        for (position, header) in route.headers.iter().enumerate() {
            let name = format_ident!("HEADER_{}_{}", index, position);
            let lowercase = &header.name;
            statics
                .push(quote!(static #name: #HEADER_NAME = #HEADER_NAME::from_static(#lowercase);));
            conditions.push(match &header.value {
                None => quote!(#HEADER_PRESENT(&#request.headers, &#name)),
                Some(value) => {
                    let value = Literal::byte_string(value.as_bytes());
                    quote!(#HEADER_VALUE_IS(&#request.headers, &#name, #value))
                }
            });
        }
        let action = action(topology, route, index, &mut statics, collected);
        let chain = chains.route_chain(vhost_index, index);
        let name = &route.name;
        tests.push(quote! {
            if #(#conditions)&&* {
                return #ROUTE { action: #action, chain: #chain, name: #name };
            }
        });
    }
    let no_route_chain = chains.vhost_chain(vhost_index);
    let path_binding = (!vhost.routes.is_empty()).then(|| quote!(let #path = #request.uri.path();));
    let name = format!(
        " Routes of virtual host `{}`, in order.",
        ident_string(&vhost.name)
    );
    quote! {
        #[doc = #name]
        #[inline]
        fn #method(&self, #request: &#REQUEST_PARTS) -> #ROUTE<'_> {
            #(#statics)*
            #path_binding
            #(#tests)*
            #ROUTE::none(#no_route_chain)
        }
    }
}

fn path_condition(route: &Route, path: &Ident, regexes: &mut Vec<String>) -> TokenStream {
    match &route.matcher.value {
        PathMatch::Prefix(prefix) => quote!(#path.starts_with(#prefix)),
        PathMatch::Exact(exact) => quote!(#path == #exact),
        PathMatch::Regex(pattern) => {
            let field = regex_field(regexes.len());
            regexes.push(PathMatch::anchored(pattern));
            quote!(self.#field.is_match(#path))
        }
    }
}

fn method_condition(methods: &[Method], request: &Ident) -> TokenStream {
    let tests = methods.iter().map(|method| {
        if method.standard {
            let constant = Ident::new(&method.name, Span::call_site());
            quote!(#request.method == #METHOD::#constant)
        } else {
            let name = &method.name;
            quote!(#request.method.as_str() == #name)
        }
    });
    if methods.len() == 1 {
        quote!(#(#tests)*)
    } else {
        quote!((#(#tests)||*))
    }
}

fn action(
    topology: &Topology,
    route: &Route,
    index: usize,
    statics: &mut Vec<TokenStream>,
    collected: &mut Collected,
) -> TokenStream {
    let name = &route.name;
    match &route.action {
        Action::Forward(forward) => {
            let policy = format_ident!("POLICY_{}", index);
            let timeout = match forward.timeout {
                Some(timeout) => {
                    let timeout = cluster::duration(timeout);
                    quote!(::core::option::Option::Some(#timeout))
                }
                None => quote!(::core::option::Option::<#DURATION>::None),
            };
            let upgrades = (!forward.upgrades.value.is_empty()).then(|| {
                let names = &forward.upgrades.value;
                quote!(.upgrades(&[#(#names),*]))
            });
            let retry = forward.retry.as_ref().map(|retry| {
                let retry = super::resilience::retry_policy(retry);
                quote!(.retry_policy(#retry))
            });
            statics.push(quote! {
                static #policy: #ROUTE_POLICY = #ROUTE_POLICY::new(#name, #timeout) #upgrades #retry;
            });
            match forward.clusters.as_slice() {
                [(id, _)] if !forward.weighted && forward.mirrors.is_empty() => {
                    collected.clusters.insert(*id);
                    let field = cluster_field(topology.cluster(*id));
                    quote!(#ROUTE_ACTION::Forward(&self.#field, &#policy))
                }
                weighted => {
                    // Several clusters (or mirrors) need `Arc`s, so they live in a field
                    // built at start-up rather than in a `static`.
                    let field = format_ident!(
                        "__targets_{}",
                        name.replace('/', "_"),
                        span = Span::call_site()
                    );
                    let entries = weighted.iter().map(|(id, weight)| {
                        let local = cluster_local(topology.cluster(*id));
                        let weight = Literal::u32_unsuffixed(*weight);
                        quote!((#ARC::clone(&#local), #weight))
                    });
                    let mut init = quote!(#TARGETS::new(::std::vec![#(#entries),*]));
                    for mirror in &forward.mirrors {
                        let local = cluster_local(topology.cluster(mirror.cluster));
                        let percent = Literal::u32_unsuffixed(mirror.percent);
                        init = quote!(#init.mirror(#ARC::clone(&#local), #percent));
                    }
                    collected.targets.push((field.clone(), init));
                    quote!(#ROUTE_ACTION::Split(&self.#field, &#policy))
                }
            }
        }
        Action::Direct { status, body } => {
            let direct = format_ident!("DIRECT_{}", index);
            let status = Literal::u16_unsuffixed(*status);
            statics.push(
                quote!(static #direct: #DIRECT_RESPONSE = #DIRECT_RESPONSE::new(#status, #body);),
            );
            quote!(#ROUTE_ACTION::Direct(&#direct))
        }
        Action::Redirect(redirect) => {
            let ident = format_ident!("REDIRECT_{}", index);
            let value = redirect_value(route, redirect);
            statics.push(quote!(static #ident: #REDIRECT = #value;));
            quote!(#ROUTE_ACTION::Redirect(&#ident))
        }
    }
}

fn redirect_value(route: &Route, redirect: &Redirect) -> TokenStream {
    let status = Literal::u16_unsuffixed(redirect.status);
    let mut value = quote!(#REDIRECT::new(#status));
    if let Some(scheme) = &redirect.scheme {
        value = quote!(#value.scheme(#scheme));
    }
    if let Some(host) = &redirect.host {
        value = quote!(#value.host(#host));
    }
    if let Some(port) = redirect.port {
        let port = Literal::u16_unsuffixed(port);
        value = quote!(#value.port(#port));
    }
    if let Some(path) = &redirect.path {
        value = quote!(#value.path(#path));
    }
    if let (Some(rewrite), PathMatch::Prefix(prefix)) =
        (&redirect.prefix_rewrite, &route.matcher.value)
    {
        let replacement = &rewrite.value;
        value = quote!(#value.prefix_rewrite(#prefix, #replacement));
    }
    if redirect.strip_query {
        value = quote!(#value.strip_query(true));
    }
    value
}
