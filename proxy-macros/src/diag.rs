//! Error reporting: an accumulator so one invocation reports every problem at once, and
//! the shared wording of hints and suggestions.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::Span;
use quote::ToTokens;

use crate::symbol::Symbol;

/// Collects the errors of one expansion (as serde_derive's `Ctxt`).
///
/// Every stage keeps going after an error so the user sees all of them in one build;
/// only [`Ctxt::check`] turns them into a result. Dropping a `Ctxt` without checking it
/// panics: that would silently lose errors and expand an invalid topology.
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error spanning all of `tokens` (first to last token).
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    pub fn error_at<M: Display>(&self, span: Span, message: M) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds an already built error, possibly several combined ones.
    /// Keeps `value` when `problem` is `None`; otherwise reports the problem (a message
    /// and its hint) at `tokens` and yields `None`. The tail of every literal validator.
    pub fn accept<T>(
        &self,
        tokens: impl ToTokens,
        problem: Option<(String, String)>,
        value: T,
    ) -> Option<T> {
        match problem {
            Some((message, help)) => {
                self.error_spanned_by(tokens, with_help(message, help));
                None
            }
            None => Some(value),
        }
    }

    pub fn push(&self, error: syn::Error) {
        match self.errors.borrow_mut().as_mut() {
            Some(errors) => errors.push(error),
            None => unreachable!("Ctxt used after check"),
        }
    }

    /// Consumes the context: `Err` holds every collected error, combined in the order
    /// they were found.
    pub fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("proxy-macros: a Ctxt was dropped without checking it for errors");
        }
    }
}

/// `message` followed by a `help:` line; rustc indents the second line under the first.
pub fn with_help(message: impl Display, help: impl Display) -> String {
    format!("{message}\nhelp: {help}")
}

/// "`name` first defined here", combined into `error` so a duplicate points at both
/// definitions (as Rocket's route-name errors do).
pub fn duplicate(
    second: impl ToTokens,
    first: impl ToTokens,
    message: impl Display,
    name: impl Display,
) -> syn::Error {
    let mut error = syn::Error::new_spanned(second, message);
    error.combine(syn::Error::new_spanned(
        first,
        format!("`{name}` first defined here"),
    ));
    error
}

/// The closest candidate to `unknown` if it is a plausible typo of it, judged as rustc
/// does for its own suggestions: at most a third of the length in edits.
pub fn closest<'a, I>(unknown: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let budget = (unknown.chars().count().max(3) / 3).max(1);
    candidates
        .into_iter()
        .filter(|candidate| *candidate != unknown)
        .map(|candidate| (edit_distance(unknown, candidate), candidate))
        // Case-only differences (`Get` for `GET`) are always worth suggesting.
        .filter(|(distance, candidate)| {
            *distance <= budget || candidate.eq_ignore_ascii_case(unknown)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `help: did you mean ..?` if some candidate is close, otherwise the list of accepted
/// names so the user never has to guess.
pub fn suggestion<'a, I>(unknown: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let candidates: Vec<&str> = candidates.into_iter().collect();
    match closest(unknown, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None if candidates.is_empty() => "nothing is accepted here".to_owned(),
        None => format!("expected {}", one_of(candidates)),
    }
}

pub fn symbols(symbols: &[Symbol]) -> impl Iterator<Item = &'static str> + '_ {
    symbols.iter().map(|symbol| symbol.as_str())
}

/// "`a`, `b` or `c`".
pub fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|name| format!("`{name}`")).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, init)) => format!("{} or {last}", init.join(", ")),
    }
}

/// Edit distance counting insertions, deletions, substitutions and swaps of adjacent
/// characters (optimal string alignment), so `sprae` is one edit from `spare`. Inputs
/// are short identifiers: the full table is cheap.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut table = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in table[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = table[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitution
                .min(table[i - 1][j] + 1)
                .min(table[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[i - 2][j - 2] + 1);
            }
            table[i][j] = best;
        }
    }
    table[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("apii", "api"), 1);
        assert_eq!(edit_distance("conect_timeout", "connect_timeout"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("sprae", "spare"), 1);
    }

    #[test]
    fn suggests_only_plausible_typos() {
        assert_eq!(closest("apii", ["api", "hugo"]), Some("api"));
        assert_eq!(
            closest("prefx", ["prefix", "exact", "regex"]),
            Some("prefix")
        );
        assert_eq!(closest("zzz", ["api", "hugo"]), None);
        assert_eq!(closest("get", ["GET", "PUT"]), Some("GET"));
        assert_eq!(
            suggestion("zzz", ["a", "b", "c"]),
            "expected `a`, `b` or `c`"
        );
    }

    #[test]
    fn check_combines_in_order() {
        let cx = Ctxt::new();
        cx.error_at(Span::call_site(), "first");
        cx.error_at(Span::call_site(), "second");
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    #[should_panic(expected = "without checking")]
    fn unchecked_context_panics() {
        let _cx = Ctxt::new();
    }
}
