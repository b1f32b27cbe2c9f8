//! Listener and endpoint addresses: `"ip:port"`, `"host:port"` (endpoints only),
//! `pipe("/abs/path")`, `pipe(env("VAR", "/default"))` and `env("VAR", "default")`.
//!
//! Environment variables are read at start-up by the runtime; only their defaults are
//! known (and validated) here.

use std::fmt;
use std::net::SocketAddr;

use syn::LitStr;

use super::value::{self, args};
use crate::diag::{self, Ctxt};
use crate::symbol;
use crate::syntax::{Call, Value};

/// What an address string denotes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    /// `host:port` resolved by the runtime at start-up (endpoints only).
    Host(String),
    /// An absolute Unix socket path.
    Unix(String),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Address {
    Fixed(Target),
    /// `env("VAR", "default")`: the variable if set, else `default` (already parsed).
    Env {
        var: String,
        default: String,
        target: Target,
    },
    /// `pipe(env("VAR", "/default"))`: a Unix path from the environment.
    PipeEnv {
        var: String,
        default: String,
    },
}

impl Address {
    /// The address as far as compile time knows it: the literal, or the default.
    pub fn known_target(&self) -> Target {
        match self {
            Address::Fixed(target) | Address::Env { target, .. } => target.clone(),
            Address::PipeEnv { default, .. } => Target::Unix(default.clone()),
        }
    }

    pub fn is_fixed_tcp(&self) -> bool {
        matches!(self, Address::Fixed(Target::Tcp(_)))
    }

    pub fn is_fixed_unix(&self) -> bool {
        matches!(self, Address::Fixed(Target::Unix(_)))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Host(host_port) => write!(f, "{host_port}"),
            Target::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Fixed(target) => write!(f, "{target}"),
            Address::Env { var, target, .. } => write!(f, "${var} or {target}"),
            Address::PipeEnv { var, default } => write!(f, "unix:${var} or unix:{default}"),
        }
    }
}

/// Whether a string address may name a host to resolve: endpoints may, listeners bind
/// to IP addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Bind,
    Endpoint,
}

/// Why an address string was rejected, and what to write instead when the generic
/// example would not help.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    fn new(message: String) -> Self {
        Problem {
            message,
            help: None,
        }
    }

    fn with_help(message: String, help: &str) -> Self {
        Problem {
            message,
            help: Some(help.to_owned()),
        }
    }

    fn report(self, cx: &Ctxt, lit: &LitStr, default_help: &str) {
        let help = self.help.as_deref().unwrap_or(default_help);
        cx.error_spanned_by(lit, diag::with_help(self.message, help));
    }
}

impl Role {
    /// What a string address of this role looks like.
    fn example(self) -> &'static str {
        match self {
            Role::Bind => "expected ip:port, e.g. 127.0.0.1:8080",
            Role::Endpoint => "expected ip:port or host:port, e.g. 127.0.0.1:8080",
        }
    }

    /// What an `env(..)` default of this role looks like.
    fn env_example(self) -> &'static str {
        match self {
            Role::Bind => "expected ip:port (e.g. 0.0.0.0:8080) or unix:/absolute/path",
            Role::Endpoint => "expected ip:port, host:port or unix:/absolute/path",
        }
    }

    /// Every form a value of this role may take.
    fn forms(self) -> &'static str {
        match self {
            Role::Bind => r#"an address: "ip:port", pipe("/path") or env("VAR", "default")"#,
            Role::Endpoint => {
                r#"an endpoint: "ip:port", "host:port", pipe("/path") or env("VAR", "default")"#
            }
        }
    }
}

pub(crate) fn address(cx: &Ctxt, value: &Value, role: Role) -> Option<Address> {
    match value {
        Value::Str(lit) => literal(cx, lit, role).map(Address::Fixed),
        Value::Call(call) if call.name == symbol::ENV => {
            let (var, default) = env(cx, call, role)?;
            let target = match default.value().strip_prefix("unix:") {
                Some(path) => unix_path(cx, &default, path).map(|()| Target::Unix(path.to_owned())),
                None => match parse_tcp(&default.value(), role) {
                    Ok(target) => Some(target),
                    Err(problem) => {
                        problem.report(cx, &default, role.env_example());
                        None
                    }
                },
            }?;
            Some(Address::Env {
                var,
                default: default.value(),
                target,
            })
        }
        Value::Call(call) if call.name == symbol::PIPE => pipe(cx, call),
        Value::Call(call) => {
            let message = format!("unknown address form `{}(..)`", call.name);
            let help =
                diag::suggestion(&call.name.to_string(), diag::symbols(symbol::ADDRESS_FORMS));
            cx.error_spanned_by(&call.name, diag::with_help(message, help));
            None
        }
        _ => {
            value::mismatch(cx, value, role.forms());
            None
        }
    }
}

