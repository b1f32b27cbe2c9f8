use std::time::Duration;

use proc_macro2::Ident;
use syn::LitStr;

use super::fields::Fields;
use super::value::{self, args};
use super::{ClusterId, Located, Scope, address};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{self, Call, Field, Value};

/// The route timeout when a `cluster(..)` action sets none: Envoy's default.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Route {
    /// `listener/virtual_host/index`, the route's name in logs and the summary.
    pub name: String,
    /// Filters added for this route, and inherited ones it overrides or turns off.
    pub filters: super::Level,
    pub matcher: Located<PathMatch>,
    /// Any of these methods (empty: any method).
    pub methods: Vec<Method>,
    /// All of these headers.
    pub headers: Vec<HeaderMatch>,
    pub action: Action,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// The user's pattern; it must match the whole path.
    Regex(String),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Method {
    pub name: String,
    /// One of the nine methods `http::Method` has a constant for.
    pub standard: bool,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HeaderMatch {
    /// Lowercase, as `HeaderName::from_static` requires.
    pub name: String,
    /// `None`: present with any value.
    pub value: Option<String>,
}

pub enum Action {
    Forward(Forward),
    Direct { status: u16, body: String },
    Redirect(Redirect),
}

/// `cluster(..)` or `weighted_clusters(..)`, with the route's forwarding policy.
pub struct Forward {
    /// The cluster, or the clusters of a weighted split with their weights.
    pub clusters: Vec<(ClusterId, u32)>,
    /// Written as `weighted_clusters(..)` (even with one entry).
    pub weighted: bool,
    pub timeout: Option<Duration>,
    /// Upgrade protocols tunnelled after a `101` (lowercase), e.g. `websocket`.
    pub upgrades: Located<Vec<String>>,
    pub retry: Option<super::retry::Retry>,
    pub mirrors: Vec<super::retry::Mirror>,
}

impl Forward {
    /// Every cluster the route sends requests to, mirrors included.
    pub fn all_clusters(&self) -> impl Iterator<Item = ClusterId> + '_ {
        self.clusters
            .iter()
            .map(|(id, _)| *id)
            .chain(self.mirrors.iter().map(|mirror| mirror.cluster))
    }
}

pub struct Redirect {
    pub status: u16,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// Replaces the route's prefix (only valid on `prefix(..)` routes, see `check`).
    pub prefix_rewrite: Option<Located<String>>,
    pub strip_query: bool,
}

const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const REDIRECT_STATUSES: &[u16] = &[301, 302, 303, 307, 308];

impl PathMatch {
    /// `prefix("/api/")`, for messages and the summary.
    pub fn describe(&self) -> String {
        match self {
            PathMatch::Prefix(path) => format!("prefix({path:?})"),
            PathMatch::Exact(path) => format!("exact({path:?})"),
            PathMatch::Regex(pattern) => format!("regex({pattern:?})"),
        }
    }

    /// The pattern the runtime compiles: anchored so it must match the whole path.
    pub fn anchored(pattern: &str) -> String {
        format!("^(?:{pattern})$")
    }
}

impl Route {
    /// Every part is interpreted (so all its errors are reported) before giving up.
    pub(crate) fn build(
        cx: &Ctxt,
        scope: &Scope<'_>,
        syntax: &syntax::Route,
        name: String,
    ) -> Option<Route> {
        let matcher = path_match(cx, &syntax.matcher);
        let mut methods = Vec::new();
        let mut headers = Vec::new();
        let mut valid = true;
        let mut method_call: Option<&Call> = None;
        for condition in &syntax.conditions {
            if condition.name == symbol::METHOD {
                if let Some(first) = method_call {
                    let message =
                        "a route takes one `method(..)` condition: list every method in it";
                    cx.push(diag::duplicate(
                        &condition.name,
                        &first.name,
                        message,
                        "method",
                    ));
                    valid = false;
                    continue;
                }
                method_call = Some(condition);
                match method_list(cx, condition) {
                    Some(list) => methods = list,
                    None => valid = false,
                }
            } else if condition.name == symbol::HEADER {
                match header(cx, condition) {
                    Some(header) => headers.push(header),
                    None => valid = false,
                }
            } else {
                let message = format!("unknown condition `{}(..)`", condition.name);
                let help = diag::suggestion(
                    &condition.name.to_string(),
                    diag::symbols(symbol::CONDITIONS),
                );
                cx.error_spanned_by(&condition.name, diag::with_help(message, help));
                valid = false;
            }
        }
        let action = action(cx, scope, &syntax.action);
        let filters = route_filters(cx, &syntax.action);
        let (matcher, action, filters) = (matcher?, action?, filters?);
        // A route with a broken condition is dropped rather than kept without it: as
        // an unconditional route it would seem to shadow the routes after it.
        valid.then_some(Route {
            name,
            filters,
            matcher,
            methods,
            headers,
            action,
        })
    }
}

