// Only literal addresses and env(..) defaults are compared: the environment may
// override them at start-up.
proxy_core::proxy! {
    listener public {
        bind: "0.0.0.0:8080",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    listener admin {
        bind: env("ADMIN_ADDR", "127.0.0.1:8080"),
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    listener local {
        bind: pipe("/run/proxy.sock"),
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    listener local_again {
        bind: env("LOCAL_ADDR", "unix:/run/proxy.sock"),
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: ["127.0.0.1:9000"] }
}

fn main() {}
