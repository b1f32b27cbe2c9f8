//! Cross-Origin Resource Sharing, with the semantics of Envoy's CORS filter.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderName, HeaderValue, ORIGIN,
};
use http::{Method, StatusCode};
use regex::Regex;

use super::util::{add_vary, joined_value};
use crate::filter::{Flow, HttpFilter, RequestInfo};

const ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// A configured list header: absent, a fixed value, or `*` (echo the request's).
#[derive(Debug, Clone)]
enum ListValue {
    None,
    Fixed(HeaderValue),
    /// `["*"]`: Envoy echoes the preflight's `access-control-request-*` value, which
    /// (unlike a literal `*`) also works for credentialed requests.
    Echo,
}

impl ListValue {
    fn new(items: &[&str]) -> Self {
        match items {
            [] => ListValue::None,
            ["*"] => ListValue::Echo,
            items => joined_value(items).map_or(ListValue::None, ListValue::Fixed),
        }
    }
}

/// Answers CORS preflights and adds CORS headers to cross-origin responses.
///
/// * A request without `Origin` is not a CORS request and passes untouched (except for
///   `vary`, below).
/// * A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
///   allowed origin is answered by the proxy with `200` and
///   `access-control-allow-origin` (the request's origin), `-allow-credentials`,
///   `-allow-methods`, `-allow-headers`, `-max-age` as configured; it never reaches the
///   upstream. A preflight from an origin not allowed is forwarded upstream
///   (`forward_not_matching_preflights`, default `true`, as Envoy) or answered with a
///   `200` that carries no CORS headers, so the browser refuses it.
/// * Any other request from an allowed origin goes upstream; its response gets
///   `access-control-allow-origin`, `-allow-credentials` and `-expose-headers`,
///   replacing any the upstream set.
/// * A disallowed origin gets no CORS headers at all.
///
/// `access-control-allow-origin` always echoes the request's origin (even with `"*"`
/// allowed, as Envoy does), so responses depend on `Origin`; every response through the
/// filter therefore gets `vary: origin`, including those to requests without `Origin`,
/// so a shared cache never serves one origin's answer to another.
///
/// With no `allow_origins` and no `allow_origin_regex`, no origin is allowed.
#[derive(Debug, Clone)]
pub struct Cors {
    allow_origins: &'static [&'static str],
    allow_any_origin: bool,
    allow_origin_regex: Option<Regex>,
    allow_methods: ListValue,
    allow_headers: ListValue,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
    allow_private_network_access: bool,
    forward_not_matching_preflights: bool,
}

/// Per-request state of [`Cors`].
#[derive(Debug, Default)]
pub struct CorsState {
    /// The request's origin, if it is allowed.
    allowed_origin: Option<HeaderValue>,
    /// This filter answered a preflight: the reply already has its headers.
    answered_preflight: bool,
}

impl Default for Cors {
    fn default() -> Self {
        Self::new()
    }
}

impl Cors {
    /// One CORS policy per chain: two would overwrite each other's headers.
    pub const UNIQUE: bool = true;

    pub fn new() -> Self {
        Self {
            allow_origins: &[],
            allow_any_origin: false,
            allow_origin_regex: None,
            allow_methods: ListValue::None,
            allow_headers: ListValue::None,
            expose_headers: None,
            max_age: None,
            allow_credentials: false,
            allow_private_network_access: false,
            forward_not_matching_preflights: true,
        }
    }

