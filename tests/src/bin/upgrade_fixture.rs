//! A route that tunnels WebSocket upgrades and one that refuses them.

proxy_core::proxy! {
    listener main {
        bind: env("UPGRADE_ADDR", "127.0.0.1:0"),
        http {
            virtual_host all {
                domains: ["*"],
                route prefix("/ws/") => cluster(ws) { upgrades: ["websocket"], timeout: 5s },
                route prefix("/") => cluster(ws),
            }
        }
    }
    cluster ws { endpoints: [env("WS_ADDR", "127.0.0.1:1")] }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
