proxy_core::proxy! {
    listener edge {
        bind: 8080,
        http { virtual_host site { domains: "example.org", route prefix("/") => cluster(api) } }
    }
    cluster api {
        endpoints: ["127.0.0.1:9000"],
        connect_timeout: "5s",
        max_idle_per_endpoint: 5s,
        protocol: "http2",
    }
}

fn main() {}
