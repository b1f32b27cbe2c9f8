// A filter name twice at one level, and a once-per-chain built-in twice in one chain.
proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            filters: [body_limit(1024), body_limit(2048)],
            virtual_host all {
                domains: ["*"],
                filters: [second = cors { allow_origins: ["*"] }],
                route prefix("/") => direct_response(200) {
                    filters: [third = cors { allow_origins: ["https://a.example"] }],
                },
            }
        }
    }
}

fn main() {}
