//! The `proxy!` macro: a proxy topology (listeners, virtual hosts, routes, clusters)
//! written in an Envoy-like DSL, validated at compile time and expanded into a type
//! implementing `proxy_core::Topology`.
//!
//! Use it through `proxy_core::proxy!`; the expansion names runtime items as
//! `::proxy_core::__private::..`. Set `PROXY_MACROS_DEBUG=1` while building to print each
//! expansion to stderr.
//!
//! # Grammar
//!
//! ```text
//! proxy        = { item [","] }
//! item         = "listener" NAME "{" entries "}" | "cluster" NAME "{" entries "}"
//! entries      = entry { "," entry } [","]      (the comma is optional after a `{ .. }`)
//! listener     : bind: ADDRESS, socket_mode: 0oNNN, http { virtual_host NAME { .. } .. }
//! virtual_host : domains: [STRING, ..], route MATCHER [if COND { && COND }] => ACTION, ..
//! MATCHER      = prefix("/p") | exact("/p") | regex("re")
//! COND         = method(GET, ..) | header("name") | header("name", "value")
//! ACTION       = cluster(NAME) [{ timeout: DURATION | none }]
//!              | direct_response(STATUS [, "body"])
//!              | redirect { status, scheme, host, port, path, prefix_rewrite, strip_query }
//! cluster      : endpoints: [ENDPOINT, ..], connect_timeout, lb: round_robin,
//!                protocol: http1 | http2, max_idle_per_endpoint, idle_timeout
//! ADDRESS      = "ip:port" | pipe("/abs") | pipe(env("VAR", "/abs")) | env("VAR", "ip:port" | "unix:/abs")
//! ENDPOINT     = ADDRESS | "host:port" | env("VAR", "host:port")
//! DURATION     = 500ms | 5s | 1.5m | 2h
//! ```
//!
//! The pipeline, all on `proc_macro2` so it is unit-tested without a compiler:
//! `syntax` parses with recovery → `model` resolves names and interprets values →
//! `check` validates across the topology → `expand` generates code, or
//! `fallback` emits the collected errors with a stub `Proxy`.

mod check;
mod diag;
mod expand;
mod fallback;
mod model;
mod symbol;
mod syntax;
#[cfg(test)]
mod test_util;

use proc_macro::TokenStream;

/// Defines `pub struct Proxy`, a compiled proxy topology; see the `proxy_core` crate
/// documentation for the DSL.
#[proc_macro]
pub fn proxy(input: TokenStream) -> TokenStream {
    let output = expand::proxy(input.into());
    if std::env::var_os("PROXY_MACROS_DEBUG").is_some_and(|value| value != "0" && !value.is_empty())
    {
        eprintln!("proxy! expansion:\n{output}");
    }
    output.into()
}
