//! Per-route retry policy (Envoy's `retry_policy`).

use std::time::Duration;

/// The conditions under which a failed attempt is retried, as a set (Envoy's
/// `retry_on`), `const`-combinable with [`RetryOn::union`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const NONE: RetryOn = RetryOn(0);
    /// Any 5xx response, and every `GATEWAY_ERROR` condition.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// 502, 503, 504 responses, and every `CONNECT_FAILURE` and `RESET` condition.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// The connection to the endpoint could not be made (or timed out connecting).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 2);
    /// The endpoint reset or closed the connection before the response head, or a
    /// per-try timeout fired.
    pub const RESET: RetryOn = RetryOn(1 << 3);
    /// The response status is one of the policy's `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 4);

    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A route's retry policy, `const`-constructible. Defaults are Envoy's, except the
/// body buffer, which Envoy bounds by the listener's buffer limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    /// Retries after the first attempt. Default 1.
    pub num_retries: u32,
    /// Limit on each attempt's wait for the response head; `None`: only the route
    /// timeout, which always bounds all attempts together.
    pub per_try_timeout: Option<Duration>,
    /// Statuses retried under [`RetryOn::RETRIABLE_STATUS_CODES`].
    pub retriable_status_codes: &'static [u16],
    /// Backoff before retry `n` is random in `0..base × 2ⁿ⁻¹`, at most `max_interval`.
    /// Default 25 ms.
    pub base_interval: Duration,
    /// Default 10 × `base_interval`.
    pub max_interval: Option<Duration>,
    /// A request body is kept for replay only up to this many bytes; a longer body
    /// disables retries for its request. Default 64 KiB.
    pub max_buffered_body: usize,
}

impl RetryPolicy {
    pub const fn new(retry_on: RetryOn) -> Self {
        Self {
            retry_on,
            num_retries: 1,
            per_try_timeout: None,
            retriable_status_codes: &[],
            base_interval: Duration::from_millis(25),
            max_interval: None,
            max_buffered_body: 64 * 1024,
        }
    }

    pub const fn num_retries(mut self, retries: u32) -> Self {
        self.num_retries = retries;
        self
    }

    pub const fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.per_try_timeout = Some(timeout);
        self
    }

    pub const fn retriable_status_codes(mut self, codes: &'static [u16]) -> Self {
        self.retriable_status_codes = codes;
        self
    }

    pub const fn base_interval(mut self, interval: Duration) -> Self {
        self.base_interval = interval;
        self
    }

    pub const fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = Some(interval);
        self
    }

    pub const fn max_buffered_body(mut self, bytes: usize) -> Self {
        self.max_buffered_body = bytes;
        self
    }
}