fn literal(cx: &Ctxt, lit: &LitStr, role: Role) -> Option<Target> {
    let text = lit.value();
    if let Some(path) = text.strip_prefix("unix:") {
        let help = format!(r#"write pipe("{path}") for a Unix socket"#);
        cx.error_spanned_by(
            lit,
            diag::with_help(format!("`{text}` is not a TCP address"), help),
        );
        return None;
    }
    match parse_tcp(&text, role) {
        Ok(target) => Some(target),
        Err(problem) if text.starts_with('/') => {
            let help = format!(r#"write pipe("{text}") for a Unix socket"#);
            cx.error_spanned_by(lit, diag::with_help(problem.message, help));
            None
        }
        Err(problem) => {
            problem.report(cx, lit, role.example());
            None
        }
    }
}

/// `env("VAR", "default")` → the variable name and the default literal.
fn env(cx: &Ctxt, call: &Call, role: Role) -> Option<(String, LitStr)> {
    let usage = match role {
        Role::Bind => r#"env("LISTEN_ADDR", "127.0.0.1:8080")"#,
        Role::Endpoint => r#"env("UPSTREAM_ADDR", "127.0.0.1:8081")"#,
    };
    let [var, default] = args::<2>(cx, call, usage)?;
    let var = value::string(cx, var);
    let default = value::string(cx, default);
    let var = var.and_then(|var| env_var_name(cx, var))?;
    Some((var, default?.clone()))
}

fn env_var_name(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let name = lit.value();
    if name.is_empty() || name.contains(['=', '\0']) {
        let help = "a variable name is non-empty and contains no `=` or NUL, e.g. LISTEN_ADDR";
        cx.error_spanned_by(
            lit,
            diag::with_help(
                format!("invalid environment variable name {:?}", name),
                help,
            ),
        );
        return None;
    }
    Some(name)
}

/// `pipe("/path")` or `pipe(env("VAR", "/default"))`.
fn pipe(cx: &Ctxt, call: &Call) -> Option<Address> {
    let [arg] = args::<1>(
        cx,
        call,
        r#"pipe("/run/app.sock") or pipe(env("APP_SOCK", "/run/app.sock"))"#,
    )?;
    match arg {
        Value::Str(lit) => {
            let path = lit.value();
            unix_path(cx, lit, &path)?;
            Some(Address::Fixed(Target::Unix(path)))
        }
        Value::Call(inner) if inner.name == symbol::ENV => {
            let [var, default] = args::<2>(cx, inner, r#"pipe(env("APP_SOCK", "/run/app.sock"))"#)?;
            let var = value::string(cx, var);
            let default = value::string(cx, default);
            let var = var.and_then(|var| env_var_name(cx, var))?;
            let default = default?;
            let path = default.value();
            if let Some(stripped) = path.strip_prefix("unix:") {
                let help = format!(r#"drop the prefix: pipe(env("{var}", "{stripped}"))"#);
                cx.error_spanned_by(
                    default,
                    diag::with_help(
                        "the default of pipe(env(..)) is a path, not an address",
                        help,
                    ),
                );
                return None;
            }
            unix_path(cx, default, &path)?;
            Some(Address::PipeEnv { var, default: path })
        }
        _ => {
            value::mismatch(
                cx,
                arg,
                r#"a socket path "/abs/path" or env("VAR", "/abs/path")"#,
            );
            None
        }
    }
}

/// Sockets live in the filesystem: the path must be absolute (the working directory of
/// a service is rarely what its author assumed) and fit `sockaddr_un`.
fn unix_path(cx: &Ctxt, lit: &LitStr, path: &str) -> Option<()> {
    // `sun_path` is 108 bytes on Linux, including the terminating NUL.
    const MAX_PATH: usize = 107;
    let problem = if !path.starts_with('/') {
        Some((
            format!("relative Unix socket path `{path}`"),
            "Unix socket paths must be absolute, e.g. /run/app.sock".to_owned(),
        ))
    } else if path.contains('\0') {
        Some((
            "Unix socket path contains a NUL byte".to_owned(),
            "remove it".to_owned(),
        ))
    } else if path.len() > MAX_PATH {
        Some((
            format!("Unix socket path is {} bytes long", path.len()),
            format!("the limit is {MAX_PATH} bytes; use a shorter path"),
        ))
    } else {
        None
    };
    cx.accept(lit, problem, ())
}

/// `ip:port`, or for endpoints also `host:port`.
pub(crate) fn parse_tcp(text: &str, role: Role) -> Result<Target, Problem> {
    let malformed = || format!("malformed socket address `{text}`");
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if let SocketAddr::V6(v6) = addr {
            if v6.scope_id() != 0 || v6.flowinfo() != 0 {
                return Err(Problem::new(format!(
                    "scoped IPv6 address `{text}` is not supported"
                )));
            }
        }
        if role == Role::Endpoint && addr.port() == 0 {
            let message = format!("endpoint `{text}` has port 0, which cannot be connected to");
            return Err(Problem::with_help(
                message,
                "write the port the upstream listens on",
            ));
        }
        return Ok(Target::Tcp(addr));
    }
    if text.matches(':').count() > 1 && !text.starts_with('[') {
        return Err(Problem::with_help(
            malformed(),
            "IPv6 addresses are written in brackets, e.g. [::1]:8080",
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(Problem::new(format!("{}: missing port", malformed())));
    };
    // Only digits and dots is an attempt at IPv4 (`300.1.1.1`), never a host name.
    if host.is_empty()
        || host.starts_with('[')
        || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Err(Problem::new(malformed()));
    }
    if role == Role::Bind {
        let message = format!(
            "{}: a listener binds to an IP address, not a host name",
            malformed()
        );
        return Err(Problem::with_help(
            message,
            "e.g. 127.0.0.1:8080, or 0.0.0.0:8080 for every interface",
        ));
    }
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => {
            return Err(Problem::new(format!(
                "{}: invalid port `{port}`",
                malformed()
            )));
        }
        Ok(port) => port,
    };
    if !is_host_name(host) {
        return Err(Problem::new(format!(
            "invalid host name `{host}` in `{text}`"
        )));
    }
    Ok(Target::Host(format!("{host}:{port}")))
}

/// DNS labels of letters, digits, `-` and `_` (common in internal names), 1..=63 bytes,
/// not starting or ending with `-`; 253 bytes in all.
pub(crate) fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_literals() {
        assert!(matches!(
            parse_tcp("127.0.0.1:8080", Role::Bind),
            Ok(Target::Tcp(_))
        ));
        assert!(matches!(
            parse_tcp("[::1]:8082", Role::Endpoint),
            Ok(Target::Tcp(_))
        ));
        assert_eq!(
            parse_tcp("origin.internal:8080", Role::Endpoint),
            Ok(Target::Host("origin.internal:8080".to_owned()))
        );
        let message = |text, role| parse_tcp(text, role).unwrap_err().message;
        assert!(message("origin.internal:8080", Role::Bind).contains("not a host name"));
        assert_eq!(
            message("127.0.0.1", Role::Bind),
            "malformed socket address `127.0.0.1`: missing port"
        );
        assert_eq!(
            message("300.1.1.1:80", Role::Endpoint),
            "malformed socket address `300.1.1.1:80`"
        );
        assert!(
            parse_tcp("::1:80", Role::Bind)
                .unwrap_err()
                .help
                .unwrap()
                .contains("brackets")
        );
        assert!(message("127.0.0.1:0", Role::Endpoint).contains("port 0"));
        assert!(parse_tcp("127.0.0.1:0", Role::Bind).is_ok());
        assert!(message("bad host:80", Role::Endpoint).contains("invalid host name"));
        assert!(message("host:99999", Role::Endpoint).contains("invalid port"));
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("origin.internal"));
        assert!(is_host_name("a-b.c_d.example."));
        assert!(!is_host_name("-a.example"));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name(""));
    }
}
