#![deny(warnings)]

proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http { virtual_host any { domains: ["*"], route prefix("/") => cluster(app) } }
    }
    cluster app { endpoints: ["127.0.0.1:8081"] }
}

fn main() {
    let _ = Proxy::main;
}
