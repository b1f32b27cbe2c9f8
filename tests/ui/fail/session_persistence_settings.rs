// A session is kept by exactly one cookie or header, with valid names; cookie-only
// settings do not apply to headers.
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
    cluster a { endpoints: ["127.0.0.1:8081"], session_persistence: { cookie: "srv", header: "x-srv" } }
    cluster b { endpoints: ["127.0.0.1:8082"], session_persistence: { path: "/" } }
    cluster c { endpoints: ["127.0.0.1:8083"], session_persistence: { header: "x-srv", ttl: 1h } }
    cluster d { endpoints: ["127.0.0.1:8084"], session_persistence: { cookie: "my cookie" } }
}

fn main() {}
