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

// Load balancing (cluster keys and values).
pub const LEAST_REQUEST: Symbol = Symbol("least_request");
pub const RANDOM: Symbol = Symbol("random");
pub const RING_HASH: Symbol = Symbol("ring_hash");
pub const MAGLEV: Symbol = Symbol("maglev");
pub const CHOICE_COUNT: Symbol = Symbol("choice_count");
pub const MINIMUM_RING_SIZE: Symbol = Symbol("minimum_ring_size");
pub const TABLE_SIZE: Symbol = Symbol("table_size");
pub const HASH_POLICY: Symbol = Symbol("hash_policy");
pub const COOKIE: Symbol = Symbol("cookie");
pub const SOURCE_IP: Symbol = Symbol("source_ip");
pub const HEALTHY_PANIC_THRESHOLD: Symbol = Symbol("healthy_panic_threshold");
pub const OVERPROVISIONING_FACTOR: Symbol = Symbol("overprovisioning_factor");
pub const LB_POLICIES: &[Symbol] = &[ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV];

// Endpoint `{ .. }` keys.
pub const ADDRESS: Symbol = Symbol("address");
pub const WEIGHT: Symbol = Symbol("weight");
pub const PRIORITY: Symbol = Symbol("priority");

// Service discovery.
pub const DISCOVERY: Symbol = Symbol("discovery");
pub const STATIC: Symbol = Symbol("static");
pub const STRICT_DNS: Symbol = Symbol("strict_dns");
pub const LOGICAL_DNS: Symbol = Symbol("logical_dns");
pub const DNS_REFRESH_RATE: Symbol = Symbol("dns_refresh_rate");
pub const RESPECT_DNS_TTL: Symbol = Symbol("respect_dns_ttl");
pub const DNS_LOOKUP_FAMILY: Symbol = Symbol("dns_lookup_family");
pub const DNS_RESOLVERS: Symbol = Symbol("dns_resolvers");
pub const AUTO: Symbol = Symbol("auto");
pub const V4_ONLY: Symbol = Symbol("v4_only");
pub const V6_ONLY: Symbol = Symbol("v6_only");

// Active health checks (`health_check: { .. }`).
pub const HEALTH_CHECK: Symbol = Symbol("health_check");
pub const KIND: Symbol = Symbol("kind");
pub const GRPC: Symbol = Symbol("grpc");
pub const REDIS: Symbol = Symbol("redis");
pub const EXPECTED_STATUSES: Symbol = Symbol("expected_statuses");
pub const RANGE: Symbol = Symbol("range");
pub const SERVICE_NAME: Symbol = Symbol("service_name");
pub const SEND: Symbol = Symbol("send");
pub const EXPECT: Symbol = Symbol("expect");
pub const INTERVAL: Symbol = Symbol("interval");
pub const JITTER: Symbol = Symbol("jitter");
pub const UNHEALTHY_THRESHOLD: Symbol = Symbol("unhealthy_threshold");
pub const HEALTHY_THRESHOLD: Symbol = Symbol("healthy_threshold");
pub const NO_TRAFFIC_INTERVAL: Symbol = Symbol("no_traffic_interval");

// Outlier detection (`outlier_detection: { .. }`).
pub const OUTLIER_DETECTION: Symbol = Symbol("outlier_detection");
pub const CONSECUTIVE_5XX: Symbol = Symbol("consecutive_5xx");
pub const CONSECUTIVE_GATEWAY_FAILURE: Symbol = Symbol("consecutive_gateway_failure");
pub const BASE_EJECTION_TIME: Symbol = Symbol("base_ejection_time");
pub const MAX_EJECTION_TIME: Symbol = Symbol("max_ejection_time");
pub const MAX_EJECTION_PERCENT: Symbol = Symbol("max_ejection_percent");

// Circuit breakers (`circuit_breakers: { .. }`).
pub const CIRCUIT_BREAKERS: Symbol = Symbol("circuit_breakers");
pub const MAX_CONNECTIONS: Symbol = Symbol("max_connections");
pub const MAX_PENDING_REQUESTS: Symbol = Symbol("max_pending_requests");
pub const MAX_REQUESTS: Symbol = Symbol("max_requests");
pub const MAX_RETRIES: Symbol = Symbol("max_retries");
pub const RETRY_BUDGET: Symbol = Symbol("retry_budget");
pub const BUDGET_PERCENT: Symbol = Symbol("budget_percent");
pub const MIN_RETRY_CONCURRENCY: Symbol = Symbol("min_retry_concurrency");

// Session persistence (`session_persistence: { .. }`).
pub const SESSION_PERSISTENCE: Symbol = Symbol("session_persistence");
pub const TTL: Symbol = Symbol("ttl");

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
pub const RETRY_POLICY: Symbol = Symbol("retry_policy");
pub const MIRROR: Symbol = Symbol("mirror");
pub const PERCENT: Symbol = Symbol("percent");
pub const WEIGHTED_CLUSTERS: Symbol = Symbol("weighted_clusters");

