// Every kind of filter at every level, overrides and disables, and a tcp listener.
// The expansion (with its per-listener enum of chain exchanges) needs no `unsafe` of the
// user's crate.
#![deny(warnings)]
#![forbid(unsafe_code)]

mod user {
    use proxy_core::filter::{Flow, HttpFilter, RequestInfo};
    use proxy_core::http::request::Parts;

    pub struct Tag {
        pub value: &'static str,
    }

    impl Tag {
        pub fn new(value: &'static str) -> Self {
            Self { value }
        }
        pub fn louder(self) -> Self {
            self
        }
    }

    impl HttpFilter for Tag {
        type State = ();
        async fn on_request_headers(&self, _: &mut (), request: &mut Parts, _: &RequestInfo) -> Flow {
            request.headers.insert("x-tag", proxy_core::http::header::HeaderValue::from_static(self.value));
            Flow::Continue
        }
    }

    pub struct Unit;
    impl HttpFilter for Unit {
        type State = ();
    }

    pub struct Net;
    impl proxy_core::tcp::NetworkFilter for Net {
        type State = ();
    }

    pub fn make() -> Tag {
        Tag::new("made")
    }
}

proxy_core::proxy! {
    listener web {
        bind: env("WEB_ADDR", "127.0.0.1:8080"),
        http {
            filters: [
                access_log_stdout("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"),
                tag = user::Tag::new("listener").louder(),
                user::Unit,
                made: user::Tag = user::make(),
                request_headers { set: [header("x-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")], remove: ["x-debug"] },
                cors { allow_origins: ["https://app.example"], allow_methods: ["GET"], max_age: 1h },
            ],
            virtual_host api {
                domains: ["api.example"],
                filters: [local_rate_limit(100, 10, 1s), compression { min_content_length: 256 }],
                disable: [cors],
                route prefix("/v1/") => cluster(app) {
                    timeout: 5s,
                    filters: [prefix_rewrite("/v1/", "/"), tag = user::Tag::new("route"), body_limit(1048576)],
                    disable: [compression],
                },
                route prefix("/") => cluster(app) { filters: [fault_abort(503) { percent: 1 }, fault_delay(10ms) { percent: 1 }] },
            }
            virtual_host site {
                domains: ["*"],
                route exact("/healthz") => direct_response(200, "ok\n") { disable: [access_log_stdout] },
                route regex("/v[0-9]+/.*") => cluster(app) { filters: [regex_rewrite("^/v([0-9]+)/(.*)$", r"/\2?version=\1"), host_rewrite("origin.internal")] },
                route prefix("/") => cluster(app) { filters: [response_headers { add: [header("x-served-by", "proxy")] }, fault_headers { header_control: true }] },
            }
        }
    }
    listener db {
        bind: "127.0.0.1:6380",
        tcp {
            cluster: app,
            filters: [user::Net],
            idle_timeout: none,
            max_connection_duration: 1h,
            allow_source_ips: ["127.0.0.0/8", "::1"],
            deny_source_ips: ["127.0.0.2/32"],
            destination_ports: [6380],
            stat_prefix: "db",
        }
    }
    cluster app { endpoints: ["127.0.0.1:9000"] }
}

fn main() {
    let _ = Proxy::main;
}
