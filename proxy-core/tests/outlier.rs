//! Outlier detection against real origins, through the proxy's `Server` in-process with a
//! hand-written router: endpoints answering 5xx or refusing connections are ejected,
//! traffic goes to the rest, and ejected endpoints return after their ejection time.
//!
//! Timing is checked only by lower bounds that hold whatever the machine's load (an
//! ejection cannot end before its ejection time); every wait is for a condition, with a
//! generous limit.

#![allow(clippy::unwrap_used)] // a test: a failed step should panic with its error

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxy_core::cluster::{Cluster, ClusterOptions, Endpoint, OutlierDetection};
use proxy_core::config::EndpointAddress;
use support::{Pace, RawOrigin, eventually, leak, start_proxy, within};
use tokio::net::TcpListener;

/// The route every request takes to the cluster under test.
const ROUTE: &str = "test/outlier/0";

// ----- origins ------------------------------------------------------------------------

/// A keep-alive HTTP/1.1 origin answering every request at once with `status` and the
/// body `name`.
async fn origin(name: &'static str, status: u16) -> RawOrigin {
    RawOrigin::start(name, status, Pace::Fast).await
}

/// An address nothing listens on: connecting is refused.
async fn refused_address() -> EndpointAddress {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    EndpointAddress::Tcp(address)
}

// ----- the proxy ----------------------------------------------------------------------

/// The status code and body of one `GET /` on a new connection.
async fn get(proxy: SocketAddr) -> (u16, String) {
    let response = within("proxied request", support::get(proxy)).await;
    support::status_and_body(&response)
}

/// Sends requests until `endpoint` is ejected; returns when the request that ejected it
/// started (no later than the ejection itself).
async fn send_until_ejected(proxy: SocketAddr, endpoint: &Endpoint) -> Instant {
    for _ in 0..50 {
        let started = Instant::now();
        get(proxy).await;
        if endpoint.is_ejected() {
            return started;
        }
    }
    panic!("{} not ejected after 50 requests", endpoint.address());
}

/// Waits until `endpoint` is back; returns how long it was out, at least.
async fn ejection_lasted(endpoint: &Endpoint, since: Instant) -> Duration {
    eventually("endpoint returns", || !endpoint.is_ejected()).await;
    since.elapsed()
}

fn stats_text(cluster: &Cluster) -> String {
    let mut out = String::new();
    cluster.render_stats(&mut out);
    out
}

// ----- tests --------------------------------------------------------------------------

