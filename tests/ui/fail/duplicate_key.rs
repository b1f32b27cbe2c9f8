proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        bind: "127.0.0.1:8081",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
        http { virtual_host other { domains: ["other.example"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: ["127.0.0.1:9000"], connect_timeout: 1s, connect_timeout: 2s }
}

fn main() {}
