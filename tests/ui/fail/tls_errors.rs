// TLS settings are checked at compile time: versions, paths, names, settings that need
// each other, TLS where the L4 proxy would speak plaintext, and Unix sockets without SNI.
proxy_core::proxy! {
    listener a {
        bind: "127.0.0.1:8443",
        tls: { cert: "relative.pem", key: "/k.pem", min_version: "1.1", require_client_cert: true },
        http { virtual_host all { domains: ["*"], route prefix("/") => cluster(web) } }
    }
    listener b {
        bind: "127.0.0.1:8444",
        tls: {
            cert: "/a.pem", key: "/a.key",
            certificates: [certificate("/b.pem", "/b.key", ["api.example", "API.example"])],
        },
        http { virtual_host all { domains: ["*"], route prefix("/") => cluster(local) } }
    }
    listener c {
        bind: "127.0.0.1:6380",
        tls: { cert: "/c.pem", key: "/c.key" },
        tcp { cluster: db }
    }
    cluster web { endpoints: ["127.0.0.1:9000"], tls: { client_cert: "/client.pem", sni: "bad name" } }
    cluster local { endpoints: [pipe("/run/app.sock")], tls: { ca: "/ca.pem" } }
    cluster db { endpoints: ["127.0.0.1:6379"], tls: { ca: "/ca.pem" } }
}

fn main() {}
