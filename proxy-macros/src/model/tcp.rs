//! A listener's `tcp { .. }` block: an L4 proxy to one cluster (Envoy's `tcp_proxy`).

use std::net::IpAddr;
use std::time::Duration;

use super::fields::{self, Fields};
use super::filter::{self, Filter, FilterKind};
use super::value;
use super::{ClusterId, Located, Scope};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{self, Value};

pub struct TcpProxy {
    /// `None` only after an error.
    pub cluster: Option<ClusterId>,
    /// Network filters, in order from the client side.
    pub filters: Vec<Filter>,
    pub stat_prefix: Option<String>,
    /// `None`: the default (1h); `Some(None)`: disabled with `none`.
    pub idle_timeout: Option<Option<Duration>>,
    pub max_connection_duration: Option<Duration>,
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    pub ports: Located<Vec<u16>>,
    /// Tokens of `allow_source_ips`/`deny_source_ips`, for the Unix-socket check.
    pub source_rules: Option<proc_macro2::TokenStream>,
}

/// `10.0.0.0/8`, `::1/128`; a bare address is a single host.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl TcpProxy {
    pub(crate) fn build(cx: &Ctxt, scope: &Scope<'_>, block: &syntax::Tcp) -> Option<TcpProxy> {
        let entries = block.fields.iter().map(|entry| entry.as_ref().ok());
        fields::require(
            cx,
            Block::Tcp,
            &syn::Ident::new("tcp", block.kw.span),
            symbol::CLUSTER,
            "NAME",
            entries,
        );
        let mut proxy = TcpProxy {
            cluster: None,
            filters: Vec::new(),
            stat_prefix: None,
            idle_timeout: None,
            max_connection_duration: None,
            allow: Vec::new(),
            deny: Vec::new(),
            ports: Located::new(Vec::new(), block.kw),
            source_rules: None,
        };
        let mut complete = true;
        let mut fields = Fields::new(Block::Tcp);
        for entry in &block.fields {
            let Some((key, value)) = fields.entry(cx, entry) else {
                complete = false;
                continue;
            };
            let ok = if key == symbol::CLUSTER {
                match value {
                    Value::Name(name) => {
                        proxy.cluster = super::route::resolve(cx, scope, name);
                        proxy.cluster.is_some()
                    }
                    other => {
                        value::mismatch(cx, other, "a cluster name");
                        false
                    }
                }
            } else if key == symbol::FILTERS {
                match filter::filters(cx, value) {
                    Some(filters) => {
                        let http = filters
                            .iter()
                            .find(|f| matches!(f.kind, FilterKind::Builtin { .. }));
                        if let Some(http) = http {
                            let message = format!(
                                "`{}` is an HTTP filter; a `tcp` block takes network filters",
                                http.describe()
                            );
                            cx.error_spanned_by(&http.tokens, diag::with_help(message, "move it to an `http { filters: [..] }` block, or list a type implementing `proxy_core::tcp::NetworkFilter`"));
                            false
                        } else {
                            proxy.filters = filters;
                            true
                        }
                    }
                    None => false,
                }
            } else if key == symbol::STAT_PREFIX {
                value::string(cx, value)
                    .map(|lit| proxy.stat_prefix = Some(lit.value()))
                    .is_some()
            } else if key == symbol::IDLE_TIMEOUT {
                value::optional_duration(cx, value)
                    .map(|timeout| proxy.idle_timeout = Some(timeout))
                    .is_some()
            } else if key == symbol::MAX_CONNECTION_DURATION {
                value::optional_duration(cx, value)
                    .map(|limit| proxy.max_connection_duration = limit)
                    .is_some()
            } else if key == symbol::ALLOW_SOURCE_IPS || key == symbol::DENY_SOURCE_IPS {
                proxy.source_rules = Some(quote::ToTokens::to_token_stream(key));
                match cidrs(cx, value) {
                    Some(list) if key == symbol::ALLOW_SOURCE_IPS => {
                        proxy.allow = list;
                        true
                    }
                    Some(list) => {
                        proxy.deny = list;
                        true
                    }
                    None => false,
                }
            } else {
                // `destination_ports`.
                match ports(cx, value) {
                    Some(list) => {
                        proxy.ports = Located::new(list, value);
                        true
                    }
                    None => false,
                }
            };
            complete &= ok;
        }
        (complete && proxy.cluster.is_some()).then_some(proxy)
    }
}

fn cidrs(cx: &Ctxt, value: &Value) -> Option<Vec<Cidr>> {
    let list = value::list(cx, value)?;
    let mut cidrs = Vec::new();
    let mut complete = true;
    for item in &list.items {
        let Some(lit) = value::string(cx, item) else {
            complete = false;
            continue;
        };
        match parse_cidr(&lit.value()) {
            Some(cidr) => cidrs.push(cidr),
            None => {
                let message = format!("`{}` is not an address block", lit.value());
                cx.error_spanned_by(lit, diag::with_help(message, r#"write an IP with a prefix length, e.g. "10.0.0.0/8" or "fd00::/8", or a single IP"#));
                complete = false;
            }
        }
    }
    complete.then_some(cidrs)
}

pub fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty() => {
            prefix.parse::<u8>().ok()?
        }
        Some(_) => return None,
        None => max,
    };
    (prefix <= max).then_some(Cidr { addr, prefix })
}

fn ports(cx: &Ctxt, value: &Value) -> Option<Vec<u16>> {
    let list = value::list(cx, value)?;
    let mut ports = Vec::new();
    for item in &list.items {
        let port: u16 = value::integer(cx, item)?;
        if port == 0 {
            cx.error_spanned_by(item, "port 0 is not a destination port");
            return None;
        }
        ports.push(port);
    }
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some(Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8
            })
        );
        assert_eq!(
            parse_cidr("::1"),
            Some(Cidr {
                addr: "::1".parse().unwrap(),
                prefix: 128
            })
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0/8"), None);
        assert_eq!(parse_cidr("10.0.0.0/"), None);
    }
}
