use proc_macro2::Ident;

use super::address::{self, Address, Role};
use super::fields::{self, Fields};
use super::filter::{self, Level};
use super::value;
use super::{Located, Route, Scope};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{self, HttpEntry, ListenerEntry, Value, VhostEntry};

pub struct Listener {
    pub name: Ident,
    /// `None` only after an error.
    pub bind: Option<Located<Address>>,
    pub socket_mode: Option<Located<u32>>,
    /// `tls: { .. }`: TLS termination.
    pub tls: Option<super::tls::ListenerTls>,
    /// The `http` block's keyword, if any.
    pub http: Option<syntax::kw::http>,
    pub virtual_hosts: Vec<VirtualHost>,
    /// Filters of the `http` block: every route of the listener runs them.
    pub filters: Level,
    /// `generate_request_id: false` in the `http` block.
    pub generate_request_id: Option<bool>,
    /// `skip_xff_append: true` in the `http` block.
    pub skip_xff_append: Option<bool>,
    /// The `tcp { .. }` block, for an L4 listener (then there are no virtual hosts).
    pub tcp: Option<super::tcp::TcpProxy>,
    /// An entry or virtual host was dropped after an error (it may have held routes).
    pub incomplete: bool,
    /// A dropped part may have forwarded to a cluster.
    pub unresolved: bool,
}

pub struct VirtualHost {
    pub name: Ident,
    pub domains: Vec<Located<Domain>>,
    pub routes: Vec<Route>,
    /// Filters for this virtual host's routes, and inherited ones it turns off.
    pub filters: Level,
    /// An entry was dropped after an error.
    pub incomplete: bool,
    /// A dropped entry may have been a route forwarding to a cluster.
    pub unresolved: bool,
}

/// A `domains` entry, lowercased (hosts compare case-insensitively).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Domain {
    Exact(String),
    /// `*.example.org`: the part after `*`.
    Suffix(String),
    /// `api.*`: the part before `*`.
    Prefix(String),
    /// `*`.
    Any,
}

impl Domain {
    /// As written in the DSL (normalized).
    pub fn pattern(&self) -> String {
        match self {
            Domain::Exact(host) => host.clone(),
            Domain::Suffix(suffix) => format!("*{suffix}"),
            Domain::Prefix(prefix) => format!("{prefix}*"),
            Domain::Any => "*".to_owned(),
        }
    }
}