/// Where a path literal is used, for what may appear in it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathUse {
    /// Compared with the request path as received (`uri.path()`: no query, not
    /// percent-decoded), so anything that cannot appear there would never match.
    Matcher,
    /// Written into the `Location` header in place of the request's path.
    Redirect,
}

fn path_match(cx: &Ctxt, call: &Call) -> Option<Located<PathMatch>> {
    let kind = &call.name;
    let usage = format!(r#"{kind}("/path")"#);
    let known = symbol::MATCHERS.iter().any(|matcher| kind == *matcher);
    if !known {
        let message = format!("unknown path matcher `{kind}(..)`");
        let help = diag::suggestion(&kind.to_string(), diag::symbols(symbol::MATCHERS));
        cx.error_spanned_by(kind, diag::with_help(message, help));
        return None;
    }
    let [arg] = args::<1>(cx, call, &usage)?;
    let lit = value::string(cx, arg)?;
    let text = lit.value();
    let matcher = if kind == symbol::REGEX {
        regex(cx, lit, &text)?;
        PathMatch::Regex(text)
    } else {
        path(cx, lit, &text, PathUse::Matcher)?;
        if kind == symbol::PREFIX {
            PathMatch::Prefix(text)
        } else {
            PathMatch::Exact(text)
        }
    };
    Some(Located::new(matcher, call))
}

/// A path literal: absolute, a valid URI path, and without a query.
pub(crate) fn path(cx: &Ctxt, lit: &LitStr, text: &str, usage: PathUse) -> Option<()> {
    let problem = if !text.starts_with('/') {
        Some((
            format!("path `{text}` does not start with `/`"),
            format!("write \"/{text}\""),
        ))
    } else if text.contains(['?', '#']) {
        let help = match usage {
            PathUse::Matcher => "routes match the path only, which never contains `?` or `#`",
            PathUse::Redirect => {
                "a redirect replaces only the path; `strip_query: true` drops the query"
            }
        };
        Some((
            format!("path `{text}` contains a query or fragment"),
            help.to_owned(),
        ))
    } else if text.parse::<http::uri::PathAndQuery>().is_err() {
        Some((
            format!("`{text}` is not a valid URI path"),
            "percent-encode characters such as spaces, e.g. /a%20b".to_owned(),
        ))
    } else {
        None
    };
    cx.accept(lit, problem, ())
}

/// Compiled here with the same `regex` crate the runtime uses, so a pattern that
/// compiles now cannot fail at start-up.
fn regex(cx: &Ctxt, lit: &LitStr, pattern: &str) -> Option<()> {
    let error = match regex::Regex::new(pattern) {
        Ok(_) => match regex::Regex::new(&PathMatch::anchored(pattern)) {
            Ok(_) => return Some(()),
            Err(error) => error,
        },
        Err(error) => error,
    };
    cx.error_spanned_by(lit, regex_message(&error.to_string()));
    None
}

/// The regex crate's message is "regex parse error:", the pattern with a caret line
/// under the problem, then "error: REASON": lead with the reason, keep the picture.
fn regex_message(error: &str) -> String {
    let lines: Vec<&str> = error.lines().collect();
    match lines.iter().position(|line| line.starts_with("error: ")) {
        Some(reason) => {
            let picture = lines[..reason]
                .iter()
                .skip(1)
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
            let reason = lines[reason].trim_start_matches("error: ");
            if picture.is_empty() {
                format!("invalid regex: {reason}")
            } else {
                format!("invalid regex: {reason}\n{picture}")
            }
        }
        None => format!(
            "invalid regex: {}",
            lines.first().copied().unwrap_or("unknown error")
        ),
    }
}

fn method_list(cx: &Ctxt, call: &Call) -> Option<Vec<Method>> {
    if call.args.is_empty() {
        cx.error_spanned_by(
            call,
            diag::with_help(
                "`method()` lists no methods",
                "write e.g. method(GET, HEAD)",
            ),
        );
        return None;
    }
    let mut methods: Vec<Method> = Vec::new();
    let mut ok = true;
    for arg in &call.args {
        let Value::Name(name) = arg else {
            value::mismatch(cx, arg, "a method name such as GET");
            ok = false;
            continue;
        };
        match method(cx, name) {
            Some(method) if methods.contains(&method) => {
                cx.error_spanned_by(name, format!("method `{name}` is listed twice"));
                ok = false;
            }
            Some(method) => methods.push(method),
            None => ok = false,
        }
    }
    ok.then_some(methods)
}

/// Methods are case-sensitive tokens; lowercase is almost always a typo of a standard
/// method, and an unknown uppercase token is an extension method (`PURGE`).
fn method(cx: &Ctxt, name: &Ident) -> Option<Method> {
    let text = super::ident_string(name);
    if STANDARD_METHODS.contains(&text.as_str()) {
        return Some(Method {
            name: text,
            standard: true,
        });
    }
    let upper = text.to_ascii_uppercase();
    if upper != text {
        let message = format!("HTTP methods are case-sensitive: `{text}` is not `{upper}`");
        cx.error_spanned_by(name, diag::with_help(message, format!("write `{upper}`")));
        return None;
    }
    if http::Method::from_bytes(text.as_bytes()).is_err() {
        cx.error_spanned_by(name, format!("`{text}` is not a valid HTTP method"));
        return None;
    }
    Some(Method {
        name: text,
        standard: false,
    })
}

fn header(cx: &Ctxt, call: &Call) -> Option<HeaderMatch> {
    let args: Vec<&Value> = call.args.iter().collect();
    let (name, value) = match args.as_slice() {
        [name] => (value::string(cx, name), None),
        [name, value] => (value::string(cx, name), value::string(cx, value).map(Some)),
        _ => {
            let message = format!("`header(..)` takes 1 or 2 arguments, found {}", args.len());
            cx.error_spanned_by(
                call,
                diag::with_help(
                    message,
                    r#"write header("name") or header("name", "value")"#,
                ),
            );
            return None;
        }
    };
    let name = name.and_then(|lit| header_name(cx, lit));
    let value = match value {
        Some(Some(lit)) => header_value(cx, lit).map(Some),
        Some(None) => None,
        None => Some(None),
    };
    Some(HeaderMatch {
        name: name?,
        value: value?,
    })
}

fn header_name(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let text = lit.value();
    if text.starts_with(':') {
        let message = format!("pseudo-header `{text}` cannot be matched with header(..)");
        cx.error_spanned_by(
            lit,
            diag::with_help(message, "match the path with the route's matcher instead"),
        );
        return None;
    }
    match http::HeaderName::from_bytes(text.as_bytes()) {
        Ok(name) => Some(name.as_str().to_owned()),
        Err(_) => {
            let help = "header names are made of letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons)";
            cx.error_spanned_by(
                lit,
                diag::with_help(format!("invalid header name {text:?}"), help),
            );
            None
        }
    }
}

fn header_value(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let text = lit.value();
    let problem = if http::HeaderValue::from_str(&text).is_err() {
        Some("header values cannot contain control characters such as \\n or non-ASCII text")
    } else if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
        Some("HTTP parsers strip surrounding whitespace from values, so this could never match")
    } else {
        None
    };
    match problem {
        Some(help) => {
            cx.error_spanned_by(
                lit,
                diag::with_help(format!("invalid header value {text:?}"), help),
            );
            None
        }
        None => Some(text),
    }
}

