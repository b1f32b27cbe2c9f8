//! A cluster's failure handling: active health checks, outlier detection, circuit
//! breakers and session persistence, each a `key: { .. }` block of settings.
//!
//! Defaults are stated here (they are Envoy's, as the runtime's are) so that the
//! summary shows exactly what the generated code sets.

use std::time::Duration;

use proc_macro2::{Ident, TokenStream};
use quote::ToTokens;

use super::fields::Fields;
use super::value;
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{Settings, Value};

/// The `{ .. }` block `value` must be; `what` names it in the mismatch error.
pub(crate) fn settings<'a>(cx: &Ctxt, value: &'a Value, what: &str) -> Option<&'a Settings> {
    match value {
        Value::Block(settings) => Some(settings),
        other => {
            value::mismatch(cx, other, &format!("a `{{ .. }}` block of {what}"));
            None
        }
    }
}

/// Interprets each entry of a settings block with `apply`, which returns whether the
/// value was valid. Returns `false` if any entry was unknown, repeated or invalid.
pub(crate) fn each_entry<'a>(
    cx: &Ctxt,
    settings: &'a Settings,
    block: Block,
    mut apply: impl FnMut(&'a Ident, &'a Value) -> bool,
) -> bool {
    let mut fields = Fields::new(block);
    let mut complete = true;
    for entry in &settings.fields {
        match fields.entry(cx, entry) {
            Some((key, value)) => complete &= apply(key, value),
            None => complete = false,
        }
    }
    complete
}

/// An integer setting that must be at least `min` (e.g. a threshold of 0 would make
/// the feature meaningless rather than off).
pub(crate) fn at_least(cx: &Ctxt, value: &Value, min: u32, why: &str) -> Option<u32> {
    let number: u32 = value::integer(cx, value)?;
    if number < min {
        cx.error_spanned_by(
            value,
            diag::with_help(format!("expected at least {min}, found {number}"), why),
        );
        return None;
    }
    Some(number)
}

/// A percentage, 0..=100.
pub(crate) fn percent(cx: &Ctxt, value: &Value) -> Option<u32> {
    let number: u32 = value::integer(cx, value)?;
    if number > 100 {
        cx.error_spanned_by(
            value,
            diag::with_help(
                format!("{number} is not a percentage"),
                "write a number from 0 to 100",
            ),
        );
        return None;
    }
    Some(number)
}

pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HC_NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);

/// `health_check: { kind: http, path: "/healthz", .. }`.
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub no_traffic_interval: Duration,
    pub tokens: TokenStream,
}

pub enum HealthKind {
    Http {
        path: String,
        host: Option<String>,
        /// Inclusive ranges; empty means the runtime default (2xx).
        expected_statuses: Vec<(u16, u16)>,
        service_name: Option<String>,
    },
    Tcp {
        send: Option<String>,
        expect: Option<String>,
    },
    Grpc {
        service_name: Option<String>,
    },
    Redis,
}