impl Listener {
    pub(crate) fn build(cx: &Ctxt, scope: &Scope<'_>, syntax: &syntax::Listener) -> Listener {
        let mut listener = Listener {
            name: syntax.name.clone(),
            bind: None,
            socket_mode: None,
            tls: None,
            http: None,
            virtual_hosts: Vec::new(),
            filters: Level::default(),
            generate_request_id: None,
            skip_xff_append: None,
            tcp: None,
            incomplete: false,
            unresolved: false,
        };
        let entries = syntax.entries.iter().filter_map(|entry| match entry {
            Ok(ListenerEntry::Field(field)) => Some(Some(field)),
            Ok(ListenerEntry::Http(_) | ListenerEntry::Tcp(_)) => None,
            Err(_) => Some(None),
        });
        let example = r#""127.0.0.1:8080""#;
        fields::require(
            cx,
            Block::Listener,
            &syntax.name,
            symbol::BIND,
            example,
            entries,
        );
        let mut fields = Fields::new(Block::Listener);
        let mut http: Option<&syntax::Http> = None;
        for entry in &syntax.entries {
            match entry {
                Ok(ListenerEntry::Field(field)) => {
                    let Some(value) = fields.add(cx, field) else {
                        continue;
                    };
                    if field.key == symbol::BIND {
                        listener.bind = address::address(cx, value, Role::Bind)
                            .map(|bind| Located::new(bind, value));
                    } else if field.key == symbol::SOCKET_MODE {
                        listener.socket_mode = socket_mode(cx, value);
                    } else if field.key == symbol::TLS {
                        listener.tls = super::tls::ListenerTls::build(cx, value);
                        listener.incomplete |= listener.tls.is_none();
                    }
                }
                Ok(ListenerEntry::Tcp(block)) => {
                    if http.is_some() || listener.tcp.is_some() {
                        one_protocol(cx, block.kw);
                        listener.unresolved = true;
                        continue;
                    }
                    match super::tcp::TcpProxy::build(cx, scope, block) {
                        Some(tcp) => listener.tcp = Some(tcp),
                        None => {
                            listener.incomplete = true;
                            listener.unresolved = true;
                        }
                    }
                }
                Ok(ListenerEntry::Http(block)) => {
                    if listener.tcp.is_some() {
                        one_protocol(cx, block.kw);
                        listener.unresolved = true;
                        continue;
                    }
                    if let Some(first) = http {
                        let message =
                            "a listener has one `http` block: put every virtual host in the first";
                        cx.push(diag::duplicate(block.kw, first.kw, message, "http"));
                        // Its routes are not read, so the clusters they use are unknown.
                        listener.unresolved = true;
                        continue;
                    }
                    http = Some(block);
                    listener.http = Some(block.kw);
                    let name = super::ident_string(&syntax.name);
                    let mut http_fields = Fields::new(Block::Http);
                    for entry in &block.entries {
                        let vhost = match entry {
                            Ok(HttpEntry::VirtualHost(vhost)) => Ok(vhost),
                            Ok(HttpEntry::Field(field)) => {
                                let Some(value) = http_fields.add(cx, field) else {
                                    continue;
                                };
                                if field.key == symbol::GENERATE_REQUEST_ID {
                                    listener.generate_request_id = value::boolean(cx, value);
                                } else if field.key == symbol::SKIP_XFF_APPEND {
                                    listener.skip_xff_append = value::boolean(cx, value);
                                } else {
                                    match filter::filters(cx, value) {
                                        Some(filters) => listener.filters.filters = filters,
                                        None => listener.incomplete = true,
                                    }
                                }
                                continue;
                            }
                            Err(error) => Err(error),
                        };
                        match vhost {
                            Ok(vhost) => {
                                let vhost = VirtualHost::build(cx, scope, &name, vhost);
                                listener.incomplete |= vhost.incomplete;
                                listener.unresolved |= vhost.unresolved;
                                listener.virtual_hosts.push(vhost);
                            }
                            Err(error) => {
                                cx.push(error.clone());
                                listener.incomplete = true;
                                listener.unresolved = true;
                            }
                        }
                    }
                }
                Err(error) => {
                    cx.push(error.clone());
                    // The broken entry may have been the `http` block.
                    listener.incomplete = true;
                    listener.unresolved = true;
                }
            }
        }
        if let (Some(tcp), Some(bind)) = (&listener.tcp, &listener.bind) {
            if bind.value.is_fixed_unix() {
                let rule = tcp
                    .source_rules
                    .clone()
                    .or_else(|| (!tcp.ports.value.is_empty()).then(|| tcp.ports.tokens.clone()));
                if let Some(rule) = rule {
                    cx.error_spanned_by(rule, diag::with_help(
                        "source IPs and destination ports do not apply to a Unix-socket listener",
                        "remove them; restrict access with socket_mode instead",
                    ));
                }
            }
        }
        if let (Some(mode), Some(bind)) = (&listener.socket_mode, &listener.bind) {
            if bind.value.is_fixed_tcp() {
                let message = format!(
                    "socket_mode only applies to Unix sockets, but this listener binds TCP address `{}`",
                    bind.value
                );
                cx.error_spanned_by(
                    mode,
                    diag::with_help(message, r#"remove it, or bind to pipe("/path") or env(..)"#),
                );
                listener.socket_mode = None;
            }
        }
        listener
    }
}

/// A second protocol block in one listener.
fn one_protocol(cx: &Ctxt, keyword: impl quote::ToTokens) {
    let message = "a listener has one `http` block or one `tcp` block";
    cx.error_spanned_by(
        keyword,
        diag::with_help(message, "use a second listener for the other protocol"),
    );
}

/// Permission bits for a Unix listening socket, written in octal as `chmod` takes them.
fn socket_mode(cx: &Ctxt, value: &Value) -> Option<Located<u32>> {
    let mode: u32 = value::integer(cx, value)?;
    let Value::Int(lit) = value else { return None };
    if !lit.to_string().starts_with("0o") {
        let help = format!(
            "write it in octal as chmod takes it, e.g. 0o{}",
            lit.base10_digits()
        );
        cx.error_spanned_by(
            value,
            diag::with_help("socket_mode must be an octal literal", help),
        );
        return None;
    }
    if mode > 0o777 {
        cx.error_spanned_by(
            value,
            diag::with_help(
                format!("socket_mode {lit} is out of range"),
                "the maximum is 0o777",
            ),
        );
        return None;
    }
    Some(Located::new(mode, value))
}

impl VirtualHost {
    fn build(
        cx: &Ctxt,
        scope: &Scope<'_>,
        listener: &str,
        syntax: &syntax::VirtualHost,
    ) -> VirtualHost {
        let mut vhost = VirtualHost {
            name: syntax.name.clone(),
            domains: Vec::new(),
            routes: Vec::new(),
            filters: Level::default(),
            incomplete: false,
            unresolved: false,
        };
        let entries = syntax.entries.iter().filter_map(|entry| match entry {
            Ok(VhostEntry::Field(field)) => Some(Some(field)),
            Ok(VhostEntry::Route(_)) => None,
            Err(_) => Some(None),
        });
        let example = r#"["example.org"]"#;
        fields::require(
            cx,
            Block::VirtualHost,
            &syntax.name,
            symbol::DOMAINS,
            example,
            entries,
        );
        let mut fields = Fields::new(Block::VirtualHost);
        let name = super::ident_string(&syntax.name);
        let mut index = 0;
        for entry in &syntax.entries {
            match entry {
                Ok(VhostEntry::Field(field)) => {
                    let Some(value) = fields.add(cx, field) else {
                        continue;
                    };
                    if field.key == symbol::FILTERS {
                        match filter::filters(cx, value) {
                            Some(filters) => vhost.filters.filters = filters,
                            None => vhost.incomplete = true,
                        }
                    } else if field.key == symbol::DISABLE {
                        match filter::disable_list(cx, value) {
                            Some(disable) => vhost.filters.disable = disable,
                            None => vhost.incomplete = true,
                        }
                    } else {
                        vhost.incomplete |= !domains(cx, &syntax.name, value, &mut vhost.domains);
                    }
                }
                Ok(VhostEntry::Route(route)) => {
                    match Route::build(cx, scope, route, format!("{listener}/{name}/{index}")) {
                        Some(route) => vhost.routes.push(route),
                        None => {
                            vhost.incomplete = true;
                            vhost.unresolved |= route.action.may_forward();
                        }
                    }
                    index += 1;
                }
                Err(error) => {
                    cx.push(error.clone());
                    vhost.incomplete = true;
                    vhost.unresolved = true;
                }
            }
        }
        vhost.incomplete |= vhost.domains.is_empty();
        vhost
    }
}

/// Reads a `domains` list into `domains`; returns whether every entry was valid.
fn domains(cx: &Ctxt, vhost: &Ident, value: &Value, domains: &mut Vec<Located<Domain>>) -> bool {
    let Some(list) = value::list(cx, value) else {
        return false;
    };
    if list.items.is_empty() {
        let message = format!("virtual host `{vhost}` has no domains");
        cx.error_spanned_by(
            list,
            diag::with_help(
                message,
                r#"list at least one, e.g. ["example.org"] or ["*"]"#,
            ),
        );
        return false;
    }
    let mut valid = true;
    for item in &list.items {
        match value::string(cx, item).and_then(|lit| domain(cx, lit)) {
            Some(domain) => domains.push(Located::new(domain, item)),
            None => valid = false,
        }
    }
    valid
}

/// Envoy's domain forms: an exact host, `*` alone, a leading `*` (suffix match) or a
/// trailing `*` (prefix match); hosts are compared without their port.
fn domain(cx: &Ctxt, lit: &syn::LitStr) -> Option<Domain> {
    let text = lit.value().to_ascii_lowercase();
    let (domain, rest) = if text == "*" {
        (Domain::Any, "")
    } else if let Some(suffix) = text.strip_prefix('*') {
        (Domain::Suffix(suffix.to_owned()), suffix)
    } else if let Some(prefix) = text.strip_suffix('*') {
        (Domain::Prefix(prefix.to_owned()), prefix)
    } else {
        (Domain::Exact(text.clone()), text.as_str())
    };
    let problem = if text.is_empty() {
        Some((
            "empty domain".to_owned(),
            r#"write a host such as "example.org", or "*" for any host"#.to_owned(),
        ))
    } else if rest.contains('*') {
        Some((
            format!("unsupported wildcard in domain `{text}`"),
            r#"a `*` may only be the whole domain, its first character ("*.example.org") or its last ("api.*")"#
                .to_owned(),
        ))
    } else if rest.starts_with('[') && rest.ends_with(']') {
        // An IPv6 literal host, kept in brackets as the runtime keeps it.
        None
    } else if let Some((host, _port)) = rest.rsplit_once(':') {
        Some((
            format!("domain `{text}` has a port"),
            format!("domains match the host without its port: write \"{host}\""),
        ))
    } else if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Some((
            format!("invalid domain `{text}`"),
            "a domain is made of letters, digits, `-`, `.` and `_`".to_owned(),
        ))
    } else {
        None
    };
    cx.accept(lit, problem, domain)
}
