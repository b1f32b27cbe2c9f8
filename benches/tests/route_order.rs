//! The generated router picks the same route as a linear scan in definition order (the
//! first matching route wins), including when the macro dispatches long runs of routes
//! by path segment instead of testing them one by one.

use proxy_benches::linear::LinearRouter;
use proxy_benches::spec::{self, PathSpec, RouteSpec};
use proxy_benches::{request, route_index};
use proxy_core::route::{RouteAction, Router};

#[allow(dead_code)]
mod n100 {
    include!(concat!(env!("OUT_DIR"), "/routes_100.rs"));
}
#[allow(dead_code)]
mod n1000 {
    include!(concat!(env!("OUT_DIR"), "/routes_1000.rs"));
}

/// Two runs long enough to be dispatched (16 routes each), split by a route with no first segment
/// (`prefix("/a")`), with several routes per segment whose conditions make order
/// matter, and a catch-all at the end.
#[allow(dead_code)]
mod ordered {
    proxy_core::proxy! {
        listener bench {
            bind: "127.0.0.1:0",
            http {
                virtual_host all {
                    domains: ["*"],
                    route prefix("/a/") if header("x-first", "1") => cluster(c0),
                    route exact("/a/b") => cluster(c1),
                    route prefix("/b/") if method(POST) => cluster(c2),
                    route regex("/a/[0-9]+") => cluster(c3),
                    route prefix("/a/b/") => cluster(c0),
                    route exact("/c") => cluster(c1),
                    route prefix("/b/") => cluster(c2),
                    route prefix("/d/x") => cluster(c3),
                    route prefix("/k0/") if header("x-first", "1") => cluster(c0),
                    route exact("/k0/1") => cluster(c1),
                    route prefix("/k0/") => cluster(c2),
                    route exact("/k1") => cluster(c3),
                    route prefix("/k1/") if method(POST) => cluster(c0),
                    route regex("/k1/[a-z]+") => cluster(c1),
                    route prefix("/k1/") => cluster(c2),
                    route exact("/k2/x/y") => cluster(c3),
                    route prefix("/a") => cluster(c0),
                    route prefix("/e/") if header("x-e", "1") => cluster(c1),
                    route exact("/e/1") => cluster(c2),
                    route prefix("/e/") => cluster(c3),
                    route exact("/f") => cluster(c0),
                    route prefix("/g/") => cluster(c1),
                    route regex("/h/.*") => cluster(c2),
                    route prefix("/i/") if method(GET) => cluster(c3),
                    route exact("/j/k") => cluster(c0),
                    route exact("/m/1") => cluster(c1),
                    route exact("/m/2") => cluster(c2),
                    route exact("/m/3") if method(POST) => cluster(c3),
                    route exact("/m/3") => cluster(c0),
                    route exact("/m/4") => cluster(c1),
                    route exact("/m/5") => cluster(c2),
                    route prefix("/m/") if header("x-e", "1") => cluster(c3),
                    route exact("/m/6") => cluster(c0),
                    route prefix("/") if method(DELETE) => cluster(c1),
                }
            }
        }
        cluster c0 { endpoints: ["127.0.0.1:9001"] }
        cluster c1 { endpoints: ["127.0.0.1:9002"] }
        cluster c2 { endpoints: ["127.0.0.1:9003"] }
        cluster c3 { endpoints: ["127.0.0.1:9004"] }
    }

    pub fn build() -> Proxy {
        <Proxy as proxy_core::Topology>::build(&mut proxy_core::config::Inputs::default())
    }

    pub fn router(proxy: &Proxy) -> &impl proxy_core::route::Router {
        &proxy.__router_bench
    }
}