fn action(cx: &Ctxt, scope: &Scope<'_>, action: &syntax::Action) -> Option<Action> {
    let name = &action.name;
    if name == symbol::CLUSTER || name == symbol::WEIGHTED_CLUSTERS {
        forward(cx, scope, action)
    } else if name == symbol::DIRECT_RESPONSE {
        direct_response(cx, action)
    } else if name == symbol::REDIRECT {
        redirect(cx, action)
    } else {
        let message = format!("unknown route action `{name}`");
        let help = diag::suggestion(&name.to_string(), diag::symbols(symbol::ACTIONS));
        cx.error_spanned_by(name, diag::with_help(message, help));
        None
    }
}

/// The entries of an action's `{ .. }` block (none if it has no block), without the
/// `filters` and `disable` entries every action's block may hold.
fn body_entries(action: &syntax::Action) -> impl Iterator<Item = &syn::Result<Field>> {
    action
        .body
        .as_ref()
        .map_or(&[][..], |body| body.fields.as_slice())
        .iter()
        .filter(|entry| !is_filter_entry(entry))
}

fn is_filter_entry(entry: &syn::Result<Field>) -> bool {
    entry
        .as_ref()
        .is_ok_and(|field| field.key == symbol::FILTERS || field.key == symbol::DISABLE)
}

