use std::time::Duration;

use super::*;

fn network() -> Result<(), Failure> {
    Err(Failure::network("refused"))
}

#[test]
fn first_result_decides_alone() {
    let check = HealthCheck::tcp_connect();
    let mut up = Tracker::new();
    assert_eq!(up.record(&check, &Ok(())), Some(State::Healthy));
    let mut down = Tracker::new();
    assert_eq!(down.record(&check, &network()), Some(State::Unhealthy));
}

#[test]
fn thresholds_count_consecutive_results() {
    let check = HealthCheck::tcp_connect()
        .unhealthy_threshold(3)
        .healthy_threshold(2);
    let mut tracker = Tracker::new();
    tracker.record(&check, &Ok(()));
    assert_eq!(tracker.record(&check, &network()), None);
    assert_eq!(
        tracker.record(&check, &Ok(())),
        None,
        "a success resets failures"
    );
    assert_eq!(tracker.record(&check, &network()), None);
    assert_eq!(tracker.record(&check, &network()), None);
    assert_eq!(tracker.record(&check, &network()), Some(State::Unhealthy));
    assert_eq!(tracker.record(&check, &Ok(())), None);
    assert_eq!(tracker.record(&check, &Ok(())), Some(State::Healthy));
}

#[test]
fn an_active_failure_ignores_the_unhealthy_threshold() {
    let check = HealthCheck::http("/").unhealthy_threshold(5);
    let mut tracker = Tracker::new();
    tracker.record(&check, &Ok(()));
    let active = Err(Failure::active("HTTP status 503 is not expected"));
    assert_eq!(tracker.record(&check, &active), Some(State::Unhealthy));
}

#[test]
fn pause_adds_jitter_and_uses_the_no_traffic_interval_when_idle() {
    let check = HealthCheck::redis()
        .interval(Duration::from_millis(100))
        .jitter(Duration::from_millis(10))
        .no_traffic_interval(Duration::from_secs(60));
    for _ in 0..100 {
        let busy = check.pause(true);
        assert!(busy >= Duration::from_millis(100) && busy <= Duration::from_millis(110));
    }
    assert!(check.pause(false) >= Duration::from_secs(60));
}

#[test]
fn builders_are_const_and_only_touch_their_kind() {
    const CHECK: HealthCheck = HealthCheck::http("/healthz")
        .host("example")
        .expected_statuses(&[(200, 200), (204, 204)])
        .service_name_header("svc");
    assert_eq!(
        CHECK.kind,
        HealthCheckKind::Http {
            path: "/healthz",
            host: Some("example"),
            expected_statuses: &[(200, 200), (204, 204)],
            service_name_header: Some("svc"),
        }
    );
    assert_eq!(HealthCheck::redis().host("x").kind, HealthCheckKind::Redis);
}
