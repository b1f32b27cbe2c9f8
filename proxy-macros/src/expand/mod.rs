//! Code generation from a checked model, one file per concern; every runtime item is
//! named through [`paths`].
//!
//! Hygiene: generated items (`Proxy`, router types, fields) use call-site spans so the
//! user can name `Proxy`. Local variables and parameters use mixed-site spans, which
//! keeps user *variables* out, but a pattern still resolves constants at the call site
//! (`let inputs` would match a user's `const inputs`), so locals are also `__`-prefixed
//! as serde_derive's are.

mod cluster;
mod filters;
mod paths;
mod resilience;
mod router;
pub(crate) mod summary;
mod tcp;
mod tls;
mod topology;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::check;
use crate::diag::Ctxt;
use crate::fallback;
use crate::model::{Cluster, Listener, Topology};
use crate::syntax;

/// The macro: parse, build, check, then expand, or emit the errors with a fallback.
pub fn proxy(input: TokenStream) -> TokenStream {
    match checked_topology(input) {
        Ok(topology) => topology::expand(&topology),
        Err(errors) => fallback::expand(errors),
    }
}

pub(crate) fn checked_topology(input: TokenStream) -> syn::Result<Topology> {
    let syntax: syntax::Proxy = syn::parse2(input)?;
    let cx = Ctxt::new();
    let topology = Topology::build(&cx, &syntax);
    check::check(&cx, &topology);
    cx.check()?;
    Ok(topology)
}

/// A local variable or parameter of generated code; `name` starts with `__`.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn listener_field(listener: &Listener) -> Ident {
    format_ident!("__listener_{}", listener.name, span = Span::call_site())
}

fn router_field(listener: &Listener) -> Ident {
    format_ident!("__router_{}", listener.name, span = Span::call_site())
}

fn router_type(listener: &Listener) -> Ident {
    format_ident!("__ProxyRouter_{}", listener.name, span = Span::call_site())
}

/// The field holding a cluster, both in `Proxy` and in the routers that use it.
fn cluster_field(cluster: &Cluster) -> Ident {
    format_ident!("__cluster_{}", cluster.name, span = Span::call_site())
}

/// The local of `build` holding a cluster until it is moved into `Proxy`.
fn cluster_local(cluster: &Cluster) -> Ident {
    format_ident!("__cluster_{}", cluster.name, span = Span::mixed_site())
}

