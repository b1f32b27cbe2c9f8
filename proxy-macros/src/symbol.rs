//! Every name the DSL gives meaning to, in one place (as serde_derive's `symbol.rs`).
//!
//! Structural keywords that start a block (`listener`, `route`, ...) are also
//! `syn::custom_keyword!`s in [`crate::syntax::kw`] so the parser can peek for them; the
//! names here are the ones compared against identifiers while interpreting a parsed
//! block, and the lists per block feed "did you mean" suggestions.

use std::fmt;

use proc_macro2::Ident;

/// A name the DSL recognises, compared against user identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Symbol(&'static str);

impl Symbol {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

// Top-level items and blocks.
pub const LISTENER: Symbol = Symbol("listener");
pub const CLUSTER: Symbol = Symbol("cluster");
pub const HTTP: Symbol = Symbol("http");
pub const TCP: Symbol = Symbol("tcp");
pub const VIRTUAL_HOST: Symbol = Symbol("virtual_host");
pub const ROUTE: Symbol = Symbol("route");

// Listener keys.
pub const BIND: Symbol = Symbol("bind");
pub const SOCKET_MODE: Symbol = Symbol("socket_mode");

// Cluster keys and their values.
pub const ENDPOINTS: Symbol = Symbol("endpoints");
pub const CONNECT_TIMEOUT: Symbol = Symbol("connect_timeout");
pub const LB: Symbol = Symbol("lb");
pub const PROTOCOL: Symbol = Symbol("protocol");
pub const MAX_IDLE_PER_ENDPOINT: Symbol = Symbol("max_idle_per_endpoint");
pub const IDLE_TIMEOUT: Symbol = Symbol("idle_timeout");
pub const ROUND_ROBIN: Symbol = Symbol("round_robin");
pub const HTTP1: Symbol = Symbol("http1");
pub const HTTP2: Symbol = Symbol("http2");

// Virtual host keys.
pub const DOMAINS: Symbol = Symbol("domains");

// Route matchers, conditions and actions.
pub const PREFIX: Symbol = Symbol("prefix");
pub const EXACT: Symbol = Symbol("exact");
pub const REGEX: Symbol = Symbol("regex");
pub const METHOD: Symbol = Symbol("method");
pub const HEADER: Symbol = Symbol("header");
pub const DIRECT_RESPONSE: Symbol = Symbol("direct_response");
pub const REDIRECT: Symbol = Symbol("redirect");

// Route policy (`cluster(..) { .. }`) keys.
pub const TIMEOUT: Symbol = Symbol("timeout");
pub const UPGRADES: Symbol = Symbol("upgrades");
pub const NONE: Symbol = Symbol("none");

// Redirect keys.
pub const STATUS: Symbol = Symbol("status");
pub const SCHEME: Symbol = Symbol("scheme");
pub const HOST: Symbol = Symbol("host");
pub const PORT: Symbol = Symbol("port");
pub const PATH: Symbol = Symbol("path");
pub const PREFIX_REWRITE: Symbol = Symbol("prefix_rewrite");
pub const STRIP_QUERY: Symbol = Symbol("strip_query");

// TCP proxy (`tcp { .. }`) keys; `cluster`, `filters` and `idle_timeout` are shared.
pub const STAT_PREFIX: Symbol = Symbol("stat_prefix");
pub const MAX_CONNECTION_DURATION: Symbol = Symbol("max_connection_duration");
pub const ALLOW_SOURCE_IPS: Symbol = Symbol("allow_source_ips");
pub const DENY_SOURCE_IPS: Symbol = Symbol("deny_source_ips");
pub const DESTINATION_PORTS: Symbol = Symbol("destination_ports");

// Filters, at listener (`http`), virtual-host and route level.
pub const FILTERS: Symbol = Symbol("filters");
pub const DISABLE: Symbol = Symbol("disable");

// TLS (`tls: { .. }` on listeners and clusters).
pub const TLS: Symbol = Symbol("tls");
pub const CERT: Symbol = Symbol("cert");
pub const KEY: Symbol = Symbol("key");
pub const SNI: Symbol = Symbol("sni");
pub const CERTIFICATES: Symbol = Symbol("certificates");
pub const CERTIFICATE: Symbol = Symbol("certificate");
pub const CLIENT_CA: Symbol = Symbol("client_ca");
pub const REQUIRE_CLIENT_CERT: Symbol = Symbol("require_client_cert");
pub const MIN_VERSION: Symbol = Symbol("min_version");
pub const HANDSHAKE_TIMEOUT: Symbol = Symbol("handshake_timeout");
pub const RELOAD_INTERVAL: Symbol = Symbol("reload_interval");
pub const CA: Symbol = Symbol("ca");
pub const CLIENT_CERT: Symbol = Symbol("client_cert");
pub const CLIENT_KEY: Symbol = Symbol("client_key");

// Address forms.
pub const ENV: Symbol = Symbol("env");
pub const PIPE: Symbol = Symbol("pipe");

pub const ITEMS: &[Symbol] = &[LISTENER, CLUSTER];
pub const MATCHERS: &[Symbol] = &[PREFIX, EXACT, REGEX];
pub const CONDITIONS: &[Symbol] = &[METHOD, HEADER];
pub const ACTIONS: &[Symbol] = &[CLUSTER, DIRECT_RESPONSE, REDIRECT];
pub const ADDRESS_FORMS: &[Symbol] = &[ENV, PIPE];

/// A braced body of `key: value` entries (and, for some, nested blocks). Knows which
/// keys and blocks it accepts, for unknown-key errors and suggestions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Block {
    Listener,
    Http,
    /// A listener's `tcp { .. }` block: an L4 proxy to one cluster.
    Tcp,
    VirtualHost,
    Cluster,
    RoutePolicy,
    Redirect,
    /// A built-in filter's `{ .. }` block; its keys depend on the filter, so the model
    /// checks them against the filter's schema.
    Filter,
    /// A listener's `tls: { .. }`: downstream TLS termination.
    ListenerTls,
    /// A cluster's `tls: { .. }`: upstream TLS origination.
    ClusterTls,
}

