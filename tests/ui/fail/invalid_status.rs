proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host site {
                domains: ["*"],
                route exact("/a") => direct_response(99),
                route exact("/b") => direct_response(600, "too big"),
                route exact("/c") => direct_response(204, "no body allowed"),
                route prefix("/old/") => redirect { status: 304, host: "example.org" },
                route prefix("/") => cluster(api),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
