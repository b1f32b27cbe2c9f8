proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/slow/") => cluster(api) { timeout: 5x },
                route prefix("/") => cluster(api) { timeout: 0s },
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"], connect_timeout: 5, idle_timeout: "60s" }
}

fn main() {}