impl Block {
    /// The `key: value` entries this block accepts.
    pub fn keys(self) -> &'static [Symbol] {
        match self {
            Block::Listener => &[BIND, SOCKET_MODE, TLS],
            Block::Http => &[FILTERS],
            Block::Tcp => &[
                CLUSTER,
                FILTERS,
                STAT_PREFIX,
                IDLE_TIMEOUT,
                MAX_CONNECTION_DURATION,
                ALLOW_SOURCE_IPS,
                DENY_SOURCE_IPS,
                DESTINATION_PORTS,
            ],
            Block::VirtualHost => &[DOMAINS, FILTERS, DISABLE],
            Block::Cluster => &[
                ENDPOINTS,
                CONNECT_TIMEOUT,
                LB,
                PROTOCOL,
                MAX_IDLE_PER_ENDPOINT,
                IDLE_TIMEOUT,
                TLS,
            ],
            Block::RoutePolicy => &[TIMEOUT, UPGRADES, FILTERS, DISABLE],
            Block::Filter => &[],
            Block::ListenerTls => &[
                CERT,
                KEY,
                SNI,
                CERTIFICATES,
                CLIENT_CA,
                REQUIRE_CLIENT_CERT,
                MIN_VERSION,
                HANDSHAKE_TIMEOUT,
                RELOAD_INTERVAL,
            ],
            Block::ClusterTls => &[SNI, CA, CLIENT_CERT, CLIENT_KEY, MIN_VERSION],
            Block::Redirect => &[
                FILTERS,
                DISABLE,
                STATUS,
                SCHEME,
                HOST,
                PORT,
                PATH,
                PREFIX_REWRITE,
                STRIP_QUERY,
            ],
        }
    }

    /// The keyword-introduced entries (`http { .. }`, `route ..`) this block accepts.
    pub fn nested(self) -> &'static [Symbol] {
        match self {
            Block::Listener => &[HTTP, TCP],
            Block::Http => &[VIRTUAL_HOST],
            Block::VirtualHost => &[ROUTE],
            _ => &[],
        }
    }

    /// How the block is called in messages ("unknown key `x` in a cluster").
    pub fn describe(self) -> &'static str {
        match self {
            Block::Listener => "a listener",
            Block::Http => "an `http` block",
            Block::Tcp => "a `tcp` block",
            Block::VirtualHost => "a virtual host",
            Block::Cluster => "a cluster",
            Block::RoutePolicy => "a route's `{ .. }` block",
            Block::Redirect => "a `redirect { .. }` block",
            Block::Filter => "a filter's `{ .. }` block",
            Block::ListenerTls => "a listener's `tls: { .. }`",
            Block::ClusterTls => "a cluster's `tls: { .. }`",
        }
    }

    /// Everything that may start an entry of this block, for suggestions.
    pub fn entry_names(self) -> impl Iterator<Item = Symbol> {
        self.keys().iter().chain(self.nested()).copied()
    }
}
