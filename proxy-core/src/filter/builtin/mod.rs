//! The built-in HTTP filters.
//!
//! Each is an ordinary [`HttpFilter`](super::HttpFilter): a type constructed with `new`
//! (or a named constructor) from its positional DSL arguments and configured with
//! builder methods named exactly like its DSL keys, each consuming `self`. The `proxy!`
//! macro validates every literal at compile time; the constructors still never panic on
//! a value it would have rejected, but fall back to a documented safe behaviour, so the
//! types are also safe to build by hand.
//!
//! | filter | DSL | what it does |
//! |---|---|---|
//! | [`RequestHeaders`], [`ResponseHeaders`] | `request_headers { .. }`, `response_headers { .. }` | add, set, remove headers; values may use `%REQ(..)%`-style substitutions |
//! | [`PrefixRewrite`], [`RegexRewrite`], [`HostRewrite`] | `prefix_rewrite(..)`, `regex_rewrite(..)`, `host_rewrite(..)` | rewrite the path or host sent upstream |
//! | [`Cors`] | `cors { .. }` | answers preflights, decorates cross-origin responses |
//! | [`LocalRateLimit`] | `local_rate_limit(..)` | a lock-free token bucket; `429` with flag `RL` |
//! | [`Fault`] | `fault_delay(..)`, `fault_abort(..)`, `fault_headers { .. }` | injects delays and aborts (flag `FI`) |
//! | [`BodyLimit`] | `body_limit(..)` | `413` for request bodies over a size |
//! | [`AccessLog`] | `access_log_stdout(..)`, `access_log_file(..)` | Envoy-format access log, written off the request path |
//! | [`Compression`] | `compression { .. }` | gzip and brotli response compression |
//!
//! Each type has an associated `UNIQUE` constant: whether listing it twice in one
//! filter list is a configuration error (two CORS policies or two compressors make no
//! sense; two header mutations do).
//!
//! Header values and access-log lines share one implementation of Envoy's command
//! operators (`%REQ(..)%`, `%START_TIME%`, ...): a format is compiled once, at
//! construction, into literal and variable segments, and rendering a request walks the
//! segments without parsing anything. [`mod@format`] documents the operators.

mod access_log;
mod body_limit;
mod compression;
mod cors;
mod fault;
pub mod format;
mod headers;
mod rate_limit;
mod rewrite;
mod template;
mod util;

#[cfg(test)]
mod test_util;

pub use access_log::{AccessLog, AccessLogState};
pub use body_limit::BodyLimit;
pub use compression::{Compression, CompressionState, CompressionStats};
pub use cors::{Cors, CorsState};
pub use fault::{Fault, FaultStats};
pub use headers::{AppendAction, RequestHeaders, ResponseHeaders, ResponseHeadersState};
pub use rate_limit::{LocalRateLimit, RateLimitStats};
pub use rewrite::{HostRewrite, PrefixRewrite, RegexRewrite};
