// Outlier detection that can never eject, an ejection shorter than its own base, and
// circuit breaker limits that would refuse everything.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(a),
                route prefix("/b") => cluster(b),
                route prefix("/") => cluster(c),
            }
        }
    }
    cluster a {
        endpoints: ["127.0.0.1:8081"],
        outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0 },
    }
    cluster b {
        endpoints: ["127.0.0.1:8082"],
        outlier_detection: { base_ejection_time: 10m, max_ejection_time: 5m, max_ejection_percent: 150 },
    }
    cluster c {
        endpoints: ["127.0.0.1:8083"],
        circuit_breakers: { max_connections: 0, max_request: 10, retry_budget: { budget_percent: 200 } },
    }
}

fn main() {}
