// DNS discovery: strict and logical, literal and environment targets, resolvers.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") => cluster(strict),
                route prefix("/") => cluster(logical),
            }
        }
    }
    cluster strict {
        endpoints: [
            "api.internal:8080",
            { address: env("API_B", "api-b.internal:8080"), weight: 2 },
            { address: "10.0.0.9:8080", priority: 1 },
        ],
        discovery: strict_dns,
        dns_refresh_rate: 10s,
        respect_dns_ttl: false,
        dns_lookup_family: v4_only,
        dns_resolvers: ["127.0.0.1:5353", "[::1]:53"],
        health_check: { kind: http, path: "/healthz" },
    }
    cluster logical {
        endpoints: ["web.internal:80"],
        discovery: logical_dns,
        tls: { sni: "web.internal" },
    }
}

fn main() {}
