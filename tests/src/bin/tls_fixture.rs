//! TLS on both sides: a listener terminating TLS (client certificates optional) with
//! routes to a plaintext origin and to an origin reached over TLS, and a listener that
//! requires client certificates and TLS 1.3.

proxy_core::proxy! {
    listener secure {
        bind: env("TLS_ADDR", "127.0.0.1:0"),
        tls: {
            cert: env("TLS_CERT", "/run/proxy/tls.pem"),
            key: env("TLS_KEY", "/run/proxy/tls.key"),
            client_ca: env("CLIENT_CA", "/run/proxy/clients.pem"),
        },
        http {
            virtual_host all {
                domains: ["*"],
                route prefix("/via-tls/") => cluster(tls_origin),
                route prefix("/") => cluster(origin),
            }
        }
    }
    listener mtls {
        bind: env("MTLS_ADDR", "127.0.0.1:0"),
        tls: {
            cert: env("TLS_CERT", "/run/proxy/tls.pem"),
            key: env("TLS_KEY", "/run/proxy/tls.key"),
            client_ca: env("CLIENT_CA", "/run/proxy/clients.pem"),
            require_client_cert: true,
            min_version: "1.3",
        },
        http { virtual_host all { domains: ["*"], route prefix("/") => cluster(origin) } }
    }
    cluster origin { endpoints: [env("ORIGIN_ADDR", "127.0.0.1:1")] }
    cluster tls_origin {
        endpoints: [env("TLS_ORIGIN_ADDR", "127.0.0.1:1")],
        tls: { sni: "origin.test", ca: env("ORIGIN_CA", "/run/proxy/origin-ca.pem") },
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
