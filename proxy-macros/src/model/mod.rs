//! The resolved topology: names turned into ids, values interpreted and validated one
//! by one, every user token kept (in [`Located`]) for later errors.
//!
//! Building never stops at an error. A broken value is reported and left out (an
//! `Option` that is `None` only after an error, a route dropped from its virtual host),
//! and the owner is marked `incomplete` so that checks needing the whole picture (a
//! missing key, an unused cluster) stay quiet rather than report consequences of an
//! error the user already sees. Code generation only runs on a model built without
//! errors.

mod address;
mod cluster;
mod fields;
pub mod filter;
mod listener;
pub mod resilience;
pub mod retry;
mod route;
pub mod tcp;
pub mod tls;
mod value;

use std::collections::HashMap;

use proc_macro2::{Ident, TokenStream};
use quote::ToTokens;

pub use address::{Address, Target};
pub use cluster::{
    Cluster, Discovery, DnsFamily, DnsSettings, EndpointLb, HashPolicy, LbPolicy, Protocol,
};
pub use filter::{Filter, FilterKind, Level};
pub use listener::{Domain, Listener, VirtualHost};
pub use route::{Action, Method, PathMatch, Redirect, Route};

use crate::diag::Ctxt;
use crate::syntax::{self, Item};

pub struct Topology {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// A top-level item was dropped after an error.
    pub incomplete: bool,
    /// A dropped item or route may have forwarded to a cluster.
    pub unresolved: bool,
}

/// Index into [`Topology::clusters`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ClusterId(pub usize);

/// A value with the tokens it came from, for errors that point at it later.
pub struct Located<T> {
    pub value: T,
    pub tokens: TokenStream,
}

impl<T> Located<T> {
    pub fn new(value: T, tokens: impl ToTokens) -> Self {
        Located {
            value,
            tokens: tokens.into_token_stream(),
        }
    }
}

impl<T> ToTokens for Located<T> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.tokens.clone());
    }
}

/// What route actions may refer to: cluster names, in definition order.
pub(crate) struct Scope<'a> {
    clusters: HashMap<String, ClusterId>,
    names: Vec<&'a Ident>,
    /// A top-level item failed to parse and may have been the cluster a route names,
    /// so an unknown name is not reported.
    items_incomplete: bool,
}

impl Scope<'_> {
    pub fn cluster(&self, name: &Ident) -> Option<ClusterId> {
        self.clusters.get(&ident_string(name)).copied()
    }
}

/// The name as written, without `r#`.
pub fn ident_string(ident: &Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}

