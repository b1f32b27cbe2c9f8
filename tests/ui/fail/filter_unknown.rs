// A misspelt built-in, and an expression whose type cannot be read off.
fn make_filter() -> u8 {
    0
}

proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            filters: [comression { gzip: true }, make_filter()],
            virtual_host all { domains: ["*"], route prefix("/") => direct_response(200) }
        }
    }
}

fn main() {}