impl HealthCheck {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<HealthCheck> {
        let block = settings(cx, value, "health check settings")?;
        let mut kind: Option<(crate::symbol::Symbol, &Ident)> = None;
        let mut check = HealthCheck {
            kind: HealthKind::Redis,
            interval: DEFAULT_HC_INTERVAL,
            jitter: Duration::ZERO,
            timeout: DEFAULT_HC_TIMEOUT,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            no_traffic_interval: DEFAULT_HC_NO_TRAFFIC_INTERVAL,
            tokens: value.to_token_stream(),
        };
        let mut path = None;
        let mut host = None;
        let mut statuses: Option<(Vec<(u16, u16)>, &Ident)> = None;
        let mut service_name = None;
        let mut send = None;
        let mut expect = None;
        let mut kind_specific: Vec<&Ident> = Vec::new();
        let mut path_written = false;
        let mut complete = each_entry(cx, block, Block::HealthCheck, |key, value| {
            if key == symbol::KIND {
                let choices = [symbol::HTTP, symbol::TCP, symbol::GRPC, symbol::REDIS];
                kind = value::choice(cx, value, &choices).map(|choice| (choice, key));
                return kind.is_some();
            }
            if key == symbol::INTERVAL {
                return store(value::duration(cx, value), &mut check.interval);
            }
            if key == symbol::TIMEOUT {
                return store(value::duration(cx, value), &mut check.timeout);
            }
            if key == symbol::JITTER {
                return store(value::duration(cx, value), &mut check.jitter);
            }
            if key == symbol::NO_TRAFFIC_INTERVAL {
                return store(value::duration(cx, value), &mut check.no_traffic_interval);
            }
            if key == symbol::UNHEALTHY_THRESHOLD || key == symbol::HEALTHY_THRESHOLD {
                let why = "a threshold counts consecutive checks: 1 or more";
                let target = if key == symbol::HEALTHY_THRESHOLD {
                    &mut check.healthy_threshold
                } else {
                    &mut check.unhealthy_threshold
                };
                return store(at_least(cx, value, 1, why), target);
            }
            kind_specific.push(key);
            if key == symbol::EXPECTED_STATUSES {
                statuses = status_ranges(cx, value).map(|ranges| (ranges, key));
                return statuses.is_some();
            }
            let Some(text) = value::string(cx, value) else {
                return false;
            };
            let text = text.value();
            if key == symbol::PATH {
                path_written = true;
                if !text.starts_with('/') {
                    let message = format!("health check path {text:?} does not start with `/`");
                    cx.error_spanned_by(value, diag::with_help(message, "write \"/healthz\""));
                    return false;
                }
                path = Some((text, key));
            } else if key == symbol::HOST {
                host = Some(text);
            } else if key == symbol::SERVICE_NAME {
                service_name = Some(text);
            } else if key == symbol::SEND {
                send = Some(text);
            } else {
                expect = Some(text);
            }
            true
        });
        let Some((kind, kind_key)) = kind else {
            if complete {
                cx.error_spanned_by(
                    &check.tokens,
                    diag::with_help(
                        "a health check needs a `kind`",
                        "add `kind: http` (with `path`), `kind: tcp`, `kind: grpc` or `kind: redis`",
                    ),
                );
            }
            return None;
        };
        // Which kind-specific keys each kind accepts.
        let allowed: &[symbol::Symbol] = if kind == symbol::HTTP {
            &[
                symbol::PATH,
                symbol::HOST,
                symbol::EXPECTED_STATUSES,
                symbol::SERVICE_NAME,
            ]
        } else if kind == symbol::TCP {
            &[symbol::SEND, symbol::EXPECT]
        } else if kind == symbol::GRPC {
            &[symbol::SERVICE_NAME]
        } else {
            &[]
        };
        for key in kind_specific {
            if !allowed.iter().any(|allowed| key == *allowed) {
                let message = format!("`{key}` does not apply to health checks of kind `{kind}`");
                let help = if allowed.is_empty() {
                    format!("kind `{kind}` takes no settings of its own; remove `{key}`")
                } else {
                    format!(
                        "kind `{kind}` accepts {}",
                        diag::one_of(allowed.iter().map(|key| key.as_str()))
                    )
                };
                cx.error_spanned_by(key, diag::with_help(message, help));
                complete = false;
            }
        }
        check.kind = if kind == symbol::HTTP {
            let Some((path, _)) = path else {
                if path_written {
                    return None;
                }
                cx.error_spanned_by(
                    kind_key,
                    diag::with_help(
                        "an `http` health check needs a `path`",
                        "add `path: \"/healthz\"`",
                    ),
                );
                return None;
            };
            HealthKind::Http {
                path,
                host,
                expected_statuses: statuses.map(|(ranges, _)| ranges).unwrap_or_default(),
                service_name,
            }
        } else if kind == symbol::TCP {
            // `expect` without `send` is legal: a server that greets with a banner.
            HealthKind::Tcp { send, expect }
        } else if kind == symbol::GRPC {
            HealthKind::Grpc { service_name }
        } else {
            HealthKind::Redis
        };
        complete.then_some(check)
    }
}

