// `disable` must name a filter an enclosing level declares.
proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            filters: [cors { allow_origins: ["*"] }],
            virtual_host all {
                domains: ["*"],
                disable: [cros],
                route prefix("/") => direct_response(200) { disable: [compression] },
            }
        }
    }
}

fn main() {}
