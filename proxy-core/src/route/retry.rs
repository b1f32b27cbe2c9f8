//! Per-route retry policy (Envoy's `retry_policy`).
//!
//! A failed attempt is retried when its outcome matches the policy's [`RetryOn`]
//! conditions, the request can be replayed and the cluster's retry limit
//! ([`Cluster::try_retry`](crate::cluster::Cluster::try_retry)) allows one more retry in
//! flight. The exchange (`http::retry`) carries this out; the semantics, as Envoy's:
//!
//! - `num_retries` retries at most after the first attempt; each goes to an endpoint
//!   not tried yet for this request when the cluster has one.
//! - Before retry *n* the exchange waits a random time in
//!   `[0, min(base_interval × 2ⁿ⁻¹, max_interval))` (full jitter).
//! - `per_try_timeout` bounds each attempt's wait for the response head; the route
//!   timeout bounds all attempts and backoffs together, from the end of the request body.
//! - Only requests that can be replayed are retried: bodiless ones and those whose
//!   body has a declared length (`content-length`) within `max_buffered_body`. Such a
//!   body is read into memory (through the request-body filters once) before the first
//!   attempt; every attempt then sends the same chunks. A body declared larger, or of
//!   unknown length (chunked, or HTTP/2 without `content-length`), is streamed at once
//!   and its request tried once: it may be a stream whose sender waits for the response
//!   before it ends (gRPC, interactive uploads), which reading first would stall.
//!   Upgrade (WebSocket) requests are never retried.
//! - The client gets the last attempt's outcome: the upstream's response as is, or the
//!   local reply (`UF`, `UC`, `UT`); the access log names that attempt's endpoint.
//! - Stats (`cluster.<name>.`): `upstream_rq_retry` per retry,
//!   `upstream_rq_retry_success` when a retry's response ends the request,
//!   `upstream_rq_retry_limit_exceeded` when retries run out on a retriable outcome,
//!   `upstream_rq_retry_overflow` when the cluster's retry limit refuses one,
//!   `upstream_rq_per_try_timeout` per per-try timeout.
//!
//! Deviations from Envoy:
//! - Envoy starts the first attempt while it buffers the body, so it can also retry
//!   chunked uploads and streams that end within its buffer; here a replayable body is
//!   read first (it has a declared length, so the client sends it whole regardless), and
//!   a body of unknown length is never retried or mirrored.
//! - No `x-envoy-retry-on` / `x-envoy-max-retries` request headers; no `retriable-4xx`,
//!   `refused-stream` (HTTP/2 refused streams are already replayed by the cluster),
//!   `retriable-headers` or gRPC `retry_on` conditions; no rate-limited backoff
//!   (`Retry-After`), no hedging, no retry host predicates beyond "prefer endpoints not
//!   tried yet".
//! - As in Envoy, a circuit-breaker overflow (503 `UO`) and the route timeout are never
//!   retried.

use std::time::Duration;

/// The conditions under which a failed attempt is retried, as a set (Envoy's
/// `retry_on`), `const`-combinable with [`RetryOn::union`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    /// No condition: nothing is retried.
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

    /// Both sets of conditions.
    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Whether every condition of `other` is in `self`.
    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any condition of `other` is in `self`.
    pub const fn intersects(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }
}

/// A route's retry policy, `const`-constructible. Defaults are Envoy's, except the
/// body buffer, which Envoy bounds by the listener's buffer limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The conditions retried.
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
    /// Retries once on `retry_on`, with Envoy's defaults for everything else.
    pub const fn new(retry_on: RetryOn) -> Self {
        Self {
            retry_on,
            num_retries: 1,
            per_try_timeout: None,
            retriable_status_codes: &[],
            base_interval: Duration::from_millis(25),
            max_interval: None,
            max_buffered_body: Self::DEFAULT_MAX_BUFFERED_BODY,
        }
    }

    /// Sets [`Self::num_retries`].
    pub const fn num_retries(mut self, retries: u32) -> Self {
        self.num_retries = retries;
        self
    }

    /// Sets [`Self::per_try_timeout`].
    pub const fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.per_try_timeout = Some(timeout);
        self
    }

    /// Sets [`Self::retriable_status_codes`].
    pub const fn retriable_status_codes(mut self, codes: &'static [u16]) -> Self {
        self.retriable_status_codes = codes;
        self
    }

    /// Sets [`Self::base_interval`].
    pub const fn base_interval(mut self, interval: Duration) -> Self {
        self.base_interval = interval;
        self
    }

    /// Sets [`Self::max_interval`].
    pub const fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = Some(interval);
        self
    }

    /// Sets [`Self::max_buffered_body`].
    pub const fn max_buffered_body(mut self, bytes: usize) -> Self {
        self.max_buffered_body = bytes;
        self
    }
}

