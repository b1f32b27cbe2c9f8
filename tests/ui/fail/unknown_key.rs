proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http { virtual_host site { domain: ["*"], route prefix("/") => cluster(api) { timout: 5s } } }
    }
    cluster api { endpoints: ["127.0.0.1:9000"], conect_timeout: 2s }
}

fn main() {}
