proxy_core::proxy! {
    listener bare { bind: "127.0.0.1:8080" }
    listener empty { bind: "127.0.0.1:8081", http {} }
    listener idle {
        bind: "127.0.0.1:8082",
        http {
            virtual_host parked { domains: ["parked.example"] }
            virtual_host site { domains: ["*"], route prefix("/") => cluster(api) }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