impl RetryPolicy {
    /// The default of `max_buffered_body`, also the limit for buffering a request body
    /// that is only mirrored (a route without a retry policy).
    pub const DEFAULT_MAX_BUFFERED_BODY: usize = 64 * 1024;

    /// Whether an upstream response with `status` is retried: any 5xx under
    /// [`RetryOn::FIVE_XX`], 502/503/504 under [`RetryOn::GATEWAY_ERROR`], a listed
    /// status under [`RetryOn::RETRIABLE_STATUS_CODES`].
    pub fn retries_status(&self, status: u16) -> bool {
        let on = self.retry_on;
        (on.contains(RetryOn::FIVE_XX) && (500..600).contains(&status))
            || (on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                && self.retriable_status_codes.contains(&status))
    }

    /// Whether a failure to connect to the endpoint is retried (`5xx`,
    /// `gateway-error`, `connect-failure`).
    pub fn retries_connect_failure(&self) -> bool {
        self.retry_on.intersects(
            RetryOn::FIVE_XX
                .union(RetryOn::GATEWAY_ERROR)
                .union(RetryOn::CONNECT_FAILURE),
        )
    }

    /// Whether a reset before the response head, or a per-try timeout, is retried
    /// (`5xx`, `gateway-error`, `reset`).
    pub fn retries_reset(&self) -> bool {
        self.retry_on.intersects(
            RetryOn::FIVE_XX
                .union(RetryOn::GATEWAY_ERROR)
                .union(RetryOn::RESET),
        )
    }

    /// The exclusive upper bound of the backoff before retry `retry` (1 for the first
    /// retry): `base_interval × 2^(retry-1)`, capped at `max_interval` (default
    /// 10 × `base_interval`).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let cap = self
            .max_interval
            .unwrap_or_else(|| self.base_interval.saturating_mul(10));
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_interval.saturating_mul(factor).min(cap)
    }

    /// The backoff before retry `retry`: uniformly random in
    /// `0..`[`backoff_ceiling`](Self::backoff_ceiling) (full jitter), so clients that
    /// failed together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.backoff_ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(fastrand::u64(..ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_envoy() {
        let five_xx = RetryPolicy::new(RetryOn::FIVE_XX);
        assert!(five_xx.retries_status(500) && five_xx.retries_status(503));
        assert!(!five_xx.retries_status(404));
        assert!(five_xx.retries_connect_failure() && five_xx.retries_reset());

        let gateway = RetryPolicy::new(RetryOn::GATEWAY_ERROR);
        assert!(!gateway.retries_status(500) && gateway.retries_status(502));
        assert!(gateway.retries_status(504) && !gateway.retries_status(505));
        assert!(gateway.retries_connect_failure() && gateway.retries_reset());

        let connect = RetryPolicy::new(RetryOn::CONNECT_FAILURE);
        assert!(connect.retries_connect_failure() && !connect.retries_reset());
        assert!(!connect.retries_status(503));

        let reset = RetryPolicy::new(RetryOn::RESET);
        assert!(!reset.retries_connect_failure() && reset.retries_reset());

        let codes =
            RetryPolicy::new(RetryOn::RETRIABLE_STATUS_CODES).retriable_status_codes(&[409, 503]);
        assert!(codes.retries_status(409) && codes.retries_status(503));
        assert!(!codes.retries_status(500) && !codes.retries_reset());

        assert!(!RetryPolicy::new(RetryOn::NONE).retries_status(503));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::new(RetryOn::FIVE_XX).base_interval(Duration::from_millis(10));
        let ceilings: Vec<_> = (1..=6)
            .map(|n| policy.backoff_ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 100, 100]);
        let capped = policy.max_interval(Duration::from_millis(30));
        assert_eq!(capped.backoff_ceiling(3), Duration::from_millis(30));
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_millis(100));
        for retry in 1..=6 {
            assert!(policy.backoff(retry) < policy.backoff_ceiling(retry));
        }
        // Full jitter: the mean is half the ceiling, so it doubles from retry to retry.
        // Over 10 000 draws the mean stays within 10 % of its expectation (over 15 σ).
        let mean = |retry| {
            let total: Duration = (0..10_000).map(|_| policy.backoff(retry)).sum();
            total.as_secs_f64() / 10_000.0
        };
        let (first, third) = (mean(1), mean(3));
        assert!((first - 0.005).abs() < 0.000_5, "{first}");
        assert!((third - 0.020).abs() < 0.002, "{third}");
        let zero = RetryPolicy::new(RetryOn::FIVE_XX).base_interval(Duration::ZERO);
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }
}
