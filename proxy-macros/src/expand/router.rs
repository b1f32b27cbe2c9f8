//! One `Router` type per listener: virtual-host selection, then one generated method
//! per virtual host testing its routes in order with string comparisons. Route actions
//! are `static`s (or a field, for the cluster), so routing borrows and never allocates.
//!
//! Long runs of routes are not tested one by one: see [`arrange`]. A virtual host with
//! fewer than [`DISPATCH_MIN`] consecutive dispatchable routes expands to plain tests in
//! order, exactly as before.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::filters::Chains;
use super::paths::{
    ARC, CLUSTER, DIRECT_RESPONSE, DOWNSTREAM, DURATION, EXCHANGE, HEADER_NAME, HOST_HAS_PREFIX,
    HOST_HAS_SUFFIX, HOST_IS, INCOMING, METHOD, PIPELINE, RAW_REQUEST, REDIRECT, REGEX, RELAY,
    REQUEST, RESPONSE, RESPONSE_BODY, ROUTE, ROUTE_ACTION, ROUTE_POLICY, ROUTE_REQUEST, ROUTED,
    ROUTER, TARGETS,
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
            fn route<__Q: #ROUTE_REQUEST + ?::core::marker::Sized>(
                &self,
                #request: &__Q,
            ) -> #ROUTE<'_> {
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
/// `exchange`. One arm per distinct chain, so every chain is monomorphized. A route
/// without filters may also be relayed raw (`relay`): a route with filters never is.
fn pipeline(ty: &Ident, chains: &Chains<'_>) -> TokenStream {
    let request = local("__request");
    let downstream = local("__downstream");
    let parts = local("__parts");
    let body = local("__body");
    let route = local("__route");
    let exchange =
        |chain: TokenStream| quote!(#EXCHANGE(#chain, #downstream, #route, #parts, #body));
    let future_ty = format_ident!("{}_Exchange", ty);
    let projection = format_ident!("{}_ExchangeProjection", ty);
    let mut filtered = Vec::new();
    let mut variants = Vec::new();
    let mut arms = Vec::new();
    for (position, (index, field, span)) in chains.arms().enumerate() {
        let variant = format_ident!("Chain{}", position);
        let chain = quote_spanned!(span=> &self.#field);
        let future = exchange(chain);
        arms.push(quote!(#index => #future_ty::#variant { future: #future },));
        variants.push(variant);
        filtered.push(index);
    }
    let relay = if filtered.is_empty() {
        quote!(#RELAY::of(#route))
    } else {
        quote! {
            match #route.chain {
                #(#filtered)|* => ::core::option::Option::None,
                _ => #RELAY::of(#route),
            }
        }
    };
    // `handle` routes and returns the chosen chain's exchange, not an `async fn` awaiting
    // it: an `async fn` keeps the request it was called with (264 bytes, moved into the
    // exchange at once) beside the exchange for its whole life. With several chains the
    // exchange is one variant of an enum made for this listener. One level: nested
    // two-way enums gave a debug build a stack slot per arm and level, and overflowed a
    // worker's stack with ≈ 25 chains; one level takes what the `async fn` took.
    let unfiltered = exchange(quote!(&()));
    let output_bound = quote!(::core::future::Future<Output = #RESPONSE<#RESPONSE_BODY>>);
    let bounds = variants
        .iter()
        .map(|variant| quote!(#variant: #output_bound));
    let projections = variants.iter().map(|variant| quote!(#projection::#variant));
    let (dispatch, handle_body) = if variants.is_empty() {
        (quote!(), unfiltered)
    } else {
        let dispatch = quote! {
            ::proxy_core::__private::pin_project! {
                #[project = #projection]
                #[doc(hidden)]
                #[allow(non_camel_case_types)]
                enum #future_ty<#(#variants,)* Unfiltered> {
                    #(#variants { #[pin] future: #variants },)*
                    Unfiltered { #[pin] future: Unfiltered },
                }
            }

            #[automatically_derived]
            impl<#(#variants,)* Unfiltered> ::core::future::Future for #future_ty<#(#variants,)* Unfiltered>
            where
                #(#bounds,)*
                Unfiltered: #output_bound,
            {
                type Output = #RESPONSE<#RESPONSE_BODY>;

                #[inline]
                fn poll(
                    self: ::core::pin::Pin<&mut Self>,
                    cx: &mut ::core::task::Context<'_>,
                ) -> ::core::task::Poll<Self::Output> {
                    match self.project() {
                        #(#projections { future } => future.poll(cx),)*
                        #projection::Unfiltered { future } => future.poll(cx),
                    }
                }
            }
        };
        let body = quote! {
            match #route.chain {
                #(#arms)*
                // The chain with no filters.
                _ => #future_ty::Unfiltered { future: #unfiltered },
            }
        };
        (dispatch, body)
    };
    let handle = quote! {
        #[inline]
        fn handle(
            &'static self,
            #request: #REQUEST<#INCOMING>,
            #downstream: &#DOWNSTREAM,
        ) -> impl ::core::future::Future<Output = #RESPONSE<#RESPONSE_BODY>>
               + ::core::marker::Send {
            let (#route, #parts, #body) = #ROUTED(self, #request);
            #handle_body
        }
    };
    quote! {
        #dispatch

        #[automatically_derived]
        impl #PIPELINE for #ty {
            #handle

            #[inline]
            fn relay(
                &'static self,
                #request: &#RAW_REQUEST<'_>,
            ) -> ::core::option::Option<#RELAY> {
                let #route = #ROUTER::route(self, #request);
                #relay
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
        let #host = #ROUTE_REQUEST::host(#request);
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
    let mut keys = Vec::new();
    for (index, route) in vhost.routes.iter().enumerate() {
        keys.push(RouteKeys::of(&route.matcher.value));
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
                None => quote!(#ROUTE_REQUEST::header_present(#request, &#name)),
                Some(value) => {
                    let value = Literal::byte_string(value.as_bytes());
                    quote!(#ROUTE_REQUEST::header_value_is(#request, &#name, #value))
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
    let tests = arrange(&keys, tests, &path);
    let path_binding =
        (!vhost.routes.is_empty()).then(|| quote!(let #path = #ROUTE_REQUEST::path(#request);));
    let name = format!(
        " Routes of virtual host `{}`, in order.",
        ident_string(&vhost.name)
    );
    quote! {
        #[doc = #name]
        #[inline]
        fn #method<__Q: #ROUTE_REQUEST + ?::core::marker::Sized>(
            &self,
            #request: &__Q,
        ) -> #ROUTE<'_> {
            #(#statics)*
            #path_binding
            #tests
            #ROUTE::none(#no_route_chain)
        }
    }
}

/// Below this many consecutive routes that can be dispatched, testing them in order is as
/// fast as a lookup, so they are left as they are.
const DISPATCH_MIN: usize = 16;

/// The first segment of `path` with its slashes (`/api/` for `/api/v1/items`), or the
/// whole path when it has no second slash. The generated router computes the same thing
/// on the request path (see [`arrange`]).
fn first_segment(path: &str) -> &str {
    match path.bytes().skip(1).position(|byte| byte == b'/') {
        Some(slash) => &path[..slash + 2],
        None => path,
    }
}

/// The text every path a regex matches starts with, conservatively: the leading literal
/// characters of the pattern, stopping at the first metacharacter, escape or group, and
/// dropping a character a quantifier applies to. Empty when the pattern has an
/// alternation anywhere (which could apply to the whole pattern).
fn regex_literal_prefix(pattern: &str) -> &str {
    if pattern.contains('|') {
        return "";
    }
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let literal = |c: char| c.is_ascii_alphanumeric() || "/-_~%!@,;:=&'<>`\"".contains(c);
    let end = pattern.find(|c: char| !literal(c)).unwrap_or(pattern.len());
    match pattern[end..].chars().next() {
        // `x?`, `x*`, `x{0,..}`: the last literal may be absent (`+` too, for simplicity).
        Some('?' | '*' | '{' | '+') => {
            let last = pattern[..end].chars().next_back().map_or(0, char::len_utf8);
            &pattern[..end - last]
        }
        _ => &pattern[..end],
    }
}

/// What decides, before testing a route, that it cannot match a path.
struct RouteKeys {
    /// Every path the route matches has this first segment (see [`first_segment`]).
    segment: Option<String>,
    /// The route matches this path only (an `exact(..)` route).
    exact: Option<String>,
}

impl RouteKeys {
    fn of(matcher: &PathMatch) -> Self {
        // A prefix (of a prefix route or a regex) fixes the first segment only when it
        // contains the segment's closing slash: `/ap` could be `/api/..` or `/apple`.
        let from_prefix = |prefix: &str| {
            let segment = first_segment(prefix);
            (segment.len() > 1 && segment.ends_with('/')).then(|| segment.to_owned())
        };
        match matcher {
            PathMatch::Prefix(prefix) => Self {
                segment: from_prefix(prefix),
                exact: None,
            },
            PathMatch::Exact(path) => Self {
                segment: Some(first_segment(path).to_owned()),
                exact: Some(path.clone()),
            },
            PathMatch::Regex(pattern) => Self {
                segment: from_prefix(regex_literal_prefix(pattern)),
                exact: None,
            },
        }
    }
}

/// The tests of a virtual host's routes (`tests[i]` returns route `i` if it matches), as
/// code that gives the same answer as running them in order.
///
/// A run of at least [`DISPATCH_MIN`] consecutive routes whose first path segment is
/// known (exact routes, prefix routes such as `/api/..`, regexes with such a literal
/// start) becomes one `match` on a hash of the request's first segment, whose arm runs
/// the routes of that segment only, still in order. Routes of other segments cannot
/// match the path, so skipping them cannot change which route matches first; every
/// route still runs its own full test, so a hash collision only puts two segments' routes
/// in one arm (merged in route order). Inside an arm, a run of exact routes is dispatched
/// the same way on a hash of the whole path. Any other route (`prefix("/")`,
/// `prefix("/ap")`, most regexes) ends a run and is tested where it stands, so
/// first-match-wins order holds across runs.
fn arrange(keys: &[RouteKeys], tests: Vec<TokenStream>, path: &Ident) -> TokenStream {
    let mut tests: Vec<Option<TokenStream>> = tests.into_iter().map(Some).collect();
    let mut take = |index: usize| tests[index].take().unwrap_or_default();
    let hash = local("__route_key_hash");
    let mut dispatched = false;
    let mut out = TokenStream::new();
    for run in runs(0..keys.len(), |index| keys[index].segment.is_some()) {
        let run = match run {
            Run::InOrder(run) => {
                out.extend(run.into_iter().map(&mut take));
                continue;
            }
            Run::Dispatch(run) => run,
        };
        dispatched = true;
        let mut arms = Vec::new();
        for (segment_hash, routes) in by_hash(run, |index| keys[index].segment.as_deref()) {
            let mut arm = TokenStream::new();
            for run in runs(routes.into_iter(), |index| keys[index].exact.is_some()) {
                match run {
                    Run::InOrder(run) => arm.extend(run.into_iter().map(&mut take)),
                    Run::Dispatch(run) => {
                        let by_path = by_hash(run, |index| keys[index].exact.as_deref())
                            .into_iter()
                            .map(|(path_hash, routes)| {
                                (path_hash, routes.into_iter().map(&mut take).collect())
                            })
                            .collect();
                        arm.extend(switch(&hash, path, by_path));
                    }
                }
            }
            arms.push((segment_hash, arm));
        }
        let segment = local("__segment");
        let dispatch = switch(&hash, &segment, arms);
        out.extend(quote! {
            {
                let #segment = match #path.bytes().skip(1).position(|__byte| __byte == b'/') {
                    ::core::option::Option::Some(__slash) => &#path[..__slash + 2],
                    ::core::option::Option::None => #path,
                };
                #dispatch
            }
        });
    }
    if dispatched {
        let (k, rotate) = (KEY_HASH_K, KEY_HASH_ROTATE);
        out = quote! {
            #[inline(always)]
            fn #hash(__key: &str) -> u64 {
                let mut __hash = __key.len() as u64;
                let mut __chunks = __key.as_bytes().chunks_exact(8);
                for __chunk in &mut __chunks {
                    let mut __word = [0u8; 8];
                    __word.copy_from_slice(__chunk);
                    __hash = (__hash.rotate_left(#rotate) ^ u64::from_le_bytes(__word)).wrapping_mul(#k);
                }
                let __rest = __chunks.remainder();
                if !__rest.is_empty() {
                    let mut __word = [0u8; 8];
                    __word[..__rest.len()].copy_from_slice(__rest);
                    __hash = (__hash.rotate_left(#rotate) ^ u64::from_le_bytes(__word)).wrapping_mul(#k);
                }
                __hash
            }
            #out
        };
    }
    out
}

const KEY_HASH_K: u64 = 0x517c_c1b7_2722_0a95;
const KEY_HASH_ROTATE: u32 = 5;

/// An FxHash-style hash of `key`, eight bytes at a time: the generated router runs the
/// same function (emitted next to the routes) on the request's segment or path.
fn key_hash(key: &str) -> u64 {
    let mut hash = key.len() as u64;
    let mut chunks = key.as_bytes().chunks_exact(8);
    let mut mix = |word: [u8; 8]| {
        hash =
            (hash.rotate_left(KEY_HASH_ROTATE) ^ u64::from_le_bytes(word)).wrapping_mul(KEY_HASH_K);
    };
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        mix(word);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        mix(word);
    }
    hash
}

enum Run {
    /// Too short, or a route that cannot be dispatched: tested in order.
    InOrder(Vec<usize>),
    /// At least [`DISPATCH_MIN`] consecutive dispatchable routes.
    Dispatch(Vec<usize>),
}

/// Splits `indices` into maximal runs of routes that are `dispatchable`, keeping order.
fn runs(indices: impl Iterator<Item = usize>, dispatchable: impl Fn(usize) -> bool) -> Vec<Run> {
    fn flush(pending: &mut Vec<usize>, out: &mut Vec<Run>) {
        if pending.len() >= DISPATCH_MIN {
            out.push(Run::Dispatch(std::mem::take(pending)));
        } else if !pending.is_empty() {
            out.push(Run::InOrder(std::mem::take(pending)));
        }
    }
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for index in indices {
        if dispatchable(index) {
            pending.push(index);
        } else {
            flush(&mut pending, &mut out);
            out.push(Run::InOrder(vec![index]));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// The routes of `run` grouped by the [`key_hash`] of their key, each group in route
/// order (routes whose keys collide share a group).
fn by_hash<'k>(run: Vec<usize>, key: impl Fn(usize) -> Option<&'k str>) -> Vec<(u64, Vec<usize>)> {
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    // `run` is in route order, so each group is too.
    for index in run {
        let hash = key_hash(key(index).unwrap_or_default());
        groups.entry(hash).or_default().push(index);
    }
    groups.into_iter().collect()
}

/// `match hash(value) { HASH => { arm } .. _ => {} }`: no match falls through to the
/// routes after the run.
fn switch(hash: &Ident, value: &Ident, arms: Vec<(u64, TokenStream)>) -> TokenStream {
    let arms = arms.into_iter().map(|(key, arm)| {
        let key = Literal::u64_suffixed(key);
        quote!(#key => { #arm })
    });
    quote! {
        match #hash(#value) {
            #(#arms)*
            _ => {}
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
            quote!(*#ROUTE_REQUEST::method(#request) == #METHOD::#constant)
        } else {
            let name = &method.name;
            quote!(#ROUTE_REQUEST::method(#request).as_str() == #name)
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

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::test_util::{expand_ok, with_routes};

    #[test]
    fn first_segments() {
        assert_eq!(first_segment("/api/v1/items"), "/api/");
        assert_eq!(first_segment("/api/"), "/api/");
        assert_eq!(first_segment("/healthz"), "/healthz");
        assert_eq!(first_segment("/"), "/");
        assert_eq!(first_segment("//x"), "//");
        assert_eq!(first_segment("/é/x"), "/é/");
    }

    #[test]
    fn regex_literal_prefixes_are_conservative() {
        assert_eq!(regex_literal_prefix("/re12/[0-9]+"), "/re12/");
        assert_eq!(regex_literal_prefix("^/v[0-9]+/items$"), "/v");
        assert_eq!(regex_literal_prefix("/api/.*"), "/api/");
        assert_eq!(regex_literal_prefix("/api/v1?"), "/api/v");
        assert_eq!(regex_literal_prefix("/ab*/"), "/a");
        assert_eq!(regex_literal_prefix("/a/b|/c/d"), "");
        assert_eq!(regex_literal_prefix("(?i)/api/"), "");
        assert_eq!(regex_literal_prefix(r"/api\/x"), "/api");
    }

    #[test]
    fn only_a_closed_first_segment_is_a_key() {
        let segment = |matcher| RouteKeys::of(&matcher).segment;
        assert_eq!(segment(PathMatch::Prefix("/".into())), None);
        assert_eq!(segment(PathMatch::Prefix("/ap".into())), None);
        assert_eq!(
            segment(PathMatch::Prefix("/api/".into())).as_deref(),
            Some("/api/")
        );
        assert_eq!(
            segment(PathMatch::Prefix("/api/v".into())).as_deref(),
            Some("/api/")
        );
        assert_eq!(
            segment(PathMatch::Exact("/healthz".into())).as_deref(),
            Some("/healthz")
        );
        assert_eq!(segment(PathMatch::Regex("/v[0-9]/".into())), None);
        assert_eq!(
            segment(PathMatch::Regex("/v2/[a-z]+".into())).as_deref(),
            Some("/v2/")
        );
    }

    #[test]
    fn short_runs_stay_tests_in_order() {
        let routes = (0..DISPATCH_MIN - 1).map(|i| {
            let prefix = format!("/svc{i}/");
            quote!(route prefix(#prefix) => cluster(api),)
        });
        let text = expand_ok(with_routes(quote!(#(#routes)*)));
        assert!(!text.contains("__route_key_hash"), "{text}");
    }

    /// A route with filters is never relayed raw (its chain's index answers `None`); a
    /// route without is offered to `Relay::of`.
    #[test]
    fn only_routes_without_filters_are_relayed() {
        let text = compact(&expand_ok(with_routes(quote! {
            route prefix("/api/") => cluster(api) { filters: [prefix_rewrite("/api/", "/")] },
            route prefix("/") => cluster(api),
        })));
        assert!(
            text.contains(
                "match __route . chain { 0 => :: core :: option :: Option :: None , \
                 _ => :: proxy_core :: __private :: Relay :: of (__route) , }"
            ),
            "{text}"
        );
        // No filters anywhere: every route is offered.
        let text = compact(&expand_ok(with_routes(
            quote!(route prefix("/") => cluster(api),),
        )));
        assert!(
            text.contains("{ let __route = :: proxy_core :: __private :: Router :: route (self , __request) ; :: proxy_core :: __private :: Relay :: of (__route) }"),
            "{text}"
        );
    }

    fn compact(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn key_hashes_are_stable() {
        // The generated copy must hash as this one does; pin a few values.
        assert_eq!(key_hash(""), 0);
        assert_ne!(key_hash("/api/"), key_hash("/api"));
        assert_ne!(key_hash("/api/v1/item1"), key_hash("/api/v1/item10"));
        assert_ne!(key_hash("/a\0"), key_hash("/a"));
    }

    /// Long runs are dispatched, but a route with no key (`prefix("/")`) stays between
    /// the runs before and after it, so first-match-wins order holds across it.
    #[test]
    fn dispatch_keeps_route_order_across_runs() {
        let before = (0..DISPATCH_MIN).map(|i| {
            let exact = format!("/api/v1/item{i}");
            quote!(route exact(#exact) => cluster(api),)
        });
        let after = (0..DISPATCH_MIN).map(|i| {
            let prefix = format!("/svc{i}/");
            quote!(route prefix(#prefix) if header("x-canary", "1") => cluster(api),)
        });
        let text = expand_ok(with_routes(quote! {
            #(#before)*
            route prefix("/") if method(POST) => cluster(api),
            #(#after)*
        }));
        let dispatch = "match __route_key_hash (__segment)";
        let first = text.find(dispatch).expect("the first run is dispatched");
        let middle = text
            .find(r#"starts_with ("/")"#)
            .expect("the unkeyed route");
        let last = text.rfind(dispatch).expect("the last run is dispatched");
        assert!(first < middle && middle < last, "{text}");
        // The exact routes share the segment `/api/`, then are dispatched by path.
        for key in [
            "/api/",
            "/api/v1/item0",
            "/api/v1/item15",
            "/svc0/",
            "/svc15/",
        ] {
            let arm = format!("{}u64 =>", key_hash(key));
            assert!(text.contains(&arm), "no arm for {key} in {text}");
        }
        assert!(text.contains("match __route_key_hash (__path)"), "{text}");
    }
}
