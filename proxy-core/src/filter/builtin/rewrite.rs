//! Path and host rewrites for the request sent upstream (Envoy's route-action
//! `prefix_rewrite`, `regex_rewrite` and `host_rewrite_literal`, as filters).
//!
//! A rewrite changes the request head only; routing has already happened and is not
//! re-evaluated. When a rewrite would produce a target `http` rejects (only possible
//! for values the macro would have refused), the request goes upstream unchanged.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use regex::Regex;

use crate::filter::{Flow, HttpFilter, RequestInfo};

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Replaces the part of the request path matching `matched_prefix` with `replacement`;
/// the query string is kept. `prefix_rewrite("/api/", "/")` sends `/api/users?x=1`
/// upstream as `/users?x=1`. A path that does not start with the prefix is left alone
/// (as when the filter sits on a route whose matcher is not that prefix), and a
/// rewrite that leaves the path empty sends `/`.
#[derive(Debug, Clone)]
pub struct PrefixRewrite {
    matched_prefix: &'static str,
    replacement: &'static str,
}

impl PrefixRewrite {
    /// One path rewrite per chain: a second would rewrite the first one's output.
    pub const UNIQUE: bool = true;

    pub fn new(matched_prefix: &'static str, replacement: &'static str) -> Self {
        Self {
            matched_prefix,
            replacement,
        }
    }
}

impl HttpFilter for PrefixRewrite {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        let path = request.uri.path();
        // Only origin-form paths: `*` (OPTIONS) and authority-form (CONNECT) targets
        // have no path to rewrite.
        if !path.starts_with('/') {
            return Flow::Continue;
        }
        if let Some(rest) = path.strip_prefix(self.matched_prefix) {
            let mut new_path = String::with_capacity(self.replacement.len() + rest.len());
            new_path.push_str(self.replacement);
            new_path.push_str(rest);
            replace_path(&mut request.uri, &new_path);
        }
        Flow::Continue
    }
}

/// Rewrites the path (not the query, which is kept) by replacing every match of a
/// regular expression, as Envoy's `regex_rewrite` does.
///
/// The substitution uses Envoy's (RE2's) syntax: `\1`..`\9` insert capture groups,
/// `\0` the whole match, `\\` a backslash; everything else, `$` included, is literal.
/// `regex_rewrite("^/service/([^/]+)(/.*)$", "\2/instance/\1")` turns
/// `/service/foo/v1/api` into `/v1/api/instance/foo`.
#[derive(Debug, Clone)]
pub struct RegexRewrite {
    pattern: Regex,
    /// The substitution in the `regex` crate's syntax.
    replacement: String,
}

impl RegexRewrite {
    pub const UNIQUE: bool = true;

    pub fn new(pattern: Regex, substitution: &'static str) -> Self {
        Self {
            pattern,
            replacement: translate_substitution(substitution),
        }
    }
}

/// Envoy's `\N` substitution syntax to the `regex` crate's `${N}`, escaping `$`.
fn translate_substitution(substitution: &str) -> String {
    let mut out = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                // RE2 rejects other escapes; the macro does too. Kept literally.
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

impl HttpFilter for RegexRewrite {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        let path = request.uri.path();
        if !path.starts_with('/') {
            return Flow::Continue;
        }
        if let Cow::Owned(new_path) = self.pattern.replace_all(path, self.replacement.as_str()) {
            replace_path(&mut request.uri, &new_path);
        }
        Flow::Continue
    }
}

/// Puts `path` (plus the original query) into `uri`, keeping scheme and authority.
fn replace_path(uri: &mut Uri, path: &str) {
    let path = if path.is_empty() { "/" } else { path };
    let mut path_and_query =
        String::with_capacity(path.len() + uri.query().map_or(0, |q| q.len() + 1));
    path_and_query.push_str(path);
    if let Some(query) = uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let Ok(path_and_query) = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query)) else {
        tracing::debug!(
            path,
            "path rewrite produced an invalid path; request left unchanged"
        );
        return;
    };
    // Cloning a `Uri` copies no bytes (its parts are reference-counted).
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    match Uri::from_parts(parts) {
        Ok(new_uri) => *uri = new_uri,
        Err(error) => tracing::debug!(%error, "path rewrite failed; request left unchanged"),
    }
}

/// Sets the host the upstream sees: `Host`, and the target's authority when the
/// request carries one (absolute-form or HTTP/2 `:authority`, which take precedence
/// over `Host` upstream). Envoy's `host_rewrite_literal`.
#[derive(Debug, Clone)]
pub struct HostRewrite {
    host: Option<(HeaderValue, Authority)>,
    append_x_forwarded_host: bool,
}

impl HostRewrite {
    pub const UNIQUE: bool = true;

    /// `host` is a host name with an optional port (`"origin.internal"`,
    /// `"10.0.0.1:8080"`). A value that is not a valid authority disables the filter
    /// (with a start-up warning) rather than sending a malformed `Host`.
    pub fn new(host: &'static str) -> Self {
        let parsed = host_authority(host)
            .and_then(|authority| super::util::static_value(host).map(|value| (value, authority)));
        if parsed.is_none() {
            tracing::warn!(host, "host_rewrite: not a valid host; filter disabled");
        }
        Self {
            host: parsed,
            append_x_forwarded_host: false,
        }
    }

    /// Appends the original host to `x-forwarded-host` (Envoy's
    /// `append_x_forwarded_host`), so the origin can still build absolute URLs.
    pub fn append_x_forwarded_host(mut self, enabled: bool) -> Self {
        self.append_x_forwarded_host = enabled;
        self
    }
}