impl Topology {
    pub fn build(cx: &Ctxt, proxy: &syntax::Proxy) -> Topology {
        let mut items_incomplete = false;
        let mut names = Vec::new();
        for item in &proxy.items {
            match item {
                Ok(Item::Cluster(cluster)) => names.push(&cluster.name),
                Ok(Item::Listener(_)) => {}
                Err(_) => items_incomplete = true,
            }
        }
        let mut clusters = HashMap::new();
        for (index, name) in names.iter().enumerate() {
            // A duplicate is reported by `check`; routes resolve to the first definition.
            clusters
                .entry(ident_string(name))
                .or_insert(ClusterId(index));
        }
        let scope = Scope {
            clusters,
            names,
            items_incomplete,
        };

        let mut topology = Topology {
            listeners: Vec::new(),
            clusters: Vec::new(),
            incomplete: items_incomplete,
            unresolved: items_incomplete,
        };
        // Source order, so errors come out in the order the user reads them.
        for item in &proxy.items {
            match item {
                Ok(Item::Listener(listener)) => {
                    let listener = Listener::build(cx, &scope, listener);
                    topology.unresolved |= listener.unresolved;
                    topology.listeners.push(listener);
                }
                Ok(Item::Cluster(cluster)) => topology.clusters.push(Cluster::build(cx, cluster)),
                Err(error) => cx.push(error.clone()),
            }
        }
        topology
    }

    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0]
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::test_util::{errors, headlines, with_cluster, with_listener, with_routes};

    fn model(input: TokenStream) -> Topology {
        let proxy: syntax::Proxy = syn::parse2(input).unwrap();
        let cx = Ctxt::new();
        let topology = Topology::build(&cx, &proxy);
        cx.check().unwrap();
        topology
    }

    #[test]
    fn builds_the_resolved_model() {
        let topology = model(quote! {
            cluster hugo { endpoints: [pipe("/dev/shm/hugo.sock"), pipe(env("HUGO_SOCK", "/dev/shm/hugo.sock"))] }
            listener edge {
                bind: env("EDGE_ADDR", "0.0.0.0:8080"),
                socket_mode: 0o660,
                http { virtual_host blog {
                    domains: ["Example.ORG", "*.example.org", "api.*", "*"],
                    route prefix("/") => cluster(api) { timeout: 1.5s },
                    route exact("/x") => cluster(hugo) { timeout: none },
                } }
            }
            cluster api {
                endpoints: ["127.0.0.1:8081", "[::1]:8082", "origin.internal:8080", env("API_ADDR", "unix:/run/api.sock")],
                connect_timeout: 250ms, protocol: http2, max_idle_per_endpoint: 8, idle_timeout: 2m, lb: round_robin,
            }
        });
        let listener = &topology.listeners[0];
        assert_eq!(
            listener.socket_mode.as_ref().map(|mode| mode.value),
            Some(0o660)
        );
        let bind = &listener.bind.as_ref().unwrap().value;
        assert_eq!(
            bind.known_target(),
            Target::Tcp("0.0.0.0:8080".parse().unwrap())
        );
        let vhost = &listener.virtual_hosts[0];
        let domains: Vec<String> = vhost
            .domains
            .iter()
            .map(|domain| domain.value.pattern())
            .collect();
        assert_eq!(domains, ["example.org", "*.example.org", "api.*", "*"]);
        let Action::Forward(forward) = &vhost.routes[0].action else {
            panic!("not a forward")
        };
        assert_eq!(
            (forward.clusters[0].0, forward.timeout),
            (ClusterId(1), Some(std::time::Duration::from_millis(1500)))
        );
        let Action::Forward(forward) = &vhost.routes[1].action else {
            panic!("not a forward")
        };
        assert_eq!(
            (forward.clusters[0].0, forward.timeout),
            (ClusterId(0), None)
        );
        assert_eq!(vhost.routes[1].name, "edge/blog/1");

        let api = &topology.clusters[1];
        assert_eq!(api.protocol, Protocol::Http2);
        assert_eq!(api.max_idle_per_endpoint, 8);
        assert_eq!(api.idle_timeout, std::time::Duration::from_secs(120));
        let targets: Vec<String> = api
            .endpoints
            .iter()
            .map(|endpoint| endpoint.value.known_target().to_string())
            .collect();
        assert_eq!(
            targets,
            [
                "127.0.0.1:8081",
                "[::1]:8082",
                "origin.internal:8080",
                "unix:/run/api.sock"
            ]
        );
        let hugo = &topology.clusters[0];
        assert_eq!(
            hugo.endpoints[1].value,
            Address::PipeEnv {
                var: "HUGO_SOCK".to_owned(),
                default: "/dev/shm/hugo.sock".to_owned()
            }
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_found() {
        assert_eq!(
            errors(with_cluster(
                quote!(endpoints: ["127.0.0.1:1"], connect_timeout: "5s", max_idle_per_endpoint: 5s)
            )),
            [
                "expected a duration, found a string literal\nhelp: write 5s without quotes",
                "expected an integer, found the duration `5s`",
            ]
        );
        assert_eq!(
            headlines(quote! {
                listener l { bind: 8080, http { virtual_host v { domains: "x", route prefix("/") => cluster(c) } } }
                cluster c { endpoints: ["127.0.0.1:1"], protocol: "http2", lb: fastest }
            }),
            [
                r#"expected an address: "ip:port", pipe("/path") or env("VAR", "default"), found the number `8080`"#,
                "expected a list `[..]`, found a string literal",
                "expected `http1` or `http2`, found a string literal",
                "unsupported value `fastest`, expected `round_robin`, `least_request`, `random`, `ring_hash` or `maglev`",
            ]
        );
    }

    #[test]
    fn malformed_durations() {
        for (written, problem) in [
            (quote!(5x), "malformed duration `5x`: unknown time unit `x`"),
            (quote!(5), "malformed duration `5`: missing time unit"),
            (quote!(0s), "duration `0s` is zero"),
        ] {
            assert_eq!(
                headlines(with_cluster(
                    quote!(endpoints: ["127.0.0.1:1"], connect_timeout: #written)
                )),
                [problem]
            );
        }
    }

    #[test]
    fn unknown_and_duplicate_keys() {
        assert_eq!(
            errors(with_cluster(
                quote!(endpoints: ["127.0.0.1:1"], conect_timeout: 2s, lb: round_robin, lb: round_robin)
            )),
            [
                "unknown key `conect_timeout` in a cluster\nhelp: did you mean `connect_timeout`?",
                "duplicate key `lb`",
                "`lb` first defined here",
            ]
        );
        // A misspelt required key is reported once, not also as missing.
        assert_eq!(
            headlines(with_cluster(quote!(endpoint: ["127.0.0.1:1"]))),
            ["unknown key `endpoint` in a cluster"]
        );
        assert_eq!(
            errors(with_cluster(quote!(connect_timeout: 1s))),
            ["cluster `api` is missing `endpoints`\nhelp: add `endpoints: [\"127.0.0.1:8081\"]`"]
        );
        assert_eq!(
            headlines(
                quote! { listener l { http { virtual_host v { route prefix("/") => cluster(c) } } } cluster c { endpoints: ["127.0.0.1:1"] } }
            ),
            [
                "listener `l` is missing `bind`",
                "virtual host `v` is missing `domains`"
            ]
        );
        assert_eq!(
            headlines(with_listener(quote!(bind: "127.0.0.1:1", http: {}))),
            ["`http` is a block, not a key: write `http { .. }` without the colon"]
        );
    }

    #[test]
    fn unknown_entries_items_matchers_and_actions() {
        assert_eq!(
            errors(with_routes(quote! {
                route prefx("/") => cluster(api),
                route prefix("/") if methd(GET) => cluster(api),
                route prefix("/") => clustr(api),
                rout prefix("/") => cluster(api),
            })),
            [
                "unknown path matcher `prefx(..)`\nhelp: did you mean `prefix`?",
                "unknown condition `methd(..)`\nhelp: did you mean `method`?",
                "unknown route action `clustr`\nhelp: did you mean `cluster`?",
                "unknown entry `rout` in a virtual host\nhelp: did you mean `route`?",
            ]
        );
    }

    #[test]
    fn addresses() {
        for (bind, problem) in [
            (
                quote!("127.0.0.1"),
                "malformed socket address `127.0.0.1`: missing port",
            ),
            (
                quote!("300.1.1.1:80"),
                "malformed socket address `300.1.1.1:80`",
            ),
            (
                quote!("localhost:80"),
                "malformed socket address `localhost:80`: a listener binds to an IP address, not a host name",
            ),
            (
                quote!("unix:/run/a.sock"),
                "`unix:/run/a.sock` is not a TCP address",
            ),
            (
                quote!(pipe("run/a.sock")),
                "relative Unix socket path `run/a.sock`",
            ),
            (
                quote!(env("A", "unix:rel.sock")),
                "relative Unix socket path `rel.sock`",
            ),
            (
                quote!(env("A", "nope")),
                "malformed socket address `nope`: missing port",
            ),
            (
                quote!(env("A=B", "127.0.0.1:1")),
                "invalid environment variable name \"A=B\"",
            ),
            (quote!(env("A")), "`env(..)` takes 2 arguments, found 1"),
            (quote!(socket("/a")), "unknown address form `socket(..)`"),
            (
                quote!(pipe(env("S", "unix:/a.sock"))),
                "the default of pipe(env(..)) is a path, not an address",
            ),
        ] {
            assert_eq!(
                headlines(with_listener(quote!(bind: #bind))),
                [problem],
                "{bind}"
            );
        }
        assert_eq!(
            errors(with_listener(quote!(bind: "127.0.0.1"))),
            [
                "malformed socket address `127.0.0.1`: missing port\nhelp: expected ip:port, e.g. 127.0.0.1:8080"
            ]
        );
        for (endpoints, problem) in [
            (quote!([]), "cluster `api` has no endpoints"),
            (
                quote!(["127.0.0.1:0"]),
                "endpoint `127.0.0.1:0` has port 0, which cannot be connected to",
            ),
            (
                quote!([pipe("x.sock")]),
                "relative Unix socket path `x.sock`",
            ),
            (quote!(["127.0.0.1:1", "127.0.0.1:1"]), "duplicate endpoint"),
        ] {
            assert_eq!(
                headlines(with_cluster(quote!(endpoints: #endpoints)))
                    .first()
                    .map(String::as_str),
                Some(problem)
            );
        }
    }

    #[test]
    fn socket_mode_needs_a_unix_capable_bind() {
        assert_eq!(
            headlines(with_listener(
                quote!(bind: "127.0.0.1:1", socket_mode: 0o660)
            )),
            [
                "socket_mode only applies to Unix sockets, but this listener binds TCP address `127.0.0.1:1`"
            ]
        );
        assert_eq!(
            headlines(with_listener(
                quote!(bind: pipe("/a.sock"), socket_mode: 0o1777)
            )),
            ["socket_mode 0o1777 is out of range"]
        );
        assert_eq!(
            headlines(with_listener(
                quote!(bind: pipe("/a.sock"), socket_mode: 660)
            )),
            ["socket_mode must be an octal literal"]
        );
        assert_eq!(
            errors(with_listener(
                quote!(bind: env("A", "127.0.0.1:1"), socket_mode: 0o600)
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn route_values() {
        for (route, problem) in [
            (
                quote!(route prefix("api") => cluster(api)),
                "path `api` does not start with `/`",
            ),
            (
                quote!(route exact("/a?b") => cluster(api)),
                "path `/a?b` contains a query or fragment",
            ),
            (
                quote!(route regex("^/v[0-9+$") => cluster(api)),
                "invalid regex: unclosed character class",
            ),
            (
                quote!(route prefix("/") if header("x y") => cluster(api)),
                "invalid header name \"x y\"",
            ),
            (
                quote!(route prefix("/") if header("x", "a\nb") => cluster(api)),
                "invalid header value \"a\\nb\"",
            ),
            (
                quote!(route prefix("/") if header(":path") => cluster(api)),
                "pseudo-header `:path` cannot be matched with header(..)",
            ),
            (
                quote!(route prefix("/") if method(get) => cluster(api)),
                "HTTP methods are case-sensitive: `get` is not `GET`",
            ),
            (
                quote!(route prefix("/") if method(GET, GET) => cluster(api)),
                "method `GET` is listed twice",
            ),
            (
                quote!(route prefix("/") if method(GET) && method(HEAD) => cluster(api)),
                "a route takes one `method(..)` condition: list every method in it",
            ),
            (
                quote!(route prefix("/") => direct_response(600)),
                "invalid status code 600",
            ),
            (
                quote!(route prefix("/") => direct_response(204, "x")),
                "a 204 response cannot have a body",
            ),
            (
                quote!(route prefix("/") => redirect { status: 304, host: "a.example" }),
                "invalid redirect status 304",
            ),
            (
                quote!(route prefix("/") => redirect { strip_query: true }),
                "this redirect points back at the request's own URL",
            ),
            (
                quote!(route prefix("/") => redirect { host: "a.example:8443" }),
                "invalid redirect host \"a.example:8443\"",
            ),
            (
                quote!(route prefix("/") => redirect { scheme: "ftp" }),
                "unsupported scheme \"ftp\"",
            ),
            (
                quote!(route prefix("/") => redirect { path: "/a", prefix_rewrite: "/b" }),
                "`path` and `prefix_rewrite` both replace the path: set only one",
            ),
            (
                quote!(route prefix("/") => cluster(api) { timeout: 0s }),
                "duration `0s` is zero",
            ),
            (
                quote!(route prefix("/") => cluster(api) { timout: 1s }),
                "unknown key `timout` in a route's `{ .. }` block",
            ),
            (
                quote!(route prefix("/") => cluster("api")),
                "expected a cluster name, found a string literal",
            ),
        ] {
            assert_eq!(
                headlines(with_routes(route.clone()))
                    .first()
                    .map(String::as_str),
                Some(problem),
                "{route}"
            );
        }
        assert_eq!(
            errors(with_routes(
                quote!(route prefix("/") if method(PURGE) && header("X-Env", "prod") => cluster(api))
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn domains() {
        for (domain, problem) in [
            (
                quote!("example.org:8080"),
                "domain `example.org:8080` has a port",
            ),
            (
                quote!("a.*.org"),
                "unsupported wildcard in domain `a.*.org`",
            ),
            (quote!(""), "empty domain"),
            (quote!("a b"), "invalid domain `a b`"),
        ] {
            let input = quote! {
                listener l { bind: "127.0.0.1:1", http { virtual_host v { domains: [#domain], route prefix("/") => cluster(c) } } }
                cluster c { endpoints: ["127.0.0.1:2"] }
            };
            assert_eq!(headlines(input), [problem]);
        }
    }
}
