// Traffic splitting and mirroring name known clusters, once, with real shares.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => weighted_clusters(v1: 90, v3: 10),
                route prefix("/b") => weighted_clusters(v1: 50, v1: 50),
                route prefix("/c") => weighted_clusters(v1: 0, v2: 0),
                route prefix("/d") => cluster(v1, v2),
                route prefix("/e") => cluster(v1) { mirror: shadw },
                route prefix("/") => cluster(v2) { mirror: { cluster: shadow, percent: 150 } },
            }
        }
    }
    cluster v1 { endpoints: ["127.0.0.1:8081"] }
    cluster v2 { endpoints: ["127.0.0.1:8082"] }
    cluster shadow { endpoints: ["127.0.0.1:8083"] }
}

fn main() {}
