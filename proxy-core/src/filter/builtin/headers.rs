//! Header mutation: Envoy's `request_headers_to_add`/`_to_remove` and their response
//! counterparts, as filters.

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};

use super::template::{InfoSource, RequestSource, Source, Template};
use super::util::static_value;
use crate::filter::{Flow, HttpFilter, RequestInfo};

/// What to do when the header is already present (Envoy's `append_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD`: add another field line; existing values stay.
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`: add only if the header is absent.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD`: replace every existing value, or add.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`: replace existing values; do nothing if absent.
    OverwriteIfExists,
}

#[derive(Debug)]
enum Value {
    /// A value without operators, converted once.
    Static(HeaderValue),
    /// A value with operators; `slot` indexes the per-request rendered values.
    Dynamic { template: Template, slot: usize },
}

#[derive(Debug)]
struct Mutation {
    name: HeaderName,
    value: Value,
    action: AppendAction,
}

/// The list both filters apply; they differ only in when values are rendered.
#[derive(Debug, Default)]
struct Mutations {
    remove: Vec<HeaderName>,
    mutations: Vec<Mutation>,
    dynamic: usize,
}

impl Mutations {
    fn push(&mut self, name: HeaderName, value: &'static str, action: AppendAction) {
        let template = Template::compile(value);
        let value = match template.as_literal() {
            // Envoy's `keep_empty_value: false`: an empty value adds nothing.
            Some("") => return,
            Some(text) => match static_value(text) {
                Some(value) => Value::Static(value),
                None => {
                    // The macro rejects such literals; a hand-built filter gets a warning
                    // at start-up rather than a panic.
                    tracing::warn!(header = %name, "header value has invalid characters; mutation ignored");
                    return;
                }
            },
            None => {
                self.dynamic += 1;
                Value::Dynamic {
                    template,
                    slot: self.dynamic - 1,
                }
            }
        };
        self.mutations.push(Mutation {
            name,
            value,
            action,
        });
    }

    /// Renders every dynamic value from `source`, in slot order. Values are rendered
    /// against the message as it arrived, before any mutation of this filter applies, so
    /// `set x-a: "%REQ(x-a)%, more"` sees the original `x-a` even if `x-a` is removed.
    fn render(&self, source: &impl Source) -> Vec<Option<HeaderValue>> {
        let mut values = Vec::with_capacity(self.dynamic);
        for mutation in &self.mutations {
            if let Value::Dynamic { template, .. } = &mutation.value {
                let mut buf = Vec::with_capacity(64);
                template.render(source, b"", &mut buf);
                values.push(if buf.is_empty() {
                    None
                } else {
                    // Request values and literals are valid field bytes, so this only
                    // fails for a hand-built template with control characters.
                    HeaderValue::from_maybe_shared(Bytes::from(buf)).ok()
                });
            }
        }
        values
    }

    /// Removals first, then additions in the order they were configured (Envoy's order).
    fn apply(&self, headers: &mut HeaderMap, rendered: &[Option<HeaderValue>]) {
        for name in &self.remove {
            headers.remove(name);
        }
        for mutation in &self.mutations {
            let value = match &mutation.value {
                Value::Static(value) => value.clone(),
                Value::Dynamic { slot, .. } => match rendered.get(*slot) {
                    Some(Some(value)) => value.clone(),
                    // Rendered empty: nothing to add (`keep_empty_value: false`).
                    _ => continue,
                },
            };
            let name = &mutation.name;
            match mutation.action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(name, value);
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(name) {
                        headers.insert(name, value);
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd => {
                    headers.insert(name, value);
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(name) {
                        headers.insert(name, value);
                    }
                }
            }
        }
    }
}

macro_rules! mutation_builders {
    () => {
        /// Adds a field line, keeping existing values (`APPEND_IF_EXISTS_OR_ADD`).
        pub fn add(self, name: HeaderName, value: &'static str) -> Self {
            self.header(name, value, AppendAction::AppendIfExistsOrAdd)
        }

        /// Replaces existing values, or adds (`OVERWRITE_IF_EXISTS_OR_ADD`).
        pub fn set(self, name: HeaderName, value: &'static str) -> Self {
            self.header(name, value, AppendAction::OverwriteIfExistsOrAdd)
        }

        /// Adds only if absent (`ADD_IF_ABSENT`).
        pub fn add_if_absent(self, name: HeaderName, value: &'static str) -> Self {
            self.header(name, value, AppendAction::AddIfAbsent)
        }

        /// Replaces only if present (`OVERWRITE_IF_EXISTS`).
        pub fn overwrite_if_exists(self, name: HeaderName, value: &'static str) -> Self {
            self.header(name, value, AppendAction::OverwriteIfExists)
        }
    };
}

/// Adds, replaces and removes request headers before the request goes upstream.
///
/// Values may contain [command operators](super::format) that read the request
/// (`%REQ(..)%`, `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%START_TIME%`,
/// `%ROUTE_NAME%`, ...); they are compiled once here. Removals apply first, then
/// additions in the order configured; every value is rendered against the request as
/// this filter received it. A value that renders empty adds nothing.
///
/// `Host` cannot be changed here (the mutation is ignored with a start-up warning): the
/// target's authority takes precedence over `Host` on the way upstream, so only
/// [`HostRewrite`](super::HostRewrite), which changes both, does it right.
#[derive(Debug, Default)]
pub struct RequestHeaders {
    mutations: Mutations,
}

impl RequestHeaders {
    /// Mutations compose: two lists in one chain simply apply one after the other.
    pub const UNIQUE: bool = false;

    pub fn new() -> Self {
        Self::default()
    }

    mutation_builders!();

    /// Removes every value of `name`.
    pub fn remove(mut self, name: HeaderName) -> Self {
        if name == HOST {
            tracing::warn!("request_headers cannot remove `host`; ignored");
        } else {
            self.mutations.remove.push(name);
        }
        self
    }

    /// A mutation with an explicit [`AppendAction`].
    pub fn header(mut self, name: HeaderName, value: &'static str, action: AppendAction) -> Self {
        if name == HOST {
            tracing::warn!("request_headers cannot change `host` (use host_rewrite); ignored");
        } else {
            self.mutations.push(name, value, action);
        }
        self
    }
}

impl HttpFilter for RequestHeaders {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        info: &RequestInfo,
    ) -> Flow {
        let rendered = if self.mutations.dynamic == 0 {
            Vec::new()
        } else {
            self.mutations.render(&RequestSource {
                parts: request,
                info,
            })
        };
        self.mutations.apply(&mut request.headers, &rendered);
        Flow::Continue
    }
}

/// Adds, replaces and removes response headers before the response goes downstream,
/// on upstream responses and local replies alike.
///
/// Values may use the same request operators as [`RequestHeaders`]: they are rendered
/// when the request passes this filter (the request is gone by the time the response
/// arrives) and kept in the per-request state. If an earlier filter answered the request
/// before it reached this one, request values render empty.
#[derive(Debug, Default)]
pub struct ResponseHeaders {
    mutations: Mutations,
}

/// Per-request state of [`ResponseHeaders`]: values rendered from the request.
#[derive(Debug, Default)]
pub struct ResponseHeadersState {
    rendered: Option<Vec<Option<HeaderValue>>>,
}

impl ResponseHeaders {
    pub const UNIQUE: bool = false;

    pub fn new() -> Self {
        Self::default()
    }

    mutation_builders!();

    /// Removes every value of `name`.
    pub fn remove(mut self, name: HeaderName) -> Self {
        self.mutations.remove.push(name);
        self
    }

    /// A mutation with an explicit [`AppendAction`].
    pub fn header(mut self, name: HeaderName, value: &'static str, action: AppendAction) -> Self {
        self.mutations.push(name, value, action);
        self
    }
}

impl HttpFilter for ResponseHeaders {
    type State = ResponseHeadersState;

    async fn on_request_headers(
        &self,
        state: &mut ResponseHeadersState,
        request: &mut http::request::Parts,
        info: &RequestInfo,
    ) -> Flow {
        if self.mutations.dynamic > 0 {
            state.rendered = Some(self.mutations.render(&RequestSource {
                parts: request,
                info,
            }));
        }
        Flow::Continue
    }

    async fn on_response_headers(
        &self,
        state: &mut ResponseHeadersState,
        response: &mut http::response::Parts,
        info: &RequestInfo,
    ) -> Flow {
        let rendered = match state.rendered.take() {
            Some(rendered) => rendered,
            None if self.mutations.dynamic > 0 => self.mutations.render(&InfoSource(info)),
            None => Vec::new(),
        };
        self.mutations.apply(&mut response.headers, &rendered);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::filter::builtin::test_util::{header, headers_all, info, now, request, response};

    const X_A: HeaderName = HeaderName::from_static("x-a");
    const X_B: HeaderName = HeaderName::from_static("x-b");

    #[test]
    fn append_actions_follow_envoy() {
        let filter = RequestHeaders::new()
            .add(X_A, "added")
            .add_if_absent(X_B, "not-added")
            .add_if_absent(HeaderName::from_static("x-c"), "added")
            .overwrite_if_exists(HeaderName::from_static("x-d"), "not-added")
            .overwrite_if_exists(HeaderName::from_static("x-e"), "replaced")
            .set(HeaderName::from_static("x-f"), "replaced")
            .set(HeaderName::from_static("x-g"), "added");
        let mut parts = request(
            "GET",
            "/",
            &[
                ("x-a", "orig"),
                ("x-b", "orig"),
                ("x-e", "orig"),
                ("x-f", "one"),
                ("x-f", "two"),
            ],
        );
        assert!(now(filter.on_request_headers(&mut (), &mut parts, &info())).is_continue());
        let h = &parts.headers;
        assert_eq!(headers_all(h, "x-a"), ["orig", "added"]);
        assert_eq!(headers_all(h, "x-b"), ["orig"]);
        assert_eq!(headers_all(h, "x-c"), ["added"]);
        assert_eq!(headers_all(h, "x-d"), Vec::<&str>::new());
        assert_eq!(headers_all(h, "x-e"), ["replaced"]);
        assert_eq!(headers_all(h, "x-f"), ["replaced"]);
        assert_eq!(headers_all(h, "x-g"), ["added"]);
    }

    #[test]
    fn removals_apply_before_additions() {
        let filter = RequestHeaders::new()
            .set(X_A, "new")
            .remove(X_A)
            .remove(X_B);
        let mut parts = request("GET", "/", &[("x-a", "old"), ("x-b", "old")]);
        now(filter.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(headers_all(&parts.headers, "x-a"), ["new"]);
        assert_eq!(header(&parts.headers, "x-b"), None);
    }

    #[test]
    fn substitutions_render_from_the_original_request() {
        let filter = RequestHeaders::new()
            .set(X_A, "%REQ(x-a)%, appended")
            .set(
                HeaderName::from_static("x-client"),
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
            )
            .set(HeaderName::from_static("x-route"), "route=%ROUTE_NAME%")
            .set(HeaderName::from_static("x-missing"), "%REQ(x-nothing)%")
            .set(HeaderName::from_static("x-pct"), "100%%");
        let mut parts = request("GET", "/", &[("x-a", "first")]);
        let mut info = info();
        info.client_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        info.route = "edge/any/1";
        now(filter.on_request_headers(&mut (), &mut parts, &info));
        let h = &parts.headers;
        assert_eq!(header(h, "x-a"), Some("first, appended"));
        assert_eq!(header(h, "x-client"), Some("::1"));
        assert_eq!(header(h, "x-route"), Some("route=edge/any/1"));
        // Rendered empty: not added (Envoy's keep_empty_value: false).
        assert_eq!(header(h, "x-missing"), None);
        assert_eq!(header(h, "x-pct"), Some("100%"));
    }

    #[test]
    fn host_is_left_to_host_rewrite() {
        let filter = RequestHeaders::new().set(HOST, "evil.example").remove(HOST);
        let mut parts = request("GET", "/", &[("host", "example.org")]);
        now(filter.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(header(&parts.headers, "host"), Some("example.org"));
    }

    #[test]
    fn invalid_and_empty_literals_are_ignored() {
        let filter = RequestHeaders::new().set(X_A, "bad\nvalue").set(X_B, "");
        let mut parts = request("GET", "/", &[("x-b", "kept")]);
        now(filter.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(header(&parts.headers, "x-a"), None);
        assert_eq!(header(&parts.headers, "x-b"), Some("kept"));
    }

    #[test]
    fn response_values_come_from_the_request() {
        let filter = ResponseHeaders::new()
            .set(
                HeaderName::from_static("x-request-id"),
                "%REQ(x-request-id)%",
            )
            .add(HeaderName::from_static("via"), "1.1 proxy")
            .remove(HeaderName::from_static("server"));
        let mut state = ResponseHeadersState::default();
        let info = info();
        let mut req = request("GET", "/", &[("x-request-id", "abc-123")]);
        now(filter.on_request_headers(&mut state, &mut req, &info));
        let mut resp = response(200, &[("server", "origin"), ("via", "1.1 cdn")]);
        assert!(now(filter.on_response_headers(&mut state, &mut resp, &info)).is_continue());
        let h = &resp.headers;
        assert_eq!(header(h, "x-request-id"), Some("abc-123"));
        assert_eq!(headers_all(h, "via"), ["1.1 cdn", "1.1 proxy"]);
        assert_eq!(header(h, "server"), None);
    }

    #[test]
    fn response_without_request_hook_renders_request_values_empty() {
        // An earlier filter answered: this filter's request hook never ran.
        let filter = ResponseHeaders::new()
            .set(X_A, "%REQ(x-request-id)%")
            .set(X_B, "static");
        let mut state = ResponseHeadersState::default();
        let mut resp = response(429, &[]);
        now(filter.on_response_headers(&mut state, &mut resp, &info()));
        assert_eq!(header(&resp.headers, "x-a"), None);
        assert_eq!(header(&resp.headers, "x-b"), Some("static"));
    }
}
