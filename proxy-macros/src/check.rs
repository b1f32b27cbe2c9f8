//! Validation across the model: what no single value can know.
//!
//! Decisions worth knowing:
//!
//! - **An unreferenced cluster is an error.** A compiled topology cannot be changed at
//!   run time, so a cluster no route forwards to is dead configuration, and in practice
//!   usually a typo on one side (the route names `apii`, the cluster is `api`). The
//!   hint says to route to it or remove it.
//! - **Bind conflicts compare what is known at compile time:** literal addresses and
//!   the defaults of `env(..)`; the environment may override them at start-up, where the
//!   operating system has the last word. Port 0 (any free port) never conflicts; a
//!   wildcard IP conflicts with every IP of its family on the same port.
//! - **Shadowed routes** are found by prefix and exact path only: an earlier route
//!   shadows a later one when its path covers the later one's (`prefix("/a")` covers
//!   `prefix("/a/b")` and `exact("/a/c")`; equal exact paths cover each other) and its
//!   conditions are no stricter (none, or a subset of the later route's). Regex routes
//!   are never compared, since regex inclusion is not worth deciding here.
//! - Checks whose conclusion an earlier error could invalidate (missing routes, unused
//!   clusters, no listeners) stay quiet when the model is incomplete, so every error
//!   reported is a real one.

use std::collections::HashSet;
use std::net::SocketAddr;

use proc_macro2::{Ident, Span};

use crate::diag::{self, Ctxt};
use crate::model::filter::effective;
use crate::model::{
    Action, ClusterId, Domain, Filter, FilterKind, Level, Listener, Located, PathMatch, Route,
    Target, Topology, VirtualHost, ident_string,
};

pub fn check(cx: &Ctxt, topology: &Topology) {
    if topology.listeners.is_empty() && !topology.incomplete {
        let help = r#"add one, e.g. listener main { bind: "127.0.0.1:8080", http { .. } }"#;
        cx.error_at(
            Span::call_site(),
            diag::with_help("a proxy needs at least one listener", help),
        );
    }
    unique_names(
        cx,
        "listener",
        topology.listeners.iter().map(|listener| &listener.name),
    );
    unique_names(
        cx,
        "cluster",
        topology.clusters.iter().map(|cluster| &cluster.name),
    );
    for listener in &topology.listeners {
        unique_names(
            cx,
            "virtual host",
            listener.virtual_hosts.iter().map(|vhost| &vhost.name),
        );
        unique_domains(cx, listener);
        has_routes(cx, listener);
        filter_chains(cx, listener);
        for vhost in &listener.virtual_hosts {
            shadowed_routes(cx, vhost);
            for route in &vhost.routes {
                prefix_rewrite_on_prefix(cx, route);
                upgrades_over_http1(cx, topology, route);
                retries_allowed(cx, topology, route);
            }
        }
    }
    tcp_cluster_features(cx, topology);
    grpc_health_checks(cx, topology);
    tls_placement(cx, topology);
    distinct_binds(cx, topology);
    clusters_used(cx, topology);
}

/// Filters: names unique per level, disables that name something inherited, and a
/// built-in that may appear once per chain appearing once.
fn filter_chains(cx: &Ctxt, listener: &Listener) {
    let mut reported = HashSet::new();
    filter_level(cx, &listener.filters, &[]);
    for vhost in &listener.virtual_hosts {
        filter_level(cx, &vhost.filters, &[&listener.filters]);
        single_uses(cx, &[&listener.filters, &vhost.filters], &mut reported);
        for route in &vhost.routes {
            filter_level(cx, &route.filters, &[&listener.filters, &vhost.filters]);
            single_uses(
                cx,
                &[&listener.filters, &vhost.filters, &route.filters],
                &mut reported,
            );
        }
    }
}

