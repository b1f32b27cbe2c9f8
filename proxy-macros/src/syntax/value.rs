//! The generic value grammar on the right of `key:` and inside calls: literals, names,
//! calls such as `env("A", "b")` and lists. Its meaning depends on the key and is given
//! by [`crate::model`]; keeping the grammar generic is what lets the model say "expected
//! a duration, found a string literal" instead of a bare parse error.

use proc_macro2::TokenStream;
use quote::{ToTokens, TokenStreamExt};
use syn::Ident;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Lit, LitBool, LitFloat, LitInt, LitStr, Token, bracketed, parenthesized, token};

pub enum Value {
    Str(LitStr),
    /// An integer, possibly with a suffix: `64`, `0o660`, `5s`.
    Int(LitInt),
    /// A float, possibly with a suffix: `1.5s`.
    Float(LitFloat),
    Bool(LitBool),
    /// A bare name: `none`, `round_robin`, `GET`, a cluster name.
    Name(Ident),
    Call(Call),
    List(List),
    /// `[filter, ..]`, only after `filters:`.
    Filters(super::FilterList),
    /// `{ key: value, .. }`: a group of settings (`tls: { .. }`), its keys checked by
    /// the model for the place it appears in.
    Block(Settings),
}

/// `{ key: value, .. }` as a value.
pub struct Settings {
    pub brace: token::Brace,
    pub fields: Vec<super::Parsed<super::Field>>,
}

/// `name(arg, ...)`.
pub struct Call {
    pub name: Ident,
    pub paren: token::Paren,
    pub args: Punctuated<Value, Token![,]>,
}

/// `[item, ...]`.
pub struct List {
    pub bracket: token::Bracket,
    pub items: Punctuated<Value, Token![,]>,
}

/// Time units a duration literal may carry as its suffix.
pub const DURATION_UNITS: &[&str] = &["ms", "s", "m", "h"];

impl Value {
    /// What the user wrote, for "expected X, found Y".
    pub fn describe(&self) -> String {
        fn number(suffix: &str, raw: String) -> String {
            if DURATION_UNITS.contains(&suffix) {
                format!("the duration `{raw}`")
            } else {
                format!("the number `{raw}`")
            }
        }
        match self {
            Value::Str(_) => "a string literal".to_owned(),
            Value::Int(lit) => number(lit.suffix(), lit.to_string()),
            Value::Float(lit) => number(lit.suffix(), lit.to_string()),
            Value::Bool(lit) => format!("`{}`", lit.value),
            Value::Name(name) => format!("the name `{name}`"),
            Value::Call(call) => format!("a call `{}(..)`", call.name),
            Value::List(_) => "a list".to_owned(),
            Value::Filters(_) => "a filter list".to_owned(),
            Value::Block(_) => "a `{ .. }` block".to_owned(),
        }
    }
}

impl Parse for Value {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // syn reads `-5` as one negative literal; no DSL value is negative.
        if input.peek(Token![-]) {
            Err(input.error("negative values are not allowed here"))
        } else if input.peek(LitStr) {
            input.parse().map(Value::Str)
        } else if input.peek(LitInt) {
            input.parse().map(Value::Int)
        } else if input.peek(LitFloat) {
            input.parse().map(Value::Float)
        } else if input.peek(LitBool) {
            input.parse().map(Value::Bool)
        } else if input.peek(token::Bracket) {
            input.parse().map(Value::List)
        } else if input.peek(token::Brace) {
            let content;
            let brace = syn::braced!(content in input);
            let fields = super::parse_entries(
                &content,
                |input| super::Field::parse_in(input, crate::symbol::Block::Filter),
                |_| false,
            );
            Ok(Value::Block(Settings { brace, fields }))
        } else if input.peek(Ident) && input.peek2(token::Paren) {
            input.parse().map(Value::Call)
        } else if input.peek(Ident) {
            input.parse().map(Value::Name)
        } else if input.peek(Lit) {
            let lit: Lit = input.parse()?;
            Err(syn::Error::new(
                lit.span(),
                "unsupported literal: use a string, a number, a duration or `true`/`false`",
            ))
        } else {
            Err(input.error(
                "expected a value: a string, a number, a duration such as 5s, a name, a call such as env(..), or a list [..]",
            ))
        }
    }
}

impl Parse for Call {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(Call {
            name: input.parse()?,
            paren: parenthesized!(content in input),
            args: content.parse_terminated(Value::parse, Token![,])?,
        })
    }
}

impl Parse for List {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        Ok(List {
            bracket: bracketed!(content in input),
            items: content.parse_terminated(Value::parse, Token![,])?,
        })
    }
}

impl ToTokens for Value {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Value::Str(lit) => lit.to_tokens(tokens),
            Value::Int(lit) => lit.to_tokens(tokens),
            Value::Float(lit) => lit.to_tokens(tokens),
            Value::Bool(lit) => lit.to_tokens(tokens),
            Value::Name(name) => name.to_tokens(tokens),
            Value::Call(call) => call.to_tokens(tokens),
            Value::List(list) => list.to_tokens(tokens),
            Value::Filters(list) => list.to_tokens(tokens),
            Value::Block(settings) => settings.brace.surround(tokens, |_| {}),
        }
    }
}

impl ToTokens for Call {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.append(self.name.clone());
        self.paren
            .surround(tokens, |tokens| self.args.to_tokens(tokens));
    }
}

impl ToTokens for List {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.bracket
            .surround(tokens, |tokens| self.items.to_tokens(tokens));
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> Value {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn parses_each_form() {
        assert!(matches!(parse(quote!("x")), Value::Str(_)));
        assert!(matches!(parse(quote!(0o660)), Value::Int(_)));
        assert!(matches!(parse(quote!(1.5s)), Value::Float(_)));
        assert!(matches!(parse(quote!(true)), Value::Bool(_)));
        assert!(matches!(parse(quote!(none)), Value::Name(_)));
        let Value::Call(call) = parse(quote!(pipe(env("A", "/b")))) else {
            panic!("not a call")
        };
        assert_eq!(call.name, "pipe");
        assert!(matches!(call.args.first(), Some(Value::Call(_))));
        let Value::List(list) = parse(quote!(["a", "b",])) else {
            panic!("not a list")
        };
        assert_eq!(list.items.len(), 2);
    }

    #[test]
    fn describes_what_was_written() {
        assert_eq!(parse(quote!("5s")).describe(), "a string literal");
        assert_eq!(parse(quote!(5s)).describe(), "the duration `5s`");
        assert_eq!(parse(quote!(1.5s)).describe(), "the duration `1.5s`");
        assert_eq!(parse(quote!(64)).describe(), "the number `64`");
        assert_eq!(parse(quote!(api)).describe(), "the name `api`");
        assert_eq!(parse(quote!(env("A", "b"))).describe(), "a call `env(..)`");
    }

    #[test]
    fn rejects_non_values() {
        assert!(syn::parse2::<Value>(quote!(-5)).is_err());
        assert!(syn::parse2::<Value>(quote!(b"x")).is_err());
        assert!(syn::parse2::<Value>(quote!(;)).is_err());
        // `{ .. }` is a settings block (`tls: { .. }`), checked by the model.
        assert!(matches!(
            syn::parse2::<Value>(quote!({ a: 1 })),
            Ok(Value::Block(_))
        ));
    }
}
