proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: ["300.1.1.1:80", "::1:8080", env("API_ADDR", "localhost")] }
}

fn main() {}
