// Built-in arguments are checked at compile time, all of them at once.
proxy_core::proxy! {
    listener main {
        bind: "127.0.0.1:8080",
        http {
            filters: [
                local_rate_limit(100),
                request_headers { add: [header("bad name", "v")], set: [header("x-a", "%RESPONSE_CODE%")] },
                access_log_stdout("%BOGUS%"),
                cors { allow_origin: ["*"] },
                fault_abort(503) { percent: 150 },
                access_log_file("relative.log", "%RESPONSE_CODE%"),
            ],
            virtual_host all { domains: ["*"], route prefix("/") => direct_response(200) }
        }
    }
}

fn main() {}