fn filter_level(cx: &Ctxt, level: &Level, inherited: &[&Level]) {
    let mut seen: Vec<&Located<String>> = Vec::new();
    for name in level
        .filters
        .iter()
        .filter_map(|filter| filter.name.as_ref())
    {
        match seen.iter().find(|first| first.value == name.value) {
            Some(first) => cx.push(diag::duplicate(
                name,
                first,
                format!("filter `{}` is listed twice at this level", name.value),
                &name.value,
            )),
            None => seen.push(name),
        }
    }
    if level.disable.is_empty() {
        return;
    }
    let available: Vec<String> = effective(inherited)
        .iter()
        .filter_map(|filter| filter.name.as_ref().map(|name| name.value.clone()))
        .collect();
    for off in &level.disable {
        if !available.contains(&off.value) {
            let message = format!(
                "`disable` names `{}`, which no enclosing level declares",
                off.value
            );
            let help = if available.is_empty() {
                "nothing is inherited here; only filters of the listener `http` block or the virtual host can be disabled".to_owned()
            } else {
                diag::suggestion(&off.value, available.iter().map(String::as_str))
            };
            cx.error_spanned_by(off, diag::with_help(message, help));
        }
    }
}

/// A built-in that is unique per chain (CORS, compression, ...) twice in one effective
/// chain is reported once, at the later declaration.
fn single_uses(cx: &Ctxt, levels: &[&Level], reported: &mut HashSet<usize>) {
    let chain = effective(levels);
    for (index, filter) in chain.iter().enumerate() {
        let FilterKind::Builtin { spec, .. } = &filter.kind else {
            continue;
        };
        if !spec.unique {
            continue;
        }
        let earlier = chain[..index].iter().find(|other| {
            matches!(&other.kind, FilterKind::Builtin { spec: other, .. } if other.name == spec.name)
        });
        if let Some(earlier) = earlier {
            // Identity of the declaration, so a chain shared by many routes reports once.
            if reported.insert(std::ptr::from_ref::<Filter>(filter) as usize) {
                let mut error = syn::Error::new_spanned(
                    &filter.tokens,
                    diag::with_help(
                        format!("`{}` may appear only once in a filter chain", spec.name),
                        "remove one, or override the inherited one by giving this one the same name",
                    ),
                );
                error.combine(syn::Error::new_spanned(
                    &earlier.tokens,
                    "the other one is here",
                ));
                cx.push(error);
            }
        }
    }
}

/// Upgraded connections are HTTP/1.1 connections handed over after a `101`; an HTTP/2
/// cluster cannot carry one.
fn upgrades_over_http1(cx: &Ctxt, topology: &Topology, route: &Route) {
    let Action::Forward(forward) = &route.action else {
        return;
    };
    let upgrades = &forward.upgrades;
    let http2 = forward
        .clusters
        .iter()
        .map(|(id, _)| topology.cluster(*id))
        .find(|cluster| cluster.protocol == crate::model::Protocol::Http2);
    if let Some(cluster) = http2.filter(|_| !upgrades.value.is_empty()) {
        let message = format!(
            "cluster `{}` speaks HTTP/2, which cannot carry an HTTP/1.1 upgrade",
            cluster.name
        );
        cx.error_spanned_by(
            upgrades,
            diag::with_help(message, "route upgrades to an `http1` cluster"),
        );
    }
}

/// A retry policy on a route whose cluster's circuit breaker allows no retries would
/// never retry: a contradiction worth stopping at compile time.
fn retries_allowed(cx: &Ctxt, topology: &Topology, route: &Route) {
    let Action::Forward(forward) = &route.action else {
        return;
    };
    let Some(retry) = &forward.retry else { return };
    for (id, _) in &forward.clusters {
        let cluster = topology.cluster(*id);
        let breakers = &cluster.circuit_breakers;
        let never = match breakers.retry_budget {
            Some((percent, min)) => percent == 0 && min == 0,
            None => breakers.max_retries == 0,
        };
        if never {
            let message = format!(
                "this route retries, but cluster `{}` allows no retries in flight",
                cluster.name
            );
            cx.error_spanned_by(
                &retry.tokens,
                diag::with_help(
                    message,
                    "raise the cluster's circuit_breakers.max_retries (or retry budget), or remove retry_policy",
                ),
            );
        }
    }
}

