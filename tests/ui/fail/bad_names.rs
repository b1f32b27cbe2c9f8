// A broken item header loses the item, but not the rest of the topology, and errors
// that only follow from the loss (no listener, unknown cluster) are not reported.
proxy_core::proxy! {
    listener {
        bind: "127.0.0.1:8080",
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(r#type) } }
    }
    cluster type { endpoints: ["127.0.0.1:9000"] }
    cluster spare { endpoints: [pipe("spare.sock")] }
}

fn main() {}
