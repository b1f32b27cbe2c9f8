use std::time::Duration;

use proc_macro2::Ident;

use super::address::{self, Address, Role};
use super::fields::{self, Fields};
use super::{Located, value};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{self, Value};

/// Defaults of the DSL, stated here rather than inherited from the runtime so that the
/// summary shows exactly what the generated code sets.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: u32 = 64;

pub struct Cluster {
    pub name: Ident,
    pub endpoints: Vec<Located<Address>>,
    pub connect_timeout: Duration,
    pub protocol: Protocol,
    pub max_idle_per_endpoint: u32,
    pub idle_timeout: Duration,
    /// `tls: { .. }`: TLS to the endpoints.
    pub tls: Option<super::tls::ClusterTls>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Cluster {
    pub(crate) fn build(cx: &Ctxt, syntax: &syntax::Cluster) -> Cluster {
        let mut fields = Fields::new(Block::Cluster);
        let mut cluster = Cluster {
            name: syntax.name.clone(),
            endpoints: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            protocol: Protocol::Http1,
            max_idle_per_endpoint: DEFAULT_MAX_IDLE_PER_ENDPOINT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tls: None,
        };
        let example = r#"["127.0.0.1:8081"]"#;
        let entries = syntax.fields.iter().map(|entry| entry.as_ref().ok());
        fields::require(
            cx,
            Block::Cluster,
            &syntax.name,
            symbol::ENDPOINTS,
            example,
            entries,
        );
        for entry in &syntax.fields {
            let Some((key, value)) = fields.entry(cx, entry) else {
                continue;
            };
            if key == symbol::ENDPOINTS {
                cluster.endpoints = endpoints(cx, &syntax.name, value, example);
            } else if key == symbol::CONNECT_TIMEOUT {
                cluster.connect_timeout =
                    value::duration(cx, value).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            } else if key == symbol::IDLE_TIMEOUT {
                cluster.idle_timeout = value::duration(cx, value).unwrap_or(DEFAULT_IDLE_TIMEOUT);
            } else if key == symbol::LB {
                // Round robin is the only balancer so far; the key exists so that
                // configurations can state it and keep their meaning when others arrive.
                value::choice(cx, value, &[symbol::ROUND_ROBIN]);
            } else if key == symbol::PROTOCOL {
                if value::choice(cx, value, &[symbol::HTTP1, symbol::HTTP2]) == Some(symbol::HTTP2)
                {
                    cluster.protocol = Protocol::Http2;
                }
            } else if key == symbol::TLS {
                cluster.tls = super::tls::ClusterTls::build(cx, value);
            } else if key == symbol::MAX_IDLE_PER_ENDPOINT {
                cluster.max_idle_per_endpoint =
                    value::integer(cx, value).unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT);
            }
        }
        cluster
    }
}

fn endpoints(cx: &Ctxt, name: &Ident, value: &Value, example: &str) -> Vec<Located<Address>> {
    let mut endpoints: Vec<Located<Address>> = Vec::new();
    let Some(list) = value::list(cx, value) else {
        return endpoints;
    };
    if list.items.is_empty() {
        let message = format!("cluster `{name}` has no endpoints");
        cx.error_spanned_by(
            list,
            diag::with_help(
                message,
                format!("list at least one, e.g. endpoints: {example}"),
            ),
        );
    }
    for item in &list.items {
        let Some(endpoint) = address::address(cx, item, Role::Endpoint) else {
            continue;
        };
        let endpoint = Located::new(endpoint, item);
        match endpoints.iter().find(|seen| seen.value == endpoint.value) {
            Some(first) => cx.push(diag::duplicate(
                &endpoint,
                first,
                "duplicate endpoint",
                &endpoint.value,
            )),
            None => endpoints.push(endpoint),
        }
    }
    endpoints
}
