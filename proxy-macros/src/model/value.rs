//! Interpreting generic [`Value`]s as the type a key expects. Each helper reports a
//! mismatch as "expected X, found Y" at the value and returns `None`.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use quote::ToTokens;
use syn::LitStr;

use crate::diag::{self, Ctxt};
use crate::symbol::{self, Symbol};
use crate::syntax::{Call, List, Value};

pub(crate) const DURATION_HINT: &str = "write a duration such as 500ms, 5s, 1m";

pub(crate) fn mismatch(cx: &Ctxt, value: &Value, expected: &str) {
    cx.error_spanned_by(
        value,
        format!("expected {expected}, found {}", value.describe()),
    );
}

fn mismatch_with_help(cx: &Ctxt, value: &Value, expected: &str, help: impl Display) {
    let message = format!("expected {expected}, found {}", value.describe());
    cx.error_spanned_by(value, diag::with_help(message, help));
}

pub(crate) fn string<'a>(cx: &Ctxt, value: &'a Value) -> Option<&'a LitStr> {
    match value {
        Value::Str(lit) => Some(lit),
        _ => {
            mismatch(cx, value, "a string literal");
            None
        }
    }
}

pub(crate) fn boolean(cx: &Ctxt, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(lit) => Some(lit.value),
        _ => {
            mismatch(cx, value, "`true` or `false`");
            None
        }
    }
}

/// An unsuffixed integer literal that fits `N`.
pub(crate) fn integer<N>(cx: &Ctxt, value: &Value) -> Option<N>
where
    N: FromStr + Bounded,
{
    let Value::Int(lit) = value else {
        mismatch(cx, value, "an integer");
        return None;
    };
    if !lit.suffix().is_empty() {
        mismatch(cx, value, "an integer");
        return None;
    }
    match lit.base10_digits().parse::<N>() {
        Ok(number) => Some(number),
        Err(_) => {
            cx.error_spanned_by(
                lit,
                format!("`{lit}` is too large: the maximum is {}", N::MAX_TEXT),
            );
            None
        }
    }
}

/// Integer types the DSL reads, with their maximum for messages.
pub(crate) trait Bounded {
    const MAX_TEXT: &'static str;
}

impl Bounded for u16 {
    const MAX_TEXT: &'static str = "65535";
}

impl Bounded for u32 {
    const MAX_TEXT: &'static str = "4294967295";
}

impl Bounded for u64 {
    const MAX_TEXT: &'static str = "18446744073709551615";
}

/// A plain number, integer or decimal (a percentage).
pub(crate) fn number(cx: &Ctxt, value: &Value) -> Option<f64> {
    let parsed = match value {
        Value::Int(lit) if lit.suffix().is_empty() => lit.base10_parse::<f64>().ok(),
        Value::Float(lit) if lit.suffix().is_empty() => lit.base10_parse::<f64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        mismatch(cx, value, "a number");
    }
    parsed
}

pub(crate) fn list<'a>(cx: &Ctxt, value: &'a Value) -> Option<&'a List> {
    match value {
        Value::List(list) => Some(list),
        _ => {
            let help = format!("write [{}] for a list of one", value.to_token_stream());
            mismatch_with_help(cx, value, "a list `[..]`", help);
            None
        }
    }
}

/// One of `choices`, written as a bare name.
pub(crate) fn choice(cx: &Ctxt, value: &Value, choices: &[Symbol]) -> Option<Symbol> {
    let expected = diag::one_of(diag::symbols(choices));
    let Value::Name(name) = value else {
        match value {
            Value::Str(lit) if choices.iter().any(|choice| lit.value() == choice.as_str()) => {
                mismatch_with_help(
                    cx,
                    value,
                    &expected,
                    format!("write {} without quotes", lit.value()),
                );
            }
            _ => mismatch(cx, value, &expected),
        }
        return None;
    };
    let found = choices.iter().copied().find(|choice| name == *choice);
    if found.is_none() {
        let message = format!("unsupported value `{name}`, expected {expected}");
        let help = diag::suggestion(&name.to_string(), diag::symbols(choices));
        cx.error_spanned_by(name, diag::with_help(message, help));
    }
    found
}

/// A positive duration literal (`500ms`, `5s`, `1.5m`, `2h`).
pub(crate) fn duration(cx: &Ctxt, value: &Value) -> Option<Duration> {
    duration_or_zero_help(cx, value, "use a positive duration, e.g. 5s")
}

