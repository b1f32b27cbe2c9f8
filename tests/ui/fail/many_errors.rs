// One build reports every problem, each at its own token.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1",
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/api/") => cluster(apii) { timeout: 5x },
                route regex("(") => direct_response(200),
                route prefix("/") if header("x y") => cluster(api),
            }
        }
    }
    cluster api { endpoints: [pipe("api.sock")], conect_timeout: 2s }
}

fn main() {}
