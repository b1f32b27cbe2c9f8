//! How route matching grows with the number of routes: the router `proxy!` generates
//! for tables of 10, 100, 1,000 and 10,000 routes (written by `build.rs` from
//! `src/spec.rs`) against a naive linear scan over the same routes, as a config-driven
//! proxy would do. Four lookups per table: the first route, the middle one, the last
//! one, and a path no route matches (which every route is tested against).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use proxy_benches::linear::LinearRouter;
use proxy_benches::spec::{self, NO_MATCH_PATH};
use proxy_benches::{request, route_index};
use proxy_core::route::{RouteAction, Router};

#[allow(dead_code)]
mod n10 {
    include!(concat!(env!("OUT_DIR"), "/routes_10.rs"));
}
#[allow(dead_code)]
mod n100 {
    include!(concat!(env!("OUT_DIR"), "/routes_100.rs"));
}
#[allow(dead_code)]
mod n1000 {
    include!(concat!(env!("OUT_DIR"), "/routes_1000.rs"));
}
#[allow(dead_code)]
mod n10000 {
    include!(concat!(env!("OUT_DIR"), "/routes_10000.rs"));
}

/// The generated router's answer as `(route index, matched)`.
fn generated_index<R: Router>(router: &R, parts: &http::request::Parts) -> Option<usize> {
    let route = router.route(parts);
    match route.action {
        RouteAction::NoRoute => None,
        _ => route_index(route.name),
    }
}

fn table<R: Router>(c: &mut Criterion, n: usize, router: &R) {
    let specs = spec::routes(n);
    let linear = LinearRouter::new(&specs);
    let cases = [
        ("first", spec::path_for(&specs, 0)),
        ("middle", spec::path_for(&specs, n / 2)),
        ("last", spec::path_for(&specs, n - 1)),
        ("no_match", NO_MATCH_PATH.to_string()),
    ];
    // Both routers must agree on every route of the table before either is timed.
    for index in 0..n {
        let parts = request("GET", &spec::path_for(&specs, index), &[("x-canary", "1")]);
        let expected = linear.route(&parts).map(|matched| matched.index);
        assert_eq!(expected, Some(index), "linear scan, route {index} of {n}");
        assert_eq!(
            generated_index(router, &parts),
            expected,
            "route {index} of {n}"
        );
    }
    for (case, path) in &cases {
        let parts = request("GET", path, &[]);
        let expected = linear.route(&parts).map(|matched| matched.index);
        assert_eq!(generated_index(router, &parts), expected, "{case} of {n}");
        let mut group = c.benchmark_group(format!("route_scaling/{case}"));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.bench_with_input(BenchmarkId::new("generated", n), &parts, |b, parts| {
            b.iter(|| match router.route(std::hint::black_box(parts)).action {
                RouteAction::NoRoute => 0u8,
                _ => 1u8,
            })
        });
        group.bench_with_input(BenchmarkId::new("linear", n), &parts, |b, parts| {
            b.iter(|| {
                linear
                    .route(std::hint::black_box(parts))
                    .map_or(0, |m| m.cluster)
            })
        });
        group.finish();
    }
}

fn scaling(c: &mut Criterion) {
    let p10 = n10::build();
    table(c, 10, n10::router(&p10));
    let p100 = n100::build();
    table(c, 100, n100::router(&p100));
    let p1000 = n1000::build();
    table(c, 1_000, n1000::router(&p1000));
    let p10000 = n10000::build();
    table(c, 10_000, n10000::router(&p10000));
}

criterion_group!(benches, scaling);
criterion_main!(benches);
