use syn::Ident;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Token, braced, parenthesized, token};

use super::{Call, Field, Parsed, Value, kw, parse_entries};
use crate::symbol::{self, Block};

/// `route MATCHER [if COND && COND ..] => ACTION`.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct Route {
    pub kw: kw::route,
    /// `prefix("/api/")`, `exact(..)` or `regex(..)`, interpreted by the model.
    pub matcher: Call,
    pub if_token: Option<Token![if]>,
    /// `method(GET, HEAD)`, `header("x")`, `header("x", "v")`.
    pub conditions: Punctuated<Call, Token![&&]>,
    pub arrow: Token![=>],
    pub action: Action,
}

/// `cluster(api) { timeout: 5s }`, `direct_response(200, "ok")` or `redirect { .. }`:
/// a name, optional arguments, optional block, checked against the name by the model.
pub struct Action {
    pub name: Ident,
    pub args: Option<(token::Paren, Punctuated<Value, Token![,]>)>,
    /// `weighted_clusters(a: 90, b: 10)`: `cluster: weight` entries instead of `args`.
    pub weights: Option<(token::Paren, Vec<Parsed<Field>>)>,
    pub body: Option<RouteBody>,
}

/// The `{ key: value, .. }` after an action.
#[allow(
    dead_code,
    reason = "the tree keeps every token so any node can be pointed at"
)]
pub struct RouteBody {
    pub brace: token::Brace,
    pub fields: Vec<Parsed<Field>>,
}

impl Route {
    pub fn ends_with_block(&self) -> bool {
        self.action.body.is_some()
    }
}

impl Action {
    /// Whether this action names (or, misspelt, may have meant to name) a cluster.
    pub fn may_forward(&self) -> bool {
        self.name == symbol::CLUSTER
            || self.name == symbol::WEIGHTED_CLUSTERS
            || !symbol::ACTIONS.iter().any(|action| self.name == *action)
    }
}

impl Parse for Route {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let kw = input.parse()?;
        if !(input.peek(Ident) && input.peek2(token::Paren)) {
            return Err(input
                .error(r#"expected a path matcher: prefix("/.."), exact("/..") or regex("..")"#));
        }
        let matcher = input.parse()?;
        let if_token: Option<Token![if]> = input.parse()?;
        let mut conditions = Punctuated::new();
        if if_token.is_some() {
            loop {
                if !(input.peek(Ident) && input.peek2(token::Paren)) {
                    return Err(input.error(r#"expected a condition: method(GET, ..), header("name") or header("name", "value")"#));
                }
                conditions.push_value(input.parse()?);
                if input.peek(Token![||]) {
                    return Err(input.error(
                        "conditions can only be joined with `&&`; write one route per alternative",
                    ));
                }
                if !input.peek(Token![&&]) {
                    break;
                }
                conditions.push_punct(input.parse()?);
            }
        }
        if !input.peek(Token![=>]) {
            return Err(input.error("expected `=>` followed by the route's action"));
        }
        Ok(Route {
            kw,
            matcher,
            if_token,
            conditions,
            arrow: input.parse()?,
            action: input.parse()?,
        })
    }
}

impl Parse for Action {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if !input.peek(Ident) {
            return Err(input.error(r#"expected a route action: cluster(NAME), direct_response(STATUS, "body") or redirect { .. }"#));
        }
        let name: Ident = input.parse()?;
        let mut weights = None;
        let args = if input.peek(token::Paren) && name == symbol::WEIGHTED_CLUSTERS {
            let content;
            let paren = parenthesized!(content in input);
            let entries = parse_entries(
                &content,
                |input| Field::parse_in(input, Block::Filter),
                |_| false,
            );
            weights = Some((paren, entries));
            None
        } else if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            Some((paren, content.parse_terminated(Value::parse, Token![,])?))
        } else {
            None
        };
        let body = if input.peek(token::Brace) {
            let block = if name == symbol::REDIRECT {
                Block::Redirect
            } else {
                Block::RoutePolicy
            };
            let content;
            let brace = braced!(content in input);
            Some(RouteBody {
                brace,
                fields: parse_entries(&content, |input| Field::parse_in(input, block), |_| false),
            })
        } else {
            None
        };
        Ok(Action {
            name,
            args,
            weights,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn parses_conditions_and_policy_block() {
        let route: Route = syn::parse2(quote! {
            route prefix("/admin") if method(GET, HEAD) && header("x-admin") => cluster(api) { timeout: none }
        })
        .unwrap();
        assert_eq!(route.matcher.name, "prefix");
        let conditions: Vec<String> = route
            .conditions
            .iter()
            .map(|call| call.name.to_string())
            .collect();
        assert_eq!(conditions, ["method", "header"]);
        assert_eq!(route.action.name, "cluster");
        assert!(route.ends_with_block());
    }

    #[test]
    fn explains_common_mistakes() {
        let error = |tokens| {
            syn::parse2::<Route>(tokens)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(error(quote!(route "/" => cluster(a))).starts_with("expected a path matcher"));
        assert!(
            error(quote!(route prefix("/") if method(GET) || header("x") => cluster(a)))
                .contains("only be joined with `&&`")
        );
        assert!(error(quote!(route prefix("/") -> cluster(a))).starts_with("expected `=>`"));
        assert!(error(quote!(route prefix("/") => "x")).starts_with("expected a route action"));
    }
}
