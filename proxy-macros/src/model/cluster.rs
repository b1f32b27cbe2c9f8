use std::time::Duration;

use proc_macro2::Ident;

use super::address::{self, Address, Role};
use super::fields::{self, Fields};
use super::resilience::{
    self, CircuitBreakers, HealthCheck, OutlierDetection, SessionPersistence, each_entry,
};
use super::{Located, value};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{self, Value};

/// Defaults of the DSL, stated here rather than inherited from the runtime so that the
/// summary shows exactly what the generated code sets.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: u32 = 64;

pub struct Cluster {
    pub name: Ident,
    pub endpoints: Vec<Located<Address>>,
    /// Weight and priority of each endpoint, in the order of `endpoints`.
    pub endpoint_lb: Vec<EndpointLb>,
    pub lb: LbPolicy,
    pub hash_policy: Option<HashPolicy>,
    pub healthy_panic_threshold: u32,
    pub overprovisioning_factor: u32,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub circuit_breakers: CircuitBreakers,
    pub session_persistence: Option<SessionPersistence>,
    pub discovery: Discovery,
    pub connect_timeout: Duration,
    pub protocol: Protocol,
    pub max_idle_per_endpoint: u32,
    pub idle_timeout: Duration,
    /// `tls: { .. }`: TLS to the endpoints.
    pub tls: Option<super::tls::ClusterTls>,
}

/// An endpoint's share of its priority level, and the level.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EndpointLb {
    pub weight: u32,
    pub priority: u32,
}

