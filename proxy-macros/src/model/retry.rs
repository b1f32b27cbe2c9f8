//! A forwarding route's `retry_policy: { .. }` and `mirror: ..`.

use std::time::Duration;

use proc_macro2::{Ident, TokenStream};
use quote::ToTokens;

use super::resilience::{each_entry, percent, settings};
use super::{ClusterId, Located, Scope, value};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::Value;

pub const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);
pub const DEFAULT_MAX_BUFFERED_BODY: u32 = 64 * 1024;

/// Envoy's `retry_on` conditions, in the order the runtime's flags list them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RetryOn {
    FiveXx,
    GatewayError,
    ConnectFailure,
    Reset,
    RetriableStatusCodes,
}

impl RetryOn {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::FiveXx => "5xx",
            RetryOn::GatewayError => "gateway_error",
            RetryOn::ConnectFailure => "connect_failure",
            RetryOn::Reset => "reset",
            RetryOn::RetriableStatusCodes => "retriable_status_codes",
        }
    }
}

pub struct Retry {
    pub retry_on: Vec<RetryOn>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Located<Duration>>,
    pub retriable_status_codes: Vec<u16>,
    pub base_interval: Duration,
    pub max_interval: Option<Duration>,
    pub max_buffered_body: u32,
    pub tokens: TokenStream,
}

impl Retry {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<Retry> {
        let block = settings(cx, value, "retry settings")?;
        let mut retry = Retry {
            retry_on: Vec::new(),
            num_retries: 1,
            per_try_timeout: None,
            retriable_status_codes: Vec::new(),
            base_interval: DEFAULT_BASE_INTERVAL,
            max_interval: None,
            max_buffered_body: DEFAULT_MAX_BUFFERED_BODY,
            tokens: value.to_token_stream(),
        };
        let mut retry_on_key: Option<&Ident> = None;
        let mut codes_key: Option<&Ident> = None;
        let mut base_key: Option<&Value> = None;
        let complete = each_entry(cx, block, Block::RetryPolicy, |key, value| {
            if key == symbol::RETRY_ON {
                retry_on_key = Some(key);
                match conditions(cx, value) {
                    Some(conditions) => {
                        retry.retry_on = conditions;
                        true
                    }
                    None => false,
                }
            } else if key == symbol::NUM_RETRIES {
                let why = "0 retries never retries; remove `retry_policy` instead";
                match super::resilience::at_least(cx, value, 1, why) {
                    Some(count) => {
                        retry.num_retries = count;
                        true
                    }
                    None => false,
                }
            } else if key == symbol::PER_TRY_TIMEOUT {
                retry.per_try_timeout =
                    value::duration(cx, value).map(|timeout| Located::new(timeout, value));
                retry.per_try_timeout.is_some()
            } else if key == symbol::RETRIABLE_STATUS_CODES {
                codes_key = Some(key);
                match status_codes(cx, value) {
                    Some(codes) => {
                        retry.retriable_status_codes = codes;
                        true
                    }
                    None => false,
                }
            } else if key == symbol::BASE_INTERVAL {
                base_key = Some(value);
                value::duration(cx, value)
                    .map(|interval| retry.base_interval = interval)
                    .is_some()
            } else if key == symbol::MAX_INTERVAL {
                retry.max_interval = value::duration(cx, value);
                retry.max_interval.is_some()
            } else {
                value::integer(cx, value)
                    .map(|bytes| retry.max_buffered_body = bytes)
                    .is_some()
            }
        });
        let mut valid = complete;
        if retry_on_key.is_none() && complete {
            cx.error_spanned_by(
                value,
                diag::with_help(
                    "a retry policy needs `retry_on`",
                    "add retry_on: [5xx], or [gateway_error, connect_failure, reset, retriable_status_codes]",
                ),
            );
            valid = false;
        }
        let wants_codes = retry.retry_on.contains(&RetryOn::RetriableStatusCodes);
        match (wants_codes, codes_key) {
            (true, None) => {
                if let Some(key) = retry_on_key.filter(|_| complete) {
                    cx.error_spanned_by(
                        key,
                        diag::with_help(
                            "`retriable_status_codes` is in `retry_on` but no codes are listed",
                            "add retriable_status_codes: [409, 429]",
                        ),
                    );
                }
                valid = false;
            }
            (false, Some(key)) => {
                cx.error_spanned_by(
                    key,
                    diag::with_help(
                        "these status codes are never retried: `retry_on` lacks `retriable_status_codes`",
                        "add retriable_status_codes to retry_on",
                    ),
                );
                valid = false;
            }
            _ => {}
        }
        if let (Some(max), Some(base)) = (retry.max_interval, base_key) {
            if max < retry.base_interval {
                cx.error_spanned_by(
                    base,
                    diag::with_help(
                        "`base_interval` is longer than `max_interval`",
                        "the backoff starts at base_interval and grows up to max_interval",
                    ),
                );
                valid = false;
            }
        }
        valid.then_some(retry)
    }
}