/// The L4 proxy has no HTTP: no cookie or header to hash or to keep a session with.
fn tcp_cluster_features(cx: &Ctxt, topology: &Topology) {
    for listener in &topology.listeners {
        let Some(cluster) = listener
            .tcp
            .as_ref()
            .and_then(|tcp| tcp.cluster)
            .map(|id| topology.cluster(id))
        else {
            continue;
        };
        let http_hash = matches!(
            cluster.hash_policy,
            Some(crate::model::HashPolicy::Header(_) | crate::model::HashPolicy::Cookie(_))
        );
        if http_hash || cluster.session_persistence.is_some() {
            let what = if http_hash {
                "hashes an HTTP header or cookie"
            } else {
                "keeps HTTP sessions"
            };
            let message = format!(
                "cluster `{}` {what}, but the `tcp` listener `{}` sees no HTTP",
                cluster.name, listener.name
            );
            cx.error_spanned_by(
                &cluster.name,
                diag::with_help(
                    message,
                    "a tcp listener can hash only `source_ip`; use a separate cluster",
                ),
            );
        }
    }
}

/// gRPC health checks speak HTTP/2; over TLS that needs the cluster's ALPN to offer
/// `h2`, which only an `http2` cluster does.
fn grpc_health_checks(cx: &Ctxt, topology: &Topology) {
    use crate::model::resilience::HealthKind;
    for cluster in &topology.clusters {
        let Some(check) = &cluster.health_check else {
            continue;
        };
        if matches!(check.kind, HealthKind::Grpc { .. })
            && cluster.tls.is_some()
            && cluster.protocol == crate::model::Protocol::Http1
        {
            let message = format!(
                "a gRPC health check over TLS needs HTTP/2, and cluster `{}` speaks http1",
                cluster.name
            );
            cx.error_spanned_by(
                &check.tokens,
                diag::with_help(
                    message,
                    "set `protocol: http2` (gRPC origins speak it anyway)",
                ),
            );
        }
    }
}

/// TLS is not (yet) spoken by the L4 proxy, so `tls` on a `tcp` listener or on a cluster a
/// `tcp` listener uses would silently be plaintext; and a Unix-socket endpoint has no host
/// name to check the certificate against unless `sni` gives one.
fn tls_placement(cx: &Ctxt, topology: &Topology) {
    for listener in &topology.listeners {
        let Some(tcp) = &listener.tcp else { continue };
        if let Some(tls) = &listener.tls {
            cx.error_spanned_by(
                &tls.tokens,
                diag::with_help(
                    "a `tcp` listener cannot terminate TLS yet",
                    "use an `http` listener, or pass TLS through to the upstream",
                ),
            );
        }
        if let Some(cluster) = tcp.cluster.map(|id| topology.cluster(id)) {
            if let Some(tls) = &cluster.tls {
                let message = format!(
                    "cluster `{}` has `tls`, but the `tcp` listener `{}` would reach it in plaintext",
                    cluster.name, listener.name
                );
                cx.error_spanned_by(&tls.tokens, diag::with_help(message, "the L4 proxy does not originate TLS yet: use a separate cluster without `tls`"));
            }
        }
    }
    for cluster in &topology.clusters {
        let Some(tls) = &cluster.tls else { continue };
        if tls.sni.is_some() {
            continue;
        }
        if let Some(pipe) = cluster
            .endpoints
            .iter()
            .find(|endpoint| endpoint.value.is_fixed_unix())
        {
            let message = format!(
                "cluster `{}` uses TLS over a Unix socket, which has no host name to verify",
                cluster.name
            );
            cx.error_spanned_by(
                pipe,
                diag::with_help(message, r#"add sni: "the.server.name" to its `tls`"#),
            );
        }
    }
}

fn unique_names<'a>(cx: &Ctxt, kind: &str, names: impl Iterator<Item = &'a Ident>) {
    let mut seen: Vec<(String, &Ident)> = Vec::new();
    for name in names {
        let text = ident_string(name);
        match seen.iter().find(|(first, _)| *first == text) {
            Some((_, first)) => cx.push(diag::duplicate(
                name,
                first,
                format!("duplicate {kind} `{text}`"),
                &text,
            )),
            None => seen.push((text, name)),
        }
    }
}

