proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route exact("/old") => redirect { prefix_rewrite: "/new" },
                route prefix("/") => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
