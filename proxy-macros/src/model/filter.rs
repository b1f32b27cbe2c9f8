//! Filters as declared at one level (listener `http` block, virtual host, route), and the
//! effective chain of a route once inheritance, overrides and disables are applied.

use std::time::Duration;

use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, quote};
use syn::{Expr, LitStr, Type};

use super::Located;
use super::fields::Fields;
use super::value;
use crate::diag::{self, Ctxt};
use crate::symbol::Block;
use crate::syntax::{FilterEntry, FilterExpr, Value};

/// One filter declaration.
pub struct Filter {
    /// What a lower level uses to override or disable it: the explicit `name = ..`, or a
    /// built-in's own name. Unnamed user filters can be neither.
    pub name: Option<Located<String>>,
    pub kind: FilterKind,
    /// The whole entry, for errors and for the span of the trait check.
    pub tokens: TokenStream,
}

pub enum FilterKind {
    Builtin {
        spec: &'static BuiltinSpec,
        args: Vec<(&'static ArgSpec, ArgValue)>,
    },
    User {
        expr: Box<Expr>,
        ty: Box<Type>,
    },
}

impl Filter {
    /// The name to show in messages and the summary.
    pub fn describe(&self) -> String {
        match (&self.name, &self.kind) {
            (Some(name), _) => name.value.clone(),
            (None, FilterKind::Builtin { spec, .. }) => spec.name.to_owned(),
            (None, FilterKind::User { ty, .. }) => {
                ty.to_token_stream().to_string().replace(' ', "")
            }
        }
    }
}

/// A built-in filter as the DSL knows it: which runtime type it is, how it is
/// constructed, and the type of each argument (checked at compile time).
pub struct BuiltinSpec {
    pub name: &'static str,
    /// The type under `::proxy_core::filter::builtin`.
    pub ty: &'static str,
    /// The constructor; positional arguments are passed to it in order.
    pub constructor: &'static str,
    /// The constructor is a method of the start-up `Inputs` (it can fail, e.g. opening a
    /// file, and `Inputs` records the failure instead of panicking).
    pub via_inputs: bool,
    pub positional: &'static [ArgSpec],
    /// `{ key: value }` entries, each a builder method of the same name.
    pub keys: &'static [ArgSpec],
    /// Listing it twice in one chain is an error.
    pub unique: bool,
    pub example: &'static str,
}

pub struct ArgSpec {
    pub name: &'static str,
    pub kind: ArgKind,
    /// A list whose items each become one call of the builder method.
    pub each: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArgKind {
    Str,
    /// Passed as `&'static [&'static str]`.
    StrList,
    HeaderName,
    /// `header("name", "value")`: passed as two arguments.
    HeaderPair,
    Duration,
    U32,
    U64,
    Bool,
    /// 0 to 100, passed as `f64`.
    Percent,
    Status,
    /// A regex validated now and compiled at start-up.
    Regex,
    /// An Envoy-style access-log format string, validated now.
    LogFormat,
    /// An absolute file path.
    AbsolutePath,
}

/// A checked argument value.
pub enum ArgValue {
    Str(String),
    StrList(Vec<String>),
    HeaderName(String),
    HeaderPair(String, String),
    Duration(Duration),
    Int(u64),
    Bool(bool),
    Percent(f64),
    Status(u16),
    Regex(String),
    /// Several calls of one builder method.
    Each(Vec<ArgValue>),
}

/// The runtime's format-string parser, compiled into the macro as well so a malformed
/// `%OPERATOR%` is a compile error at the literal.
#[allow(dead_code, reason = "only the parser is used here")]
#[path = "../../../proxy-core/src/filter/builtin/format.rs"]
mod format;

const fn arg(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        each: false,
    }
}

const fn each(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        each: true,
    }
}

const HEADER_KEYS: &[ArgSpec] = &[
    each("add", ArgKind::HeaderPair),
    each("set", ArgKind::HeaderPair),
    each("add_if_absent", ArgKind::HeaderPair),
    each("overwrite_if_exists", ArgKind::HeaderPair),
    each("remove", ArgKind::HeaderName),
];