/// Envoy rejects a listener where two virtual hosts claim one domain, since only the
/// first could ever be selected.
fn unique_domains(cx: &Ctxt, listener: &Listener) {
    let mut seen: Vec<(&Located<Domain>, &Ident)> = Vec::new();
    for vhost in &listener.virtual_hosts {
        for domain in &vhost.domains {
            match seen.iter().find(|(first, _)| first.value == domain.value) {
                Some((first, owner)) => {
                    let pattern = domain.value.pattern();
                    let message = if ident_string(owner) == ident_string(&vhost.name) {
                        format!("duplicate domain `{pattern}`")
                    } else {
                        format!("domain `{pattern}` is already served by virtual host `{owner}`")
                    };
                    cx.push(diag::duplicate(domain, first, message, &pattern));
                }
                None => seen.push((domain, &vhost.name)),
            }
        }
    }
}

fn has_routes(cx: &Ctxt, listener: &Listener) {
    if listener.incomplete || listener.tcp.is_some() {
        return;
    }
    if listener.virtual_hosts.is_empty() {
        let message = format!("listener `{}` has no routes", listener.name);
        let example = r#"virtual_host NAME { domains: ["*"], route prefix("/") => cluster(NAME) }"#;
        match &listener.http {
            Some(http) => cx.error_spanned_by(
                http,
                diag::with_help(message, format!("add one to this block: {example}")),
            ),
            None => cx.error_spanned_by(
                &listener.name,
                diag::with_help(message, format!("add http {{ {example} }}")),
            ),
        }
        return;
    }
    for vhost in listener
        .virtual_hosts
        .iter()
        .filter(|vhost| vhost.routes.is_empty() && !vhost.incomplete)
    {
        let message = format!("virtual host `{}` has no routes", vhost.name);
        let help =
            r#"add one, e.g. route prefix("/") => cluster(NAME), or remove the virtual host"#;
        cx.error_spanned_by(&vhost.name, diag::with_help(message, help));
    }
}

fn shadowed_routes(cx: &Ctxt, vhost: &VirtualHost) {
    for (index, later) in vhost.routes.iter().enumerate() {
        let Some(earlier) = vhost.routes[..index]
            .iter()
            .find(|earlier| shadows(earlier, later))
        else {
            continue;
        };
        let message = format!(
            "this route can never match: the earlier route `{}`, {}, matches every request it would",
            earlier.name,
            earlier.matcher.value.describe(),
        );
        let help = format!("move this route above `{}`, or remove it", earlier.name);
        cx.error_spanned_by(&later.matcher, diag::with_help(message, help));
    }
}

/// Whether every request `later` matches is matched by `earlier` first.
fn shadows(earlier: &Route, later: &Route) -> bool {
    let path_covers = match (&earlier.matcher.value, &later.matcher.value) {
        (PathMatch::Prefix(covering), PathMatch::Prefix(path) | PathMatch::Exact(path)) => {
            path.starts_with(covering)
        }
        (PathMatch::Exact(covering), PathMatch::Exact(path)) => path == covering,
        _ => false,
    };
    let methods_cover = earlier.methods.is_empty()
        || (!later.methods.is_empty()
            && later
                .methods
                .iter()
                .all(|method| earlier.methods.contains(method)));
    let headers_cover = earlier
        .headers
        .iter()
        .all(|header| later.headers.contains(header));
    path_covers && methods_cover && headers_cover
}

