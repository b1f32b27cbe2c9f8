//! The topology the `builtin_filters` suite runs: every built-in HTTP filter, each on a
//! virtual host of its own (chosen by `Host`), so one test exercises one filter without
//! the others in the way.
//!
//! ```text
//! listener main  FILTERS_ADDR  filters: access_log_stdout, stamp (response headers)
//!   headers.test   request_headers + response_headers (literals, %REQ()%, client IP, ...)
//!   rewrite.test   prefix_rewrite, regex_rewrite, host_rewrite, one per route
//!   cors.test      cors (list + regex origins); /strict/ overrides it by name
//!   limit.test     local_rate_limit shared by the vhost; /fast/ overrides, /free/ disables
//!   fault.test     fault_abort, fault_delay, fault_headers, percent 0, max_active 0
//!   body.test      body_limit on nginx DAV uploads
//!   compress.test  compression (gzip + brotli); /gz/ overrides it with gzip only
//!   layers.test    inheritance: vhost filters, route filters, overrides and disables;
//!                  access_log_file to /dev/stdout
//!   bare.test      a vhost disabling a listener filter; access_log_file to /dev/full
//! listener quiet QUIET_ADDR  generate_request_id: false, skip_xff_append: true; all to capture
//! cluster origin   ORIGIN_ADDR (nginx)
//! cluster capture  CAPTURE_ADDR (a test origin that reports the exact request head)
//! ```

