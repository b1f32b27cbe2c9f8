// A type listed in `filters` must implement `HttpFilter`; the error points at it.
struct Greeter;

proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            filters: [Greeter],
            virtual_host all { domains: ["*"], route prefix("/") => direct_response(200) }
        }
    }
}

fn main() {}
