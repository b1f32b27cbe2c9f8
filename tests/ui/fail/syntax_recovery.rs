// Syntax errors do not stop the macro at the first one: each entry is parsed on its
// own and the rest of the topology is still checked.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080"
        socket_mode: 0o660,
        http {
            virtual_host site {
                domains: ["*"],
                route prefix("/a") if method(GET) || method(HEAD) => cluster(api),
                route prefix("/b") -> cluster(api),
                route prefix("/") => cluster(apii),
            }
        }
    }
    cluster api { endpoints: ["127.0.0.1:9000"], connect_timeout 2s }
}

fn main() {}