const FAULT_KEYS: &[ArgSpec] = &[
    arg("percent", ArgKind::Percent),
    arg("header_control", ArgKind::Bool),
    arg("max_active", ArgKind::U32),
];

const fn spec(
    name: &'static str,
    ty: &'static str,
    constructor: &'static str,
    positional: &'static [ArgSpec],
    keys: &'static [ArgSpec],
    unique: bool,
    example: &'static str,
) -> BuiltinSpec {
    BuiltinSpec {
        name,
        ty,
        constructor,
        via_inputs: false,
        positional,
        keys,
        unique,
        example,
    }
}

/// The built-in filters the DSL knows (see `docs/dsl.md`), each mapped 1:1 onto its
/// runtime type in `proxy_core::filter::builtin`: positional arguments go to the
/// constructor, `{ key: value }` entries to the builder method of the same name.
pub static BUILTINS: &[BuiltinSpec] = &[
    spec(
        "request_headers",
        "RequestHeaders",
        "new",
        &[],
        HEADER_KEYS,
        false,
        r#"request_headers { set: [header("x-env", "prod")], remove: ["x-debug"] }"#,
    ),
    spec(
        "response_headers",
        "ResponseHeaders",
        "new",
        &[],
        HEADER_KEYS,
        false,
        r#"response_headers { remove: ["server"] }"#,
    ),
    spec(
        "prefix_rewrite",
        "PrefixRewrite",
        "new",
        &[
            arg("prefix", ArgKind::Str),
            arg("replacement", ArgKind::Str),
        ],
        &[],
        true,
        r#"prefix_rewrite("/api/", "/")"#,
    ),
    spec(
        "regex_rewrite",
        "RegexRewrite",
        "new",
        &[
            arg("pattern", ArgKind::Regex),
            arg("substitution", ArgKind::Str),
        ],
        &[],
        true,
        r#"regex_rewrite("^/v1/(.*)$", r"/\1")"#,
    ),
    spec(
        "host_rewrite",
        "HostRewrite",
        "new",
        &[arg("host", ArgKind::Str)],
        &[arg("append_x_forwarded_host", ArgKind::Bool)],
        true,
        r#"host_rewrite("origin.internal")"#,
    ),
    spec(
        "cors",
        "Cors",
        "new",
        &[],
        &[
            arg("allow_origins", ArgKind::StrList),
            arg("allow_origin_regex", ArgKind::Regex),
            arg("allow_methods", ArgKind::StrList),
            arg("allow_headers", ArgKind::StrList),
            arg("expose_headers", ArgKind::StrList),
            arg("max_age", ArgKind::Duration),
            arg("allow_credentials", ArgKind::Bool),
            arg("allow_private_network_access", ArgKind::Bool),
            arg("forward_not_matching_preflights", ArgKind::Bool),
        ],
        true,
        r#"cors { allow_origins: ["https://app.example.org"] }"#,
    ),
    spec(
        "local_rate_limit",
        "LocalRateLimit",
        "new",
        &[
            arg("max_tokens", ArgKind::U32),
            arg("tokens_per_fill", ArgKind::U32),
            arg("fill_interval", ArgKind::Duration),
        ],
        &[arg("status", ArgKind::Status)],
        true,
        "local_rate_limit(100, 10, 1s)",
    ),
    spec(
        "fault_delay",
        "Fault",
        "delay",
        &[arg("delay", ArgKind::Duration)],
        FAULT_KEYS,
        false,
        "fault_delay(2s) { percent: 10 }",
    ),
    spec(
        "fault_abort",
        "Fault",
        "abort",
        &[arg("status", ArgKind::Status)],
        FAULT_KEYS,
        false,
        "fault_abort(503) { percent: 5 }",
    ),
    spec(
        "fault_headers",
        "Fault",
        "headers",
        &[],
        FAULT_KEYS,
        false,
        "fault_headers { header_control: true }",
    ),
    spec(
        "body_limit",
        "BodyLimit",
        "new",
        &[arg("max_bytes", ArgKind::U64)],
        &[],
        true,
        "body_limit(1048576)",
    ),
    spec(
        "access_log_stdout",
        "AccessLog",
        "stdout",
        &[arg("format", ArgKind::LogFormat)],
        &[],
        false,
        r#"access_log_stdout("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\n")"#,
    ),
    BuiltinSpec {
        via_inputs: true,
        ..spec(
            "access_log_file",
            "AccessLog",
            "access_log_file",
            &[
                arg("path", ArgKind::AbsolutePath),
                arg("format", ArgKind::LogFormat),
            ],
            &[],
            false,
            r#"access_log_file("/var/log/proxy/access.log", "%REQ(:METHOD)% %RESPONSE_CODE%\n")"#,
        )
    },
    spec(
        "compression",
        "Compression",
        "new",
        &[],
        &[
            arg("gzip", ArgKind::Bool),
            arg("brotli", ArgKind::Bool),
            arg("min_content_length", ArgKind::U64),
            arg("content_types", ArgKind::StrList),
            arg("gzip_level", ArgKind::U32),
            arg("brotli_quality", ArgKind::U32),
            arg("remove_accept_encoding", ArgKind::Bool),
        ],
        true,
        "compression { min_content_length: 256 }",
    ),
];

