proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/") if method(get, Post) => cluster(api),
                route prefix("/") if method("GET") && method(HEAD) => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
