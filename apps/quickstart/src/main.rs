//! A tailored proxy you can run on a fresh machine with no other service:
//!
//! ```text
//! cargo run --release -p quickstart
//! curl http://127.0.0.1:8080/
//! ```
//!
//! Besides the proxy, the binary runs a tiny demo origin on a Unix socket, so the request
//! really crosses the proxy: listener → route → cluster `demo` → `pipe(..)` endpoint.

mod demo_origin;

proxy_core::proxy! {
    listener quickstart {
        bind: env("QUICKSTART_ADDR", "127.0.0.1:8080"),
        http {
            virtual_host local {
                domains: ["*"],
                route exact("/healthz") => direct_response(200, "ok\n"),
                route prefix("/old/") => redirect { status: 301, prefix_rewrite: "/" },
                route prefix("/") => cluster(demo),
            }
        }
    }

    cluster demo {
        endpoints: [pipe(env("QUICKSTART_ORIGIN_SOCK", "/tmp/proxy-quickstart/origin.sock"))],
        connect_timeout: 1s,
    }
}

fn main() -> std::process::ExitCode {
    Proxy::app().before_serve(demo_origin::start).run()
}
