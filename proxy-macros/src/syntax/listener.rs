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
}

/// `http { virtual_host NAME { .. } ... }`: the HTTP connection manager of a listener.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Http {
    pub kw: kw::http,
    pub brace: token::Brace,
    pub virtual_hosts: Vec<Parsed<VirtualHost>>,
}

impl Parse for Listener {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Listener {
            kw: input.parse()?,
            name: parse_name(input, "listener")?,
            brace: braced!(content in input),
            entries: parse_entries(&content, ListenerEntry::parse, |entry| {
                matches!(entry, ListenerEntry::Http(_))
            }),
        })
    }
}

impl Parse for ListenerEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::http) && input.peek2(token::Brace) {
            input.parse().map(ListenerEntry::Http)
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
            virtual_hosts: parse_entries(&content, VirtualHost::parse, |_| true),
        })
    }
}
