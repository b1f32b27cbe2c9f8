//! `Topology::SUMMARY`: the topology as the model understood it, defaults included,
//! printed by `--check` so the operator sees what was compiled without reading code.

use std::fmt::Write;
use std::time::Duration;

use crate::model::resilience::{HealthKind, SessionPersistence};
use crate::model::{
    Action, Address, Cluster, Discovery, Filter, HashPolicy, LbPolicy, Level, Listener, Protocol,
    Route, Target, Topology, ident_string,
};

pub fn render(topology: &Topology) -> String {
    let mut out = String::new();
    for listener in &topology.listeners {
        render_listener(&mut out, topology, listener);
    }
    for cluster in &topology.clusters {
        render_cluster(&mut out, cluster);
    }
    out
}

fn render_listener(out: &mut String, topology: &Topology, listener: &Listener) {
    let bind = listener
        .bind
        .as_ref()
        .map_or_else(|| "?".to_owned(), |bind| address(&bind.value));
    let _ = write!(out, "listener {} on {bind}", ident_string(&listener.name));
    if let Some(mode) = &listener.socket_mode {
        let _ = write!(out, ", socket mode {:#o}", mode.value);
    }
    out.push('\n');
    if let Some(tls) = &listener.tls {
        let certificates: Vec<String> = tls
            .certificates
            .iter()
            .map(|c| {
                let names = if c.sni.is_empty() {
                    "its SANs".to_owned()
                } else {
                    c.sni.join(", ")
                };
                format!("{} ({names})", tls_path(&c.cert))
            })
            .collect();
        let clients = match (&tls.client_ca, tls.require_client_cert) {
            (Some(_), true) => ", client certificates required",
            (Some(_), false) => ", client certificates optional",
            (None, _) => "",
        };
        let _ = writeln!(out, "  tls: {}{clients}", certificates.join("; "));
    }
    if let Some(tcp) = &listener.tcp {
        render_tcp(out, topology, tcp);
    }
    render_filters(out, "  ", &listener.filters);
    if listener.generate_request_id == Some(false) {
        out.push_str("  x-request-id: not generated\n");
    }
    if listener.skip_xff_append == Some(true) {
        out.push_str("  x-forwarded-for: client IP not appended\n");
    }
    for vhost in &listener.virtual_hosts {
        let domains: Vec<String> = vhost
            .domains
            .iter()
            .map(|domain| domain.value.pattern())
            .collect();
        let _ = writeln!(
            out,
            "  virtual_host {} [{}]",
            ident_string(&vhost.name),
            domains.join(", ")
        );
        render_filters(out, "    ", &vhost.filters);
        for route in &vhost.routes {
            let _ = writeln!(out, "    {}  {}", route.name, render_route(topology, route));
            render_filters(out, "      ", &route.filters);
        }
    }
}

