use syn::Ident;
use syn::parse::{Parse, ParseStream};
use syn::{braced, token};

use super::{Field, Parsed, VirtualHost, kw, parse_entries, parse_name};
use crate::symbol::Block;

/// `listener NAME { bind: .., socket_mode: .., http { .. } }`.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Listener {
    pub kw: kw::listener,
    pub name: Ident,
    pub brace: token::Brace,
    pub entries: Vec<Parsed<ListenerEntry>>,
}

pub enum ListenerEntry {
    Field(Field),
    Http(Http),
    Tcp(Tcp),
}

/// `tcp { cluster: NAME, filters: [..], .. }`: the listener proxies byte streams.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Tcp {
    pub kw: kw::tcp,
    pub brace: token::Brace,
    pub fields: Vec<Parsed<Field>>,
}

impl Parse for Tcp {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Tcp {
            kw: input.parse()?,
            brace: braced!(content in input),
            fields: parse_entries(
                &content,
                |input| Field::parse_in(input, Block::Tcp),
                |_| false,
            ),
        })
    }
}

/// `http { virtual_host NAME { .. } ... }`: the HTTP connection manager of a listener.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Http {
    pub kw: kw::http,
    pub brace: token::Brace,
    pub entries: Vec<Parsed<HttpEntry>>,
}

/// An entry of the `http` block: `filters: [..]` or a `virtual_host`.
pub enum HttpEntry {
    Field(Field),
    VirtualHost(VirtualHost),
}

impl Parse for HttpEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::virtual_host) {
            input.parse().map(HttpEntry::VirtualHost)
        } else if input.peek(Ident) && input.peek2(syn::Token![:]) {
            Field::parse_in(input, Block::Http).map(HttpEntry::Field)
        } else {
            // Reports the unknown entry with suggestions.
            input.parse().map(HttpEntry::VirtualHost)
        }
    }
}

impl Parse for Listener {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Listener {
            kw: input.parse()?,
            name: parse_name(input, "listener")?,
            brace: braced!(content in input),
            entries: parse_entries(&content, ListenerEntry::parse, |entry| {
                matches!(entry, ListenerEntry::Http(_) | ListenerEntry::Tcp(_))
            }),
        })
    }
}

impl Parse for ListenerEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::http) && input.peek2(token::Brace) {
            input.parse().map(ListenerEntry::Http)
        } else if input.peek(kw::tcp) && input.peek2(token::Brace) {
            input.parse().map(ListenerEntry::Tcp)
        } else {
            Field::parse_in(input, Block::Listener).map(ListenerEntry::Field)
        }
    }
}

impl Parse for Http {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Http {
            kw: input.parse()?,
            brace: braced!(content in input),
            entries: parse_entries(&content, HttpEntry::parse, |entry| {
                matches!(entry, HttpEntry::VirtualHost(_))
            }),
        })
    }
}