    /// Origins allowed by exact (byte-for-byte) comparison with the `Origin` header,
    /// such as `"https://app.example.org"`; `"*"` in the list allows any origin.
    pub fn allow_origins(mut self, origins: &'static [&'static str]) -> Self {
        self.allow_origins = origins;
        self.allow_any_origin = origins.contains(&"*");
        self
    }

    /// Origins allowed when the whole `Origin` value matches (the pattern is anchored).
    pub fn allow_origin_regex(mut self, pattern: Regex) -> Self {
        // Anchor once here so matching is a single search per request. Re-compiling a
        // pattern that compiled once only fails on the size limit; keep the original
        // then and check the span of the match instead.
        let anchored = Regex::new(&format!("^(?:{})$", pattern.as_str())).unwrap_or(pattern);
        self.allow_origin_regex = Some(anchored);
        self
    }

    /// `access-control-allow-methods` on preflight replies; `["*"]` echoes the
    /// preflight's `access-control-request-method`.
    pub fn allow_methods(mut self, methods: &'static [&'static str]) -> Self {
        self.allow_methods = ListValue::new(methods);
        self
    }

    /// `access-control-allow-headers` on preflight replies; `["*"]` echoes the
    /// preflight's `access-control-request-headers`.
    pub fn allow_headers(mut self, headers: &'static [&'static str]) -> Self {
        self.allow_headers = ListValue::new(headers);
        self
    }

    /// `access-control-expose-headers` on responses to allowed origins.
    pub fn expose_headers(mut self, headers: &'static [&'static str]) -> Self {
        self.expose_headers = joined_value(headers);
        self
    }

    /// `access-control-max-age` on preflight replies, in whole seconds.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(HeaderValue::from(max_age.as_secs()));
        self
    }

    /// Sends `access-control-allow-credentials: true`.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.allow_credentials = allow;
        self
    }

    /// Answers `access-control-request-private-network: true` preflights with
    /// `access-control-allow-private-network: true` (Chrome's Private Network Access).
    pub fn allow_private_network_access(mut self, allow: bool) -> Self {
        self.allow_private_network_access = allow;
        self
    }

    /// Whether a preflight from an origin that is not allowed goes upstream (`true`,
    /// the default, as Envoy) or gets a `200` without CORS headers from the proxy.
    pub fn forward_not_matching_preflights(mut self, forward: bool) -> Self {
        self.forward_not_matching_preflights = forward;
        self
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        if self.allow_any_origin {
            return true;
        }
        let bytes = origin.as_bytes();
        if self
            .allow_origins
            .iter()
            .any(|allowed| allowed.as_bytes() == bytes)
        {
            return true;
        }
        match (&self.allow_origin_regex, origin.to_str()) {
            (Some(pattern), Ok(origin)) => pattern
                .find(origin)
                .is_some_and(|m| m.start() == 0 && m.end() == origin.len()),
            _ => false,
        }
    }

    fn preflight_reply(
        &self,
        request: &http::request::Parts,
        origin: Option<&HeaderValue>,
    ) -> Flow {
        let mut flow = Flow::respond(StatusCode::OK, "");
        let Flow::Respond(response) = &mut flow else {
            return flow;
        };
        let headers = response.headers_mut();
        let Some(origin) = origin else {
            // Not allowed and not forwarded: a reply without CORS headers.
            return flow;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let echo = |name| request.headers.get(name).cloned();
        let methods = match &self.allow_methods {
            ListValue::None => None,
            ListValue::Fixed(value) => Some(value.clone()),
            ListValue::Echo => echo(ACCESS_CONTROL_REQUEST_METHOD),
        };
        if let Some(methods) = methods {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        let allowed_headers = match &self.allow_headers {
            ListValue::None => None,
            ListValue::Fixed(value) => Some(value.clone()),
            ListValue::Echo => echo(ACCESS_CONTROL_REQUEST_HEADERS),
        };
        if let Some(allowed_headers) = allowed_headers {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers);
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        if self.allow_private_network_access
            && request
                .headers
                .get(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes() == b"true")
        {
            headers.insert(
                ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK,
                HeaderValue::from_static("true"),
            );
        }
        flow
    }
}

impl HttpFilter for Cors {
    type State = CorsState;

    async fn on_request_headers(
        &self,
        state: &mut CorsState,
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        let Some(origin) = request.headers.get(ORIGIN).filter(|o| !o.is_empty()) else {
            return Flow::Continue;
        };
        let allowed = self.origin_allowed(origin).then(|| origin.clone());
        let is_preflight = request.method == Method::OPTIONS
            && request
                .headers
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        if !is_preflight {
            state.allowed_origin = allowed;
            return Flow::Continue;
        }
        if allowed.is_none() && self.forward_not_matching_preflights {
            return Flow::Continue;
        }
        state.answered_preflight = true;
        self.preflight_reply(request, allowed.as_ref())
    }

    async fn on_response_headers(
        &self,
        state: &mut CorsState,
        response: &mut http::response::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        add_vary(&mut response.headers, "origin");
        if state.answered_preflight {
            return Flow::Continue;
        }
        let Some(origin) = state.allowed_origin.take() else {
            return Flow::Continue;
        };
        let headers = &mut response.headers;
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::builtin::test_util::{header, info, now, reply, request, response};

    fn policy() -> Cors {
        Cors::new()
            .allow_origins(&["https://app.example.org"])
            .allow_methods(&["GET", "POST", "PUT"])
            .allow_headers(&["content-type", "x-api-key"])
            .expose_headers(&["x-request-id"])
            .max_age(Duration::from_secs(3600))
            .allow_credentials(true)
    }

    /// Runs a request through the filter; returns the local reply's headers if it
    /// answered, else the response headers after the response hook.
    fn exchange(cors: &Cors, req: &[(&str, &str)], method: &str) -> (bool, http::HeaderMap) {
        let mut state = CorsState::default();
        let mut parts = request(method, "/api", req);
        let flow = now(cors.on_request_headers(&mut state, &mut parts, &info()));
        let (answered, mut resp) = if flow.is_continue() {
            (
                false,
                response(
                    200,
                    &[("access-control-allow-origin", "https://upstream.example")],
                ),
            )
        } else {
            let (parts, body) = reply(flow);
            assert!(body.is_empty());
            assert_eq!(parts.status, StatusCode::OK);
            (true, parts)
        };
        now(cors.on_response_headers(&mut state, &mut resp, &info()));
        (answered, resp.headers)
    }

    const PREFLIGHT: &[(&str, &str)] = &[
        ("origin", "https://app.example.org"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type"),
    ];

    #[test]
    fn preflight_from_allowed_origin_is_answered() {
        let (answered, h) = exchange(&policy(), PREFLIGHT, "OPTIONS");
        assert!(answered);
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example.org")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            header(&h, "access-control-allow-methods"),
            Some("GET, POST, PUT")
        );
        assert_eq!(
            header(&h, "access-control-allow-headers"),
            Some("content-type, x-api-key")
        );
        assert_eq!(header(&h, "access-control-max-age"), Some("3600"));
        assert_eq!(header(&h, "access-control-expose-headers"), None);
        assert_eq!(header(&h, "vary"), Some("origin"));
        assert_eq!(header(&h, "content-length"), Some("0"));
    }

    #[test]
    fn preflight_from_other_origin_is_forwarded_by_default() {
        let req = &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ];
        let (answered, h) = exchange(&policy(), req, "OPTIONS");
        assert!(!answered);
        // The upstream's own header stays; the proxy adds nothing but `vary`.
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://upstream.example")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), None);
        assert_eq!(header(&h, "vary"), Some("origin"));
    }

    #[test]
    fn preflight_from_other_origin_can_be_answered_without_cors_headers() {
        let req = &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ];
        let (answered, h) = exchange(
            &policy().forward_not_matching_preflights(false),
            req,
            "OPTIONS",
        );
        assert!(answered);
        assert_eq!(header(&h, "access-control-allow-origin"), None);
        assert_eq!(header(&h, "access-control-allow-methods"), None);
    }

    #[test]
    fn options_without_request_method_is_not_a_preflight() {
        let (answered, h) = exchange(
            &policy(),
            &[("origin", "https://app.example.org")],
            "OPTIONS",
        );
        assert!(!answered);
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example.org")
        );
    }

    #[test]
    fn simple_request_from_allowed_origin_gets_headers() {
        let (answered, h) = exchange(&policy(), &[("origin", "https://app.example.org")], "GET");
        assert!(!answered);
        // Replaces the upstream's value.
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example.org")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            header(&h, "access-control-expose-headers"),
            Some("x-request-id")
        );
        assert_eq!(header(&h, "access-control-allow-methods"), None);
        assert_eq!(header(&h, "vary"), Some("origin"));
    }

    #[test]
    fn disallowed_origin_and_no_origin_get_no_cors_headers() {
        let cors = policy();
        for req in [&[("origin", "https://evil.example")][..], &[]] {
            let mut state = CorsState::default();
            let mut parts = request("GET", "/", req);
            assert!(now(cors.on_request_headers(&mut state, &mut parts, &info())).is_continue());
            let mut resp = response(200, &[]);
            now(cors.on_response_headers(&mut state, &mut resp, &info()));
            assert_eq!(header(&resp.headers, "access-control-allow-origin"), None);
            assert_eq!(
                header(&resp.headers, "access-control-allow-credentials"),
                None
            );
            assert_eq!(header(&resp.headers, "vary"), Some("origin"));
        }
    }

    #[test]
    fn wildcard_origin_echoes_the_origin() {
        let cors = Cors::new().allow_origins(&["*"]);
        let (_, h) = exchange(&cors, &[("origin", "https://any.example")], "GET");
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://any.example")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn no_origins_configured_allows_none() {
        let (_, h) = exchange(&Cors::new(), &[("origin", "https://any.example")], "GET");
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://upstream.example")
        );
    }

    #[test]
    fn regex_origins_must_match_entirely() {
        let cors =
            Cors::new().allow_origin_regex(Regex::new(r"https://[a-z]+\.example\.org").unwrap());
        let (_, h) = exchange(&cors, &[("origin", "https://app.example.org")], "GET");
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example.org")
        );
        let (_, h) = exchange(
            &cors,
            &[("origin", "https://app.example.org.evil.com")],
            "GET",
        );
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://upstream.example")
        );
    }

    #[test]
    fn star_methods_and_headers_echo_the_preflight() {
        let cors = Cors::new()
            .allow_origins(&["https://app.example.org"])
            .allow_methods(&["*"])
            .allow_headers(&["*"]);
        let (answered, h) = exchange(&cors, PREFLIGHT, "OPTIONS");
        assert!(answered);
        assert_eq!(header(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            header(&h, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(header(&h, "access-control-max-age"), None);
        assert_eq!(header(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn private_network_access() {
        let mut req = PREFLIGHT.to_vec();
        req.push(("access-control-request-private-network", "true"));
        let (_, h) = exchange(&policy(), &req, "OPTIONS");
        assert_eq!(header(&h, "access-control-allow-private-network"), None);
        let (_, h) = exchange(
            &policy().allow_private_network_access(true),
            &req,
            "OPTIONS",
        );
        assert_eq!(
            header(&h, "access-control-allow-private-network"),
            Some("true")
        );
    }

    #[test]
    fn existing_vary_is_extended() {
        let cors = policy();
        let mut state = CorsState::default();
        let mut parts = request("GET", "/", &[("origin", "https://app.example.org")]);
        now(cors.on_request_headers(&mut state, &mut parts, &info()));
        let mut resp = response(200, &[("vary", "accept-encoding")]);
        now(cors.on_response_headers(&mut state, &mut resp, &info()));
        let vary: Vec<_> = resp.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);
    }
}
