use syn::Ident;
use syn::parse::{Parse, ParseStream};
use syn::{braced, token};

use super::{Field, Parsed, Route, kw, parse_entries, parse_name, unknown_entry};
use crate::symbol::Block;

/// `virtual_host NAME { domains: [..], route .., route .. }`.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct VirtualHost {
    pub kw: kw::virtual_host,
    pub name: Ident,
    pub brace: token::Brace,
    pub entries: Vec<Parsed<VhostEntry>>,
}

pub enum VhostEntry {
    Field(Field),
    Route(Route),
}

impl Parse for VirtualHost {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if !input.peek(kw::virtual_host) {
            return Err(unknown_entry(input, Block::Http));
        }
        let content;
        Ok(VirtualHost {
            kw: input.parse()?,
            name: parse_name(input, "virtual_host")?,
            brace: braced!(content in input),
            entries: parse_entries(&content, VhostEntry::parse, |entry| match entry {
                VhostEntry::Route(route) => route.ends_with_block(),
                VhostEntry::Field(_) => false,
            }),
        })
    }
}

impl Parse for VhostEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `route:` would be a (misplaced) key; only `route` followed by a matcher is a route.
        if input.peek(kw::route) && !input.peek2(syn::Token![:]) {
            input.parse().map(VhostEntry::Route)
        } else {
            Field::parse_in(input, Block::VirtualHost).map(VhostEntry::Field)
        }
    }
}