/// The route-level `filters` and `disable` of an action's block.
fn route_filters(cx: &Ctxt, action: &syntax::Action) -> Option<super::Level> {
    let mut level = super::Level::default();
    let mut complete = true;
    let mut fields = Fields::new(Block::RoutePolicy);
    let entries = action
        .body
        .as_ref()
        .map_or(&[][..], |body| body.fields.as_slice());
    for entry in entries.iter().filter(|entry| is_filter_entry(entry)) {
        let Ok(field) = entry else { continue };
        let Some(value) = fields.add(cx, field) else {
            complete = false;
            continue;
        };
        if field.key == symbol::FILTERS {
            match super::filter::filters(cx, value) {
                Some(filters) => level.filters = filters,
                None => complete = false,
            }
        } else {
            match super::filter::disable_list(cx, value) {
                Some(disable) => level.disable = disable,
                None => complete = false,
            }
        }
    }
    complete.then_some(level)
}

/// `cluster(NAME)` or `weighted_clusters(A: 90, B: 10)`, then an optional block:
/// `{ timeout: 5s | none, upgrades: [..], retry_policy: { .. }, mirror: .. }`.
fn forward(cx: &Ctxt, scope: &Scope<'_>, action: &syntax::Action) -> Option<Action> {
    let weighted = action.name == symbol::WEIGHTED_CLUSTERS;
    let clusters = if weighted {
        weighted_clusters(cx, scope, action)
    } else {
        single_cluster(cx, scope, action).map(|id| vec![(id, 1)])
    };
    // A bad setting is reported but keeps the route: what it forwards to is known.
    let mut timeout = Some(DEFAULT_ROUTE_TIMEOUT);
    let mut timeout_value: Option<&Value> = None;
    let mut upgrades = Located::new(Vec::new(), &action.name);
    let mut retry = None;
    let mut mirrors = Vec::new();
    let mut fields = Fields::new(Block::RoutePolicy);
    for entry in body_entries(action) {
        let Some((key, value)) = fields.entry(cx, entry) else {
            continue;
        };
        if key == symbol::UPGRADES {
            if let Some(list) = upgrade_list(cx, value) {
                upgrades = Located::new(list, value);
            }
        } else if key == symbol::RETRY_POLICY {
            retry = super::retry::Retry::build(cx, value);
        } else if key == symbol::MIRROR {
            mirrors = super::retry::mirrors(cx, scope, value).unwrap_or_default();
        } else {
            timeout_value = Some(value);
            timeout = value::optional_duration(cx, value).unwrap_or(timeout);
        }
    }
    if let (Some(retry), Some(route_timeout)) = (&retry, timeout) {
        if let Some(per_try) = &retry.per_try_timeout {
            if per_try.value >= route_timeout {
                let written = if timeout_value.is_some() {
                    ""
                } else {
                    ", the default"
                };
                let message = format!(
                    "`per_try_timeout` ({}) is not shorter than the route timeout ({}{written}), so it can never fire",
                    crate::expand::summary::duration(per_try.value),
                    crate::expand::summary::duration(route_timeout),
                );
                cx.error_spanned_by(
                    per_try,
                    diag::with_help(message, "the route timeout bounds all tries together: lower per_try_timeout or raise timeout"),
                );
            }
        }
    }
    Some(Action::Forward(Forward {
        clusters: clusters?,
        weighted,
        timeout,
        upgrades,
        retry,
        mirrors,
    }))
}

