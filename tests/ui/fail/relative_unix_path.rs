proxy_core::proxy! {
    listener edge {
        bind: env("EDGE_ADDR", "unix:run/edge.sock"),
        http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
    }
    cluster api { endpoints: [pipe("hugo.sock"), pipe(env("API_SOCK", "./api.sock"))] }
}

fn main() {}
