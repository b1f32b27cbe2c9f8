//! The topology the `balance` suite runs: the ways a cluster chooses endpoints, each on
//! its own path, over three nginx servers (`a` and `b` on TCP, `c` on a Unix socket).
//!
//! ```text
//! /sticky/  ─▶ sticky   a, b, c round robin, session cookie `srv`
//! /hashed/  ─▶ hashed   a, b, c ring hash on header `x-user`
//! /split/   ─▶ 80 % blue (a), 20 % green (b)
//! /mirror/  ─▶ blue (a), every request copied to shadow (c)
//! /dns/     ─▶ dns      strict DNS (IPv4) on DNS_TARGET (host:port), health checked
//! ```

proxy_core::proxy! {
    listener main {
        bind: env("BALANCE_ADDR", "127.0.0.1:0"),
        http {
            virtual_host any {
                domains: ["*"],
                route prefix("/sticky/") => cluster(sticky),
                route prefix("/hashed/") => cluster(hashed),
                route prefix("/split/") => weighted_clusters(blue: 80, green: 20),
                route prefix("/mirror/") => cluster(blue) { mirror: shadow },
                route prefix("/dns/") => cluster(dns),
            }
        }
    }

    cluster sticky {
        endpoints: [
            env("A_ADDR", "127.0.0.1:1"),
            env("B_ADDR", "127.0.0.1:1"),
            pipe(env("C_SOCK", "/tmp/unused-c.sock")),
        ],
        session_persistence: { cookie: "srv", ttl: 1h },
    }
    cluster hashed {
        endpoints: [
            env("A_ADDR", "127.0.0.1:1"),
            env("B_ADDR", "127.0.0.1:1"),
            pipe(env("C_SOCK", "/tmp/unused-c.sock")),
        ],
        lb: ring_hash,
        hash_policy: header("x-user"),
    }
    cluster blue { endpoints: [env("A_ADDR", "127.0.0.1:1")] }
    cluster green { endpoints: [env("B_ADDR", "127.0.0.1:1")] }
    cluster shadow { endpoints: [pipe(env("C_SOCK", "/tmp/unused-c.sock"))] }
    cluster dns {
        endpoints: [env("DNS_TARGET", "localhost:1")],
        discovery: strict_dns,
        dns_refresh_rate: 1s,
        dns_lookup_family: v4_only,
        health_check: { kind: http, path: "/healthz", interval: 500ms },
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