/// `[5xx, gateway_error, ..]`. `5xx` is written as the literal it looks like.
fn conditions(cx: &Ctxt, value: &Value) -> Option<Vec<RetryOn>> {
    let list = value::list(cx, value)?;
    let expected =
        "one of `5xx`, `gateway_error`, `connect_failure`, `reset`, `retriable_status_codes`";
    let mut conditions = Vec::new();
    let mut valid = true;
    for item in &list.items {
        let condition = match item {
            Value::Int(lit) if lit.to_string() == "5xx" => Some(RetryOn::FiveXx),
            Value::Name(name) if name == symbol::GATEWAY_ERROR => Some(RetryOn::GatewayError),
            Value::Name(name) if name == symbol::CONNECT_FAILURE => Some(RetryOn::ConnectFailure),
            Value::Name(name) if name == symbol::RESET => Some(RetryOn::Reset),
            Value::Name(name) if name == symbol::RETRIABLE_STATUS_CODES => {
                Some(RetryOn::RetriableStatusCodes)
            }
            Value::Str(lit) => {
                let help = format!(
                    "write {} without quotes (and `_` for `-`)",
                    lit.value().replace('-', "_")
                );
                cx.error_spanned_by(
                    lit,
                    diag::with_help(format!("expected {expected}, found a string"), help),
                );
                None
            }
            other => {
                let written = other.to_token_stream().to_string();
                let names = [
                    "5xx",
                    "gateway_error",
                    "connect_failure",
                    "reset",
                    "retriable_status_codes",
                ];
                cx.error_spanned_by(
                    other,
                    diag::with_help(
                        format!("unknown retry condition `{written}`"),
                        diag::suggestion(&written, names.iter().copied()),
                    ),
                );
                None
            }
        };
        match condition {
            Some(condition) if conditions.contains(&condition) => {
                cx.error_spanned_by(
                    item,
                    diag::with_help(
                        format!("`{}` is listed twice", condition.as_str()),
                        "remove the repeat",
                    ),
                );
                valid = false;
            }
            Some(condition) => conditions.push(condition),
            None => valid = false,
        }
    }
    if list.items.is_empty() {
        cx.error_spanned_by(
            list,
            diag::with_help(
                "`retry_on` is empty: nothing would be retried",
                "list at least one condition, e.g. [5xx]",
            ),
        );
        valid = false;
    }
    valid.then_some(conditions)
}

fn status_codes(cx: &Ctxt, value: &Value) -> Option<Vec<u16>> {
    let list = value::list(cx, value)?;
    let mut codes = Vec::new();
    let mut valid = true;
    for item in &list.items {
        let Some(code) = value::integer::<u16>(cx, item) else {
            valid = false;
            continue;
        };
        if !(100..=599).contains(&code) {
            cx.error_spanned_by(
                item,
                diag::with_help(
                    format!("{code} is not an HTTP status"),
                    "statuses are 100 to 599",
                ),
            );
            valid = false;
        } else if !codes.contains(&code) {
            codes.push(code);
        }
    }
    valid.then_some(codes)
}

/// A cluster that gets a copy of `percent` % of the route's requests.
pub struct Mirror {
    pub cluster: ClusterId,
    pub percent: u32,
}

/// `mirror: shadow`, `mirror: { cluster: shadow, percent: 10 }`, or a list of them.
pub(crate) fn mirrors(cx: &Ctxt, scope: &Scope<'_>, value: &Value) -> Option<Vec<Mirror>> {
    let items: Vec<&Value> = match value {
        Value::List(list) => list.items.iter().collect(),
        other => vec![other],
    };
    let mut mirrors = Vec::new();
    let mut valid = true;
    for item in items {
        let mirror = match item {
            Value::Name(name) => super::route::resolve(cx, scope, name).map(|cluster| Mirror {
                cluster,
                percent: 100,
            }),
            Value::Block(block) => {
                let mut cluster = None;
                let mut share = 100;
                let mut named = false;
                let complete = each_entry(cx, block, Block::Mirror, |key, value| {
                    if key == symbol::CLUSTER {
                        named = true;
                        match value {
                            Value::Name(name) => {
                                cluster = super::route::resolve(cx, scope, name);
                                cluster.is_some()
                            }
                            other => {
                                value::mismatch(cx, other, "a cluster name");
                                false
                            }
                        }
                    } else {
                        percent(cx, value).map(|percent| share = percent).is_some()
                    }
                });
                if complete && !named {
                    cx.error_spanned_by(
                        item,
                        diag::with_help(
                            "a mirror needs a `cluster`",
                            "write { cluster: shadow, percent: 10 }",
                        ),
                    );
                }
                cluster.filter(|_| complete).map(|cluster| Mirror {
                    cluster,
                    percent: share,
                })
            }
            other => {
                value::mismatch(
                    cx,
                    other,
                    "a cluster name or `{ cluster: .., percent: .. }`",
                );
                None
            }
        };
        match mirror {
            Some(mirror) => mirrors.push(mirror),
            None => valid = false,
        }
    }
    valid.then_some(mirrors)
}