impl EndpointLb {
    pub const DEFAULT: EndpointLb = EndpointLb {
        weight: 1,
        priority: 0,
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest { choice_count: u32 },
    Random,
    RingHash { minimum_ring_size: u32 },
    Maglev { table_size: u32 },
}

impl LbPolicy {
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HashPolicy {
    /// Lowercase header name.
    Header(String),
    Cookie(String),
    SourceIp,
}

/// How a cluster learns its endpoints.
pub enum Discovery {
    /// The listed addresses; host names are resolved once, at start-up.
    Static,
    Dns(DnsSettings),
}

pub struct DnsSettings {
    pub logical: bool,
    pub refresh_rate: Duration,
    pub respect_ttl: bool,
    pub family: DnsFamily,
    pub resolvers: Vec<std::net::SocketAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DnsFamily {
    Auto,
    V4Only,
    V6Only,
}

pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Cluster {
    pub(crate) fn build(cx: &Ctxt, syntax: &syntax::Cluster) -> Cluster {
        let mut fields = Fields::new(Block::Cluster);
        let mut cluster = Cluster {
            name: syntax.name.clone(),
            endpoints: Vec::new(),
            endpoint_lb: Vec::new(),
            lb: LbPolicy::RoundRobin,
            hash_policy: None,
            healthy_panic_threshold: 50,
            overprovisioning_factor: 140,
            health_check: None,
            outlier_detection: None,
            circuit_breakers: CircuitBreakers::DEFAULT,
            session_persistence: None,
            discovery: Discovery::Static,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            protocol: Protocol::Http1,
            max_idle_per_endpoint: DEFAULT_MAX_IDLE_PER_ENDPOINT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tls: None,
        };
        let example = r#"["127.0.0.1:8081"]"#;
        let entries = syntax.fields.iter().map(|entry| entry.as_ref().ok());
        fields::require(
            cx,
            Block::Cluster,
            &syntax.name,
            symbol::ENDPOINTS,
            example,
            entries,
        );
        let mut lb_key: Option<&Ident> = None;
        let mut lb_tuning: Vec<(&Ident, u32)> = Vec::new();
        let mut hash_key: Option<&Ident> = None;
        let mut dns = DnsKeys::default();
        for entry in &syntax.fields {
            let Some((key, value)) = fields.entry(cx, entry) else {
                continue;
            };
            if key == symbol::ENDPOINTS {
                (cluster.endpoints, cluster.endpoint_lb) =
                    endpoints(cx, &syntax.name, value, example);
            } else if key == symbol::LB {
                lb_key = Some(key);
                cluster.lb = match value::choice(cx, value, symbol::LB_POLICIES) {
                    Some(choice) if choice == symbol::LEAST_REQUEST => {
                        LbPolicy::LeastRequest { choice_count: 2 }
                    }
                    Some(choice) if choice == symbol::RANDOM => LbPolicy::Random,
                    Some(choice) if choice == symbol::RING_HASH => LbPolicy::RingHash {
                        minimum_ring_size: 1024,
                    },
                    Some(choice) if choice == symbol::MAGLEV => {
                        LbPolicy::Maglev { table_size: 65537 }
                    }
                    _ => LbPolicy::RoundRobin,
                };
            } else if key == symbol::CHOICE_COUNT
                || key == symbol::MINIMUM_RING_SIZE
                || key == symbol::TABLE_SIZE
            {
                let why = "a balancer needs at least one choice, point or entry";
                if let Some(number) = resilience::at_least(cx, value, 1, why) {
                    lb_tuning.push((key, number));
                }
            } else if key == symbol::HASH_POLICY {
                hash_key = Some(key);
                cluster.hash_policy = hash_policy(cx, value);
            } else if key == symbol::HEALTHY_PANIC_THRESHOLD {
                cluster.healthy_panic_threshold = resilience::percent(cx, value).unwrap_or(50);
            } else if key == symbol::OVERPROVISIONING_FACTOR {
                let why = "the factor scales each level's healthy share, in percent (Envoy's default 140)";
                cluster.overprovisioning_factor =
                    resilience::at_least(cx, value, 1, why).unwrap_or(140);
            } else if key == symbol::HEALTH_CHECK {
                cluster.health_check = HealthCheck::build(cx, value);
            } else if key == symbol::OUTLIER_DETECTION {
                cluster.outlier_detection = OutlierDetection::build(cx, value);
            } else if key == symbol::CIRCUIT_BREAKERS {
                cluster.circuit_breakers =
                    CircuitBreakers::build(cx, value).unwrap_or(CircuitBreakers::DEFAULT);
            } else if key == symbol::SESSION_PERSISTENCE {
                cluster.session_persistence = SessionPersistence::build(cx, value);
            } else if key == symbol::DISCOVERY {
                let choices = [symbol::STATIC, symbol::STRICT_DNS, symbol::LOGICAL_DNS];
                dns.mode = value::choice(cx, value, &choices).map(|choice| (choice, key));
                dns.mode_invalid = dns.mode.is_none();
            } else if key == symbol::DNS_REFRESH_RATE {
                dns.refresh_rate = value::duration(cx, value).map(|rate| (rate, key));
            } else if key == symbol::RESPECT_DNS_TTL {
                dns.respect_ttl = value::boolean(cx, value).map(|respect| (respect, key));
            } else if key == symbol::DNS_LOOKUP_FAMILY {
                let choices = [symbol::AUTO, symbol::V4_ONLY, symbol::V6_ONLY];
                dns.family = value::choice(cx, value, &choices).map(|choice| (choice, key));
            } else if key == symbol::DNS_RESOLVERS {
                dns.resolvers = resolvers(cx, value).map(|list| (list, key));
            } else if key == symbol::CONNECT_TIMEOUT {
                cluster.connect_timeout =
                    value::duration(cx, value).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            } else if key == symbol::IDLE_TIMEOUT {
                cluster.idle_timeout = value::duration(cx, value).unwrap_or(DEFAULT_IDLE_TIMEOUT);
            } else if key == symbol::PROTOCOL {
                if value::choice(cx, value, &[symbol::HTTP1, symbol::HTTP2]) == Some(symbol::HTTP2)
                {
                    cluster.protocol = Protocol::Http2;
                }
            } else if key == symbol::TLS {
                cluster.tls = super::tls::ClusterTls::build(cx, value);
            } else if key == symbol::MAX_IDLE_PER_ENDPOINT {
                cluster.max_idle_per_endpoint =
                    value::integer(cx, value).unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT);
            }
        }
        cluster.lb = tune_lb(cx, cluster.lb, lb_key, &lb_tuning);
        check_hash_policy(cx, &cluster, lb_key, hash_key);
        cluster.discovery = dns.build(cx, &cluster);
        cluster
    }
}

/// `choice_count`, `minimum_ring_size` and `table_size` each tune one balancer.
fn tune_lb(
    cx: &Ctxt,
    mut lb: LbPolicy,
    lb_key: Option<&Ident>,
    tuning: &[(&Ident, u32)],
) -> LbPolicy {
    for &(key, number) in tuning {
        let owner = match (&mut lb, key) {
            (LbPolicy::LeastRequest { choice_count }, key) if key == symbol::CHOICE_COUNT => {
                *choice_count = number;
                continue;
            }
            (LbPolicy::RingHash { minimum_ring_size }, key) if key == symbol::MINIMUM_RING_SIZE => {
                *minimum_ring_size = number;
                continue;
            }
            (LbPolicy::Maglev { table_size }, key) if key == symbol::TABLE_SIZE => {
                *table_size = number;
                continue;
            }
            (_, key) if key == symbol::CHOICE_COUNT => symbol::LEAST_REQUEST,
            (_, key) if key == symbol::MINIMUM_RING_SIZE => symbol::RING_HASH,
            _ => symbol::MAGLEV,
        };
        let current = match lb_key {
            Some(_) => "this cluster's `lb`",
            None => "round robin (the default `lb`)",
        };
        cx.error_spanned_by(
            key,
            diag::with_help(
                format!("`{key}` tunes `lb: {owner}`, not {current}"),
                format!("set `lb: {owner}`, or remove `{key}`"),
            ),
        );
    }
    lb
}

/// A consistent-hash balancer without a hash policy spreads requests at random, and a
/// hash policy without one hashes for nothing: both are mistakes worth stopping.
fn check_hash_policy(
    cx: &Ctxt,
    cluster: &Cluster,
    lb_key: Option<&Ident>,
    hash_key: Option<&Ident>,
) {
    match (cluster.lb.is_consistent_hash(), hash_key) {
        (true, None) => {
            if let Some(lb_key) = lb_key {
                cx.error_spanned_by(
                    lb_key,
                    diag::with_help(
                        format!(
                            "cluster `{}` hashes requests but has no `hash_policy`",
                            cluster.name
                        ),
                        "add hash_policy: header(\"x-user\"), cookie(\"session\") or source_ip",
                    ),
                );
            }
        }
        (false, Some(hash_key)) => cx.error_spanned_by(
            hash_key,
            diag::with_help(
                "`hash_policy` is only used by `lb: ring_hash` and `lb: maglev`",
                "set one of those balancers, or remove `hash_policy`",
            ),
        ),
        _ => {}
    }
}

/// `header("x-user")`, `cookie("session")` or `source_ip`.
fn hash_policy(cx: &Ctxt, value: &Value) -> Option<HashPolicy> {
    let usage = r#"write header("x-user"), cookie("session") or source_ip"#;
    match value {
        Value::Name(name) if name == symbol::SOURCE_IP => Some(HashPolicy::SourceIp),
        Value::Call(call) if call.name == symbol::HEADER || call.name == symbol::COOKIE => {
            let [name] = value::args::<1>(cx, call, usage)?;
            let lit = value::string(cx, name)?;
            let text = lit.value();
            if !value::is_token(&text) {
                cx.error_spanned_by(
                    lit,
                    diag::with_help(format!("{text:?} is not a valid {} name", call.name), usage),
                );
                return None;
            }
            Some(if call.name == symbol::HEADER {
                HashPolicy::Header(text.to_ascii_lowercase())
            } else {
                HashPolicy::Cookie(text)
            })
        }
        other => {
            value::mismatch(cx, other, "a hash policy");
            cx.error_spanned_by(other, usage);
            None
        }
    }
}

/// `["127.0.0.1:53"]`: resolver addresses, IP literals with a port.
fn resolvers(cx: &Ctxt, value: &Value) -> Option<Vec<std::net::SocketAddr>> {
    let list = value::list(cx, value)?;
    let mut addresses = Vec::new();
    let mut valid = true;
    for item in &list.items {
        let Some(lit) = value::string(cx, item) else {
            valid = false;
            continue;
        };
        match lit.value().parse() {
            Ok(address) => addresses.push(address),
            Err(_) => {
                cx.error_spanned_by(
                    lit,
                    diag::with_help(
                        format!("{:?} is not an IP address with a port", lit.value()),
                        r#"write "127.0.0.1:53" or "[::1]:53""#,
                    ),
                );
                valid = false;
            }
        }
    }
    valid.then_some(addresses)
}

/// The discovery keys as written, checked together once all are read.
#[derive(Default)]
struct DnsKeys<'a> {
    mode: Option<(symbol::Symbol, &'a Ident)>,
    /// `discovery` was written but not understood: the other keys' fit is unknown.
    mode_invalid: bool,
    refresh_rate: Option<(Duration, &'a Ident)>,
    respect_ttl: Option<(bool, &'a Ident)>,
    family: Option<(symbol::Symbol, &'a Ident)>,
    resolvers: Option<(Vec<std::net::SocketAddr>, &'a Ident)>,
}

impl DnsKeys<'_> {
    fn build(self, cx: &Ctxt, cluster: &Cluster) -> Discovery {
        let dns_mode = self.mode.filter(|(mode, _)| *mode != symbol::STATIC);
        let Some((mode, _)) = dns_mode else {
            let stray = [
                self.refresh_rate.map(|(_, key)| key),
                self.respect_ttl.map(|(_, key)| key),
                self.family.map(|(_, key)| key),
                self.resolvers.as_ref().map(|(_, key)| *key),
            ];
            for key in stray.into_iter().flatten().filter(|_| !self.mode_invalid) {
                cx.error_spanned_by(
                    key,
                    diag::with_help(
                        format!(
                            "`{key}` applies to DNS discovery, and cluster `{}` is static",
                            cluster.name
                        ),
                        "add `discovery: strict_dns` (or logical_dns), or remove it",
                    ),
                );
            }
            return Discovery::Static;
        };
        for endpoint in &cluster.endpoints {
            if matches!(endpoint.value.known_target(), super::Target::Unix(_)) {
                cx.error_spanned_by(
                    endpoint,
                    diag::with_help(
                        format!("cluster `{}` discovers endpoints by DNS; a Unix socket has no DNS name", cluster.name),
                        "list \"host:port\" endpoints, or use a static cluster for pipe(..)",
                    ),
                );
            }
        }
        let family = match self.family.map(|(family, _)| family) {
            Some(family) if family == symbol::V4_ONLY => DnsFamily::V4Only,
            Some(family) if family == symbol::V6_ONLY => DnsFamily::V6Only,
            _ => DnsFamily::Auto,
        };
        Discovery::Dns(DnsSettings {
            logical: mode == symbol::LOGICAL_DNS,
            refresh_rate: self
                .refresh_rate
                .map_or(DEFAULT_DNS_REFRESH_RATE, |(rate, _)| rate),
            respect_ttl: self.respect_ttl.is_none_or(|(respect, _)| respect),
            family,
            resolvers: self.resolvers.map(|(list, _)| list).unwrap_or_default(),
        })
    }
}

fn endpoints(
    cx: &Ctxt,
    name: &Ident,
    value: &Value,
    example: &str,
) -> (Vec<Located<Address>>, Vec<EndpointLb>) {
    let mut endpoints: Vec<Located<Address>> = Vec::new();
    let mut lbs = Vec::new();
    let Some(list) = value::list(cx, value) else {
        return (endpoints, lbs);
    };
    if list.items.is_empty() {
        let message = format!("cluster `{name}` has no endpoints");
        cx.error_spanned_by(
            list,
            diag::with_help(
                message,
                format!("list at least one, e.g. endpoints: {example}"),
            ),
        );
    }
    for item in &list.items {
        let Some((address_value, lb)) = endpoint_entry(cx, item) else {
            continue;
        };
        let Some(endpoint) = address::address(cx, address_value, Role::Endpoint) else {
            continue;
        };
        let endpoint = Located::new(endpoint, address_value);
        match endpoints.iter().find(|seen| seen.value == endpoint.value) {
            Some(first) => cx.push(diag::duplicate(
                &endpoint,
                first,
                "duplicate endpoint",
                &endpoint.value,
            )),
            None => {
                endpoints.push(endpoint);
                lbs.push(lb);
            }
        }
    }
    (endpoints, lbs)
}

/// An endpoint: an address, or `{ address: .., weight: 3, priority: 1 }`.
fn endpoint_entry<'a>(cx: &Ctxt, item: &'a Value) -> Option<(&'a Value, EndpointLb)> {
    let Value::Block(block) = item else {
        return Some((item, EndpointLb::DEFAULT));
    };
    let mut address = None;
    let mut lb = EndpointLb::DEFAULT;
    let complete = each_entry(cx, block, Block::Endpoint, |key, value| {
        if key == symbol::ADDRESS {
            address = Some(value);
            true
        } else if key == symbol::WEIGHT {
            let why = "weights are relative shares: 1 or more";
            resilience::at_least(cx, value, 1, why)
                .map(|weight| lb.weight = weight)
                .is_some()
        } else {
            value::integer(cx, value)
                .map(|priority| lb.priority = priority)
                .is_some()
        }
    });
    if address.is_none() && complete {
        cx.error_spanned_by(
            item,
            diag::with_help(
                "an endpoint block needs an `address`",
                r#"write { address: "127.0.0.1:8081", weight: 2 }"#,
            ),
        );
    }
    Some((address?, lb)).filter(|_| complete)
}