fn ordered_specs() -> Vec<RouteSpec> {
    let route = |path: PathSpec, methods: &[&'static str], header, cluster| RouteSpec {
        path,
        methods: methods.to_vec(),
        header,
        cluster,
    };
    let prefix = |p: &str| PathSpec::Prefix(p.to_owned());
    let exact = |p: &str| PathSpec::Exact(p.to_owned());
    let regex = |p: &str| PathSpec::Regex(p.to_owned());
    vec![
        route(prefix("/a/"), &[], Some(("x-first", "1")), 0),
        route(exact("/a/b"), &[], None, 1),
        route(prefix("/b/"), &["POST"], None, 2),
        route(regex("/a/[0-9]+"), &[], None, 3),
        route(prefix("/a/b/"), &[], None, 0),
        route(exact("/c"), &[], None, 1),
        route(prefix("/b/"), &[], None, 2),
        route(prefix("/d/x"), &[], None, 3),
        route(prefix("/k0/"), &[], Some(("x-first", "1")), 0),
        route(exact("/k0/1"), &[], None, 1),
        route(prefix("/k0/"), &[], None, 2),
        route(exact("/k1"), &[], None, 3),
        route(prefix("/k1/"), &["POST"], None, 0),
        route(regex("/k1/[a-z]+"), &[], None, 1),
        route(prefix("/k1/"), &[], None, 2),
        route(exact("/k2/x/y"), &[], None, 3),
        route(prefix("/a"), &[], None, 0),
        route(prefix("/e/"), &[], Some(("x-e", "1")), 1),
        route(exact("/e/1"), &[], None, 2),
        route(prefix("/e/"), &[], None, 3),
        route(exact("/f"), &[], None, 0),
        route(prefix("/g/"), &[], None, 1),
        route(regex("/h/.*"), &[], None, 2),
        route(prefix("/i/"), &["GET"], None, 3),
        route(exact("/j/k"), &[], None, 0),
        route(exact("/m/1"), &[], None, 1),
        route(exact("/m/2"), &[], None, 2),
        route(exact("/m/3"), &["POST"], None, 3),
        route(exact("/m/3"), &[], None, 0),
        route(exact("/m/4"), &[], None, 1),
        route(exact("/m/5"), &[], None, 2),
        route(prefix("/m/"), &[], Some(("x-e", "1")), 3),
        route(exact("/m/6"), &[], None, 0),
        route(prefix("/"), &["DELETE"], None, 1),
    ]
}

fn generated<R: Router>(router: &R, parts: &http::request::Parts) -> Option<usize> {
    let route = router.route(parts);
    match route.action {
        RouteAction::NoRoute => None,
        _ => route_index(route.name),
    }
}

/// Every combination of `paths`, a few methods and a few headers.
fn assert_same<R: Router>(router: &R, linear: &LinearRouter, paths: &[String]) {
    let heads: [&[(&str, &str)]; 3] =
        [&[], &[("x-first", "1")], &[("x-e", "1"), ("x-canary", "1")]];
    for path in paths {
        for method in ["GET", "POST", "DELETE"] {
            for head in heads {
                let parts = request(method, path, head);
                assert_eq!(
                    generated(router, &parts),
                    linear.route(&parts).map(|matched| matched.index),
                    "{method} {path} {head:?}"
                );
            }
        }
    }
}

#[test]
fn first_match_wins_across_dispatched_runs() {
    let proxy = ordered::build();
    let linear = LinearRouter::new(&ordered_specs());
    let paths: Vec<String> = [
        "/a/b", "/a/1", "/a/12x", "/a/b/", "/a/b/c", "/a/x", "/a", "/ab", "/a/", "/b/", "/b/x",
        "/b", "/c", "/c/", "/cc", "/d/x", "/d/xy", "/d/y", "/d/", "/e/1", "/e/1/", "/e/2", "/f",
        "/f/", "/g/", "/g", "/h/", "/h/abc", "/h", "/i/x", "/j/k", "/j/k/", "/j/", "/", "/z/",
        "/z", "/k0/1", "/k0/2", "/k0/", "/k0", "/k1", "/k1/", "/k1/abc", "/k1/1", "/k2/x/y",
        "/k2/x", "/m/1", "/m/3", "/m/6", "/m/7", "/m/",
    ]
    .iter()
    .map(|path| (*path).to_owned())
    .collect();
    assert_same(ordered::router(&proxy), &linear, &paths);
}

#[test]
fn scaling_tables_route_like_a_linear_scan() {
    fn check<R: Router>(n: usize, router: &R) {
        let specs = spec::routes(n);
        let linear = LinearRouter::new(&specs);
        let mut paths: Vec<String> = (0..n).map(|index| spec::path_for(&specs, index)).collect();
        // Near misses: a segment without its slash, a longer exact path, a regex miss.
        paths.extend(
            [
                "/svc1",
                "/svc1x/",
                "/api/v1/item3/",
                "/api/v1/item",
                "/re37/x",
            ]
            .map(String::from),
        );
        paths.push(spec::NO_MATCH_PATH.to_owned());
        assert_same(router, &linear, &paths);
    }
    let p100 = n100::build();
    check(100, n100::router(&p100));
    let p1000 = n1000::build();
    check(1_000, n1000::router(&p1000));
}
