// A TCP listener sees no HTTP to keep a session or hash a header with, and a gRPC
// health check over TLS needs an HTTP/2 cluster.
proxy_core::proxy! {
    listener redis {
        bind: "127.0.0.1:6380",
        tcp { cluster: cache }
    }
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/") => cluster(grpc),
            }
        }
    }
    cluster cache {
        endpoints: ["127.0.0.1:6379"],
        session_persistence: { cookie: "srv" },
    }
    cluster grpc {
        endpoints: ["127.0.0.1:50051"],
        tls: { sni: "grpc.internal" },
        health_check: { kind: grpc },
    }
}

fn main() {}
