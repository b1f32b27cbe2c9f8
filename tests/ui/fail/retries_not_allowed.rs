// A route that retries on a cluster whose circuit breaker allows no retries would
// never retry.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/") => cluster(api) { retry_policy: { retry_on: [5xx] } },
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:8081"], circuit_breakers: { max_retries: 0 } }
}

fn main() {}
