use syn::Ident;
use syn::parse::{Parse, ParseStream};
use syn::{braced, token};

use super::{Field, Parsed, kw, parse_entries, parse_name};
use crate::symbol::Block;

/// `cluster NAME { endpoints: [..], connect_timeout: 2s, .. }`: a named group of
/// upstream endpoints.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Cluster {
    pub kw: kw::cluster,
    pub name: Ident,
    pub brace: token::Brace,
    pub fields: Vec<Parsed<Field>>,
}

impl Parse for Cluster {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Cluster {
            kw: input.parse()?,
            name: parse_name(input, "cluster")?,
            brace: braced!(content in input),
            fields: parse_entries(
                &content,
                |input| Field::parse_in(input, Block::Cluster),
                |_| false,
            ),
        })
    }
}
