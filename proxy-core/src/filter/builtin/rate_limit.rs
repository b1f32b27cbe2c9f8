//! Local rate limiting: one token bucket per filter instance, shared by every request
//! through it, without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};

use super::util::local_reply;
use crate::filter::{Flow, HttpFilter, RequestInfo};
use crate::stats::Counter;

/// The shortest fill interval honoured. Envoy requires at least 50ms; a smaller value
/// (which the macro rejects) is raised to this rather than making refills meaningless.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(1);

/// Limits requests with a token bucket, as Envoy's `local_ratelimit` filter.
///
/// The bucket holds up to `max_tokens` and starts full; every `fill_interval`,
/// `tokens_per_fill` tokens are added (never beyond `max_tokens`). Each request takes
/// one token; a request that finds none is answered `429 Too Many Requests` with
/// `retry-after` (whole seconds until a token is available, rounded up),
/// `x-proxy-response-flags: RL` and the body `local_rate_limited`.
///
/// One instance is one bucket: a filter listed on a listener or virtual host is shared
/// by every route below it, so it limits them together.
///
/// The bucket is a single atomic word (the generic cell rate algorithm over a clock
/// quantised to `fill_interval`, which admits exactly what a bucket refilled in
/// batches would): refills are computed from the elapsed time when a request arrives,
/// no timer runs, and concurrent requests never wait for each other.
///
/// Zero `max_tokens` or `tokens_per_fill` (rejected by the macro) are treated as 1.
#[derive(Debug)]
pub struct LocalRateLimit {
    bucket: Bucket,
    status: StatusCode,
    stats: RateLimitStats,
}

/// Counters of one [`LocalRateLimit`] (Envoy: `http_local_rate_limit.*`).
#[derive(Debug, Default)]
pub struct RateLimitStats {
    /// Requests let through.
    pub ok: Counter,
    /// Requests answered `429`.
    pub rate_limited: Counter,
}

impl LocalRateLimit {
    /// One bucket per level: two in a chain would double-count every request.
    pub const UNIQUE: bool = true;

    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        Self {
            bucket: Bucket::new(max_tokens, tokens_per_fill, fill_interval, Instant::now()),
            status: StatusCode::TOO_MANY_REQUESTS,
            stats: RateLimitStats::default(),
        }
    }

    /// The status of the local reply (Envoy's `status`); default `429`. A status that
    /// is not an error (below 400) would tell clients they succeeded, so it is ignored.
    pub fn status(mut self, status: StatusCode) -> Self {
        if status.as_u16() >= 400 {
            self.status = status;
        }
        self
    }

    pub fn stats(&self) -> &RateLimitStats {
        &self.stats
    }
}

impl HttpFilter for LocalRateLimit {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        _request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        match self.bucket.try_acquire(self.bucket.now()) {
            Ok(()) => {
                self.stats.ok.inc();
                Flow::Continue
            }
            Err(wait) => {
                self.stats.rate_limited.inc();
                let mut flow = local_reply(self.status, "local_rate_limited\n", "RL");
                if let Flow::Respond(response) = &mut flow {
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
                }
                flow
            }
        }
    }
}

/// `wait` in whole seconds, rounded up, at least 1 (`retry-after: 0` invites a retry
/// storm and is never right when a request was just refused).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The token bucket, as GCRA: `tat` is the theoretical arrival time (nanoseconds since
/// `origin`) of the next request if the bucket were to be drained at exactly the fill
/// rate. A request at time `t` is admitted if `tat - t <= burst`, and then moves `tat`
/// on by one token's worth of time.
#[derive(Debug)]
struct Bucket {
    origin: Instant,
    tat: AtomicU64,
    /// Time one token is worth: `fill_interval / tokens_per_fill`.
    emission: u64,
    /// How far `tat` may run ahead of now: `(max_tokens - 1) * emission`.
    burst: u64,
    /// The clock is rounded down to this, so tokens arrive in batches every interval.
    interval: u64,
}

impl Bucket {
    fn new(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: Duration,
        origin: Instant,
    ) -> Self {
        let max_tokens = u64::from(max_tokens.max(1));
        let tokens_per_fill = u64::from(tokens_per_fill.max(1));
        let interval = duration_nanos(fill_interval.max(MIN_FILL_INTERVAL));
        // Rounding down makes a token at most a nanosecond cheaper: over the 1ms
        // minimum interval, a relative error below 1e-6.
        let emission = (interval / tokens_per_fill).max(1);
        Self {
            origin,
            tat: AtomicU64::new(0),
            emission,
            burst: (max_tokens - 1).saturating_mul(emission),
            interval,
        }
    }

