//! An API-key check.

use proxy_core::filter::{Flow, HttpFilter, RequestInfo};
use proxy_core::http::{StatusCode, header::HeaderValue, request::Parts};

/// Answers 401 (with `www-authenticate`) unless `x-api-key` matches.
pub struct ApiKey {
    key: HeaderValue,
}

impl ApiKey {
    /// The key from environment variable `var`, or `default` when it is unset.
    pub fn from_env(var: &str, default: &str) -> Self {
        let key = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        // A key that cannot be a header value could never be sent by a client; fall back
        // to one no client can match rather than panic.
        let key = HeaderValue::try_from(key).unwrap_or_else(|_| HeaderValue::from_static("\u{7f}"));
        Self { key }
    }
}

impl HttpFilter for ApiKey {
    type State = ();

    async fn on_request_headers(&self, _: &mut (), request: &mut Parts, _: &RequestInfo) -> Flow {
        if request.headers.get("x-api-key") == Some(&self.key) {
            // The upstream has no business seeing the key.
            request.headers.remove("x-api-key");
            return Flow::Continue;
        }
        let Flow::Respond(mut response) =
            Flow::respond(StatusCode::UNAUTHORIZED, "missing or wrong x-api-key\n")
        else {
            return Flow::Continue;
        };
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("ApiKey"));
        Flow::Respond(response)
    }
}
