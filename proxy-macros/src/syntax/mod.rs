//! The DSL's concrete syntax: one `impl Parse` per node, keeping every token for spans.
//!
//! Parsing recovers at entry boundaries. A braced body is a list of entries separated by
//! commas (optional after an entry that ends in a `{ .. }` block, as match arms); an
//! entry that fails to parse becomes an `Err` in its list and the parser resumes at the
//! next entry, so one invocation reports every syntax error. The parser knows shapes,
//! not meanings: `key: value` entries and calls such as `prefix("/")` are generic here
//! and interpreted by [`crate::model`], which reports unknown keys and wrong types.

pub mod kw;

mod cluster;
mod filter;
mod listener;
mod route;
mod value;
mod virtual_host;

pub use cluster::Cluster;
pub use filter::{FilterEntry, FilterExpr, FilterList};
pub use listener::{Http, HttpEntry, Listener, ListenerEntry, Tcp};
pub use route::{Action, Route};
pub use value::{Call, List, Settings, Value};
pub use virtual_host::{VhostEntry, VirtualHost};

use syn::Ident;
use syn::ext::IdentExt;
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream};
use syn::{Token, token};

use crate::diag;
use crate::symbol::{self, Block};

/// A node that parsed, or the error that stopped it. Errors stay in the tree so the
/// model builder can report them together with its own.
pub type Parsed<T> = Result<T, syn::Error>;

/// The whole macro input: top-level items in any order, commas between them optional.
pub struct Proxy {
    pub items: Vec<Parsed<Item>>,
}

pub enum Item {
    Listener(Listener),
    Cluster(Cluster),
}

impl Parse for Proxy {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(Proxy {
            items: parse_entries(input, Item::parse, |_| true),
        })
    }
}

impl Parse for Item {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::listener) {
            input.parse().map(Item::Listener)
        } else if input.peek(kw::cluster) {
            input.parse().map(Item::Cluster)
        } else if input.peek(Ident::peek_any) {
            let ident = input.call(Ident::parse_any)?;
            let help = match diag::closest(&ident.to_string(), diag::symbols(symbol::ITEMS)) {
                Some(item) => format!("did you mean `{item}`?"),
                None => "a proxy is made of `listener NAME { .. }` and `cluster NAME { .. }` items"
                    .to_owned(),
            };
            Err(syn::Error::new(
                ident.span(),
                diag::with_help(format!("unknown item `{ident}`"), help),
            ))
        } else {
            Err(input.error("expected `listener NAME { .. }` or `cluster NAME { .. }`"))
        }
    }
}

/// `key: value`, the generic entry of every braced body.
///
/// The value is parsed separately and may be an `Err` while the key is kept, so a
/// malformed value does not also read as a missing key.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Field {
    pub key: Ident,
    pub colon: Token![:],
    pub value: Parsed<Value>,
}

impl Field {
    /// A field of `block`; an identifier that is not followed by `:` is explained as
    /// an unknown entry (with a suggestion) or a missing colon.
    pub fn parse_in(input: ParseStream<'_>, block: Block) -> syn::Result<Self> {
        if !(input.peek(Ident::peek_any) && input.peek2(Token![:])) {
            return Err(unknown_entry(input, block));
        }
        let key = input.call(Ident::parse_any)?;
        let colon: Token![:] = input.parse()?;
        let value = if at_entry_end(input) {
            Err(syn::Error::new(
                colon.span,
                format!("expected a value after `{key}:`"),
            ))
        } else if key == symbol::FILTERS {
            // Filters are Rust expressions (a user's own types), not DSL values.
            parse_to_entry_end::<FilterList>(input).map(Value::Filters)
        } else {
            parse_to_entry_end(input)
        };
        Ok(Field { key, colon, value })
    }
}

/// The error for something at the start of an entry that is neither a known block
/// keyword nor `key:`.
fn unknown_entry(input: ParseStream<'_>, block: Block) -> syn::Error {
    let Ok(ident) = input.fork().call(Ident::parse_any) else {
        let expected = diag::one_of(block.entry_names().map(|name| name.as_str()));
        return input.error(format!(
            "expected `key: value`; {} accepts {expected}",
            block.describe()
        ));
    };
    let name = ident.to_string();
    if block.keys().iter().any(|key| ident == *key) {
        return syn::Error::new(ident.span(), format!("expected `:` after `{name}`"));
    }
    if block.nested().iter().any(|nested| ident == *nested) {
        let message = format!("malformed `{name}` block");
        return syn::Error::new(
            ident.span(),
            diag::with_help(message, format!("write `{name} {{ .. }}`")),
        );
    }
    let message = format!("unknown entry `{name}` in {}", block.describe());
    let help = diag::suggestion(&name, block.entry_names().map(|name| name.as_str()));
    syn::Error::new(ident.span(), diag::with_help(message, help))
}

/// The name after an item keyword (`listener NAME`), with a hint for the usual slips.
pub(crate) fn parse_name(input: ParseStream<'_>, keyword: &str) -> syn::Result<Ident> {
    if input.peek(Ident) {
        return input.parse();
    }
    let usage = format!("`{keyword} NAME {{ .. }}`");
    if input.peek(Ident::peek_any) {
        let reserved = input.call(Ident::parse_any)?;
        let message = format!("`{reserved}` is a Rust keyword and cannot name a {keyword}");
        let help = format!("write r#{reserved} or choose another name");
        return Err(syn::Error::new(
            reserved.span(),
            diag::with_help(message, help),
        ));
    }
    Err(input.error(format!("expected a name: {usage}")))
}

