proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/api") => cluster(api),
                route exact("/api/health") => direct_response(200, "ok"),
                route prefix("/") => cluster(api),
                route prefix("/static/") if method(GET) => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
