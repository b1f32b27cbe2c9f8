// Retry policies: conditions must be known and listed once, status codes need their
// condition, a per-try timeout must be able to fire, and backoff must grow.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(api) { retry_policy: { num_retries: 2 } },
                route prefix("/b") => cluster(api) { retry_policy: { retry_on: ["gateway-error", 5xx, 5xx, connect_failur] } },
                route prefix("/c") => cluster(api) { retry_policy: { retry_on: [5xx], retriable_status_codes: [409] } },
                route prefix("/d") => cluster(api) { retry_policy: { retry_on: [retriable_status_codes] } },
                route prefix("/e") => cluster(api) { timeout: 2s, retry_policy: { retry_on: [reset], per_try_timeout: 2s } },
                route prefix("/f") => cluster(api) { retry_policy: { retry_on: [reset], per_try_timeout: 20s } },
                route prefix("/") => cluster(api) {
                    retry_policy: { retry_on: [5xx], num_retries: 0, base_interval: 1s, max_interval: 100ms },
                },
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:8081"] }
}

fn main() {}