fn single_cluster(cx: &Ctxt, scope: &Scope<'_>, action: &syntax::Action) -> Option<ClusterId> {
    let usage = "write cluster(NAME), naming a `cluster NAME { .. }` item";
    let Some((_, args)) = &action.args else {
        cx.error_spanned_by(
            &action.name,
            diag::with_help("`cluster` needs the cluster's name", usage),
        );
        return None;
    };
    match args.iter().collect::<Vec<_>>().as_slice() {
        [Value::Name(target)] => resolve(cx, scope, target),
        [other] => {
            value::mismatch(cx, other, "a cluster name");
            None
        }
        _ => {
            let message = format!("`cluster(..)` takes 1 argument, found {}", args.len());
            let usage = format!("{usage}; to split traffic, write weighted_clusters(a: 90, b: 10)");
            cx.error_spanned_by(&action.name, diag::with_help(message, usage));
            None
        }
    }
}

/// `weighted_clusters(a: 90, b: 10)`: each cluster once, weights summing to more than 0.
fn weighted_clusters(
    cx: &Ctxt,
    scope: &Scope<'_>,
    action: &syntax::Action,
) -> Option<Vec<(ClusterId, u32)>> {
    let usage = "write weighted_clusters(v1: 90, v2: 10): cluster names with their weights";
    let Some((paren, entries)) = &action.weights else {
        cx.error_spanned_by(
            &action.name,
            diag::with_help("`weighted_clusters` needs its clusters and weights", usage),
        );
        return None;
    };
    let mut clusters: Vec<(ClusterId, u32)> = Vec::new();
    let mut seen: Vec<&Ident> = Vec::new();
    let mut valid = true;
    for entry in entries {
        let field = match entry {
            Ok(field) => field,
            Err(error) => {
                cx.push(error.clone());
                valid = false;
                continue;
            }
        };
        if let Some(first) = seen.iter().find(|first| **first == &field.key) {
            let message = format!("cluster `{}` is listed twice", field.key);
            cx.push(diag::duplicate(&field.key, first, message, &field.key));
            valid = false;
            continue;
        }
        seen.push(&field.key);
        let id = resolve(cx, scope, &field.key);
        let weight = match &field.value {
            Ok(value) => value::integer::<u32>(cx, value),
            Err(error) => {
                cx.push(error.clone());
                None
            }
        };
        match (id, weight) {
            (Some(id), Some(weight)) => clusters.push((id, weight)),
            _ => valid = false,
        }
    }
    if !valid {
        return None;
    }
    let total: u64 = clusters.iter().map(|(_, weight)| u64::from(*weight)).sum();
    if total == 0 {
        cx.error_at(
            paren.span.join(),
            diag::with_help(
                "the weights add up to 0: no cluster would get a request",
                usage,
            ),
        );
        return None;
    }
    if total > u64::from(u32::MAX) {
        cx.error_spanned_by(
            &action.name,
            diag::with_help(
                "the weights add up to more than 4294967295",
                "use smaller weights: only their ratios matter",
            ),
        );
        return None;
    }
    Some(clusters)
}

/// `upgrades: ["websocket"]`: `Upgrade` protocol names, which are HTTP tokens.
fn upgrade_list(cx: &Ctxt, value: &Value) -> Option<Vec<String>> {
    let list = value::list(cx, value)?;
    let mut names = Vec::new();
    for item in &list.items {
        let lit = value::string(cx, item)?;
        let name = lit.value().to_ascii_lowercase();
        // An HTTP token, optionally `name/version` (RFC 9110 §7.8).
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            cx.error_spanned_by(
                lit,
                diag::with_help(
                    format!("invalid upgrade protocol {:?}", lit.value()),
                    r#"write the `Upgrade` header's protocol, e.g. "websocket""#,
                ),
            );
            return None;
        }
        names.push(name);
    }
    Some(names)
}

