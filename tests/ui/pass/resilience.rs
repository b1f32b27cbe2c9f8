// Every failure-handling setting of clusters and routes, together.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/split") => weighted_clusters(v1: 90, v2: 10) {
                    timeout: 5s,
                    retry_policy: { retry_on: [5xx, reset], num_retries: 2, per_try_timeout: 1s },
                },
                route prefix("/mirrored") => cluster(v1) {
                    mirror: [shadow, { cluster: audit, percent: 5 }],
                },
                route prefix("/") => cluster(v2) {
                    retry_policy: {
                        retry_on: [gateway_error, connect_failure, retriable_status_codes],
                        retriable_status_codes: [409, 429],
                        num_retries: 3,
                        base_interval: 10ms,
                        max_interval: 200ms,
                        max_buffered_body: 16384,
                    },
                },
            }
        }
    }
    listener cache {
        bind: "127.0.0.1:6380",
        tcp { cluster: redis }
    }
    cluster v1 {
        endpoints: [
            "127.0.0.1:8081",
            { address: "127.0.0.1:8082", weight: 3 },
            { address: pipe("/dev/shm/v1-backup.sock"), priority: 1 },
        ],
        lb: least_request,
        choice_count: 3,
        healthy_panic_threshold: 30,
        overprovisioning_factor: 120,
        health_check: {
            kind: http,
            path: "/healthz",
            host: "v1.internal",
            expected_statuses: [200, range(204, 206)],
            service_name: "v1",
            interval: 2s,
            jitter: 200ms,
            timeout: 500ms,
            unhealthy_threshold: 2,
            healthy_threshold: 1,
            no_traffic_interval: 30s,
        },
        outlier_detection: {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 2,
            interval: 5s,
            base_ejection_time: 10s,
            max_ejection_time: 2m,
            max_ejection_percent: 50,
        },
        circuit_breakers: {
            max_connections: 100,
            max_pending_requests: 10,
            max_requests: 200,
            retry_budget: { budget_percent: 25, min_retry_concurrency: 5 },
        },
        session_persistence: { cookie: "srv", path: "/", ttl: 1h },
    }
    cluster v2 {
        endpoints: ["127.0.0.1:8091", "127.0.0.1:8092"],
        lb: ring_hash,
        minimum_ring_size: 2048,
        hash_policy: cookie("session"),
        health_check: { kind: tcp, send: "PING\r\n", expect: "PONG" },
        outlier_detection: {},
    }
    cluster shadow {
        endpoints: ["127.0.0.1:8093"],
        lb: maglev,
        table_size: 65537,
        hash_policy: header("x-user"),
        session_persistence: { header: "x-session" },
    }
    cluster audit {
        endpoints: ["127.0.0.1:8094"],
        lb: random,
        protocol: http2,
        health_check: { kind: grpc, service_name: "audit.v1.Audit" },
    }
    cluster redis {
        endpoints: ["127.0.0.1:6379"],
        lb: maglev,
        hash_policy: source_ip,
        health_check: { kind: redis, interval: 1s },
        circuit_breakers: { max_connections: 512 },
    }
}

fn main() {}
