//! Passive health checking (Envoy's outlier detection): endpoints that keep failing real
//! requests are ejected from balancing for a while, longer each time.
//!
//! The semantics, and where they differ from Envoy's, are documented on the settings
//! type, where the public documentation shows them.

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Cluster, Endpoint};
use crate::stats::OutlierStats;

/// Outlier detection settings for one cluster, `const`-constructible. Defaults are
/// Envoy's.
///
/// # Semantics (Envoy's consecutive-error detectors, `split_external_local_origin_errors`
/// off)
///
/// - **What counts.** Every outcome of [`Cluster::send`](super::Cluster) is reported for
///   the endpoint it went to: a response head with a 5xx status is an error for the
///   `consecutive_5xx` detector; 502, 503 and 504 are also *gateway failures* for the
///   `consecutive_gateway_failure` detector, and another 5xx resets that detector's
///   count. Failures of the proxy's own making count as Envoy maps them: a connect
///   failure or a connection reset before the response head as 503, a timeout
///   ([`Cluster::record_timeout`]) as 504: each is an error for both detectors. Any
///   other status (1xx–4xx) is a success and resets both counts. A circuit-breaker
///   overflow is not the endpoint's doing and is not reported. The TCP proxy reports
///   its connects: a failure as 503, a success as 200.
/// - **Detection.** When a count *reaches* its threshold, `ejections_detected_*` is
///   counted and that count restarts from 0, ejected or not. An endpoint already
///   ejected is not detected again.
/// - **Ejection** happens unless it would take the cluster's ejected endpoints above
///   `max_ejection_percent` of all its endpoints; then `ejections_overflow` is counted
///   instead. One endpoint can always be ejected when none is (so with the default 10 %
///   a cluster of fewer than ten endpoints can lose one). The endpoint's `n`-th ejection
///   in a row lasts `base_ejection_time × n`, at most `max_ejection_time`: `n` grows by
///   one per ejection while `base_ejection_time × n` is below `max_ejection_time`.
/// - **Review.** [`Cluster::outlier_detection`] runs every `interval`: an ejected
///   endpoint whose time has passed returns to balancing (its counts reset), and an
///   endpoint that has been back for at least an interval has its `n` decreased by one,
///   once per interval, so a reformed endpoint's next ejection is short again. Ejection
///   time is therefore rounded up to the next review.
/// - **Balancing.** Ejection sets the endpoint's `FAILED_OUTLIER_CHECK` flag; the
///   balancer skips it as it skips one failed by active health checking, and panic
///   mode (`healthy_panic_threshold`) applies to both alike.
///
/// Counting on the request path is a few relaxed atomic operations per outcome; only
/// an ejection (rare) does more, still without a lock. Every ejection and return is
/// logged at `info` with cluster, endpoint, reason and duration. Counters are
/// `cluster.<name>.outlier_detection.*` ([`OutlierStats`]).
///
/// # Deviations from Envoy
///
/// - Only the consecutive-5xx and consecutive-gateway-failure detectors exist (no
///   success-rate, failure-percentage or local-origin detectors), and they always
///   enforce (Envoy's `enforcing_consecutive_*` is 100 %).
/// - No jitter is added to ejection times (Envoy's `max_ejection_time_jitter` defaults
///   to 0 too).
/// - `max_ejection_percent` is counted over all the cluster's endpoints, across
///   priorities, as Envoy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx responses (gateway failures included) that eject an endpoint.
    /// Default 5; 0 disables this detector.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures (502, 503, 504, connect failure, reset, timeout)
    /// that eject an endpoint. Default 5; 0 disables this detector.
    pub consecutive_gateway_failure: u32,
    /// How often ejections are reviewed (an endpoint returns once its ejection time has
    /// passed at a review). Default 10 s.
    pub interval: Duration,
    /// An endpoint's `n`-th ejection lasts `base_ejection_time × n`, capped by
    /// `max_ejection_time`. Default 30 s.
    pub base_ejection_time: Duration,
    /// Default 300 s.
    pub max_ejection_time: Duration,
    /// At most this percentage of the cluster's endpoints is ejected at once (at least
    /// one endpoint can always be ejected). Default 10.
    pub max_ejection_percent: u8,
}

