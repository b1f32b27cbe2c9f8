// Balancer tuning keys belong to one balancer each, and consistent hashing needs (and
// is the only user of) a hash policy.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(ring),
                route prefix("/b") => cluster(plain),
                route prefix("/") => cluster(tuned),
            }
        }
    }
    cluster ring { endpoints: ["127.0.0.1:8081"], lb: ring_hash, choice_count: 3 }
    cluster plain { endpoints: ["127.0.0.1:8082"], hash_policy: header("x-user") }
    cluster tuned {
        endpoints: ["127.0.0.1:8083", { address: "127.0.0.1:8084", weight: 0 }, { priority: 1 }],
        lb: fastest,
        table_size: 65537,
        healthy_panic_threshold: 150,
    }
}

fn main() {}