fn store<T>(parsed: Option<T>, slot: &mut T) -> bool {
    match parsed {
        Some(value) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// `[200, range(200, 299)]`: statuses and inclusive ranges, each within 100..=599.
fn status_ranges(cx: &Ctxt, value: &Value) -> Option<Vec<(u16, u16)>> {
    let list = value::list(cx, value)?;
    let mut ranges = Vec::new();
    let mut valid = true;
    let status = |cx: &Ctxt, value: &Value| -> Option<u16> {
        let code: u16 = value::integer(cx, value)?;
        if !(100..=599).contains(&code) {
            cx.error_spanned_by(
                value,
                diag::with_help(
                    format!("{code} is not an HTTP status"),
                    "statuses are 100 to 599",
                ),
            );
            return None;
        }
        Some(code)
    };
    for item in &list.items {
        let range = match item {
            Value::Call(call) if call.name == symbol::RANGE => {
                let Some([from, to]) = value::args::<2>(cx, call, "range(200, 299)") else {
                    valid = false;
                    continue;
                };
                match (status(cx, from), status(cx, to)) {
                    (Some(from), Some(to)) if from <= to => Some((from, to)),
                    (Some(from), Some(to)) => {
                        cx.error_spanned_by(
                            call,
                            diag::with_help(
                                format!("empty status range {from}..={to}"),
                                format!("write range({to}, {from})"),
                            ),
                        );
                        None
                    }
                    _ => None,
                }
            }
            other => status(cx, other).map(|code| (code, code)),
        };
        match range {
            Some(range) => ranges.push(range),
            None => valid = false,
        }
    }
    if list.items.is_empty() {
        cx.error_spanned_by(
            list,
            diag::with_help(
                "no expected statuses: every check would fail",
                "list statuses, e.g. [200, range(200, 299)]",
            ),
        );
        valid = false;
    }
    valid.then_some(ranges)
}

pub const DEFAULT_OD_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// `outlier_detection: { consecutive_5xx: 5, .. }`; `{}` takes Envoy's defaults.
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl OutlierDetection {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<OutlierDetection> {
        let block = settings(cx, value, "outlier detection settings")?;
        let mut detection = OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            interval: DEFAULT_OD_INTERVAL,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: 10,
        };
        let mut base_key = None;
        let complete = each_entry(cx, block, Block::OutlierDetection, |key, value| {
            if key == symbol::CONSECUTIVE_5XX {
                store(value::integer(cx, value), &mut detection.consecutive_5xx)
            } else if key == symbol::CONSECUTIVE_GATEWAY_FAILURE {
                store(
                    value::integer(cx, value),
                    &mut detection.consecutive_gateway_failure,
                )
            } else if key == symbol::INTERVAL {
                store(value::duration(cx, value), &mut detection.interval)
            } else if key == symbol::BASE_EJECTION_TIME {
                base_key = Some(value);
                store(
                    value::duration(cx, value),
                    &mut detection.base_ejection_time,
                )
            } else if key == symbol::MAX_EJECTION_TIME {
                store(value::duration(cx, value), &mut detection.max_ejection_time)
            } else {
                store(percent(cx, value), &mut detection.max_ejection_percent)
            }
        });
        let mut valid = complete;
        if detection.consecutive_5xx == 0 && detection.consecutive_gateway_failure == 0 {
            cx.error_spanned_by(
                value,
                diag::with_help(
                    "both detectors are off (`consecutive_5xx: 0`, `consecutive_gateway_failure: 0`): nothing would ever be ejected",
                    "remove `outlier_detection`, or set a threshold of 1 or more",
                ),
            );
            valid = false;
        }
        if detection.base_ejection_time > detection.max_ejection_time {
            let tokens =
                base_key.map_or_else(|| value.to_token_stream(), ToTokens::to_token_stream);
            cx.error_spanned_by(
                tokens,
                diag::with_help(
                    "`base_ejection_time` is longer than `max_ejection_time`",
                    "the first ejection lasts base_ejection_time; raise max_ejection_time (default 300s)",
                ),
            );
            valid = false;
        }
        valid.then_some(detection)
    }
}

/// `circuit_breakers: { max_connections: 1024, .. }`.
pub struct CircuitBreakers {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    /// `(budget_percent, min_retry_concurrency)`.
    pub retry_budget: Option<(u32, u32)>,
}

impl CircuitBreakers {
    pub const DEFAULT: CircuitBreakers = CircuitBreakers {
        max_connections: 1024,
        max_pending_requests: 1024,
        max_requests: 1024,
        max_retries: 3,
        retry_budget: None,
    };

    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<CircuitBreakers> {
        let block = settings(cx, value, "circuit breaker limits")?;
        let mut breakers = CircuitBreakers::DEFAULT;
        let why = "a limit of 0 would refuse everything; remove the key to keep the default";
        let complete = each_entry(cx, block, Block::CircuitBreakers, |key, value| {
            if key == symbol::MAX_CONNECTIONS {
                store(at_least(cx, value, 1, why), &mut breakers.max_connections)
            } else if key == symbol::MAX_PENDING_REQUESTS {
                // 0 is meaningful here: never queue, overflow at once.
                store(
                    value::integer(cx, value),
                    &mut breakers.max_pending_requests,
                )
            } else if key == symbol::MAX_REQUESTS {
                store(at_least(cx, value, 1, why), &mut breakers.max_requests)
            } else if key == symbol::MAX_RETRIES {
                // 0 is meaningful: retry policies never retry on this cluster.
                store(value::integer(cx, value), &mut breakers.max_retries)
            } else {
                breakers.retry_budget = retry_budget(cx, value);
                breakers.retry_budget.is_some()
            }
        });
        complete.then_some(breakers)
    }
}

fn retry_budget(cx: &Ctxt, value: &Value) -> Option<(u32, u32)> {
    let block = settings(cx, value, "retry budget settings")?;
    let (mut budget, mut min) = (20, 3);
    let complete = each_entry(cx, block, Block::RetryBudget, |key, value| {
        if key == symbol::BUDGET_PERCENT {
            store(percent(cx, value), &mut budget)
        } else {
            store(value::integer(cx, value), &mut min)
        }
    });
    complete.then_some((budget, min))
}

/// `session_persistence: { cookie: "srv", path: "/", ttl: 1h }` or `{ header: "x-s" }`.
pub enum SessionPersistence {
    Cookie {
        name: String,
        path: String,
        ttl: Option<Duration>,
    },
    Header {
        name: String,
    },
}

impl SessionPersistence {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<SessionPersistence> {
        let block = settings(cx, value, "session persistence settings")?;
        let mut cookie: Option<(String, &Ident)> = None;
        let mut header: Option<(String, &Ident)> = None;
        let mut path: Option<(String, &Ident)> = None;
        let mut ttl: Option<(Duration, &Ident)> = None;
        let complete = each_entry(cx, block, Block::SessionPersistence, |key, value| {
            if key == symbol::TTL {
                ttl = value::duration(cx, value).map(|ttl| (ttl, key));
                return ttl.is_some();
            }
            let Some(lit) = value::string(cx, value) else {
                return false;
            };
            let text = lit.value();
            if key == symbol::PATH {
                if !text.starts_with('/') {
                    cx.error_spanned_by(
                        lit,
                        diag::with_help(
                            format!("cookie path {text:?} does not start with `/`"),
                            "write \"/\"",
                        ),
                    );
                    return false;
                }
                path = Some((text, key));
                return true;
            }
            // Cookie names are RFC 6265 tokens; header names RFC 9110 tokens (lowercase).
            if !value::is_token(&text) {
                cx.error_spanned_by(
                    lit,
                    diag::with_help(
                        format!("{text:?} is not a valid {key} name"),
                        "use letters, digits and `-`, e.g. \"x-session\"",
                    ),
                );
                return false;
            }
            if key == symbol::COOKIE {
                cookie = Some((text, key));
            } else {
                header = Some((text.to_ascii_lowercase(), key));
            }
            true
        });
        if !complete {
            return None;
        }
        match (cookie, header) {
            (Some((name, _)), None) => Some(SessionPersistence::Cookie {
                name,
                path: path.map_or_else(|| "/".to_owned(), |(path, _)| path),
                ttl: ttl.map(|(ttl, _)| ttl),
            }),
            (None, Some((name, _))) => {
                let stray = path.map(|(_, key)| key).or(ttl.map(|(_, key)| key));
                if let Some(key) = stray {
                    cx.error_spanned_by(
                        key,
                        diag::with_help(
                            format!("`{key}` applies to a session cookie, not a header"),
                            format!("remove `{key}`, or use `cookie: \"..\"`"),
                        ),
                    );
                    return None;
                }
                Some(SessionPersistence::Header { name })
            }
            (Some(_), Some((_, key))) => {
                cx.error_spanned_by(
                    key,
                    diag::with_help(
                        "a session is kept by a cookie or by a header, not both",
                        "keep one of `cookie` and `header`",
                    ),
                );
                None
            }
            (None, None) => {
                cx.error_spanned_by(
                    value,
                    diag::with_help(
                        "session persistence needs a `cookie` or a `header` name",
                        "add `cookie: \"srv\"` or `header: \"x-session\"`",
                    ),
                );
                None
            }
        }
    }
}