impl OutlierDetection {
    /// Envoy's defaults: 5 and 5 consecutive errors, 10 s interval, 30 s base and 300 s
    /// maximum ejection time, at most 10 % ejected.
    pub const DEFAULT: OutlierDetection = OutlierDetection {
        consecutive_5xx: 5,
        consecutive_gateway_failure: 5,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 10,
    };

    /// Sets [`Self::consecutive_5xx`]; 0 disables the detector.
    pub const fn consecutive_5xx(mut self, count: u32) -> Self {
        self.consecutive_5xx = count;
        self
    }

    /// Sets [`Self::consecutive_gateway_failure`]; 0 disables the detector.
    pub const fn consecutive_gateway_failure(mut self, count: u32) -> Self {
        self.consecutive_gateway_failure = count;
        self
    }

    /// Sets [`Self::interval`]; taken as at least 1 ms.
    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`Self::base_ejection_time`].
    pub const fn base_ejection_time(mut self, time: Duration) -> Self {
        self.base_ejection_time = time;
        self
    }

    /// Sets [`Self::max_ejection_time`].
    pub const fn max_ejection_time(mut self, time: Duration) -> Self {
        self.max_ejection_time = time;
        self
    }

    /// Sets [`Self::max_ejection_percent`]; values above 100 are taken as 100.
    pub const fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = if percent > 100 { 100 } else { percent };
        self
    }
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The status a local failure counts as (connect failure, reset before the response
/// head), as Envoy maps them when local-origin errors are not split out.
pub(crate) const LOCAL_FAILURE_STATUS: u16 = 503;
/// The status a timeout counts as.
pub(crate) const TIMEOUT_STATUS: u16 = 504;
/// The status a completed TCP proxy connect counts as (Envoy's
/// `LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL`).
const CONNECTED_STATUS: u16 = 200;

/// The shortest review interval: a zero interval would spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// `unejected_at` of an endpoint never ejected.
const NEVER: u64 = u64::MAX;

/// Times are kept as nanoseconds since this instant, so they fit in atomics.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn nanos_since_epoch() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Which detector fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detector {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
}

impl Detector {
    fn as_str(self) -> &'static str {
        match self {
            Detector::Consecutive5xx => "consecutive_5xx",
            Detector::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
        }
    }
}

/// One endpoint's outlier detection state. Counters are written on the request path
/// (relaxed: a count off by one under a race only shifts an ejection by one request);
/// the rest only when an endpoint is ejected or reviewed.
#[derive(Debug)]
pub(crate) struct EndpointOutlier {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    /// Claimed by the one caller that ejects the endpoint, released by the review that
    /// returns it: two detectors firing at once eject it once.
    claimed: AtomicBool,
    /// The `n` of the ejection time `base × n` (Envoy's ejection time backoff).
    backoff: AtomicU32,
    /// When the current ejection began.
    ejected_at: AtomicU64,
    /// When the last ejection ended; [`NEVER`] before the first.
    unejected_at: AtomicU64,
}

impl Default for EndpointOutlier {
    fn default() -> Self {
        Self {
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway_failure: AtomicU32::new(0),
            claimed: AtomicBool::new(false),
            backoff: AtomicU32::new(0),
            ejected_at: AtomicU64::new(0),
            unejected_at: AtomicU64::new(NEVER),
        }
    }
}

impl EndpointOutlier {
    fn reset_counts(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
    }
}

/// A cluster's outlier detection counters and review state.
#[derive(Debug, Default)]
pub(crate) struct ClusterOutlier {
    /// Endpoints ejected now: the authority for `max_ejection_percent` (the
    /// `ejections_active` gauge follows it).
    ejected: AtomicU32,
    stats: OutlierStats,
    /// Set by the first [`Cluster::outlier_detection`], so a cluster has one review task.
    started: AtomicBool,
}