pub fn builtin(name: &Ident) -> Option<&'static BuiltinSpec> {
    BUILTINS.iter().find(|spec| name == spec.name)
}

pub fn is_builtin(name: &Ident) -> bool {
    builtin(name).is_some()
}

/// A `filters: [..]` value.
pub(crate) fn filters(cx: &Ctxt, value: &Value) -> Option<Vec<Filter>> {
    let Value::Filters(list) = value else {
        value::mismatch(cx, value, "a list of filters [..]");
        return None;
    };
    let mut filters = Vec::new();
    let mut complete = true;
    for entry in &list.entries {
        match filter(cx, entry) {
            Some(filter) => filters.push(filter),
            None => complete = false,
        }
    }
    complete.then_some(filters)
}

fn filter(cx: &Ctxt, entry: &FilterEntry) -> Option<Filter> {
    let tokens = entry.to_token_stream();
    let explicit = entry
        .name
        .as_ref()
        .map(|name| Located::new(super::ident_string(name), name));
    match &entry.expr {
        FilterExpr::Builtin { name, args, body } => {
            let spec = builtin(name)?;
            let args = builtin_args(
                cx,
                spec,
                name,
                args.as_ref().map(|(_, args)| args),
                body.as_ref().map(|(_, body)| body.as_slice()),
            )?;
            let name = explicit.or_else(|| Some(Located::new(spec.name.to_owned(), name)));
            Some(Filter {
                name,
                kind: FilterKind::Builtin { spec, args },
                tokens,
            })
        }
        FilterExpr::Rust(expr) => {
            let ty = match &entry.ty {
                Some(ty) => ty.clone(),
                None => match type_of(expr) {
                    Some(ty) => ty,
                    None => {
                        unknown_filter(cx, expr);
                        return None;
                    }
                },
            };
            Some(Filter {
                name: explicit,
                kind: FilterKind::User {
                    expr: expr.clone(),
                    ty: Box::new(ty),
                },
                tokens,
            })
        }
    }
}

/// The filter's type, read off the way it is constructed: `Type::new(..)`, `Type { .. }`,
/// `Type` (a unit struct), or a builder chain starting with one of those (builder methods
/// return `Self`). A path segment naming a type starts with an uppercase letter.
fn type_of(expr: &Expr) -> Option<Type> {
    fn is_type(segment: &syn::PathSegment) -> bool {
        segment
            .ident
            .to_string()
            .starts_with(|c: char| c.is_ascii_uppercase())
    }
    let path = match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(function) if function.qself.is_none() => {
                let mut path = function.path.clone();
                path.segments.pop()?;
                path.segments.pop_punct();
                path
            }
            _ => return None,
        },
        Expr::Path(unit) if unit.qself.is_none() => unit.path.clone(),
        Expr::Struct(literal) if literal.qself.is_none() => literal.path.clone(),
        Expr::MethodCall(call) => return type_of(&call.receiver),
        Expr::Paren(inner) => return type_of(&inner.expr),
        _ => return None,
    };
    let last = path.segments.last()?;
    is_type(last).then(|| Type::Path(syn::TypePath { qself: None, path }))
}

