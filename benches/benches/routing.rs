//! Cost of routing one request head through a generated router.
//!
//! The topology mixes the matcher kinds the DSL has (several virtual hosts, prefix,
//! exact, regex, header and method conditions); each case is one request that lands on
//! a different kind of route, plus one that matches nothing.

use criterion::{Criterion, criterion_group, criterion_main};
use proxy_core::Topology;
use proxy_core::config::Inputs;
use proxy_core::route::{RouteAction, Router};

proxy_core::proxy! {
    listener bench {
        bind: "127.0.0.1:0",
        http {
            virtual_host api {
                domains: ["api.example.org", "api.*"],
                route exact("/healthz") => direct_response(200, "ok\n"),
                route prefix("/v1/users/") if method(GET, HEAD) => cluster(users),
                route prefix("/v1/orders/") if header("x-canary", "1") => cluster(canary),
                route prefix("/v1/orders/") => cluster(orders),
                route regex("/v[2-9]/[a-z]+/[0-9]+") => cluster(orders),
                route prefix("/") => direct_response(404, "unknown api\n"),
            }
            virtual_host blog {
                domains: ["example.org", "*.example.org"],
                route prefix("/static/") => cluster(blog),
                route prefix("/old/") => redirect { status: 301, prefix_rewrite: "/new/" },
                route prefix("/") => cluster(blog),
            }
            virtual_host other {
                domains: ["other.test"],
                route exact("/") => cluster(blog),
            }
        }
    }
    cluster users { endpoints: ["127.0.0.1:9001"] }
    cluster orders { endpoints: ["127.0.0.1:9002"] }
    cluster canary { endpoints: ["127.0.0.1:9003"] }
    cluster blog { endpoints: [pipe("/tmp/bench-blog.sock")] }
}

fn request(
    method: &str,
    host: &str,
    path: &str,
    header: Option<(&str, &str)>,
) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    match builder.body(()) {
        Ok(request) => request.into_parts().0,
        Err(error) => panic!("bench request is malformed: {error}"),
    }
}

fn routing(c: &mut Criterion) {
    let proxy = Proxy::build(&mut Inputs::default());
    // The generated router is a field of `Proxy`, visible here because the macro expanded
    // in this module.
    let router = &proxy.__router_bench;
    let cases = [
        ("exact", request("GET", "api.example.org", "/healthz", None)),
        (
            "prefix+method",
            request("GET", "api.example.org:8080", "/v1/users/42", None),
        ),
        (
            "prefix+header",
            request(
                "POST",
                "api.internal",
                "/v1/orders/7",
                Some(("x-canary", "1")),
            ),
        ),
        (
            "regex",
            request("GET", "api.example.org", "/v3/items/12345", None),
        ),
        (
            "suffix-wildcard-vhost",
            request("GET", "www.example.org", "/static/app.js", None),
        ),
        ("no-route", request("GET", "nothing.test", "/", None)),
    ];
    let mut group = c.benchmark_group("route");
    for (name, parts) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| match router.route(std::hint::black_box(parts)).action {
                RouteAction::NoRoute => 0u8,
                _ => 1u8,
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