/// Envoy's `prefix_rewrite` replaces the part of the path the route's prefix matched, so
/// it needs a prefix to replace.
fn prefix_rewrite_on_prefix(cx: &Ctxt, route: &Route) {
    let Action::Redirect(redirect) = &route.action else {
        return;
    };
    let Some(rewrite) = &redirect.prefix_rewrite else {
        return;
    };
    if !matches!(route.matcher.value, PathMatch::Prefix(_)) {
        let message = format!(
            "`prefix_rewrite` needs a prefix(..) route, but this route matches {}",
            route.matcher.value.describe()
        );
        cx.error_spanned_by(
            rewrite,
            diag::with_help(message, "use `path` to replace the whole path"),
        );
    }
}

fn distinct_binds(cx: &Ctxt, topology: &Topology) {
    let mut seen: Vec<(&Listener, Target)> = Vec::new();
    for listener in &topology.listeners {
        let Some(bind) = &listener.bind else { continue };
        let target = bind.value.known_target();
        if matches!(target, Target::Tcp(addr) if addr.port() == 0) {
            continue;
        }
        if let Some((first, first_target)) = seen.iter().find(|(_, seen)| conflicts(seen, &target))
        {
            let relation = if *first_target == target {
                "the same address as"
            } else {
                "an address overlapping"
            };
            let message = format!(
                "listener `{}` binds {relation} listener `{}` ({})",
                listener.name, first.name, first_target
            );
            let help = "give each listener its own address (compared: literal addresses and env(..) defaults)";
            let mut error = syn::Error::new_spanned(bind, diag::with_help(message, help));
            if let Some(first_bind) = &first.bind {
                error.combine(syn::Error::new_spanned(
                    first_bind,
                    format!("`{first_target}` first bound here"),
                ));
            }
            cx.push(error);
        } else {
            seen.push((listener, target));
        }
    }
}

fn conflicts(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Unix(a), Target::Unix(b)) => a == b,
        (Target::Tcp(a), Target::Tcp(b)) => tcp_conflicts(*a, *b),
        _ => false,
    }
}