impl Cluster {
    /// `cluster.<name>.outlier_detection.*` (all zero without outlier detection).
    pub fn outlier_stats(&self) -> &OutlierStats {
        &self.outlier.stats
    }

    /// The task that returns ejected endpoints to balancing once their time has passed
    /// and lets the ejection time of reformed endpoints decay (see
    /// [`OutlierDetection`]). `None` when the cluster has no
    /// [`outlier_detection`](super::ClusterOptions::outlier_detection) settings or this
    /// was called before. It reviews every `interval` until it is dropped; without it,
    /// ejected endpoints stay ejected.
    pub fn outlier_detection(&'static self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let config = self.options.outlier_detection?;
        if self.outlier.started.swap(true, Ordering::Relaxed) {
            return None;
        }
        let period = config.interval.max(MIN_INTERVAL);
        Some(async move {
            let start = tokio::time::Instant::now() + period;
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = nanos_since_epoch();
                self.for_each_endpoint(|endpoint| self.review(endpoint, now, &config));
            }
        })
    }

    /// Reports a TCP proxy connect to `endpoint` to outlier detection: a failure counts
    /// as a gateway failure (503), a success as a success.
    pub(crate) fn outlier_connect(&self, endpoint: &Endpoint, connected: bool) {
        let status = if connected {
            CONNECTED_STATUS
        } else {
            LOCAL_FAILURE_STATUS
        };
        self.outlier_status(endpoint, status);
    }

    /// Reports a response head from `endpoint` to outlier detection.
    #[inline]
    pub(crate) fn outlier_status(&self, endpoint: &Endpoint, status: u16) {
        let Some(config) = &self.options.outlier_detection else {
            return;
        };
        let state = endpoint.outlier();
        if !(500..600).contains(&status) {
            // A success. Loads first: most responses succeed, and a store on every one
            // would bounce the endpoint's cache line between cores for nothing.
            if state.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                state.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            if state.consecutive_gateway_failure.load(Ordering::Relaxed) != 0 {
                state
                    .consecutive_gateway_failure
                    .store(0, Ordering::Relaxed);
            }
            return;
        }
        if matches!(status, 502..=504) {
            let count = state
                .consecutive_gateway_failure
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            // Equality, not `>=`: exactly one report reaches the threshold.
            if count == config.consecutive_gateway_failure {
                self.detected(endpoint, Detector::ConsecutiveGatewayFailure, config);
            }
        } else {
            state
                .consecutive_gateway_failure
                .store(0, Ordering::Relaxed);
        }
        let count = state
            .consecutive_5xx
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if count == config.consecutive_5xx {
            self.detected(endpoint, Detector::Consecutive5xx, config);
        }
    }

    /// A detector reached its threshold for `endpoint`: eject it if allowed.
    #[cold]
    fn detected(&self, endpoint: &Endpoint, detector: Detector, config: &OutlierDetection) {
        let state = endpoint.outlier();
        if state.claimed.load(Ordering::Acquire) {
            return;
        }
        let stats = &self.outlier.stats;
        match detector {
            Detector::Consecutive5xx => {
                stats.ejections_detected_consecutive_5xx.inc();
                state.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            Detector::ConsecutiveGatewayFailure => {
                stats.ejections_detected_consecutive_gateway_failure.inc();
                state
                    .consecutive_gateway_failure
                    .store(0, Ordering::Relaxed);
            }
        }
        if state
            .claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let mut total = 0_u64;
        self.for_each_endpoint(|_| total += 1);
        let max_percent = u64::from(config.max_ejection_percent.min(100));
        let admitted = self
            .outlier
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ejected| {
                let after = u64::from(ejected) + 1;
                (ejected == 0 || after.saturating_mul(100) <= max_percent.saturating_mul(total))
                    .then_some(ejected + 1)
            })
            .is_ok();
        if !admitted {
            state.claimed.store(false, Ordering::Release);
            stats.ejections_overflow.inc();
            // Debug, not info: it repeats every threshold's worth of failures while the
            // cap holds, and `ejections_overflow` already tells the story.
            tracing::debug!(
                cluster = self.name,
                endpoint = %endpoint.address(),
                reason = detector.as_str(),
                max_ejection_percent = config.max_ejection_percent,
                "outlier not ejected: max_ejection_percent reached"
            );
            return;
        }
        let base = nanos(config.base_ejection_time);
        let max = nanos(config.max_ejection_time);
        let backoff = match state
            .backoff
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (base.saturating_mul(u64::from(n)) < max).then(|| n.saturating_add(1))
            }) {
            Ok(before) => before.saturating_add(1),
            Err(unchanged) => unchanged,
        };
        state
            .ejected_at
            .store(nanos_since_epoch(), Ordering::Relaxed);
        stats.ejections_total.inc();
        stats.ejections_enforced_total.inc();
        match detector {
            Detector::Consecutive5xx => stats.ejections_enforced_consecutive_5xx.inc(),
            Detector::ConsecutiveGatewayFailure => {
                stats.ejections_enforced_consecutive_gateway_failure.inc();
            }
        }
        stats.ejections_active.inc();
        // Last, with release ordering: the review task acts on the flag and must see the
        // ejection time and backoff written above.
        endpoint.set_ejected(true);
        self.recount_membership();
        tracing::info!(
            cluster = self.name,
            endpoint = %endpoint.address(),
            reason = detector.as_str(),
            duration = ?ejection_time(config, backoff),
            ejections_in_a_row = backoff,
            "outlier ejected"
        );
    }

    /// One endpoint at one review: return it if its time is up, else decay its backoff
    /// if it has stayed in for an interval.
    fn review(&self, endpoint: &Endpoint, now: u64, config: &OutlierDetection) {
        let state = endpoint.outlier();
        if !endpoint.is_ejected() {
            if state.claimed.load(Ordering::Acquire) {
                // Being ejected right now: its backoff is the ejection's to set.
                return;
            }
            let back_since = state.unejected_at.load(Ordering::Relaxed);
            if back_since != NEVER
                && now.saturating_sub(back_since) >= nanos(config.interval.max(MIN_INTERVAL))
            {
                let _ = state
                    .backoff
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
            return;
        }
        let backoff = state.backoff.load(Ordering::Acquire);
        let ejected_for = now.saturating_sub(state.ejected_at.load(Ordering::Relaxed));
        let time = ejection_time(config, backoff);
        if ejected_for < nanos(time) {
            return;
        }
        state.reset_counts();
        state.unejected_at.store(now, Ordering::Relaxed);
        endpoint.set_ejected(false);
        self.recount_membership();
        self.outlier.ejected.fetch_sub(1, Ordering::AcqRel);
        self.outlier.stats.ejections_active.dec();
        state.claimed.store(false, Ordering::Release);
        tracing::info!(
            cluster = self.name,
            endpoint = %endpoint.address(),
            reason = "ejection time elapsed",
            ejection_time = ?time,
            ejected_for = ?Duration::from_nanos(ejected_for),
            "outlier returned"
        );
    }
}

/// `base_ejection_time × backoff`, at most `max_ejection_time`.
fn ejection_time(config: &OutlierDetection, backoff: u32) -> Duration {
    config
        .base_ejection_time
        .saturating_mul(backoff)
        .min(config.max_ejection_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_linearly_up_to_the_maximum() {
        let config = OutlierDetection::DEFAULT
            .base_ejection_time(Duration::from_secs(30))
            .max_ejection_time(Duration::from_secs(100));
        assert_eq!(ejection_time(&config, 1), Duration::from_secs(30));
        assert_eq!(ejection_time(&config, 3), Duration::from_secs(90));
        assert_eq!(ejection_time(&config, 4), Duration::from_secs(100));
        assert_eq!(ejection_time(&config, u32::MAX), Duration::from_secs(100));
    }
}
