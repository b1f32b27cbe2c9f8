//! Fault injection: delays and aborts for a share of requests, as Envoy's `fault`
//! filter, for testing how clients and services cope.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;
use http::header::{HeaderMap, HeaderName};

use super::util::local_reply;
use crate::filter::{Flow, HttpFilter, RequestInfo};
use crate::stats::Counter;

const DELAY_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
const DELAY_PERCENT_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-delay-request-percentage");
const ABORT_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
const ABORT_PERCENT_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-request-percentage");

#[derive(Debug, Clone, Copy)]
enum Kind {
    Delay(Duration),
    Abort(StatusCode),
    /// Only what the request's headers ask for (Envoy's `header_delay` + `header_abort`).
    Headers,
}

/// Delays or aborts a percentage of requests before they go upstream.
///
/// * [`Fault::delay`] holds the request for a fixed time, then lets it continue.
/// * [`Fault::abort`] answers with a status instead of forwarding: body
///   `fault filter abort`, `x-proxy-response-flags: FI` (Envoy's flag for an injected
///   abort).
/// * [`Fault::headers`] injects only what the request asks for with
///   `x-envoy-fault-delay-request: <ms>` and `x-envoy-fault-abort-request: <status>`
///   (delay first, then abort, as Envoy).
///
/// `percent` (0–100, default 100) is the share of requests affected, sampled
/// independently per request with a thread-local RNG.
///
/// With `header_control(true)`, a delay or abort fault also honours the request's
/// header: its value replaces the configured one for that request. With header
/// control (and always for [`Fault::headers`]),
/// `x-envoy-fault-delay-request-percentage` / `x-envoy-fault-abort-request-percentage`
/// lower the percentage for that request, never raise it above `percent` (Envoy's
/// cap). A header that does not parse (delay: milliseconds; abort: a status in
/// 200–599; percentage: an integer) is ignored.
///
/// Header control lets clients slow down or fail their own requests: only enable it
/// where clients are trusted, and bound it with `max_active`, which caps faults in
/// progress (a request over the cap is forwarded normally and counted in
/// `faults_overflow`).
///
/// An injected delay is not visible in response flags (Envoy's `DI`): filters cannot
/// set flags on forwarded responses.
#[derive(Debug)]
pub struct Fault {
    kind: Kind,
    percent: f64,
    header_control: bool,
    max_active: u32,
    active: AtomicU32,
    stats: FaultStats,
}

/// Counters of one [`Fault`] (Envoy: `fault.*`).
#[derive(Debug, Default)]
pub struct FaultStats {
    pub delays_injected: Counter,
    pub aborts_injected: Counter,
    /// Faults not injected because `max_active` were already in progress.
    pub faults_overflow: Counter,
}

impl Fault {
    /// A delay and an abort are two entries in one chain, so the type may repeat.
    pub const UNIQUE: bool = false;

    fn with(kind: Kind) -> Self {
        Self {
            kind,
            percent: 100.0,
            header_control: matches!(kind, Kind::Headers),
            max_active: u32::MAX,
            active: AtomicU32::new(0),
            stats: FaultStats::default(),
        }
    }

    /// Delays requests by `duration`.
    pub fn delay(duration: Duration) -> Self {
        Self::with(Kind::Delay(duration))
    }

    /// Answers requests with `status`. A status below 200 (which the macro rejects)
    /// cannot be a final response; `503` is used instead.
    pub fn abort(status: StatusCode) -> Self {
        let status = if status.as_u16() < 200 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            status
        };
        Self::with(Kind::Abort(status))
    }

    /// Injects only faults the request's headers ask for.
    pub fn headers() -> Self {
        Self::with(Kind::Headers)
    }

    /// Percentage of requests affected, 0 to 100 (fractions allowed); default 100.
    /// Out-of-range values are clamped; NaN means none.
    pub fn percent(mut self, percent: f64) -> Self {
        self.percent = if percent.is_nan() {
            0.0
        } else {
            percent.clamp(0.0, 100.0)
        };
        self
    }

    /// Lets `x-envoy-fault-*` request headers replace the configured delay or status.
    /// Always on for [`Fault::headers`].
    pub fn header_control(mut self, enabled: bool) -> Self {
        self.header_control = enabled || matches!(self.kind, Kind::Headers);
        self
    }

    /// At most this many faults in progress at once (Envoy's `max_active_faults`);
    /// default unlimited.
    pub fn max_active(mut self, max: u32) -> Self {
        self.max_active = max;
        self
    }

    pub fn stats(&self) -> &FaultStats {
        &self.stats
    }

    /// The percentage for this request: a valid percentage header lowers it.
    fn percent_for(&self, headers: &HeaderMap, header: &HeaderName) -> f64 {
        if !self.header_control {
            return self.percent;
        }
        match parse_header::<u32>(headers, header) {
            Some(requested) => f64::from(requested).min(self.percent),
            None => self.percent,
        }
    }

    async fn inject_delay(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let Some(_active) = self.begin() else {
            return;
        };
        self.stats.delays_injected.inc();
        tokio::time::sleep(delay).await;
    }

    fn inject_abort(&self, status: StatusCode) -> Flow {
        let Some(_active) = self.begin() else {
            return Flow::Continue;
        };
        self.stats.aborts_injected.inc();
        local_reply(status, "fault filter abort\n", "FI")
    }

    /// Counts a fault in progress until the guard drops (also when the client goes
    /// away mid-delay and the future is dropped); `None` over `max_active`.
    fn begin(&self) -> Option<ActiveGuard<'_>> {
        let admitted = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_active).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(ActiveGuard(&self.active))
        } else {
            self.stats.faults_overflow.inc();
            None
        }
    }
}

