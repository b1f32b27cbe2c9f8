proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefx("/api/") => cluster(api),
                route path("/") if methd(GET) => cluster(api),
                route prefix("/") => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
