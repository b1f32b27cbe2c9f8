//! Filter chains of one listener: each declaration built once (an `Arc` shared by every
//! chain it is in, so a listener-wide filter is one instance), each distinct effective
//! chain a field of nested tuples, and the chain index of every route.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::local;
use super::paths::{ARC, HTTP_FILTER};
use crate::model::filter::{ArgValue, effective};
use crate::model::{Filter, FilterKind, Level, Listener};

/// The chain index of a chain with no filters: no field, the `_` arm of the pipeline.
const EMPTY: u16 = u16::MAX;

pub struct Chains<'a> {
    /// Every declaration used by some chain, in source order.
    declarations: Vec<&'a Filter>,
    /// Distinct non-empty chains, as indices into `declarations`.
    chains: Vec<Vec<usize>>,
    listener: u16,
    vhosts: Vec<u16>,
    routes: Vec<Vec<u16>>,
}

impl<'a> Chains<'a> {
    pub fn of(listener: &'a Listener) -> Self {
        let mut table = Chains {
            declarations: Vec::new(),
            chains: Vec::new(),
            listener: EMPTY,
            vhosts: Vec::new(),
            routes: Vec::new(),
        };
        table.listener = table.intern(&[&listener.filters]);
        for vhost in &listener.virtual_hosts {
            let vhost_chain = table.intern(&[&listener.filters, &vhost.filters]);
            table.vhosts.push(vhost_chain);
            let routes = vhost
                .routes
                .iter()
                .map(|route| table.intern(&[&listener.filters, &vhost.filters, &route.filters]))
                .collect();
            table.routes.push(routes);
        }
        table
    }

    fn intern(&mut self, levels: &[&'a Level]) -> u16 {
        let chain: Vec<usize> = effective(levels)
            .into_iter()
            .map(|filter| {
                match self
                    .declarations
                    .iter()
                    .position(|known| std::ptr::eq(*known, filter))
                {
                    Some(index) => index,
                    None => {
                        self.declarations.push(filter);
                        self.declarations.len() - 1
                    }
                }
            })
            .collect();
        if chain.is_empty() {
            return EMPTY;
        }
        let index = match self.chains.iter().position(|known| *known == chain) {
            Some(index) => index,
            None => {
                self.chains.push(chain);
                self.chains.len() - 1
            }
        };
        // The checks cap what a listener can declare far below this.
        u16::try_from(index).unwrap_or(EMPTY)
    }

    pub fn listener_chain(&self) -> Literal {
        Literal::u16_unsuffixed(self.listener)
    }

    pub fn vhost_chain(&self, vhost: usize) -> Literal {
        Literal::u16_unsuffixed(self.vhosts.get(vhost).copied().unwrap_or(EMPTY))
    }

    pub fn route_chain(&self, vhost: usize, route: usize) -> Literal {
        let chain = self.routes.get(vhost).and_then(|routes| routes.get(route));
        Literal::u16_unsuffixed(chain.copied().unwrap_or(EMPTY))
    }

    /// `(index, field, span)` per non-empty chain, for the pipeline's `match`. The span
    /// is the chain's first user filter's, so a type that is not a filter is reported
    /// there rather than at the whole macro.
    pub fn arms(&self) -> impl Iterator<Item = (Literal, Ident, Span)> + '_ {
        self.chains.iter().enumerate().map(|(index, chain)| {
            let span = chain
                .iter()
                .find_map(|declaration| match &self.declarations[*declaration].kind {
                    FilterKind::User { expr, .. } => Some(expr.span()),
                    FilterKind::Builtin { .. } => None,
                })
                .unwrap_or_else(Span::call_site);
            (Literal::usize_unsuffixed(index), chain_field(index), span)
        })
    }

    /// The router's chain fields: `__chain_0: (Arc<A>, (Arc<B>, ())),`.
    pub fn fields(&self) -> impl Iterator<Item = TokenStream> + '_ {
        self.chains.iter().enumerate().map(|(index, chain)| {
            let field = chain_field(index);
            let ty = chain.iter().rev().fold(quote!(()), |rest, declaration| {
                let ty = filter_type(self.declarations[*declaration]);
                quote!((#ARC<#ty>, #rest))
            });
            quote!(#field: #ty,)
        })
    }

    /// The chain fields' initialisers, sharing the declarations' `Arc`s.
    pub fn inits(&self) -> impl Iterator<Item = TokenStream> + '_ {
        self.chains.iter().enumerate().map(|(index, chain)| {
            let field = chain_field(index);
            let value = chain.iter().rev().fold(quote!(()), |rest, declaration| {
                let local = declaration_local(*declaration);
                quote!((#ARC::clone(&#local), #rest))
            });
            quote!(#field: #value,)
        })
    }

    /// `let __filter_N = Arc::new(..);` for every declaration, in source order.
    pub fn declarations(&self, inputs: &Ident) -> TokenStream {
        let lets = self.declarations.iter().enumerate().map(|(index, filter)| {
            let local = declaration_local(index);
            let value = construct(filter, inputs);
            quote!(let #local = #ARC::new(#value);)
        });
        quote!(#(#lets)*)
    }
}

fn chain_field(index: usize) -> Ident {
    format_ident!("__chain_{}", index, span = Span::call_site())
}

fn declaration_local(index: usize) -> Ident {
    local(&format!("__filter_{index}"))
}

fn filter_type(filter: &Filter) -> TokenStream {
    match &filter.kind {
        FilterKind::User { ty, .. } => quote!(#ty),
        FilterKind::Builtin { spec, .. } => {
            let ty = Ident::new(spec.ty, Span::call_site());
            quote!(::proxy_core::filter::builtin::#ty)
        }
    }
}

fn construct(filter: &Filter, inputs: &Ident) -> TokenStream {
    match &filter.kind {
        // Checked at the user's expression, so "not an HTTP filter" points there.
        FilterKind::User { expr, .. } => quote_spanned!(expr.span()=> #HTTP_FILTER(#expr)),
        FilterKind::Builtin { spec, args } => {
            let ty = filter_type(filter);
            let constructor = Ident::new(spec.constructor, Span::call_site());
            let positional = args
                .iter()
                .filter(|(arg, _)| {
                    spec.positional
                        .iter()
                        .any(|known| std::ptr::eq(known, *arg))
                })
                .flat_map(|(_, value)| value.tokens(inputs));
            let mut value = if spec.via_inputs {
                quote!(#inputs.#constructor(#(#positional),*))
            } else {
                quote!(#ty::#constructor(#(#positional),*))
            };
            for (arg, argument) in args {
                if spec
                    .positional
                    .iter()
                    .any(|known| std::ptr::eq(known, *arg))
                {
                    continue;
                }
                let method = Ident::new(arg.name, Span::call_site());
                let calls: Vec<&ArgValue> = match argument {
                    ArgValue::Each(items) => items.iter().collect(),
                    single => vec![single],
                };
                for call in calls {
                    let tokens = call.tokens(inputs);
                    value = quote!(#value.#method(#(#tokens),*));
                }
            }
            value
        }
    }
}