struct ActiveGuard<'a>(&'a AtomicU32);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a request is picked at `percent` (0–100).
fn sample(percent: f64) -> bool {
    if percent >= 100.0 {
        true
    } else if percent > 0.0 {
        fastrand::f64() * 100.0 < percent
    } else {
        false
    }
}

fn parse_header<T: std::str::FromStr>(headers: &HeaderMap, name: &HeaderName) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_status(headers: &HeaderMap) -> Option<StatusCode> {
    parse_header::<u16>(headers, &ABORT_HEADER)
        .filter(|code| (200..600).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
}

fn header_delay(headers: &HeaderMap) -> Option<Duration> {
    parse_header::<u64>(headers, &DELAY_HEADER).map(Duration::from_millis)
}

impl HttpFilter for Fault {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        let headers = &request.headers;
        match self.kind {
            Kind::Delay(configured) => {
                let delay = if self.header_control {
                    header_delay(headers).unwrap_or(configured)
                } else {
                    configured
                };
                if sample(self.percent_for(headers, &DELAY_PERCENT_HEADER)) {
                    self.inject_delay(delay).await;
                }
                Flow::Continue
            }
            Kind::Abort(configured) => {
                let status = if self.header_control {
                    header_status(headers).unwrap_or(configured)
                } else {
                    configured
                };
                if sample(self.percent_for(headers, &ABORT_PERCENT_HEADER)) {
                    return self.inject_abort(status);
                }
                Flow::Continue
            }
            Kind::Headers => {
                if let Some(delay) = header_delay(headers) {
                    if sample(self.percent_for(headers, &DELAY_PERCENT_HEADER)) {
                        self.inject_delay(delay).await;
                    }
                }
                if let Some(status) = header_status(&request.headers) {
                    if sample(self.percent_for(&request.headers, &ABORT_PERCENT_HEADER)) {
                        return self.inject_abort(status);
                    }
                }
                Flow::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Instant;

    use super::*;
    use crate::filter::builtin::test_util::{header, info, now, reply, request};

    fn run(fault: &Fault, headers: &[(&str, &str)]) -> Flow {
        let mut parts = request("GET", "/", headers);
        now(fault.on_request_headers(&mut (), &mut parts, &info()))
    }

    #[test]
    fn abort_replies_with_status_and_flag() {
        let fault = Fault::abort(StatusCode::SERVICE_UNAVAILABLE);
        let (resp, body) = reply(run(&fault, &[]));
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&resp.headers, "x-proxy-response-flags"), Some("FI"));
        assert_eq!(body, "fault filter abort\n");
        assert_eq!(fault.stats().aborts_injected.get(), 1);
    }

    #[test]
    fn percent_zero_and_hundred() {
        let never = Fault::abort(StatusCode::BAD_GATEWAY).percent(0.0);
        let always = Fault::abort(StatusCode::BAD_GATEWAY).percent(100.0);
        for _ in 0..200 {
            assert!(run(&never, &[]).is_continue());
            assert!(!run(&always, &[]).is_continue());
        }
        assert!(
            run(
                &Fault::abort(StatusCode::BAD_GATEWAY).percent(f64::NAN),
                &[]
            )
            .is_continue()
        );
    }

    #[test]
    fn percent_samples_roughly_that_share() {
        fastrand::seed(7);
        let fault = Fault::abort(StatusCode::BAD_GATEWAY).percent(25.0);
        let aborted = (0..4000)
            .filter(|_| !run(&fault, &[]).is_continue())
            .count();
        // 25% of 4000 = 1000, standard deviation about 27: a wide margin.
        assert!((850..1150).contains(&aborted), "{aborted}");
    }

    #[test]
    fn headers_are_ignored_without_header_control() {
        let fault = Fault::abort(StatusCode::BAD_GATEWAY);
        let (resp, _) = reply(run(&fault, &[("x-envoy-fault-abort-request", "418")]));
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        let quiet = Fault::headers().header_control(false);
        let (resp, _) = reply(run(&quiet, &[("x-envoy-fault-abort-request", "418")]));
        assert_eq!(
            resp.status,
            StatusCode::IM_A_TEAPOT,
            "header_control is implied by headers()"
        );
    }

    #[test]
    fn header_control_replaces_the_status() {
        let fault = Fault::abort(StatusCode::BAD_GATEWAY).header_control(true);
        let (resp, _) = reply(run(&fault, &[("x-envoy-fault-abort-request", "418")]));
        assert_eq!(resp.status, StatusCode::IM_A_TEAPOT);
        // Invalid values fall back to the configured status.
        for bad in ["99", "600", "abc", ""] {
            let (resp, _) = reply(run(&fault, &[("x-envoy-fault-abort-request", bad)]));
            assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{bad:?}");
        }
    }

    #[test]
    fn header_percentage_is_capped_by_the_configured_one() {
        let fault = Fault::abort(StatusCode::BAD_GATEWAY)
            .percent(0.0)
            .header_control(true);
        assert!(run(&fault, &[("x-envoy-fault-abort-request-percentage", "100")]).is_continue());
        let fault = Fault::abort(StatusCode::BAD_GATEWAY).header_control(true);
        assert!(run(&fault, &[("x-envoy-fault-abort-request-percentage", "0")]).is_continue());
    }

    #[test]
    fn header_only_fault_needs_a_header() {
        let fault = Fault::headers();
        assert!(run(&fault, &[]).is_continue());
        let (resp, _) = reply(run(&fault, &[("x-envoy-fault-abort-request", "503")]));
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn abort_status_below_200_falls_back_to_503() {
        let (resp, _) = reply(run(&Fault::abort(StatusCode::CONTINUE), &[]));
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn max_active_caps_faults_in_progress() {
        let fault = Fault::abort(StatusCode::BAD_GATEWAY).max_active(0);
        assert!(run(&fault, &[]).is_continue());
        assert_eq!(fault.stats().faults_overflow.get(), 1);
        assert_eq!(fault.stats().aborts_injected.get(), 0);
    }

    #[tokio::test]
    async fn delay_holds_the_request() {
        let fault = Fault::delay(Duration::from_millis(50));
        let mut parts = request("GET", "/", &[]);
        let started = Instant::now();
        assert!(
            fault
                .on_request_headers(&mut (), &mut parts, &info())
                .await
                .is_continue()
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(fault.stats().delays_injected.get(), 1);
        assert_eq!(fault.active.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn header_delay_replaces_the_configured_one() {
        // Configured an hour, header asks for 20ms: the test finishing proves the header won.
        let fault = Fault::delay(Duration::from_secs(3600)).header_control(true);
        let mut parts = request("GET", "/", &[("x-envoy-fault-delay-request", "20")]);
        let started = Instant::now();
        assert!(
            fault
                .on_request_headers(&mut (), &mut parts, &info())
                .await
                .is_continue()
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn headers_fault_delays_then_aborts() {
        let fault = Fault::headers();
        let mut parts = request(
            "GET",
            "/",
            &[
                ("x-envoy-fault-delay-request", "20"),
                ("x-envoy-fault-abort-request", "500"),
            ],
        );
        let started = Instant::now();
        let flow = fault.on_request_headers(&mut (), &mut parts, &info()).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        let (resp, _) = reply(flow);
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(fault.stats().delays_injected.get(), 1);
        assert_eq!(fault.stats().aborts_injected.get(), 1);
    }

    #[tokio::test]
    async fn cancelled_delay_releases_its_slot() {
        let fault = Fault::delay(Duration::from_secs(3600)).max_active(1);
        let mut parts = request("GET", "/", &[]);
        let info = info();
        {
            let mut state = ();
            let mut delayed =
                std::pin::pin!(fault.on_request_headers(&mut state, &mut parts, &info));
            // Poll exactly once: the delay starts and is pending.
            let polled = std::future::poll_fn(|cx| Poll::Ready(delayed.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            assert_eq!(fault.active.load(Ordering::Relaxed), 1);
            // Dropped here, as when the client goes away.
        }
        assert_eq!(fault.active.load(Ordering::Relaxed), 0);
        // A zero-length delay is no fault at all.
        let zero = Fault::delay(Duration::ZERO);
        assert!(now(zero.on_request_headers(&mut (), &mut parts, &info)).is_continue());
        assert_eq!(zero.stats().delays_injected.get(), 0);
    }
}