pub(crate) fn resolve(cx: &Ctxt, scope: &Scope<'_>, name: &Ident) -> Option<ClusterId> {
    if let Some(id) = scope.cluster(name) {
        return Some(id);
    }
    if !scope.items_incomplete {
        let text = super::ident_string(name);
        let known: Vec<String> = scope
            .names
            .iter()
            .map(|name| super::ident_string(name))
            .collect();
        let help = if known.is_empty() {
            format!("define it: cluster {text} {{ endpoints: [..] }}")
        } else {
            diag::suggestion(&text, known.iter().map(String::as_str))
        };
        cx.error_spanned_by(
            name,
            diag::with_help(format!("unknown cluster `{text}`"), help),
        );
    }
    None
}

/// `direct_response(STATUS [, "body"])`.
fn direct_response(cx: &Ctxt, action: &syntax::Action) -> Option<Action> {
    let usage = r#"write direct_response(200, "body") or direct_response(204)"#;
    // Its block may only hold the filter entries every action's block accepts.
    let mut stray = false;
    for entry in body_entries(action) {
        stray = true;
        match entry {
            Ok(field) => {
                let message = format!("unknown key `{}` in a `direct_response` block", field.key);
                cx.error_spanned_by(
                    &field.key,
                    diag::with_help(message, "its block takes only `filters` and `disable`"),
                );
            }
            Err(error) => cx.push(error.clone()),
        }
    }
    let Some((_, args)) = &action.args else {
        cx.error_spanned_by(
            &action.name,
            diag::with_help("`direct_response` needs a status", usage),
        );
        return None;
    };
    let args: Vec<&Value> = args.iter().collect();
    let (status, body) = match args.as_slice() {
        [status] => (status_code(cx, status), Some(String::new())),
        [status, body] => (
            status_code(cx, status),
            value::string(cx, body).map(LitStr::value),
        ),
        _ => {
            let message = format!(
                "`direct_response(..)` takes 1 or 2 arguments, found {}",
                args.len()
            );
            cx.error_spanned_by(&action.name, diag::with_help(message, usage));
            return None;
        }
    };
    let (status, body) = (status?, body?);
    // 1xx, 204 and 304 responses have no body by definition (RFC 9110 §6.4.1).
    if !body.is_empty() && (status == 204 || status == 304) {
        let message = format!("a {status} response cannot have a body");
        cx.error_spanned_by(
            args[1],
            diag::with_help(message, format!("write direct_response({status})")),
        );
        return None;
    }
    (!stray).then_some(Action::Direct { status, body })
}

/// A final status a proxy may answer with itself (Envoy accepts 200..=599).
fn status_code(cx: &Ctxt, value: &Value) -> Option<u16> {
    let status: u16 = value::integer(cx, value)?;
    if !(200..=599).contains(&status) {
        let help = "a direct response status is between 200 and 599";
        cx.error_spanned_by(
            value,
            diag::with_help(format!("invalid status code {status}"), help),
        );
        return None;
    }
    Some(status)
}