fn unknown_filter(cx: &Ctxt, expr: &Expr) {
    let word = match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(path) if path.path.segments.len() == 1 => {
                Some(path.path.segments[0].ident.to_string())
            }
            _ => None,
        },
        Expr::Path(path) if path.path.segments.len() == 1 => {
            Some(path.path.segments[0].ident.to_string())
        }
        Expr::Struct(literal) if literal.path.segments.len() == 1 => {
            Some(literal.path.segments[0].ident.to_string())
        }
        _ => None,
    };
    let own = "for your own filter, write `Type::new(..)`, `Type { .. }`, `Type`, or `name: Type = expression`";
    match word.filter(|word| word.starts_with(|c: char| c.is_ascii_lowercase())) {
        Some(word) => {
            let known = BUILTINS.iter().map(|spec| spec.name);
            let help = match diag::closest(&word, known) {
                Some(close) => format!("did you mean `{close}`? ({own})"),
                None => own.to_owned(),
            };
            cx.error_spanned_by(
                expr,
                diag::with_help(format!("unknown filter `{word}`"), help),
            );
        }
        None => cx.error_spanned_by(
            expr,
            diag::with_help("cannot tell the type of this filter", own),
        ),
    }
}

fn builtin_args(
    cx: &Ctxt,
    spec: &'static BuiltinSpec,
    name: &Ident,
    positional: Option<&syn::punctuated::Punctuated<Value, syn::Token![,]>>,
    body: Option<&[syn::Result<crate::syntax::Field>]>,
) -> Option<Vec<(&'static ArgSpec, ArgValue)>> {
    let given: Vec<&Value> = positional
        .map(|args| args.iter().collect())
        .unwrap_or_default();
    if given.len() != spec.positional.len() {
        let message = format!(
            "`{}` takes {} argument{}, found {}",
            spec.name,
            spec.positional.len(),
            if spec.positional.len() == 1 { "" } else { "s" },
            given.len()
        );
        cx.error_spanned_by(
            name,
            diag::with_help(message, format!("write {}", spec.example)),
        );
        return None;
    }
    let mut complete = true;
    let mut args = Vec::new();
    for (arg, value) in spec.positional.iter().zip(given) {
        match arg_value(cx, arg, value) {
            Some(value) => args.push((arg, value)),
            None => complete = false,
        }
    }
    let mut fields = Fields::new(Block::Filter);
    for entry in body.unwrap_or_default() {
        let Ok(field) = entry else {
            if let Err(error) = entry {
                cx.push(error.clone());
            }
            complete = false;
            continue;
        };
        let Some(arg) = spec.keys.iter().find(|arg| field.key == arg.name) else {
            let message = format!("unknown key `{}` in `{}`", field.key, spec.name);
            let help =
                diag::suggestion(&field.key.to_string(), spec.keys.iter().map(|arg| arg.name));
            cx.error_spanned_by(&field.key, diag::with_help(message, help));
            complete = false;
            continue;
        };
        let Some(value) = fields.add_unchecked(cx, field) else {
            complete = false;
            continue;
        };
        match arg_value(cx, arg, value) {
            Some(value) => args.push((arg, value)),
            None => complete = false,
        }
    }
    complete.then_some(args)
}

fn arg_value(cx: &Ctxt, arg: &ArgSpec, value: &Value) -> Option<ArgValue> {
    if arg.each {
        let Value::List(list) = value else {
            value::mismatch(cx, value, "a list [..]");
            return None;
        };
        let items: Vec<Option<ArgValue>> = list
            .items
            .iter()
            .map(|item| single(cx, arg.kind, item))
            .collect();
        return items
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(ArgValue::Each);
    }
    single(cx, arg.kind, value)
}

