//! `Topology::SUMMARY`: the topology as the model understood it, defaults included,
//! printed by `--check` so the operator sees what was compiled without reading code.

use std::fmt::Write;
use std::time::Duration;

use crate::model::{
    Action, Address, Cluster, Filter, Level, Listener, Protocol, Route, Target, Topology,
    ident_string,
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
        Action::Forward {
            cluster,
            timeout,
            upgrades,
        } => {
            let timeout = timeout.map_or_else(|| "none".to_owned(), duration);
            let _ = write!(
                text,
                "cluster {} (timeout {timeout})",
                ident_string(&topology.cluster(*cluster).name)
            );
            if !upgrades.value.is_empty() {
                let _ = write!(text, ", upgrades [{}]", upgrades.value.join(", "));
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
    let _ = writeln!(
        out,
        "cluster {}: round_robin, {protocol}, connect_timeout {}, idle_timeout {}, max_idle_per_endpoint {}",
        ident_string(&cluster.name),
        duration(cluster.connect_timeout),
        duration(cluster.idle_timeout),
        cluster.max_idle_per_endpoint,
    );
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
    for endpoint in &cluster.endpoints {
        let _ = writeln!(out, "  endpoint {}", address(&endpoint.value));
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
