proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
    cluster legacy { endpoints: ["127.0.0.1:9001"] }
}

fn main() {}