/// The `tcp` line of an L4 listener, and its network filters.
fn render_tcp(out: &mut String, topology: &Topology, tcp: &crate::model::tcp::TcpProxy) {
    let cluster = tcp.cluster.map_or_else(
        || "?".to_owned(),
        |id| ident_string(&topology.cluster(id).name),
    );
    let _ = write!(out, "  tcp -> cluster {cluster}");
    match tcp.idle_timeout {
        Some(Some(timeout)) => {
            let _ = write!(out, ", idle_timeout {}", duration(timeout));
        }
        Some(None) => out.push_str(", idle_timeout none"),
        None => {}
    }
    if let Some(limit) = tcp.max_connection_duration {
        let _ = write!(out, ", max_connection_duration {}", duration(limit));
    }
    let cidrs = |list: &[crate::model::tcp::Cidr]| {
        list.iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !tcp.allow.is_empty() {
        let _ = write!(out, ", allow [{}]", cidrs(&tcp.allow));
    }
    if !tcp.deny.is_empty() {
        let _ = write!(out, ", deny [{}]", cidrs(&tcp.deny));
    }
    if !tcp.ports.value.is_empty() {
        let ports: Vec<String> = tcp.ports.value.iter().map(u16::to_string).collect();
        let _ = write!(out, ", destination_ports [{}]", ports.join(", "));
    }
    out.push('\n');
    if !tcp.filters.is_empty() {
        let names: Vec<String> = tcp.filters.iter().map(Filter::describe).collect();
        let _ = writeln!(out, "  filters: [{}]", names.join(", "));
    }
}

fn tls_path(path: &crate::model::tls::PathValue) -> String {
    match path {
        crate::model::tls::PathValue::Literal(path) => path.clone(),
        crate::model::tls::PathValue::Env { var, default } => {
            format!("env {var} (default {default})")
        }
    }
}

/// `filters: [a, b]` and `disable: [c]` lines of one level, if it has any.
fn render_filters(out: &mut String, indent: &str, level: &Level) {
    if !level.filters.is_empty() {
        let names: Vec<String> = level.filters.iter().map(Filter::describe).collect();
        let _ = writeln!(out, "{indent}filters: [{}]", names.join(", "));
    }
    if !level.disable.is_empty() {
        let names: Vec<&str> = level
            .disable
            .iter()
            .map(|name| name.value.as_str())
            .collect();
        let _ = writeln!(out, "{indent}disable: [{}]", names.join(", "));
    }
}

fn render_route(topology: &Topology, route: &Route) -> String {
    let mut text = route.matcher.value.describe();
    let mut conditions = Vec::new();
    if !route.methods.is_empty() {
        let methods: Vec<&str> = route
            .methods
            .iter()
            .map(|method| method.name.as_str())
            .collect();
        conditions.push(format!("method({})", methods.join(", ")));
    }
    for header in &route.headers {
        conditions.push(match &header.value {
            None => format!("header({:?})", header.name),
            Some(value) => format!("header({:?}, {value:?})", header.name),
        });
    }
    if !conditions.is_empty() {
        let _ = write!(text, " if {}", conditions.join(" && "));
    }
    text.push_str(" -> ");
    match &route.action {
        Action::Forward(forward) => {
            let name = |id: crate::model::ClusterId| ident_string(&topology.cluster(id).name);
            let timeout = forward.timeout.map_or_else(|| "none".to_owned(), duration);
            if forward.weighted {
                let split: Vec<String> = forward
                    .clusters
                    .iter()
                    .map(|(id, weight)| format!("{} {weight}", name(*id)))
                    .collect();
                let _ = write!(text, "weighted_clusters [{}]", split.join(", "));
            } else if let Some((id, _)) = forward.clusters.first() {
                let _ = write!(text, "cluster {}", name(*id));
            }
            let _ = write!(text, " (timeout {timeout})");
            if !forward.upgrades.value.is_empty() {
                let _ = write!(text, ", upgrades [{}]", forward.upgrades.value.join(", "));
            }
            if let Some(retry) = &forward.retry {
                let conditions: Vec<&str> = retry.retry_on.iter().map(|on| on.as_str()).collect();
                let _ = write!(
                    text,
                    ", retry {} on [{}]",
                    retry.num_retries,
                    conditions.join(", ")
                );
                if let Some(per_try) = &retry.per_try_timeout {
                    let _ = write!(text, " per try {}", duration(per_try.value));
                }
            }
            for mirror in &forward.mirrors {
                let _ = write!(
                    text,
                    ", mirror {} {}%",
                    name(mirror.cluster),
                    mirror.percent
                );
            }
        }
        Action::Direct { status, body } => {
            let _ = write!(text, "direct_response {status}");
            if !body.is_empty() {
                let _ = write!(text, " {body:?}");
            }
        }
        Action::Redirect(redirect) => {
            let _ = write!(text, "redirect {}", redirect.status);
            let mut parts = Vec::new();
            if let Some(scheme) = &redirect.scheme {
                parts.push(format!("scheme {scheme}"));
            }
            if let Some(host) = &redirect.host {
                parts.push(format!("host {host}"));
            }
            if let Some(port) = redirect.port {
                parts.push(format!("port {port}"));
            }
            if let Some(path) = &redirect.path {
                parts.push(format!("path {path:?}"));
            }
            if let Some(rewrite) = &redirect.prefix_rewrite {
                parts.push(format!("prefix_rewrite {:?}", rewrite.value));
            }
            if redirect.strip_query {
                parts.push("strip_query".to_owned());
            }
            if !parts.is_empty() {
                let _ = write!(text, " ({})", parts.join(", "));
            }
        }
    }
    text
}

fn render_cluster(out: &mut String, cluster: &Cluster) {
    let protocol = match cluster.protocol {
        Protocol::Http1 => "http1",
        Protocol::Http2 => "http2",
    };
    let lb = match cluster.lb {
        LbPolicy::RoundRobin => "round_robin".to_owned(),
        LbPolicy::LeastRequest { choice_count } => {
            format!("least_request ({choice_count} choices)")
        }
        LbPolicy::Random => "random".to_owned(),
        LbPolicy::RingHash { minimum_ring_size } => format!("ring_hash (ring {minimum_ring_size})"),
        LbPolicy::Maglev { table_size } => format!("maglev (table {table_size})"),
    };
    let _ = writeln!(
        out,
        "cluster {}: {lb}, {protocol}, connect_timeout {}, idle_timeout {}, max_idle_per_endpoint {}",
        ident_string(&cluster.name),
        duration(cluster.connect_timeout),
        duration(cluster.idle_timeout),
        cluster.max_idle_per_endpoint,
    );
    render_resilience(out, cluster);
    if let Some(tls) = &cluster.tls {
        let sni = tls
            .sni
            .as_ref()
            .map_or("the endpoint's host", |sni| sni.value.as_str());
        let ca = tls
            .ca
            .as_ref()
            .map_or_else(|| "webpki roots".to_owned(), tls_path);
        let client = if tls.client_cert.is_some() {
            ", client certificate"
        } else {
            ""
        };
        let _ = writeln!(out, "  tls: sni {sni}, ca {ca}{client}");
    }
    for (endpoint, lb) in cluster.endpoints.iter().zip(&cluster.endpoint_lb) {
        let _ = write!(out, "  endpoint {}", address(&endpoint.value));
        if lb.weight != 1 {
            let _ = write!(out, " weight {}", lb.weight);
        }
        if lb.priority != 0 {
            let _ = write!(out, " priority {}", lb.priority);
        }
        out.push('\n');
    }
}

/// Discovery, hashing, health checking, outlier detection, limits and stickiness: one
/// line each, only when they differ from plain static round robin.
fn render_resilience(out: &mut String, cluster: &Cluster) {
    if let Discovery::Dns(dns) = &cluster.discovery {
        let mode = if dns.logical {
            "logical_dns"
        } else {
            "strict_dns"
        };
        let ttl = if dns.respect_ttl {
            ", respecting TTLs"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  discovery: {mode}, refresh {}{ttl}",
            duration(dns.refresh_rate)
        );
    }
    if let Some(policy) = &cluster.hash_policy {
        let policy = match policy {
            HashPolicy::Header(name) => format!("header {name:?}"),
            HashPolicy::Cookie(name) => format!("cookie {name:?}"),
            HashPolicy::SourceIp => "source_ip".to_owned(),
        };
        let _ = writeln!(out, "  hash_policy: {policy}");
    }
    if let Some(check) = &cluster.health_check {
        let kind = match &check.kind {
            HealthKind::Http { path, .. } => format!("http {path}"),
            HealthKind::Tcp { send: None, .. } => "tcp connect".to_owned(),
            HealthKind::Tcp { .. } => "tcp send/expect".to_owned(),
            HealthKind::Grpc { .. } => "grpc".to_owned(),
            HealthKind::Redis => "redis".to_owned(),
        };
        let _ = writeln!(
            out,
            "  health_check: {kind} every {} (timeout {}, unhealthy after {}, healthy after {})",
            duration(check.interval),
            duration(check.timeout),
            check.unhealthy_threshold,
            check.healthy_threshold,
        );
    }
    if let Some(detection) = &cluster.outlier_detection {
        let _ = writeln!(
            out,
            "  outlier_detection: {} consecutive 5xx, {} gateway failures, ejection {}..{}, at most {}%",
            detection.consecutive_5xx,
            detection.consecutive_gateway_failure,
            duration(detection.base_ejection_time),
            duration(detection.max_ejection_time),
            detection.max_ejection_percent,
        );
    }
    let breakers = &cluster.circuit_breakers;
    let default = crate::model::resilience::CircuitBreakers::DEFAULT;
    let custom = (
        breakers.max_connections,
        breakers.max_pending_requests,
        breakers.max_requests,
        breakers.max_retries,
        breakers.retry_budget,
    ) != (
        default.max_connections,
        default.max_pending_requests,
        default.max_requests,
        default.max_retries,
        default.retry_budget,
    );
    if custom {
        let _ = writeln!(
            out,
            "  circuit_breakers: connections {}, pending {}, requests {}, retries {}",
            breakers.max_connections,
            breakers.max_pending_requests,
            breakers.max_requests,
            match breakers.retry_budget {
                Some((percent, min)) => format!("{percent}% budget (min {min})"),
                None => breakers.max_retries.to_string(),
            },
        );
    }
    match &cluster.session_persistence {
        Some(SessionPersistence::Cookie { name, .. }) => {
            let _ = writeln!(out, "  session_persistence: cookie {name:?}");
        }
        Some(SessionPersistence::Header { name }) => {
            let _ = writeln!(out, "  session_persistence: header {name:?}");
        }
        None => {}
    }
}

fn address(address: &Address) -> String {
    match address {
        Address::Fixed(Target::Host(host_port)) => format!("{host_port} (resolved at start-up)"),
        Address::Fixed(target) => target.to_string(),
        Address::Env { var, default, .. } => format!("env {var} (default {default})"),
        Address::PipeEnv { var, default } => format!("unix:env {var} (default {default})"),
    }
}

/// In the largest unit that states it exactly: `90s` rather than `1.5m`.
pub fn duration(duration: Duration) -> String {
    const UNITS: &[(u128, &str)] = &[
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
    ];
    let nanos = duration.as_nanos();
    UNITS
        .iter()
        .find(|(size, _)| nanos % size == 0)
        .map_or_else(
            || format!("{nanos}ns"),
            |(size, unit)| format!("{}{unit}", nanos / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_secs(90)), "90s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_nanos(5)), "5ns");
    }
}