/// Parses a list of entries, recovering from a bad one by skipping to the next entry.
///
/// `ends_with_block` says whether an entry ended with a `{ .. }` group, after which the
/// separating comma is optional.
pub(crate) fn parse_entries<T>(
    input: ParseStream<'_>,
    parse: impl Fn(ParseStream<'_>) -> syn::Result<T>,
    ends_with_block: impl Fn(&T) -> bool,
) -> Vec<Parsed<T>> {
    let mut entries = Vec::new();
    while !input.is_empty() {
        if input.peek(Token![,]) {
            entries.push(Err(input.error("unexpected `,`: expected an entry")));
            skip_token(input);
            continue;
        }
        let fork = input.fork();
        match parse(&fork) {
            Ok(entry) => {
                let separated = at_entry_end(&fork) || ends_with_block(&entry);
                input.advance_to(&fork);
                entries.push(Ok(entry));
                if input.peek(Token![,]) {
                    skip_token(input);
                } else if !separated {
                    // Keep going from here: the next entry is most likely fine and
                    // only the comma is missing.
                    entries.push(Err(input.error("expected `,` between entries")));
                }
            }
            Err(error) => {
                entries.push(Err(error));
                skip_entry(input);
            }
        }
    }
    entries
}

/// Parses `T` from the tokens before the next top-level comma (left in place); trailing
/// tokens are an error, and on any error the rest of the entry is skipped.
pub(crate) fn parse_to_entry_end<T: Parse>(input: ParseStream<'_>) -> Parsed<T> {
    let fork = input.fork();
    let parsed = match fork.parse::<T>() {
        Ok(value) if at_entry_end(&fork) => {
            input.advance_to(&fork);
            return Ok(value);
        }
        Ok(_) => Err(fork.error("expected `,` after the value")),
        Err(error) => Err(error),
    };
    while !at_entry_end(input) {
        skip_token(input);
    }
    parsed
}

fn at_entry_end(input: ParseStream<'_>) -> bool {
    input.is_empty() || input.peek(Token![,])
}

/// Skips the rest of a broken entry: up to and including the next top-level comma, or
/// through the first `{ .. }` group (and a comma after it), since a block ends an entry.
fn skip_entry(input: ParseStream<'_>) {
    while !input.is_empty() {
        if input.peek(Token![,]) {
            skip_token(input);
            return;
        }
        let is_block = input.peek(token::Brace);
        skip_token(input);
        if is_block {
            if input.peek(Token![,]) {
                skip_token(input);
            }
            return;
        }
    }
}

fn skip_token(input: ParseStream<'_>) {
    let _ = input.step(|cursor| match cursor.token_tree() {
        Some((_, rest)) => Ok(((), rest)),
        None => Err(cursor.error("unexpected end of input")),
    });
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn errors(proxy: &Proxy) -> Vec<String> {
        proxy
            .items
            .iter()
            .filter_map(|item| item.as_ref().err())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn items_in_any_order_with_optional_commas() {
        let proxy: Proxy = syn::parse2(quote! {
            cluster a { endpoints: ["127.0.0.1:1"] },
            listener l { bind: "127.0.0.1:2" }
            cluster b { endpoints: ["127.0.0.1:3"] }
        })
        .unwrap();
        assert!(errors(&proxy).is_empty());
        let kinds: Vec<&str> = proxy
            .items
            .iter()
            .map(|item| match item {
                Ok(Item::Listener(_)) => "listener",
                Ok(Item::Cluster(_)) => "cluster",
                Err(_) => "error",
            })
            .collect();
        assert_eq!(kinds, ["cluster", "listener", "cluster"]);
    }

    #[test]
    fn unknown_item_is_reported_and_skipped() {
        let proxy: Proxy = syn::parse2(quote! {
            listenr l { bind: "127.0.0.1:2" }
            cluster a { endpoints: ["127.0.0.1:1"] }
            upstream b { }
        })
        .unwrap();
        let errors = errors(&proxy);
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0],
            "unknown item `listenr`\nhelp: did you mean `listener`?"
        );
        assert!(errors[1].contains("unknown item `upstream`"));
        assert_eq!(proxy.items.iter().filter(|item| item.is_ok()).count(), 1);
    }

    #[test]
    fn bad_field_values_keep_their_keys_and_later_fields_parse() {
        let proxy: Proxy = syn::parse2(quote! {
            cluster a { endpoints: [1 2], connect_timeout: , lb round_robin, idle_timeout: 5s }
        })
        .unwrap();
        let Ok(Item::Cluster(cluster)) = &proxy.items[0] else {
            panic!("cluster did not parse")
        };
        let summary: Vec<(String, bool)> = cluster
            .fields
            .iter()
            .map(|field| match field {
                Ok(field) => (field.key.to_string(), field.value.is_ok()),
                Err(error) => (error.to_string(), false),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("endpoints".to_owned(), false),
                ("connect_timeout".to_owned(), false),
                ("expected `:` after `lb`".to_owned(), false),
                ("idle_timeout".to_owned(), true),
            ]
        );
    }
}