proxy_core::proxy! {
    listener main {
        bind: env("FILTERS_ADDR", "127.0.0.1:0"),
        http {
            filters: [
                access_log_stdout("%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %UPSTREAM_HOST% %REQ(x-test-id)%\n"),
                stamp = response_headers {
                    set: [header("x-stamp", "listener")],
                    add: [header("x-order", "listener")],
                },
            ],

            virtual_host headers {
                domains: ["headers.test"],
                filters: [
                    request_headers {
                        add: [
                            header("x-added", "one"),
                            header("x-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
                        ],
                        set: [
                            header("x-set", "fixed"),
                            header("x-copy", "copied=%REQ(x-source)%"),
                            header("x-proto", "%PROTOCOL%"),
                            header("x-route", "%ROUTE_NAME%"),
                            header("x-empty", "%REQ(x-nothing)%"),
                        ],
                        add_if_absent: [header("x-default", "dflt")],
                        overwrite_if_exists: [header("x-over", "replaced")],
                        remove: ["x-secret"],
                    },
                    response_headers {
                        add: [header("x-resp-added", "r1"), header("via", "1.1 filters")],
                        set: [header("x-echo-ua", "ua=%REQ(user-agent)%"), header("cache-control", "no-store")],
                        add_if_absent: [header("x-frame-options", "DENY"), header("x-content-type-options", "nosniff")],
                        overwrite_if_exists: [header("x-origin-tag", "rewritten"), header("x-not-there", "nope")],
                        remove: ["server"],
                    },
                ],
                route prefix("/capture/") => cluster(capture),
                route exact("/direct") => direct_response(200, "direct\n"),
                route prefix("/") => cluster(origin),
            }

            virtual_host rewrite {
                domains: ["rewrite.test"],
                route prefix("/p/") => cluster(origin) { filters: [prefix_rewrite("/p/", "/echo/")] },
                route prefix("/strip") => cluster(origin) { filters: [prefix_rewrite("/strip", "")] },
                route prefix("/v1/") => cluster(origin) { filters: [regex_rewrite("^/v1/([^/]+)/(.*)$", r"/\2/by/\1")] },
                route prefix("/host/") => cluster(origin) { filters: [host_rewrite("origin.internal:8080")] },
                route prefix("/xfh/") => cluster(origin) {
                    filters: [host_rewrite("origin.internal") { append_x_forwarded_host: true }],
                },
                route prefix("/") => cluster(origin),
            }

            virtual_host cors {
                domains: ["cors.test"],
                filters: [
                    cors {
                        allow_origins: ["https://app.example"],
                        allow_origin_regex: r"https://[a-z]+\.trusted\.example",
                        allow_methods: ["GET", "PUT"],
                        allow_headers: ["content-type", "x-api-key"],
                        expose_headers: ["x-request-id", "x-total"],
                        max_age: 1h,
                        allow_credentials: true,
                        allow_private_network_access: true,
                    },
                ],
                route prefix("/strict/") => cluster(origin) {
                    filters: [cors { allow_origins: ["https://app.example"], forward_not_matching_preflights: false }],
                },
                route prefix("/") => cluster(origin),
            }

            virtual_host limit {
                domains: ["limit.test"],
                filters: [local_rate_limit(4, 1, 1h)],
                route prefix("/fast/") => cluster(origin) {
                    filters: [local_rate_limit(2, 2, 200ms) { status: 503 }],
                },
                route prefix("/free/") => cluster(origin) { disable: [local_rate_limit] },
                route exact("/direct") => direct_response(200, "direct\n"),
                route prefix("/") => cluster(origin),
            }

            virtual_host fault {
                domains: ["fault.test"],
                route prefix("/abort/") => cluster(origin) { filters: [fault_abort(503)] },
                route prefix("/abort-hc/") => cluster(origin) {
                    filters: [fault_abort(500) { header_control: true }],
                },
                route prefix("/delay/") => cluster(origin) {
                    filters: [fault_delay(2s) { header_control: true }],
                },
                route prefix("/never/") => cluster(origin) {
                    filters: [fault_abort(503) { percent: 0 }, fault_delay(10s) { percent: 0 }],
                },
                route prefix("/capped/") => cluster(origin) { filters: [fault_abort(503) { max_active: 0 }] },
                route prefix("/headers/") => cluster(origin) { filters: [fault_headers { header_control: true }] },
                route prefix("/") => cluster(origin),
            }

            virtual_host body {
                domains: ["body.test"],
                filters: [body_limit(1000)],
                route prefix("/") => cluster(origin),
            }

            virtual_host compress {
                domains: ["compress.test"],
                filters: [compression { min_content_length: 256 }],
                route prefix("/gz/") => cluster(origin) {
                    filters: [
                        compression { brotli: false, min_content_length: 256, gzip_level: 9, remove_accept_encoding: true },
                        prefix_rewrite("/gz/", "/"),
                    ],
                },
                route prefix("/json-only/") => cluster(origin) {
                    filters: [compression { content_types: ["application/json"], min_content_length: 0 }, prefix_rewrite("/json-only/", "/")],
                },
                route prefix("/") => cluster(origin),
            }

            virtual_host layers {
                domains: ["layers.test"],
                filters: [
                    // The process's own stdout, reopened by path (tests have no fixed
                    // directory to log into): a second log alongside the listener's.
                    access_log_file("/dev/stdout", "file %RESPONSE_CODE% %ROUTE_NAME% %REQ(x-test-id)%\n"),
                    tag = request_headers { set: [header("x-layer", "vhost")] },
                    response_headers { add: [header("x-order", "vhost")] },
                ],
                route prefix("/plain/") => cluster(origin) {
                    filters: [
                        seen = request_headers { set: [header("x-seen", "saw %REQ(x-layer)%")] },
                        route_order = response_headers { add: [header("x-order", "route")] },
                    ],
                },
                route prefix("/no-tag/") => cluster(origin) { disable: [tag] },
                route prefix("/override/") => cluster(origin) {
                    filters: [stamp = response_headers { set: [header("x-stamp", "route")] }],
                },
                route prefix("/quiet/") => cluster(origin) { disable: [stamp, access_log_stdout] },
                route exact("/direct") => direct_response(200, "direct\n") {
                    // Replaces the virtual host's unnamed `response_headers` (same name).
                    filters: [response_headers { set: [header("x-direct", "yes")] }],
                },
                route prefix("/") => cluster(origin),
            }

            virtual_host bare {
                domains: ["bare.test"],
                // Every write fails (ENOSPC): the proxy must serve on regardless.
                filters: [access_log_file("/dev/full", "%RESPONSE_CODE%\n")],
                disable: [stamp],
                route prefix("/") => cluster(origin),
            }
        }
    }

    // The connection manager's own edits turned off: no `x-request-id` is made up and
    // `x-forwarded-for` goes upstream as the client sent it.
    listener quiet {
        bind: env("QUIET_ADDR", "127.0.0.1:0"),
        http {
            generate_request_id: false,
            skip_xff_append: true,
            virtual_host all {
                domains: ["*"],
                route prefix("/") => cluster(capture),
            }
        }
    }

    cluster origin {
        endpoints: [env("ORIGIN_ADDR", "127.0.0.1:1")],
    }

    cluster capture {
        endpoints: [env("CAPTURE_ADDR", "127.0.0.1:1")],
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