fn duration_or_zero_help(cx: &Ctxt, value: &Value, zero_help: &str) -> Option<Duration> {
    let (digits, suffix, text) = match value {
        Value::Int(lit) => (lit.base10_digits(), lit.suffix(), lit.to_string()),
        Value::Float(lit) => (lit.base10_digits(), lit.suffix(), lit.to_string()),
        _ => {
            mismatch_with_help(cx, value, "a duration", duration_help(value));
            return None;
        }
    };
    match parse_duration(digits, suffix) {
        Ok(duration) if duration.is_zero() => {
            cx.error_spanned_by(
                value,
                diag::with_help(format!("duration `{text}` is zero"), zero_help),
            );
            None
        }
        Ok(duration) => Some(duration),
        Err(problem) => {
            cx.error_spanned_by(
                value,
                diag::with_help(
                    format!("malformed duration `{text}`: {problem}"),
                    DURATION_HINT,
                ),
            );
            None
        }
    }
}

/// A duration, or `none` to disable a timeout: `Some(None)` is an explicit `none`.
pub(crate) fn optional_duration(cx: &Ctxt, value: &Value) -> Option<Option<Duration>> {
    match value {
        Value::Name(name) if name == symbol::NONE => Some(None),
        Value::Int(_) | Value::Float(_) => {
            duration_or_zero_help(cx, value, "write `none` to disable the timeout").map(Some)
        }
        _ => {
            mismatch_with_help(cx, value, "a duration or `none`", duration_help(value));
            None
        }
    }
}

/// `"5s"` is a duration in quotes: say so, rather than show the generic example.
fn duration_help(value: &Value) -> String {
    if let Value::Str(lit) = value {
        let text = lit.value();
        let unit_at = text
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(unit_at);
        if !digits.is_empty() && parse_duration(digits, unit).is_ok() {
            return format!("write {text} without quotes");
        }
    }
    DURATION_HINT.to_owned()
}

/// Exact decimal arithmetic (no floats), so `1.5s` is exactly 1500ms and a value too
/// precise to represent is an error rather than silently rounded.
fn parse_duration(digits: &str, unit: &str) -> Result<Duration, String> {
    const NANOS_PER_MILLI: u128 = 1_000_000;
    let unit_nanos = match unit {
        "ms" => NANOS_PER_MILLI,
        "s" => 1_000 * NANOS_PER_MILLI,
        "m" => 60_000 * NANOS_PER_MILLI,
        "h" => 3_600_000 * NANOS_PER_MILLI,
        "" => return Err("missing time unit".to_owned()),
        other => return Err(format!("unknown time unit `{other}`")),
    };
    if digits.contains(['e', 'E']) {
        return Err("exponents are not supported".to_owned());
    }
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let too_large = || "too large".to_owned();
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let scale = u32::try_from(fraction.len())
            .ok()
            .and_then(|len| 10u128.checked_pow(len))
            .ok_or_else(|| "too many decimals".to_owned())?;
        let fraction: u128 = fraction
            .parse()
            .map_err(|_| "too many decimals".to_owned())?;
        let scaled = fraction
            .checked_mul(unit_nanos)
            .ok_or_else(|| "too many decimals".to_owned())?;
        if scaled % scale != 0 {
            return Err("finer than a nanosecond".to_owned());
        }
        nanos = nanos.checked_add(scaled / scale).ok_or_else(too_large)?;
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// The arguments of `call`, which must be exactly `N` (for a fixed-arity call such as
/// `env("VAR", "default")`); `usage` shows the correct form.
pub(crate) fn args<'a, const N: usize>(
    cx: &Ctxt,
    call: &'a Call,
    usage: &str,
) -> Option<[&'a Value; N]> {
    let args: Vec<&Value> = call.args.iter().collect();
    match <[&Value; N]>::try_from(args) {
        Ok(args) => Some(args),
        Err(args) => {
            let count = args.len();
            let message = format!(
                "`{}(..)` takes {N} argument{}, found {count}",
                call.name,
                plural(N)
            );
            cx.error_spanned_by(call, diag::with_help(message, format!("write {usage}")));
            None
        }
    }
}

/// An HTTP token (RFC 9110 §5.6.2): what header and cookie names are made of.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact() {
        assert_eq!(parse_duration("5", "s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250", "ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5", "s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1", "m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2", "h"), Ok(Duration::from_secs(7200)));
        assert_eq!(
            parse_duration("0.000001", "ms"),
            Ok(Duration::from_nanos(1))
        );
    }

    #[test]
    fn malformed_durations_say_why() {
        assert_eq!(parse_duration("5", ""), Err("missing time unit".to_owned()));
        assert_eq!(
            parse_duration("5", "x"),
            Err("unknown time unit `x`".to_owned())
        );
        assert_eq!(
            parse_duration("0.0000001", "ms"),
            Err("finer than a nanosecond".to_owned())
        );
        assert_eq!(
            parse_duration("99999999999999999999", "h"),
            Err("too large".to_owned())
        );
        assert_eq!(
            parse_duration("1e3", "s"),
            Err("exponents are not supported".to_owned())
        );
    }
}