/// Only reachable if the model and the checks disagree; a compile error, never a panic
/// in the user's program.
fn internal_error(what: &str) -> TokenStream {
    let message = format!("proxy-macros internal error: {what}; please report this");
    quote!(::core::compile_error!(#message))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::test_util::expand_ok;

    /// The example topology of the DSL's documentation, every feature used.
    pub(crate) fn example() -> TokenStream {
        quote! {
            listener edge {
                bind: env("EDGE_ADDR", "0.0.0.0:8080"),
                socket_mode: 0o660,
                http {
                    virtual_host blog {
                        domains: ["example.org", "*.example.org", "api.*", "*"],
                        route prefix("/api/") => cluster(api) { timeout: 5s },
                        route exact("/healthz") => direct_response(200, "ok\n"),
                        route regex("^/v[0-9]+/items$") => cluster(api),
                        route prefix("/admin") if method(GET, HEAD) && header("X-Admin") && header("x-env", "prod") => cluster(api) { timeout: none },
                        route prefix("/old/") => redirect { status: 301, host: "new.example.org", prefix_rewrite: "/new/" },
                        route prefix("/purge") if method(PURGE) => direct_response(405),
                        route prefix("/") => cluster(hugo),
                    }
                    virtual_host other { domains: ["other.example", "*.org"], route prefix("/") => direct_response(404, "nope") }
                }
            }
            listener local { bind: pipe("/run/edge.sock"), http { virtual_host any { domains: ["*"], route prefix("/") => cluster(hugo) } } }
            cluster api {
                endpoints: ["127.0.0.1:8081", "[::1]:8082", "origin.internal:8080", env("API_ADDR", "127.0.0.1:8081")],
                connect_timeout: 2s,
                lb: round_robin,
                protocol: http1,
                max_idle_per_endpoint: 64,
                idle_timeout: 60s,
            }
            cluster hugo { endpoints: [pipe("/dev/shm/hugo.sock"), pipe(env("HUGO_SOCK", "/dev/shm/hugo.sock"))], connect_timeout: 15s }
        }
    }

    fn compact(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn expands_the_example() {
        let text = expand_ok(example());
        for expected in [
            "pub struct Proxy",
            "__listener_edge : :: proxy_core :: __private :: ListenerConfig",
            "pub struct __ProxyRouter_edge",
            ":: proxy_core :: __private :: ListenerConfig :: new (\"edge\" , __inputs . bind_env (\"EDGE_ADDR\" , \"0.0.0.0:8080\")) . socket_mode (0o660)",
            ":: proxy_core :: __private :: BindAddress :: Unix (:: proxy_core :: __private :: PathBuf :: from (\"/run/edge.sock\"))",
            ":: proxy_core :: __private :: EndpointAddress :: Tcp (:: proxy_core :: __private :: socket_v6 ([0 , 0 , 0 , 0 , 0 , 0 , 0 , 1] , 8082))",
            "__inputs . resolve_host (\"origin.internal:8080\")",
            "__inputs . endpoint_env (\"API_ADDR\" , \"127.0.0.1:8081\")",
            "__inputs . pipe_env (\"HUGO_SOCK\" , \"/dev/shm/hugo.sock\")",
            "__regex_0 : __inputs . regex (\"^(?:^/v[0-9]+/items$)$\")",
            "static POLICY_0 : :: proxy_core :: __private :: RoutePolicy = :: proxy_core :: __private :: RoutePolicy :: new (\"edge/blog/0\" , :: core :: option :: Option :: Some (:: proxy_core :: __private :: Duration :: from_millis (5000)))",
            "static HEADER_3_0 : :: proxy_core :: __private :: http :: HeaderName = :: proxy_core :: __private :: http :: HeaderName :: from_static (\"x-admin\")",
            "(* :: proxy_core :: __private :: RouteRequest :: method (__request) == :: proxy_core :: __private :: http :: Method :: GET || * :: proxy_core :: __private :: RouteRequest :: method (__request) == :: proxy_core :: __private :: http :: Method :: HEAD)",
            ":: proxy_core :: __private :: RouteRequest :: method (__request) . as_str () == \"PURGE\"",
            ":: proxy_core :: __private :: RouteRequest :: header_value_is (__request , & HEADER_3_1 , b\"prod\")",
            "fn relay (& 'static self , __request : & :: proxy_core :: __private :: RawRequest < '_ > ,)",
            "Redirect :: new (301) . host (\"new.example.org\") . prefix_rewrite (\"/old/\" , \"/new/\")",
            "DirectResponse :: new (405 , \"\")",
            "__server . http (& self . __listener_edge , & self . __router_edge) ?",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
    }

    #[test]
    fn selects_virtual_hosts_in_envoy_order() {
        let text = compact(&expand_ok(example()));
        let order = [
            "host_is (__host , \"example.org\") { return self . __vhost_blog (__request) ; }",
            "host_is (__host , \"other.example\") { return self . __vhost_other (__request) ; }",
            "host_has_suffix (__host , \".example.org\") { return self . __vhost_blog (__request) ; }",
            "host_has_suffix (__host , \".org\") { return self . __vhost_other (__request) ; }",
            "host_has_prefix (__host , \"api.\") { return self . __vhost_blog (__request) ; }",
            "self . __vhost_blog (__request) }",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|snippet| {
                text.find(snippet)
                    .unwrap_or_else(|| panic!("missing `{snippet}` in\n{text}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "{positions:?}"
        );
    }

    #[test]
    fn a_catch_all_only_listener_does_not_look_at_the_host() {
        let text = expand_ok(crate::test_util::with_routes(
            quote!(route prefix("/") => cluster(api)),
        ));
        assert!(!text.contains("request_host"));
    }

    #[test]
    fn summary_shows_the_compiled_topology() {
        let topology = checked_topology(example()).unwrap();
        let summary = summary::render(&topology);
        let expected = [
            "listener edge on env EDGE_ADDR (default 0.0.0.0:8080), socket mode 0o660",
            "  virtual_host blog [example.org, *.example.org, api.*, *]",
            "    edge/blog/0  prefix(\"/api/\") -> cluster api (timeout 5s)",
            "    edge/blog/1  exact(\"/healthz\") -> direct_response 200 \"ok\\n\"",
            "    edge/blog/2  regex(\"^/v[0-9]+/items$\") -> cluster api (timeout 15s)",
            "    edge/blog/3  prefix(\"/admin\") if method(GET, HEAD) && header(\"x-admin\") && header(\"x-env\", \"prod\") -> cluster api (timeout none)",
            "    edge/blog/4  prefix(\"/old/\") -> redirect 301 (host new.example.org, prefix_rewrite \"/new/\")",
            "    edge/blog/5  prefix(\"/purge\") if method(PURGE) -> direct_response 405",
            "    edge/blog/6  prefix(\"/\") -> cluster hugo (timeout 15s)",
            "  virtual_host other [other.example, *.org]",
            "    edge/other/0  prefix(\"/\") -> direct_response 404 \"nope\"",
            "listener local on unix:/run/edge.sock",
            "  virtual_host any [*]",
            "    local/any/0  prefix(\"/\") -> cluster hugo (timeout 15s)",
            "cluster api: round_robin, http1, connect_timeout 2s, idle_timeout 1m, max_idle_per_endpoint 64",
            "  endpoint 127.0.0.1:8081",
            "  endpoint [::1]:8082",
            "  endpoint origin.internal:8080 (resolved at start-up)",
            "  endpoint env API_ADDR (default 127.0.0.1:8081)",
            "cluster hugo: round_robin, http1, connect_timeout 15s, idle_timeout 1m, max_idle_per_endpoint 64",
            "  endpoint unix:/dev/shm/hugo.sock",
            "  endpoint unix:env HUGO_SOCK (default /dev/shm/hugo.sock)",
        ];
        assert_eq!(summary.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn errors_come_with_the_fallback_only() {
        let output = proxy(quote! { listener l { bind: "127.0.0.1" } }).to_string();
        assert!(output.contains("compile_error"));
        assert!(output.contains("pub struct Proxy ;"));
        assert!(!output.contains("Topology"));
    }
}