fn single(cx: &Ctxt, kind: ArgKind, value: &Value) -> Option<ArgValue> {
    Some(match kind {
        ArgKind::Str => ArgValue::Str(value::string(cx, value)?.value()),
        ArgKind::StrList => {
            let Value::List(list) = value else {
                value::mismatch(cx, value, "a list of strings [..]");
                return None;
            };
            let items: Option<Vec<String>> = list
                .items
                .iter()
                .map(|item| value::string(cx, item).map(LitStr::value))
                .collect();
            ArgValue::StrList(items?)
        }
        ArgKind::HeaderName => ArgValue::HeaderName(header_name(cx, value::string(cx, value)?)?),
        ArgKind::HeaderPair => {
            let usage = r#"header("name", "value")"#;
            let Value::Call(call) = value else {
                value::mismatch(cx, value, usage);
                return None;
            };
            let [name, text] = value::args::<2>(cx, call, usage)?;
            let name = header_name(cx, value::string(cx, name)?)?;
            let text = value::string(cx, text)?;
            if http::HeaderValue::from_str(&text.value()).is_err() {
                cx.error_spanned_by(
                    text,
                    "invalid header value: control characters are not allowed",
                );
                return None;
            }
            if name == "host" {
                cx.error_spanned_by(
                    text,
                    diag::with_help(
                        "`host` cannot be changed by a header filter",
                        r#"use host_rewrite("..")"#,
                    ),
                );
                return None;
            }
            match format::parse(&text.value()) {
                Ok(pieces) => {
                    let unavailable = pieces.iter().find_map(|piece| match piece {
                        format::Piece::Operator(operator) if !operator.available_in_headers() => {
                            Some(())
                        }
                        _ => None,
                    });
                    if unavailable.is_some() {
                        cx.error_spanned_by(text, diag::with_help("this value refers to the response or the finished exchange", "header values may use %REQ(..)%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %START_TIME%, %PROTOCOL%, %ROUTE_NAME%"));
                        return None;
                    }
                }
                Err(error) => {
                    cx.error_spanned_by(text, format!("invalid header value format: {error}"));
                    return None;
                }
            }
            ArgValue::HeaderPair(name, text.value())
        }
        ArgKind::Duration => ArgValue::Duration(value::duration(cx, value)?),
        ArgKind::U32 => ArgValue::Int(u64::from(value::integer::<u32>(cx, value)?)),
        ArgKind::U64 => ArgValue::Int(value::integer::<u64>(cx, value)?),
        ArgKind::Bool => ArgValue::Bool(value::boolean(cx, value)?),
        ArgKind::Percent => {
            let percent = value::number(cx, value)?;
            if !(0.0..=100.0).contains(&percent) {
                cx.error_spanned_by(value, "a percentage is between 0 and 100");
                return None;
            }
            ArgValue::Percent(percent)
        }
        ArgKind::Status => {
            let status: u16 = value::integer(cx, value)?;
            if !(200..=599).contains(&status) {
                cx.error_spanned_by(
                    value,
                    diag::with_help(
                        format!("invalid status {status}"),
                        "use a status from 200 to 599",
                    ),
                );
                return None;
            }
            ArgValue::Status(status)
        }
        ArgKind::LogFormat => {
            let lit = value::string(cx, value)?;
            if let Err(error) = format::parse(&lit.value()) {
                cx.error_spanned_by(
                    lit,
                    diag::with_help(
                        format!("invalid access log format: {error}"),
                        "operators look like %REQ(:METHOD)%, %RESPONSE_CODE%, %DURATION%",
                    ),
                );
                return None;
            }
            ArgValue::Str(lit.value())
        }
        ArgKind::AbsolutePath => {
            let lit = value::string(cx, value)?;
            if !lit.value().starts_with('/') {
                cx.error_spanned_by(
                    lit,
                    diag::with_help(
                        "the path must be absolute",
                        format!("write \"/{}\"", lit.value()),
                    ),
                );
                return None;
            }
            ArgValue::Str(lit.value())
        }
        ArgKind::Regex => {
            let lit = value::string(cx, value)?;
            if let Err(error) = regex::Regex::new(&lit.value()) {
                let reason = error.to_string();
                let reason = reason
                    .lines()
                    .last()
                    .unwrap_or("invalid regex")
                    .trim_start_matches("error: ");
                cx.error_spanned_by(lit, format!("invalid regex: {reason}"));
                return None;
            }
            ArgValue::Regex(lit.value())
        }
    })
}

