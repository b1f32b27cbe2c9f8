proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("api/") => cluster(api),
                route exact("/search?q=x") => cluster(api),
                route prefix("/") => redirect { path: "new" },
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
