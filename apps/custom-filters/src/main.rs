//! Filters are ordinary Rust types. This proxy has two, written here as user code:
//!
//! - [`auth::ApiKey`] answers 401 unless the request carries the right `x-api-key`
//!   (disabled for `/public/` and `/healthz`);
//! - [`experiment::AbTagger`] puts each user in bucket `a` or `b` (by a hash of
//!   `x-user-id`, so a user stays in their bucket) and tells both the upstream and the
//!   client, carrying the bucket from request to response in its per-request state.
//!
//! ```text
//! APP_ADDR=127.0.0.1:8081 API_KEY=secret cargo run -p custom-filters
//! curl -H 'x-api-key: secret' -H 'x-user-id: 42' -i http://127.0.0.1:8080/
//! ```

mod auth;
mod experiment;

proxy_core::proxy! {
    listener site {
        bind: env("SITE_ADDR", "127.0.0.1:8080"),
        http {
            filters: [
                api_key = auth::ApiKey::from_env("API_KEY", "secret"),
                ab = experiment::AbTagger::new("x-ab-group", 50),
            ],
            virtual_host all {
                domains: ["*"],
                route exact("/healthz") => direct_response(200, "ok\n") { disable: [api_key, ab] },
                route prefix("/public/") => cluster(app) { disable: [api_key] },
                // Everyone in bucket `b` here: a route-level override of the inherited filter.
                route prefix("/beta/") => cluster(app) {
                    filters: [ab = experiment::AbTagger::new("x-ab-group", 100)],
                },
                route prefix("/") => cluster(app),
            }
        }
    }

    cluster app { endpoints: [env("APP_ADDR", "127.0.0.1:8081")] }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
