// Upgrades need an HTTP/1.1 cluster, and protocol names are HTTP tokens.
proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            virtual_host all {
                domains: ["*"],
                route prefix("/ws/") => cluster(grpc) { upgrades: ["websocket"] },
                route prefix("/x/") => cluster(web) { upgrades: ["web socket"] },
                route prefix("/") => cluster(web),
            }
        }
    }
    cluster grpc { endpoints: ["127.0.0.1:9000"], protocol: http2 }
    cluster web { endpoints: ["127.0.0.1:9001"] }
}

fn main() {}
