proxy_core::proxy! {
    listener edge {
        http { virtual_host site { route prefix("/") => cluster(api) } }
    }
    cluster api { connect_timeout: 1s }
}

fn main() {}
