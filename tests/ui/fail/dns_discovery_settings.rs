// DNS discovery needs DNS names, and DNS settings need DNS discovery.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(a),
                route prefix("/") => cluster(b),
            }
        }
    }
    cluster a {
        endpoints: ["api.internal:8080", pipe("/run/api.sock")],
        discovery: strict_dns,
        dns_resolvers: ["localhost:53"],
    }
    cluster b { endpoints: ["127.0.0.1:8082"], dns_refresh_rate: 10s, discovery: dynamic }
}

fn main() {}
