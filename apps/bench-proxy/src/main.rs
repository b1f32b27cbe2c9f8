//! The proxy the side-by-side load harness (`benches/load/run.sh`) measures against Envoy,
//! nginx, HAProxy and Pingora: the smallest useful topology, with nothing on the request
//! path but routing and the upstream pool.
//!
//! ```text
//! BENCH_ADDR (127.0.0.1:8080) ── /* ──▶ cluster origin : BENCH_UPSTREAM (127.0.0.1:8081)
//! ```
//!
//! `BENCH_UPSTREAM` is `host:port` for TCP or `unix:/absolute/path.sock` for a Unix socket.
//! Run it as the harness does, on one worker thread:
//!
//! ```text
//! BENCH_ADDR=127.0.0.1:18080 BENCH_UPSTREAM=unix:/tmp/origin.sock \
//!     target/release/bench-proxy --concurrency 1 --log-level warn
//! ```

proxy_core::proxy! {
    listener bench {
        bind: env("BENCH_ADDR", "127.0.0.1:8080"),
        http {
            // As the peers' configurations: nginx, HAProxy and Pingora add neither header,
            // and Envoy appends no client IP by default.
            generate_request_id: false,
            skip_xff_append: true,
            virtual_host any {
                domains: ["*"],
                route prefix("/") => cluster(origin),
            }
        }
    }

    // Keep-alive pool generous enough for every downstream connection of the load
    // (50 wrk connections, 50 h2load streams × 10) to keep its upstream connection idle
    // between requests: new upstream connections during a run mean the pool churns.
    cluster origin {
        endpoints: [env("BENCH_UPSTREAM", "127.0.0.1:8081")],
        connect_timeout: 1s,
        max_idle_per_endpoint: 1024,
        idle_timeout: 5m,
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
