proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/api/") => cluster(apii),
                route prefix("/") => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:8081"] }
}

fn main() {}
