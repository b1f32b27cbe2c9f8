// Names that would trip lints or hygiene if the expansion were careless: CamelCase
// and raw identifiers, and user items named like the expansion's locals.
#![deny(warnings)]

#[allow(dead_code, non_upper_case_globals)]
const request: u8 = 0;
#[allow(dead_code, non_upper_case_globals)]
const inputs: u8 = 0;
#[allow(dead_code, non_upper_case_globals)]
const path: u8 = 0;
#[allow(dead_code, non_upper_case_globals)]
const host: u8 = 0;

proxy_core::proxy! {
    cluster r#type { endpoints: ["127.0.0.1:8081"] }
    cluster Origin { endpoints: ["127.0.0.1:8082"] }

    listener Public {
        bind: "127.0.0.1:8080",
        http {
            virtual_host Site {
                domains: ["example.org"],
                route prefix("/a") => cluster(r#type),
                route prefix("/") => cluster(Origin),
            }
        }
    },
}

fn main() {
    let _ = Proxy::main;
}
