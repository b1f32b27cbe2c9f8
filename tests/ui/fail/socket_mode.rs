proxy_core::proxy! {
    listener tcp {
        bind: "127.0.0.1:8080",
        socket_mode: 0o660,
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    listener wide {
        bind: pipe("/run/wide.sock"),
        socket_mode: 0o1777,
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    listener decimal {
        bind: pipe("/run/decimal.sock"),
        socket_mode: 660,
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
