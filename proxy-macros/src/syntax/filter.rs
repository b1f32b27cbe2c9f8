//! `filters: [..]`: built-in filters in DSL syntax, user filters as Rust expressions.

use proc_macro2::TokenStream;
use quote::{ToTokens, TokenStreamExt};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token, braced, bracketed, parenthesized, token};

use super::{Field, Parsed, Value, parse_entries};
use crate::symbol::Block;

/// `[entry, ..]`.
pub struct FilterList {
    pub bracket: token::Bracket,
    pub entries: Punctuated<FilterEntry, Token![,]>,
}

/// One filter, optionally named so a virtual host or route can override or disable it:
/// `name = expr`, `name: Type = expr`, or just `expr`.
pub struct FilterEntry {
    pub name: Option<Ident>,
    /// The filter's type when the expression alone does not say it.
    pub ty: Option<syn::Type>,
    pub expr: FilterExpr,
}

pub enum FilterExpr {
    /// `cors { .. }`, `local_rate_limit(100, 10, 1s)`, `body_limit(1048576)`: a name the
    /// DSL knows, with DSL values, checked against the filter's schema by the model.
    Builtin {
        name: Ident,
        args: Option<(token::Paren, Punctuated<Value, Token![,]>)>,
        body: Option<(token::Brace, Vec<Parsed<Field>>)>,
    },
    /// Any Rust expression producing a filter: `my_filters::ApiKey::new("k")`.
    Rust(Box<syn::Expr>),
}

impl Parse for FilterList {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(FilterList {
            bracket: bracketed!(content in input),
            entries: content.parse_terminated(FilterEntry::parse, Token![,])?,
        })
    }
}

impl Parse for FilterEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let mut ty = None;
        if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            name = Some(input.parse()?);
            input.parse::<Token![=]>()?;
        } else if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            name = Some(input.parse()?);
            input.parse::<Token![:]>()?;
            ty = Some(input.parse()?);
            input.parse::<Token![=]>()?;
        }
        Ok(FilterEntry {
            name,
            ty,
            expr: input.parse()?,
        })
    }
}

impl Parse for FilterExpr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let builtin = input.peek(Ident)
            && !input.peek2(Token![::])
            && input
                .fork()
                .parse::<Ident>()
                .is_ok_and(|name| crate::model::filter::is_builtin(&name));
        if !builtin {
            return input.parse().map(|expr| FilterExpr::Rust(Box::new(expr)));
        }
        let name = input.parse()?;
        let args = if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            Some((paren, content.parse_terminated(Value::parse, Token![,])?))
        } else {
            None
        };
        let body = if input.peek(token::Brace) {
            let content;
            let brace = braced!(content in input);
            let fields = parse_entries(
                &content,
                |input| Field::parse_in(input, Block::Filter),
                |_| false,
            );
            Some((brace, fields))
        } else {
            None
        };
        Ok(FilterExpr::Builtin { name, args, body })
    }
}

impl ToTokens for FilterList {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.bracket
            .surround(tokens, |tokens| self.entries.to_tokens(tokens));
    }
}

impl ToTokens for FilterEntry {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        if let Some(name) = &self.name {
            name.to_tokens(tokens);
        }
        self.expr.to_tokens(tokens);
    }
}

impl ToTokens for FilterExpr {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            FilterExpr::Rust(expr) => expr.to_tokens(tokens),
            FilterExpr::Builtin { name, args, body } => {
                tokens.append(name.clone());
                if let Some((paren, args)) = args {
                    paren.surround(tokens, |tokens| args.to_tokens(tokens));
                }
                if let Some((brace, _)) = body {
                    brace.surround(tokens, |_| {});
                }
            }
        }
    }
}
