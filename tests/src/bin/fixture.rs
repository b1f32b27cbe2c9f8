//! The topology the `fixture` suite runs: the DSL features `edge` does not use, each
//! reachable with a request whose answer says which route or virtual host served it.
//!
//! ```text
//! listener pipe  pipe(FIXTURE_SOCK), mode 0660 ── * ── /healthz (direct), /* ─▶ origin
//! listener main  FIXTURE_ADDR ── exact.example, www.exact.example   (exact routes only: 404 NR)
//!                              ├─ *.deep.example / *.example        (suffix wildcards)
//!                              ├─ api.internal.* / api.*            (prefix wildcards)
//!                              └─ *  conditions, regex, redirects, direct responses,
//!                                    /slow/ ─▶ slow (500ms), /dead/ ─▶ dead, /reset/ ─▶ reset,
//!                                    /h2/ ─▶ h2 (HTTP/2 upstream), /* ─▶ origin
//! ```
//!
//! The pipe listener comes first so a test can make the second bind fail and check that
//! the first listener's socket file is removed.

proxy_core::proxy! {
    listener pipe {
        bind: pipe(env("FIXTURE_SOCK", "/tmp/unused.sock")),
        socket_mode: 0o660,
        http {
            virtual_host local {
                domains: ["*"],
                route exact("/healthz") => direct_response(200, "pipe ok\n"),
                route prefix("/") => cluster(origin),
            }
        }
    }

    listener main {
        bind: env("FIXTURE_ADDR", "127.0.0.1:0"),
        http {
            virtual_host exact {
                domains: ["exact.example", "www.exact.example"],
                route exact("/who") => direct_response(200, "exact\n"),
                route exact("/echo") => cluster(origin),
            }
            virtual_host deep_suffix {
                domains: ["*.deep.example"],
                route prefix("/") => direct_response(200, "deep-suffix\n"),
            }
            virtual_host suffix {
                domains: ["*.example"],
                route prefix("/") => direct_response(200, "suffix\n"),
            }
            virtual_host long_prefix {
                domains: ["api.internal.*"],
                route prefix("/") => direct_response(200, "long-prefix\n"),
            }
            virtual_host prefix {
                domains: ["api.*"],
                route prefix("/") => direct_response(200, "prefix\n"),
            }
            virtual_host fallback {
                domains: ["*"],
                route exact("/who") => direct_response(200, "fallback\n"),
                route exact("/healthz") => direct_response(200, "ok\n"),
                route exact("/teapot") => direct_response(418, "short and stout\n"),
                route regex("/v[0-9]+/items") => direct_response(200, "items\n"),
                route prefix("/canary") if method(GET, HEAD) && header("x-canary", "1") => direct_response(200, "canary\n"),
                route prefix("/canary") => direct_response(200, "stable\n"),
                route prefix("/flag") if header("x-flag") => direct_response(200, "flagged\n"),
                route prefix("/flag") => direct_response(200, "unflagged\n"),
                route prefix("/old/") => redirect { status: 308, scheme: "https", host: "new.example", prefix_rewrite: "/new/" },
                route prefix("/moved") => redirect { status: 301, path: "/here" },
                route prefix("/strip") => redirect { status: 302, port: 8443, strip_query: true },
                route prefix("/elsewhere") => redirect { status: 307, host: "other.example" },
                route prefix("/secure") => redirect { status: 301, scheme: "https" },
                route prefix("/slow/") => cluster(slow) { timeout: 500ms },
                route prefix("/dead/") => cluster(dead) { timeout: 5s },
                route prefix("/reset/") => cluster(reset),
                route prefix("/h2/") => cluster(h2) { timeout: none },
                route prefix("/") => cluster(origin),
            }
        }
    }

    cluster origin {
        endpoints: [env("ORIGIN_ADDR", "127.0.0.1:1")],
        max_idle_per_endpoint: 8,
        idle_timeout: 30s,
    }

    cluster h2 {
        endpoints: [env("H2_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }

    cluster slow {
        endpoints: [env("SLOW_ADDR", "127.0.0.1:1")],
    }

    cluster dead {
        endpoints: [env("DEAD_ADDR", "127.0.0.1:1")],
        connect_timeout: 2s,
    }

    cluster reset {
        endpoints: [env("RESET_ADDR", "127.0.0.1:1")],
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
