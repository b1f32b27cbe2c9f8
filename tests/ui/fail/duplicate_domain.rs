proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            virtual_host blog { domains: ["example.org", "*"], route prefix("/") => cluster(api) }
            virtual_host shop { domains: ["Example.org"], route prefix("/") => cluster(api) }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
