// Every feature of the DSL in one topology. Built with the workspace's lints in mind:
// the expansion must not warn in a user crate.
#![deny(warnings)]

use proxy_core::Topology;

proxy_core::proxy! {
    listener edge {
        bind: env("EDGE_ADDR", "0.0.0.0:8080"),
        socket_mode: 0o660,
        http {
            virtual_host blog {
                domains: ["example.org", "*.example.org", "api.*", "*"],
                route prefix("/api/") => cluster(api) { timeout: 5s },
                route exact("/healthz") => direct_response(200, "ok\n"),
                route regex("^/v[0-9]+/items$") => cluster(api),
                route prefix("/admin") if method(GET, HEAD) && header("x-admin") && header("x-env", "prod") => cluster(api) { timeout: none },
                route prefix("/purge") if method(PURGE) => direct_response(405),
                route prefix("/old/") => redirect { status: 301, host: "new.example.org", prefix_rewrite: "/new/" },
                route exact("/legacy") => redirect { status: 308, scheme: "https", host: "example.org", port: 8443, path: "/", strip_query: true },
                route prefix("/") => cluster(hugo),
            }
            virtual_host other { domains: ["other.example"], route prefix("/") => direct_response(404, "nope") }
        }
    }

    listener local {
        bind: pipe("/run/proxy/local.sock"),
        socket_mode: 0o600,
        http { virtual_host any { domains: ["*"], route prefix("/") => cluster(hugo) { timeout: 1.5s } } }
    }

    listener sidecar {
        bind: "[::1]:9090",
        http {
            generate_request_id: false,
            skip_xff_append: true,
            virtual_host any { domains: ["*"], route prefix("/") => cluster(grpc) { timeout: 250ms } }
        }
    }

    cluster api {
        endpoints: ["127.0.0.1:8081", "[::1]:8082", "origin.internal:8080", env("API_ADDR", "127.0.0.1:8081")],
        connect_timeout: 2s,
        lb: round_robin,
        protocol: http1,
        max_idle_per_endpoint: 64,
        idle_timeout: 1m,
    }
    cluster hugo { endpoints: [pipe("/dev/shm/hugo.sock"), pipe(env("HUGO_SOCK", "/dev/shm/hugo.sock"))], connect_timeout: 15s }
    cluster grpc { endpoints: [env("GRPC_ADDR", "unix:/run/grpc.sock")], protocol: http2, idle_timeout: 2h }
}

fn main() {
    let _ = Proxy::main;
    let summary = <Proxy as Topology>::SUMMARY;
    assert!(summary.contains("listener edge on env EDGE_ADDR (default 0.0.0.0:8080), socket mode 0o660"));
    assert!(summary.contains("cluster grpc: round_robin, http2"));
}