    fn now(&self) -> u64 {
        duration_nanos(self.origin.elapsed())
    }

    /// Takes a token at `now` (nanoseconds since `origin`), or says how long until one
    /// will be available.
    fn try_acquire(&self, real_now: u64) -> Result<(), Duration> {
        let now = real_now - real_now % self.interval;
        // Relaxed is enough: the bucket is one word and publishes no other data.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now);
            if base - now > self.burst {
                // Admitted again once `base - t <= burst` at an interval boundary `t`.
                let allowed_at = base - self.burst;
                let boundary = allowed_at
                    .div_ceil(self.interval)
                    .saturating_mul(self.interval);
                // `allowed_at > now`, so the boundary is after `real_now`.
                return Err(Duration::from_nanos(boundary.saturating_sub(real_now)));
            }
            match self.tat.compare_exchange_weak(
                tat,
                base.saturating_add(self.emission),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::filter::builtin::test_util::{header, info, now, reply, request};

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn bucket(max: u32, per_fill: u32, interval: Duration) -> Bucket {
        Bucket::new(max, per_fill, interval, Instant::now())
    }

    #[test]
    fn starts_full_and_refills_per_interval() {
        let b = bucket(3, 1, Duration::from_secs(1));
        for _ in 0..3 {
            assert!(b.try_acquire(0).is_ok());
        }
        assert_eq!(b.try_acquire(0), Err(Duration::from_secs(1)));
        // Tokens arrive at the interval boundary, not before.
        assert_eq!(b.try_acquire(999 * MS), Err(Duration::from_millis(1)));
        assert!(b.try_acquire(SEC).is_ok());
        assert!(b.try_acquire(SEC + 1).is_err());
    }

    #[test]
    fn refills_in_batches_capped_at_max() {
        let b = bucket(10, 5, Duration::from_secs(1));
        for _ in 0..10 {
            assert!(b.try_acquire(0).is_ok());
        }
        assert!(b.try_acquire(0).is_err());
        // One interval later: five tokens, all at once.
        for _ in 0..5 {
            assert!(b.try_acquire(SEC + 10 * MS).is_ok());
        }
        assert!(b.try_acquire(SEC + 20 * MS).is_err());
        // A long idle period refills to max_tokens and no further.
        let later = 3600 * SEC;
        for _ in 0..10 {
            assert!(b.try_acquire(later).is_ok());
        }
        assert!(b.try_acquire(later).is_err());
    }

    #[test]
    fn wait_reaches_the_next_boundary_with_a_token() {
        let b = bucket(1, 1, Duration::from_secs(10));
        assert!(b.try_acquire(0).is_ok());
        assert_eq!(b.try_acquire(2500 * MS), Err(Duration::from_millis(7500)));
    }

    #[test]
    fn zero_configuration_is_treated_as_one() {
        let b = bucket(0, 0, Duration::ZERO);
        assert!(b.try_acquire(0).is_ok());
        assert!(b.try_acquire(0).is_err());
        assert!(b.try_acquire(MS).is_ok());
    }

    #[test]
    fn concurrent_requests_take_exactly_the_tokens() {
        // An hour-long interval: no refill during the test.
        let b = Arc::new(bucket(1000, 1, Duration::from_secs(3600)));
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = &b;
                    s.spawn(move || (0..500).filter(|_| b.try_acquire(0).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn filter_answers_429_with_retry_after_and_flag() {
        let f = LocalRateLimit::new(1, 1, Duration::from_secs(60));
        let mut parts = request("GET", "/", &[]);
        assert!(now(f.on_request_headers(&mut (), &mut parts, &info())).is_continue());
        let (resp, body) = reply(now(f.on_request_headers(&mut (), &mut parts, &info())));
        assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&resp.headers, "x-proxy-response-flags"), Some("RL"));
        assert_eq!(header(&resp.headers, "content-type"), Some("text/plain"));
        let retry: u64 = header(&resp.headers, "retry-after")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(body, "local_rate_limited\n");
        assert_eq!(f.stats().ok.get(), 1);
        assert_eq!(f.stats().rate_limited.get(), 1);
    }

    #[test]
    fn status_can_be_changed_to_another_error() {
        let f = LocalRateLimit::new(1, 1, Duration::from_secs(60))
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .status(StatusCode::OK);
        let mut parts = request("GET", "/", &[]);
        now(f.on_request_headers(&mut (), &mut parts, &info()));
        let (resp, _) = reply(now(f.on_request_headers(&mut (), &mut parts, &info())));
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
