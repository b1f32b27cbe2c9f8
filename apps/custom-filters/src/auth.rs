//! An API-key check.

use proxy_core::filter::{Flow, HttpFilter, RequestInfo};
use proxy_core::http::{StatusCode, header::HeaderValue, request::Parts};

/// Answers 401 (with `www-authenticate`) unless `x-api-key` matches.
pub struct ApiKey {
    /// `None` when the configured key cannot be sent as a header: nothing can match it.
    key: Option<HeaderValue>,
}

impl ApiKey {
    /// The key from environment variable `var`, or `default` when it is unset.
    pub fn from_env(var: &str, default: &str) -> Self {
        let key = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        // A key no client could send would otherwise be a key nobody holds: refuse all.
        let key = HeaderValue::try_from(key).ok();
        Self { key }
    }
}

impl HttpFilter for ApiKey {
    type State = ();

    async fn on_request_headers(&self, _: &mut (), request: &mut Parts, _: &RequestInfo) -> Flow {
        if self.key.is_some() && request.headers.get("x-api-key") == self.key.as_ref() {
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
