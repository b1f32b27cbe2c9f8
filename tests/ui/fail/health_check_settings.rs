// Health checks: a kind is required, each kind takes only its own settings, and
// statuses, paths and thresholds are checked.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(a),
                route prefix("/b") => cluster(b),
                route prefix("/c") => cluster(c),
                route prefix("/") => cluster(d),
            }
        }
    }
    cluster a { endpoints: ["127.0.0.1:8081"], health_check: { interval: 2s } }
    cluster b { endpoints: ["127.0.0.1:8082"], health_check: { kind: http, send: "PING" } }
    cluster c {
        endpoints: ["127.0.0.1:8083"],
        health_check: { kind: http, path: "healthz", expected_statuses: [200, 700, range(299, 200)] },
    }
    cluster d { endpoints: ["127.0.0.1:8084"], health_check: { kind: redis, unhealthy_threshold: 0, jitter: "1s" } }
}

fn main() {}
