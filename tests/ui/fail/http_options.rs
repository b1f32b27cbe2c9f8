// The connection manager's options take booleans, belong to an `http` block, and are
// set once.
proxy_core::proxy! {
    listener edge {
        bind: "127.0.0.1:8080",
        http {
            generate_request_id: "no",
            skip_xff_append: 1,
            generate_request_id: false,
            virtual_host site { domains: ["*"], route prefix("/") => cluster(api) }
        }
    }
    listener redis {
        bind: "127.0.0.1:6380",
        tcp { cluster: api, skip_xff_append: true }
    }
    cluster api {
        endpoints: ["127.0.0.1:9000"],
    }
}

fn main() {}
