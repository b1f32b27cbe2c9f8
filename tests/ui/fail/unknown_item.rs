proxy_core::proxy! {
    listenr edge {
        bind: "127.0.0.1:8080",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    upstream api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