#[tokio::test]
async fn consecutive_5xx_ejects_then_returns_and_the_second_ejection_lasts_longer() {
    let good = origin("good", 200).await;
    let bad = origin("bad", 500).await;
    // Review every 300 ms: an endpoint back from its first ejection keeps its doubled
    // ejection time for at least one interval, far longer than the few requests the
    // test needs to eject it again.
    let detection = OutlierDetection::DEFAULT
        .consecutive_5xx(3)
        .interval(Duration::from_millis(300))
        .base_ejection_time(Duration::from_millis(600))
        .max_ejection_time(Duration::from_secs(10))
        .max_ejection_percent(50);
    let options = ClusterOptions::DEFAULT
        .outlier_detection(detection)
        .healthy_panic_threshold(0);
    let cluster = leak(Cluster::new(
        "outlier_5xx",
        vec![good.address.clone(), bad.address.clone()],
        options,
    ));
    let review = tokio::spawn(cluster.outlier_detection().unwrap());
    assert!(
        cluster.outlier_detection().is_none(),
        "one review task per cluster"
    );
    let (server, proxy) = start_proxy(cluster, ROUTE);
    let bad_endpoint = &cluster.endpoints()[1];

    let ejected = send_until_ejected(proxy, bad_endpoint).await;
    let stats = cluster.outlier_stats();
    assert_eq!(stats.ejections_active.get(), 1);
    assert_eq!(stats.ejections_detected_consecutive_5xx.get(), 1);
    assert_eq!(stats.ejections_enforced_consecutive_5xx.get(), 1);
    assert_eq!(stats.ejections_enforced_total.get(), 1);
    assert_eq!(
        stats.ejections_detected_consecutive_gateway_failure.get(),
        0
    );
    assert_eq!(
        bad.hits.load(Ordering::SeqCst),
        3,
        "ejected on the third 500"
    );
    assert_eq!(cluster.membership_stats().membership_healthy.get(), 1);
    assert_eq!(cluster.membership_stats().membership_total.get(), 2);

    // While ejected, only the good endpoint gets traffic.
    let hits_before = bad.hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(get(proxy).await, (200, "good".to_owned()));
    }
    assert_eq!(bad.hits.load(Ordering::SeqCst), hits_before);

    let first = ejection_lasted(bad_endpoint, ejected).await;
    assert!(
        first >= Duration::from_millis(600),
        "first ejection {first:?}"
    );
    assert_eq!(cluster.outlier_stats().ejections_active.get(), 0);
    assert_eq!(cluster.membership_stats().membership_healthy.get(), 2);

    // Back in rotation, still failing: ejected again, for twice the base time.
    let ejected = send_until_ejected(proxy, bad_endpoint).await;
    let second = ejection_lasted(bad_endpoint, ejected).await;
    assert!(
        second >= Duration::from_millis(1200),
        "second ejection {second:?}"
    );
    assert!(second > first, "first {first:?}, second {second:?}");

    let stats = cluster.outlier_stats();
    assert_eq!(stats.ejections_enforced_consecutive_5xx.get(), 2);
    assert_eq!(stats.ejections_total.get(), 2);
    assert_eq!(stats.ejections_active.get(), 0);
    assert_eq!(stats.ejections_overflow.get(), 0);
    let text = stats_text(cluster);
    for line in [
        "cluster.outlier_5xx.outlier_detection.ejections_enforced_consecutive_5xx: 2\n",
        "cluster.outlier_5xx.outlier_detection.ejections_active: 0\n",
        "cluster.outlier_5xx.membership_total: 2\n",
        "cluster.outlier_5xx.membership_healthy: 2\n",
        "cluster.outlier_5xx.circuit_breakers.default.rq_open: 0\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert!(
        !text.contains(".health_check."),
        "no health_check.* without health checking"
    );
    let five_xx = cluster.stats().upstream_rq_5xx.get();
    assert_eq!(
        five_xx,
        u64::try_from(bad.hits.load(Ordering::SeqCst)).unwrap()
    );

    review.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn refused_connections_are_gateway_failures_and_eject() {
    let good = origin("good", 200).await;
    let refused = refused_address().await;
    let detection = OutlierDetection::DEFAULT
        .consecutive_5xx(0)
        .consecutive_gateway_failure(2)
        .base_ejection_time(Duration::from_secs(60))
        .max_ejection_percent(50);
    let options = ClusterOptions::DEFAULT
        .outlier_detection(detection)
        .healthy_panic_threshold(0);
    let cluster = leak(Cluster::new(
        "outlier_refused",
        vec![good.address.clone(), refused],
        options,
    ));
    let (server, proxy) = start_proxy(cluster, ROUTE);
    let refused_endpoint = &cluster.endpoints()[1];

    send_until_ejected(proxy, refused_endpoint).await;
    let stats = cluster.outlier_stats();
    assert_eq!(
        stats.ejections_detected_consecutive_gateway_failure.get(),
        1
    );
    assert_eq!(
        stats.ejections_enforced_consecutive_gateway_failure.get(),
        1
    );
    assert_eq!(
        stats.ejections_detected_consecutive_5xx.get(),
        0,
        "disabled"
    );
    assert_eq!(cluster.stats().upstream_cx_connect_fail.get(), 2);
    assert_eq!(cluster.stats().upstream_rq_5xx.get(), 2);
    for _ in 0..6 {
        assert_eq!(get(proxy).await, (200, "good".to_owned()));
    }
    assert_eq!(cluster.stats().upstream_cx_connect_fail.get(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn timeouts_reported_by_the_router_are_gateway_failures() {
    let origin = origin("slow", 200).await;
    let detection = OutlierDetection::DEFAULT
        .consecutive_5xx(3)
        .consecutive_gateway_failure(2);
    let cluster = leak(Cluster::new(
        "outlier_timeouts",
        vec![origin.address.clone()],
        ClusterOptions::DEFAULT.outlier_detection(detection),
    ));
    let endpoint = &cluster.endpoints()[0];
    cluster.record_timeout(endpoint);
    assert!(!endpoint.is_ejected());
    cluster.record_timeout(endpoint);
    assert!(
        endpoint.is_ejected(),
        "the second consecutive timeout ejects"
    );
    let stats = cluster.outlier_stats();
    assert_eq!(
        stats.ejections_enforced_consecutive_gateway_failure.get(),
        1
    );
    assert_eq!(cluster.stats().upstream_rq_5xx.get(), 2);
    // A single endpoint is never "over" max_ejection_percent: one can always go.
    assert_eq!(stats.ejections_overflow.get(), 0);
}

#[tokio::test]
async fn max_ejection_percent_caps_ejections_and_counts_overflow() {
    let failing = [
        origin("a", 500).await,
        origin("b", 500).await,
        origin("c", 500).await,
        origin("d", 500).await,
    ];
    let detection = OutlierDetection::DEFAULT
        .consecutive_5xx(1)
        .consecutive_gateway_failure(0)
        .base_ejection_time(Duration::from_secs(60))
        .max_ejection_percent(50);
    let cluster = leak(Cluster::new(
        "outlier_percent",
        failing.iter().map(|o| o.address.clone()).collect(),
        ClusterOptions::DEFAULT
            .outlier_detection(detection)
            .healthy_panic_threshold(0),
    ));
    let (server, proxy) = start_proxy(cluster, ROUTE);
    let stats = cluster.outlier_stats();
    for _ in 0..8 {
        assert_eq!(get(proxy).await.0, 500);
    }
    let ejected = cluster
        .endpoints()
        .iter()
        .filter(|e| e.is_ejected())
        .count();
    assert_eq!(ejected, 2, "50 % of 4");
    assert_eq!(stats.ejections_active.get(), 2);
    assert_eq!(stats.ejections_enforced_total.get(), 2);
    assert!(stats.ejections_overflow.get() >= 1);
    // Every detection past the cap overflowed.
    assert_eq!(
        stats.ejections_detected_consecutive_5xx.get(),
        2 + stats.ejections_overflow.get()
    );
    server.shutdown().await;

    // With 0 %, one endpoint can still be ejected, never two.
    let pair = [origin("e", 500).await, origin("f", 500).await];
    let cluster = leak(Cluster::new(
        "outlier_zero_percent",
        pair.iter().map(|o| o.address.clone()).collect(),
        ClusterOptions::DEFAULT
            .outlier_detection(detection.max_ejection_percent(0))
            .healthy_panic_threshold(0),
    ));
    let (server, proxy) = start_proxy(cluster, ROUTE);
    for _ in 0..4 {
        assert_eq!(get(proxy).await.0, 500);
    }
    let ejected = cluster
        .endpoints()
        .iter()
        .filter(|e| e.is_ejected())
        .count();
    assert_eq!(ejected, 1);
    assert!(cluster.outlier_stats().ejections_overflow.get() >= 1);
    server.shutdown().await;
}
