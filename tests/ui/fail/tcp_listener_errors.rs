// `tcp` blocks: a bad CIDR, a missing cluster, source rules on a Unix socket, and a
// listener with both `http` and `tcp`.
proxy_core::proxy! {
    listener a {
        bind: "127.0.0.1:6380",
        tcp { cluster: db, allow_source_ips: ["10.0.0.0/33"] }
    }
    listener b {
        bind: "127.0.0.1:6381",
        tcp { idle_timeout: 1m }
    }
    listener c {
        bind: pipe("/run/db-proxy.sock"),
        tcp { cluster: db, deny_source_ips: ["10.0.0.0/8"] }
    }
    listener d {
        bind: "127.0.0.1:6382",
        http { virtual_host all { domains: ["*"], route prefix("/") => cluster(db) } }
        tcp { cluster: db }
    }
    cluster db { endpoints: ["127.0.0.1:6379"] }
}

fn main() {}