fn header_name(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let text = lit.value().to_ascii_lowercase();
    if http::HeaderName::from_bytes(text.as_bytes()).is_err() {
        cx.error_spanned_by(
            lit,
            diag::with_help(
                format!("invalid header name {:?}", lit.value()),
                "header names are tokens: letters, digits and !#$%&'*+-.^_`|~",
            ),
        );
        return None;
    }
    Some(text)
}

/// A `disable: [name, ..]` value: names of inherited filters this level turns off.
pub(crate) fn disable_list(cx: &Ctxt, value: &Value) -> Option<Vec<Located<String>>> {
    let Value::List(list) = value else {
        value::mismatch(cx, value, "a list of filter names [..]");
        return None;
    };
    let mut names = Vec::new();
    for item in &list.items {
        match item {
            Value::Name(name) => names.push(Located::new(super::ident_string(name), name)),
            other => {
                value::mismatch(cx, other, "a filter name");
                return None;
            }
        }
    }
    Some(names)
}

/// Filters and disables declared at one level.
#[derive(Default)]
pub struct Level {
    pub filters: Vec<Filter>,
    pub disable: Vec<Located<String>>,
}

/// Identifies a declaration: (level, index within that level's filters). Levels are
/// numbered by the caller (listener, virtual host, route).
pub type FilterRef<'a> = &'a Filter;

/// Applies `levels` in order (listener first): a named filter replaces an inherited one
/// of the same name in place (Envoy's per-route filter config); a disable removes it;
/// anything else is appended.
pub fn effective<'a>(levels: &[&'a Level]) -> Vec<FilterRef<'a>> {
    let mut chain: Vec<FilterRef<'a>> = Vec::new();
    for level in levels {
        chain.retain(|filter| {
            !filter
                .name
                .as_ref()
                .is_some_and(|name| level.disable.iter().any(|off| off.value == name.value))
        });
        for filter in &level.filters {
            let replaced = filter.name.as_ref().and_then(|name| {
                chain.iter().position(|inherited| {
                    inherited
                        .name
                        .as_ref()
                        .is_some_and(|n| n.value == name.value)
                })
            });
            match replaced {
                Some(position) => chain[position] = filter,
                None => chain.push(filter),
            }
        }
    }
    chain
}

impl ArgValue {
    /// The argument as Rust tokens; `inputs` builds regexes at start-up.
    pub fn tokens(&self, inputs: &Ident) -> Vec<TokenStream> {
        match self {
            ArgValue::Str(text) => vec![quote!(#text)],
            ArgValue::StrList(items) => vec![quote!(&[#(#items),*])],
            ArgValue::HeaderName(name) => {
                vec![quote!(::proxy_core::__private::http::HeaderName::from_static(#name))]
            }
            ArgValue::HeaderPair(name, value) => {
                vec![
                    quote!(::proxy_core::__private::http::HeaderName::from_static(#name)),
                    quote!(#value),
                ]
            }
            ArgValue::Duration(duration) => {
                let millis = proc_macro2::Literal::u64_unsuffixed(
                    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                );
                vec![quote!(::proxy_core::__private::Duration::from_millis(#millis))]
            }
            ArgValue::Int(n) => {
                let n = proc_macro2::Literal::u64_unsuffixed(*n);
                vec![quote!(#n)]
            }
            ArgValue::Bool(b) => vec![quote!(#b)],
            ArgValue::Percent(p) => {
                let p = proc_macro2::Literal::f64_suffixed(*p);
                vec![quote!(#p)]
            }
            ArgValue::Status(status) => {
                let status = proc_macro2::Literal::u16_unsuffixed(*status);
                vec![
                    quote!(::proxy_core::__private::http::StatusCode::from_u16(#status).unwrap_or(::proxy_core::__private::http::StatusCode::INTERNAL_SERVER_ERROR)),
                ]
            }
            ArgValue::Regex(pattern) => vec![quote!(#inputs.regex(#pattern))],
            ArgValue::Each(_) => Vec::new(),
        }
    }
}