// Retry policy (`retry_policy: { .. }`) keys and conditions.
pub const RETRY_ON: Symbol = Symbol("retry_on");
pub const NUM_RETRIES: Symbol = Symbol("num_retries");
pub const PER_TRY_TIMEOUT: Symbol = Symbol("per_try_timeout");
pub const RETRIABLE_STATUS_CODES: Symbol = Symbol("retriable_status_codes");
pub const BASE_INTERVAL: Symbol = Symbol("base_interval");
pub const MAX_INTERVAL: Symbol = Symbol("max_interval");
pub const MAX_BUFFERED_BODY: Symbol = Symbol("max_buffered_body");
pub const GATEWAY_ERROR: Symbol = Symbol("gateway_error");
pub const CONNECT_FAILURE: Symbol = Symbol("connect_failure");
pub const RESET: Symbol = Symbol("reset");

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

// The connection manager's own request edits (`http { .. }`), named as Envoy's.
pub const GENERATE_REQUEST_ID: Symbol = Symbol("generate_request_id");
pub const SKIP_XFF_APPEND: Symbol = Symbol("skip_xff_append");

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
pub const ACTIONS: &[Symbol] = &[CLUSTER, WEIGHTED_CLUSTERS, DIRECT_RESPONSE, REDIRECT];
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
    /// One entry of `endpoints: [..]` written as `{ address: .., weight: .. }`.
    Endpoint,
    HealthCheck,
    OutlierDetection,
    CircuitBreakers,
    RetryBudget,
    SessionPersistence,
    RetryPolicy,
    /// One `mirror: { .. }` of a route.
    Mirror,
}

impl Block {
    /// The `key: value` entries this block accepts.
    pub fn keys(self) -> &'static [Symbol] {
        match self {
            Block::Listener => &[BIND, SOCKET_MODE, TLS],
            Block::Http => &[FILTERS, GENERATE_REQUEST_ID, SKIP_XFF_APPEND],
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
                CHOICE_COUNT,
                MINIMUM_RING_SIZE,
                TABLE_SIZE,
                HASH_POLICY,
                HEALTHY_PANIC_THRESHOLD,
                OVERPROVISIONING_FACTOR,
                HEALTH_CHECK,
                OUTLIER_DETECTION,
                CIRCUIT_BREAKERS,
                SESSION_PERSISTENCE,
                DISCOVERY,
                DNS_REFRESH_RATE,
                RESPECT_DNS_TTL,
                DNS_LOOKUP_FAMILY,
                DNS_RESOLVERS,
            ],
            Block::Endpoint => &[ADDRESS, WEIGHT, PRIORITY],
            Block::HealthCheck => &[
                KIND,
                PATH,
                HOST,
                EXPECTED_STATUSES,
                SERVICE_NAME,
                SEND,
                EXPECT,
                INTERVAL,
                JITTER,
                TIMEOUT,
                UNHEALTHY_THRESHOLD,
                HEALTHY_THRESHOLD,
                NO_TRAFFIC_INTERVAL,
            ],
            Block::OutlierDetection => &[
                CONSECUTIVE_5XX,
                CONSECUTIVE_GATEWAY_FAILURE,
                INTERVAL,
                BASE_EJECTION_TIME,
                MAX_EJECTION_TIME,
                MAX_EJECTION_PERCENT,
            ],
            Block::CircuitBreakers => &[
                MAX_CONNECTIONS,
                MAX_PENDING_REQUESTS,
                MAX_REQUESTS,
                MAX_RETRIES,
                RETRY_BUDGET,
            ],
            Block::RetryBudget => &[BUDGET_PERCENT, MIN_RETRY_CONCURRENCY],
            Block::SessionPersistence => &[COOKIE, HEADER, PATH, TTL],
            Block::RetryPolicy => &[
                RETRY_ON,
                NUM_RETRIES,
                PER_TRY_TIMEOUT,
                RETRIABLE_STATUS_CODES,
                BASE_INTERVAL,
                MAX_INTERVAL,
                MAX_BUFFERED_BODY,
            ],
            Block::Mirror => &[CLUSTER, PERCENT],
            Block::RoutePolicy => &[TIMEOUT, UPGRADES, RETRY_POLICY, MIRROR, FILTERS, DISABLE],
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
            Block::Endpoint => "an endpoint's `{ .. }`",
            Block::HealthCheck => "a `health_check: { .. }`",
            Block::OutlierDetection => "an `outlier_detection: { .. }`",
            Block::CircuitBreakers => "a `circuit_breakers: { .. }`",
            Block::RetryBudget => "a `retry_budget: { .. }`",
            Block::SessionPersistence => "a `session_persistence: { .. }`",
            Block::RetryPolicy => "a `retry_policy: { .. }`",
            Block::Mirror => "a `mirror: { .. }`",
        }
    }

    /// Everything that may start an entry of this block, for suggestions.
    pub fn entry_names(self) -> impl Iterator<Item = Symbol> {
        self.keys().iter().chain(self.nested()).copied()
    }
}