/// `redirect { status, scheme, host, port, path, prefix_rewrite, strip_query }`.
fn redirect(cx: &Ctxt, action: &syntax::Action) -> Option<Action> {
    let usage = r#"redirect { status: 301, host: "example.org" }"#;
    if action.args.is_some() {
        let message = "`redirect` takes its settings in a block";
        cx.error_spanned_by(
            &action.name,
            diag::with_help(message, format!("write {usage}")),
        );
        return None;
    }
    let mut redirect = Redirect {
        status: 301,
        scheme: None,
        host: None,
        port: None,
        path: None,
        prefix_rewrite: None,
        strip_query: false,
    };
    let mut valid = true;
    let mut fields = Fields::new(Block::Redirect);
    for entry in body_entries(action) {
        let Some((key, value)) = fields.entry(cx, entry) else {
            valid = false;
            continue;
        };
        let ok = if key == symbol::STATUS {
            redirect_status(cx, value).map(|status| redirect.status = status)
        } else if key == symbol::SCHEME {
            redirect_scheme(cx, value).map(|scheme| redirect.scheme = Some(scheme))
        } else if key == symbol::HOST {
            value::string(cx, value)
                .and_then(|lit| redirect_host(cx, lit))
                .map(|host| redirect.host = Some(host))
        } else if key == symbol::PORT {
            redirect_port(cx, value).map(|port| redirect.port = Some(port))
        } else if key == symbol::PATH {
            value::string(cx, value)
                .and_then(|lit| {
                    path(cx, lit, &lit.value(), PathUse::Redirect).map(|()| lit.value())
                })
                .map(|path| redirect.path = Some(path))
        } else if key == symbol::PREFIX_REWRITE {
            value::string(cx, value)
                .and_then(|lit| {
                    path(cx, lit, &lit.value(), PathUse::Redirect)
                        .map(|()| Located::new(lit.value(), lit))
                })
                .map(|rewrite| redirect.prefix_rewrite = Some(rewrite))
        } else {
            // `strip_query`, the last key.
            value::boolean(cx, value).map(|strip| redirect.strip_query = strip)
        };
        valid &= ok.is_some();
    }
    if let (Some(path), Some(rewrite)) =
        (fields.key(symbol::PATH), fields.key(symbol::PREFIX_REWRITE))
    {
        let message = "`path` and `prefix_rewrite` both replace the path: set only one";
        cx.push(diag::duplicate(rewrite, path, message, "path"));
        return None;
    }
    let changes_target = [
        symbol::SCHEME,
        symbol::HOST,
        symbol::PORT,
        symbol::PATH,
        symbol::PREFIX_REWRITE,
    ]
    .iter()
    .any(|key| fields.key(*key).is_some());
    if !changes_target && valid {
        let message = "this redirect points back at the request's own URL";
        let help = "set at least one of `scheme`, `host`, `port`, `path` or `prefix_rewrite`";
        cx.error_spanned_by(&action.name, diag::with_help(message, help));
        return None;
    }
    valid.then_some(Action::Redirect(redirect))
}

fn redirect_status(cx: &Ctxt, value: &Value) -> Option<u16> {
    let status: u16 = value::integer(cx, value)?;
    if !REDIRECT_STATUSES.contains(&status) {
        let message = format!("invalid redirect status {status}");
        cx.error_spanned_by(
            value,
            diag::with_help(message, "a redirect status is 301, 302, 303, 307 or 308"),
        );
        return None;
    }
    Some(status)
}

fn redirect_scheme(cx: &Ctxt, value: &Value) -> Option<String> {
    let lit = value::string(cx, value)?;
    let scheme = lit.value();
    if scheme != "http" && scheme != "https" {
        cx.error_spanned_by(
            lit,
            diag::with_help(
                format!("unsupported scheme {scheme:?}"),
                r#"write "http" or "https""#,
            ),
        );
        return None;
    }
    Some(scheme)
}

fn redirect_port(cx: &Ctxt, value: &Value) -> Option<u16> {
    match value::integer::<u16>(cx, value)? {
        0 => {
            cx.error_spanned_by(value, "port 0 cannot be redirected to");
            None
        }
        port => Some(port),
    }
}

/// The host part of the Location URL: a host name or IP, the port in `port:`.
fn redirect_host(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let text = lit.value();
    let is_ip = text.parse::<std::net::Ipv4Addr>().is_ok()
        || text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    if is_ip || address::is_host_name(&text) {
        return Some(text);
    }
    let help = if text.contains("://") {
        "write the scheme in `scheme:` and only the host here"
    } else if text.contains(':') {
        "write the port in `port:` and only the host here"
    } else {
        "expected a host name such as example.org"
    };
    cx.error_spanned_by(
        lit,
        diag::with_help(format!("invalid redirect host {text:?}"), help),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::invalid_regex, reason = "the invalid pattern is the point")]
    fn regex_message_leads_with_the_reason() {
        let error = regex::Regex::new("^/v[0-9+/items$")
            .unwrap_err()
            .to_string();
        let message = regex_message(&error);
        assert!(
            message.starts_with("invalid regex: unclosed character class\n"),
            "{message}"
        );
        assert!(message.contains("^/v[0-9+/items$"));
    }
}
