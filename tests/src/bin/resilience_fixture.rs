//! The topology the `resilience` suite runs: two clusters of two endpoints each, a TCP
//! one and a Unix-socket one, with retries on every route.
//!
//! ```text
//! listener main  RESILIENCE_ADDR ── /unchecked/* ─▶ unchecked  [UNCHECKED_TCP, pipe(UNCHECKED_PIPE)]
//!                                └─ /*           ─▶ checked    [CHECKED_TCP,   pipe(CHECKED_PIPE)]
//! ```
//!
//! - `checked` has active HTTP health checks on `/healthz` every 200ms (also without
//!   traffic), two failures to go unhealthy and two successes to come back.
//! - `unchecked` has no health checking at all, so a blackholed endpoint stays in the
//!   rotation and only the retry policy's `per_try_timeout` protects clients.
//! - Both allow many retries in flight: with the default `max_retries: 3` (Envoy's), a
//!   failing endpoint under concurrent load makes every retry beyond the third concurrent
//!   one overflow, and those clients get the failed attempt's answer.
//! - Both routes retry idempotent failures: `5xx`, `connect_failure`, `reset` (which
//!   includes a per-try timeout), twice, each try limited to 300ms.

proxy_core::proxy! {
    listener main {
        bind: env("RESILIENCE_ADDR", "127.0.0.1:0"),
        http {
            virtual_host any {
                domains: ["*"],
                route prefix("/unchecked/") => cluster(unchecked) {
                    timeout: 10s,
                    retry_policy: {
                        retry_on: [5xx, connect_failure, reset],
                        num_retries: 2,
                        per_try_timeout: 300ms,
                    },
                },
                route prefix("/") => cluster(checked) {
                    timeout: 10s,
                    retry_policy: {
                        retry_on: [5xx, connect_failure, reset],
                        num_retries: 2,
                        per_try_timeout: 300ms,
                    },
                },
            }
        }
    }

    cluster checked {
        endpoints: [
            env("CHECKED_TCP", "127.0.0.1:1"),
            pipe(env("CHECKED_PIPE", "/tmp/resilience-checked.sock")),
        ],
        connect_timeout: 1s,
        health_check: {
            kind: http,
            path: "/healthz",
            interval: 200ms,
            timeout: 200ms,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            no_traffic_interval: 200ms,
        },
        circuit_breakers: { max_retries: 1024 },
    }

    cluster unchecked {
        endpoints: [
            env("UNCHECKED_TCP", "127.0.0.1:2"),
            pipe(env("UNCHECKED_PIPE", "/tmp/resilience-unchecked.sock")),
        ],
        connect_timeout: 1s,
        circuit_breakers: { max_retries: 1024 },
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
