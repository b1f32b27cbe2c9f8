//! The seed article's scenario: an edge proxy in front of a site served by nginx on a
//! Unix socket in /dev/shm, with `/api/` going to a TCP service.
//!
//! ```text
//! EDGE_ADDR (0.0.0.0:8080) ──┬── /api/* ──▶ cluster api  : API_ADDR   (127.0.0.1:8081)
//!                            └── /*     ──▶ cluster hugo : pipe(HUGO_SOCK) (/dev/shm/hugo.sock)
//! ```

proxy_core::proxy! {
    listener edge {
        bind: env("EDGE_ADDR", "0.0.0.0:8080"),
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/api/") => cluster(api),
                route prefix("/") => cluster(hugo),
            }
        }
    }

    cluster api {
        endpoints: [env("API_ADDR", "127.0.0.1:8081")],
        connect_timeout: 15s,
    }

    // nginx: `listen unix:/dev/shm/hugo.sock;` — Envoy: `address: { pipe: { path: /dev/shm/hugo.sock } }`
    cluster hugo {
        endpoints: [pipe(env("HUGO_SOCK", "/dev/shm/hugo.sock"))],
        connect_timeout: 15s,
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
