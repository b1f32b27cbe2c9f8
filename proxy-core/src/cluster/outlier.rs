//! Passive health checking (Envoy's outlier detection): endpoints that keep failing real
//! requests are ejected from balancing for a while, longer each time.

use std::time::Duration;

/// Outlier detection settings for one cluster, `const`-constructible. Defaults are
/// Envoy's.
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
    pub const DEFAULT: OutlierDetection = OutlierDetection {
        consecutive_5xx: 5,
        consecutive_gateway_failure: 5,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 10,
    };

    pub const fn consecutive_5xx(mut self, count: u32) -> Self {
        self.consecutive_5xx = count;
        self
    }

    pub const fn consecutive_gateway_failure(mut self, count: u32) -> Self {
        self.consecutive_gateway_failure = count;
        self
    }

    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    pub const fn base_ejection_time(mut self, time: Duration) -> Self {
        self.base_ejection_time = time;
        self
    }

    pub const fn max_ejection_time(mut self, time: Duration) -> Self {
        self.max_ejection_time = time;
        self
    }

    /// Values above 100 are taken as 100.
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