/// `host` as an authority, or `None` if it is not one a `Host` header may carry
/// (`Authority::from_static` would panic instead).
fn host_authority(host: &'static str) -> Option<Authority> {
    // An authority with userinfo (`user@host`) is valid in a URI but not as a Host.
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Authority::from_maybe_shared(Bytes::from_static(host.as_bytes())).ok()
}

impl HttpFilter for HostRewrite {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        let Some((value, authority)) = &self.host else {
            return Flow::Continue;
        };
        if self.append_x_forwarded_host {
            let original = match request.uri.authority() {
                Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
                None => request.headers.get(HOST).cloned(),
            };
            if let Some(original) = original {
                append_list_value(&mut request.headers, X_FORWARDED_HOST, original);
            }
        }
        request.headers.insert(HOST, value.clone());
        if request.uri.authority().is_some() {
            let mut parts = request.uri.clone().into_parts();
            parts.authority = Some(authority.clone());
            match Uri::from_parts(parts) {
                Ok(uri) => request.uri = uri,
                Err(error) => tracing::debug!(%error, "host rewrite failed on the target URI"),
            }
        }
        Flow::Continue
    }
}

/// Appends `value` to a comma-separated list header, joining existing values into one
/// line as `x-forwarded-for` is.
fn append_list_value(headers: &mut http::HeaderMap, name: HeaderName, value: HeaderValue) {
    let existing: Vec<&[u8]> = headers
        .get_all(&name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if existing.is_empty() {
        headers.insert(name, value);
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for item in existing {
        joined.extend_from_slice(item);
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(joined) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(name, joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::builtin::test_util::{header, info, now, request};

    fn rewrite(filter: &impl HttpFilter<State = ()>, uri: &str) -> String {
        let mut parts = request("GET", uri, &[]);
        assert!(now(filter.on_request_headers(&mut (), &mut parts, &info())).is_continue());
        parts.uri.to_string()
    }

    #[test]
    fn prefix_rewrite_keeps_the_query() {
        let f = PrefixRewrite::new("/api/", "/");
        assert_eq!(rewrite(&f, "/api/users?x=1"), "/users?x=1");
        assert_eq!(rewrite(&f, "/api/"), "/");
        assert_eq!(rewrite(&f, "/other/api/"), "/other/api/");
        let f = PrefixRewrite::new("/v1", "/service/v1");
        assert_eq!(rewrite(&f, "/v1/items"), "/service/v1/items");
    }

    #[test]
    fn prefix_rewrite_to_nothing_sends_root() {
        let f = PrefixRewrite::new("/strip", "");
        assert_eq!(rewrite(&f, "/strip?q"), "/?q");
        assert_eq!(rewrite(&f, "/strip/x"), "/x");
    }

    #[test]
    fn prefix_rewrite_keeps_absolute_form() {
        let f = PrefixRewrite::new("/api", "/v2");
        assert_eq!(
            rewrite(&f, "http://example.org/api/x?y"),
            "http://example.org/v2/x?y"
        );
    }

    #[test]
    fn regex_rewrite_uses_envoy_substitutions() {
        let f = RegexRewrite::new(
            Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
            r"\2/instance/\1",
        );
        assert_eq!(
            rewrite(&f, "/service/foo/v1/api?q=1"),
            "/v1/api/instance/foo?q=1"
        );
        // No match: unchanged.
        assert_eq!(rewrite(&f, "/other"), "/other");
    }

    #[test]
    fn regex_rewrite_replaces_every_match_and_leaves_the_query() {
        let f = RegexRewrite::new(Regex::new("one").unwrap(), "two");
        assert_eq!(
            rewrite(&f, "/xxx/one/yyy/one/zzz?one=1"),
            "/xxx/two/yyy/two/zzz?one=1"
        );
    }

    #[test]
    fn substitution_translation() {
        assert_eq!(translate_substitution(r"\1-\0"), "${1}-${0}");
        assert_eq!(translate_substitution(r"$1\\x\q"), r"$$1\x\q");
        let f = RegexRewrite::new(Regex::new("^/a$").unwrap(), "/$1");
        assert_eq!(rewrite(&f, "/a"), "/$1");
    }

    #[test]
    fn host_rewrite_sets_host_and_authority() {
        let f = HostRewrite::new("origin.internal:8080");
        let mut parts = request("GET", "/x", &[("host", "example.org")]);
        now(f.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(header(&parts.headers, "host"), Some("origin.internal:8080"));
        assert_eq!(parts.uri, "/x");

        let mut parts = request("GET", "http://example.org/x?y", &[]);
        now(f.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(parts.uri, "http://origin.internal:8080/x?y");
        assert_eq!(header(&parts.headers, "host"), Some("origin.internal:8080"));
    }

    #[test]
    fn host_rewrite_appends_x_forwarded_host() {
        let f = HostRewrite::new("origin.internal").append_x_forwarded_host(true);
        let mut parts = request(
            "GET",
            "/",
            &[
                ("host", "example.org"),
                ("x-forwarded-host", "edge.example"),
            ],
        );
        now(f.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(
            header(&parts.headers, "x-forwarded-host"),
            Some("edge.example, example.org")
        );

        let mut parts = request("GET", "http://example.org:8080/", &[]);
        now(f.on_request_headers(&mut (), &mut parts, &info()));
        assert_eq!(
            header(&parts.headers, "x-forwarded-host"),
            Some("example.org:8080")
        );
    }

    #[test]
    fn invalid_host_disables_the_filter() {
        for bad in ["", "bad host", "user@host", "a/b"] {
            let f = HostRewrite::new(bad);
            let mut parts = request("GET", "/", &[("host", "example.org")]);
            now(f.on_request_headers(&mut (), &mut parts, &info()));
            assert_eq!(
                header(&parts.headers, "host"),
                Some("example.org"),
                "{bad:?}"
            );
        }
    }
}
