//! The `key: value` entries of one block, checked against the keys the block accepts.

use proc_macro2::Ident;

use crate::diag::{self, Ctxt};
use crate::symbol::{Block, Symbol};
use crate::syntax::{Field, Value};

/// The keys of one block seen so far, each known key at its first occurrence.
///
/// Blocks interpret each entry as soon as [`Fields::add`] accepts it, so errors about
/// keys and about values come out in source order.
pub(crate) struct Fields<'a> {
    block: Block,
    keys: Vec<&'a Ident>,
}

impl<'a> Fields<'a> {
    pub fn new(block: Block) -> Self {
        Fields {
            block,
            keys: Vec::new(),
        }
    }

    /// Takes the next entry of the block: reports it if unreadable, unknown or
    /// repeated, otherwise returns it for the caller to interpret.
    pub fn entry(
        &mut self,
        cx: &Ctxt,
        entry: &'a syn::Result<Field>,
    ) -> Option<(&'a Ident, &'a Value)> {
        match entry {
            Ok(field) => Some((&field.key, self.add(cx, field)?)),
            Err(error) => {
                cx.push(error.clone());
                None
            }
        }
    }

    /// As [`Fields::entry`], for a field that parsed.
    pub fn add(&mut self, cx: &Ctxt, field: &'a Field) -> Option<&'a Value> {
        let key = &field.key;
        if !self.block.keys().iter().any(|known| key == *known) {
            cx.error_at(key.span(), unknown_key(self.block, key));
            return None;
        }
        self.add_unchecked(cx, field)
    }

    /// As [`Fields::add`] for a block whose keys the caller checks itself (a built-in
    /// filter's schema): only repeats are reported here.
    pub fn add_unchecked(&mut self, cx: &Ctxt, field: &'a Field) -> Option<&'a Value> {
        let key = &field.key;
        if let Some(first) = self.keys.iter().find(|first| **first == key) {
            cx.push(diag::duplicate(
                key,
                first,
                format!("duplicate key `{key}`"),
                key,
            ));
            return None;
        }
        self.keys.push(key);
        match &field.value {
            Ok(value) => Some(value),
            Err(error) => {
                cx.push(error.clone());
                None
            }
        }
    }

    /// The key token as written, for errors about the entry as a whole.
    pub fn key(&self, key: Symbol) -> Option<&'a Ident> {
        self.keys.iter().find(|name| **name == key).copied()
    }
}

/// Reports `key` missing from a block. Called before the block's entries are
/// interpreted, so the error (at `owner`, the block's name) comes in source order.
/// `fields` are the block's `key: value` entries, `None` for one that did not parse: an
/// unreadable or unknown entry may be the key misspelt, so then nothing is reported.
pub(crate) fn require<'a>(
    cx: &Ctxt,
    block: Block,
    owner: &Ident,
    key: Symbol,
    example: &str,
    fields: impl IntoIterator<Item = Option<&'a Field>>,
) {
    let mut uncertain = false;
    for field in fields {
        match field {
            Some(field) if field.key == key => return,
            Some(field) if block.keys().iter().any(|known| field.key == *known) => {}
            _ => uncertain = true,
        }
    }
    if !uncertain {
        let noun = match block {
            Block::Listener => "listener",
            Block::Cluster => "cluster",
            Block::VirtualHost => "virtual host",
            Block::Http => "http block",
            Block::Tcp => "tcp block",
            Block::RoutePolicy => "route",
            Block::Redirect => "redirect",
            Block::Filter => "filter",
            Block::ListenerTls | Block::ClusterTls => "tls block",
            Block::Endpoint => "endpoint",
            Block::HealthCheck => "health check",
            Block::OutlierDetection => "outlier detection",
            Block::CircuitBreakers => "circuit breakers",
            Block::RetryBudget => "retry budget",
            Block::SessionPersistence => "session persistence",
            Block::RetryPolicy => "retry policy",
            Block::Mirror => "mirror",
        };
        let message = format!("{noun} `{owner}` is missing `{key}`");
        cx.error_spanned_by(
            owner,
            diag::with_help(message, format!("add `{key}: {example}`")),
        );
    }
}

fn unknown_key(block: Block, key: &Ident) -> String {
    let name = key.to_string();
    if block.nested().iter().any(|nested| key == *nested) {
        return format!(
            "`{name}` is a block, not a key: write `{name} {{ .. }}` without the colon"
        );
    }
    let message = format!("unknown key `{name}` in {}", block.describe());
    diag::with_help(
        message,
        diag::suggestion(&name, block.keys().iter().map(|key| key.as_str())),
    )
}