fn tcp_conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn clusters_used(cx: &Ctxt, topology: &Topology) {
    if topology.unresolved {
        return;
    }
    let used: HashSet<ClusterId> = topology
        .listeners
        .iter()
        .flat_map(|listener| &listener.virtual_hosts)
        .flat_map(|vhost| &vhost.routes)
        .flat_map(|route| match &route.action {
            Action::Forward(forward) => forward.all_clusters().collect(),
            _ => Vec::new(),
        })
        .chain(
            topology
                .listeners
                .iter()
                .filter_map(|listener| listener.tcp.as_ref()?.cluster),
        )
        .collect();
    let mut names = HashSet::new();
    for (index, cluster) in topology.clusters.iter().enumerate() {
        // A duplicate definition is already an error; routes reach the first one.
        if names.insert(ident_string(&cluster.name)) && !used.contains(&ClusterId(index)) {
            let message = format!("cluster `{}` is never used by any route", cluster.name);
            cx.error_spanned_by(
                &cluster.name,
                diag::with_help(message, "route to it or remove it"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use crate::test_util::{errors, headlines, with_routes};

    #[test]
    fn a_valid_topology_has_no_errors() {
        assert_eq!(
            errors(with_routes(quote!(route prefix("/") => cluster(api)))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_cluster_suggests_the_closest() {
        assert_eq!(
            errors(quote! {
                listener edge { bind: "127.0.0.1:8080", http { virtual_host site { domains: ["*"],
                    route prefix("/a") => cluster(apii),
                    route prefix("/") => cluster(api),
                } } }
                cluster api { endpoints: ["127.0.0.1:8081"] }
            }),
            ["unknown cluster `apii`\nhelp: did you mean `api`?"]
        );
    }

    #[test]
    fn duplicates_point_at_both_definitions() {
        let input = quote! {
            listener a { bind: "127.0.0.1:1", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener a { bind: "127.0.0.1:2", http {
                virtual_host v { domains: ["x.example"], route prefix("/") => cluster(c) }
                virtual_host v { domains: ["y.example"], route prefix("/") => cluster(c) }
            } }
            cluster c { endpoints: ["127.0.0.1:3"] }
            cluster c { endpoints: ["127.0.0.1:4"] }
        };
        assert_eq!(
            errors(input),
            [
                "duplicate listener `a`",
                "`a` first defined here",
                "duplicate cluster `c`",
                "`c` first defined here",
                "duplicate virtual host `v`",
                "`v` first defined here",
            ]
        );
    }

    #[test]
    fn a_domain_belongs_to_one_virtual_host() {
        let input = quote! {
            listener l { bind: "127.0.0.1:1", http {
                virtual_host a { domains: ["Example.org", "*"], route prefix("/") => cluster(c) }
                virtual_host b { domains: ["example.org", "*.example.org", "*.example.org"], route prefix("/") => cluster(c) }
            } }
            cluster c { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            headlines(input),
            [
                "domain `example.org` is already served by virtual host `a`",
                "`example.org` first defined here",
                "duplicate domain `*.example.org`",
                "`*.example.org` first defined here",
            ]
        );
    }

    #[test]
    fn bind_conflicts_compare_literals_and_defaults() {
        let input = quote! {
            listener a { bind: "127.0.0.1:8080", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener b { bind: env("B_ADDR", "127.0.0.1:8080"), http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener w { bind: "0.0.0.0:9090", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener x { bind: "10.0.0.1:9090", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener u { bind: pipe("/run/a.sock"), http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener v { bind: env("V_ADDR", "unix:/run/a.sock"), http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener any1 { bind: "127.0.0.1:0", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener any2 { bind: "127.0.0.1:0", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            listener v6 { bind: "[::]:8080", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(c) } } }
            cluster c { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            headlines(input),
            [
                "listener `b` binds the same address as listener `a` (127.0.0.1:8080)",
                "`127.0.0.1:8080` first bound here",
                "listener `x` binds an address overlapping listener `w` (0.0.0.0:9090)",
                "`0.0.0.0:9090` first bound here",
                "listener `v` binds the same address as listener `u` (unix:/run/a.sock)",
                "`unix:/run/a.sock` first bound here",
            ]
        );
    }

    #[test]
    fn listeners_and_virtual_hosts_need_routes() {
        let input = quote! {
            listener bare { bind: "127.0.0.1:1" }
            listener empty { bind: "127.0.0.1:2", http { } }
            listener idle { bind: "127.0.0.1:3", http {
                virtual_host v { domains: ["*"] }
                virtual_host w { domains: ["w.example"], route prefix("/") => cluster(c) }
            } }
            cluster c { endpoints: ["127.0.0.1:4"] }
        };
        assert_eq!(
            headlines(input),
            [
                "listener `bare` has no routes",
                "listener `empty` has no routes",
                "virtual host `v` has no routes"
            ]
        );
    }

    #[test]
    fn shadowed_routes_are_errors() {
        let input = with_routes(quote! {
            route exact("/healthz") => direct_response(200),
            route exact("/healthz") => direct_response(204),
            route prefix("/api") if method(GET) => cluster(api),
            route prefix("/api/v1") if method(GET) && header("x") => cluster(api),
            route prefix("/api/v2") if method(POST) => cluster(api),
            route prefix("/api/v3") => cluster(api),
            route regex("^/api/.*$") => cluster(api),
            route prefix("/") => cluster(api),
            route prefix("/static/") => cluster(api),
            route exact("/robots.txt") if header("x") => cluster(api),
            route regex("/never") => cluster(api),
        });
        assert_eq!(
            headlines(input),
            [
                "this route can never match: the earlier route `edge/site/0`, exact(\"/healthz\"), matches every request it would",
                "this route can never match: the earlier route `edge/site/2`, prefix(\"/api\"), matches every request it would",
                "this route can never match: the earlier route `edge/site/7`, prefix(\"/\"), matches every request it would",
                "this route can never match: the earlier route `edge/site/7`, prefix(\"/\"), matches every request it would",
            ]
        );
    }

    #[test]
    fn prefix_rewrite_needs_a_prefix_route() {
        let input = with_routes(quote! {
            route exact("/old") => redirect { prefix_rewrite: "/new" },
            route prefix("/") => cluster(api),
        });
        assert_eq!(
            headlines(input),
            ["`prefix_rewrite` needs a prefix(..) route, but this route matches exact(\"/old\")"]
        );
    }

    #[test]
    fn unused_clusters_are_errors_unless_a_route_is_broken() {
        let input = quote! {
            listener l { bind: "127.0.0.1:1", http { virtual_host v { domains: ["*"], route prefix("/") => cluster(used) } } }
            cluster used { endpoints: ["127.0.0.1:2"] }
            cluster spare { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            errors(input),
            ["cluster `spare` is never used by any route\nhelp: route to it or remove it"]
        );

        // The broken route may have been the one using `spare`: say nothing about it.
        let input = quote! {
            listener l { bind: "127.0.0.1:1", http { virtual_host v { domains: ["*"],
                route prefix("/a") => cluster(spare) { timeout: 5x },
                route prefix("/") => cluster(used),
            } } }
            cluster used { endpoints: ["127.0.0.1:2"] }
            cluster spare { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            headlines(input),
            ["malformed duration `5x`: unknown time unit `x`"]
        );

        let input = quote! {
            listener l { bind: "127.0.0.1:1", http { virtual_host v { domains: ["*"],
                route prefix("/a") => cluster(sprae),
                route prefix("/") => cluster(used),
            } } }
            cluster used { endpoints: ["127.0.0.1:2"] }
            cluster spare { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            errors(input),
            ["unknown cluster `sprae`\nhelp: did you mean `spare`?"]
        );

        // A broken route that cannot forward anywhere does not hide the unused cluster.
        let input = quote! {
            listener l { bind: "127.0.0.1:1", http { virtual_host v { domains: ["*"],
                route prefix("/a") => direct_response(99),
                route prefix("/") => cluster(used),
            } } }
            cluster used { endpoints: ["127.0.0.1:2"] }
            cluster spare { endpoints: ["127.0.0.1:3"] }
        };
        assert_eq!(
            headlines(input),
            [
                "invalid status code 99",
                "cluster `spare` is never used by any route"
            ]
        );
    }

    #[test]
    fn a_proxy_needs_a_listener() {
        assert_eq!(headlines(quote!()), ["a proxy needs at least one listener"]);
        // Unless the listener is there but misspelt.
        assert_eq!(headlines(quote!(listenr l { })), ["unknown item `listenr`"]);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let input = quote! {
            listener edge {
                bind: "127.0.0.1",
                socket_mode: 0o660,
                http { virtual_host site { domains: ["*"],
                    route prefx("/") => cluster(api),
                    route prefix("/x") => cluster(apii),
                    route exact("/y") => direct_response(99),
                } }
            }
            cluster api { endpoints: [], conect_timeout: 2s }
        };
        assert_eq!(
            headlines(input),
            [
                "malformed socket address `127.0.0.1`: missing port",
                "unknown path matcher `prefx(..)`",
                "unknown cluster `apii`",
                "invalid status code 99",
                "cluster `api` has no endpoints",
                "unknown key `conect_timeout` in a cluster",
            ]
        );
    }
}
