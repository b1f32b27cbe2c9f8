//! Fault tests with real origins, through the `resilience_fixture` binary
//! (`src/bin/resilience_fixture.rs`): separate nginx processes as endpoints — one on TCP,
//! one on a Unix socket — killed with SIGKILL and restarted on the same address, a
//! blackholed endpoint, and wrk as the load generator. Every assertion is about what a
//! client sees (status, errors, latency) or about the proxy's own health log.
//!
//! - [`sigkill_of_an_endpoint_under_wrk_load_fails_no_request_and_traffic_returns_after_restart`]:
//!   with active health checks and retries on idempotent requests (`connect_failure`,
//!   `reset`, `5xx`), SIGKILLing the TCP nginx of a two-endpoint cluster in the middle of
//!   steady wrk load costs clients nothing: wrk reports no socket error and no non-2xx/3xx
//!   response. Requests in flight on the dying origin and those sent to it before the
//!   health checker notices are retried on the Unix-socket endpoint. Restarted on the
//!   same port, the origin gets traffic again (its access log grows) within
//!   `interval × healthy_threshold` plus slack.
//! - [`blackholed_endpoint_costs_each_request_at_most_its_per_try_timeouts`]: an endpoint
//!   that accepts connections and never answers (and no health check to take it out of
//!   the rotation) costs a request at most `per_try_timeout × (num_retries + 1)` plus
//!   slack — far below the 10s route timeout — and every request still succeeds, served
//!   by the Unix-socket nginx; first sequentially (each request timed), then under wrk
//!   load (no error, no wrk timeout).
//! - [`health_transitions_of_the_unix_socket_endpoint_follow_interval_and_thresholds`]:
//!   the health checker marks the Unix-socket endpoint unhealthy within
//!   `interval × unhealthy_threshold` (+ slack) of its nginx being SIGKILLed, and healthy
//!   again within `interval × healthy_threshold` (+ slack) of the restart, never sooner
//!   than one interval (the thresholds are honoured, not a single probe). Meanwhile the
//!   TCP endpoint never changes state and serves everything, and the checks show up in the
//!   Unix-socket nginx's own access log: the checker dials each endpoint's own address.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proxy_tests::process::strip_ansi;
use proxy_tests::*;

const FIXTURE: &str = env!("CARGO_BIN_EXE_resilience_fixture");

/// The `checked` cluster's `health_check` (see the fixture).
const INTERVAL: Duration = Duration::from_millis(200);
const UNHEALTHY_THRESHOLD: u32 = 2;
const HEALTHY_THRESHOLD: u32 = 2;
/// Both routes' `retry_policy`.
const PER_TRY_TIMEOUT: Duration = Duration::from_millis(300);
const NUM_RETRIES: u32 = 2;
/// Added to every time bound: scheduling noise on a loaded 2-core machine running other
/// suites in parallel. Small enough that a broken bound (the 10s route timeout, the 5s
/// default health-check interval) still fails.
const SLACK: Duration = Duration::from_millis(1500);
/// How long each phase of steady load lasts (a duration of load, not a synchronisation).
const STEADY: Duration = Duration::from_secs(1);

/// One nginx `server`: `/healthz` for the health checker, everything else answers with
/// the origin's name so a client can tell who served it.
fn origin_body(name: &str) -> String {
    format!(
        r#"
        location = /healthz {{ default_type text/plain; return 200 "ok\n"; }}
        location / {{ default_type text/plain; return 200 "origin={name}\n"; }}
        "#
    )
}

/// An nginx of its own (so killing it takes down only this endpoint) on a free TCP port.
fn tcp_origin(dir: &Path, name: &str) -> Nginx {
    Nginx::builder(&dir.join(name))
        .tcp(name, &origin_body(name))
        .start()
}

/// An nginx of its own on the Unix socket `<dir>/<name>/<name>.sock`.
fn unix_origin(dir: &Path, name: &str) -> Nginx {
    Nginx::builder(&dir.join(name))
        .unix(name, &origin_body(name))
        .start()
}

/// The fixture with `vars` set; every endpoint variable not given points somewhere
/// harmless inside the test's directory. Returns the proxy and its listener's address.
fn start_proxy(dir: &Path, vars: &[(&str, String)]) -> (ProxyProcess, SocketAddr) {
    let unused = dir.join("unused.sock").display().to_string();
    let defaults = [
        ("CHECKED_TCP", ClosedPort::new().addr().to_string()),
        ("CHECKED_PIPE", unused.clone()),
        ("UNCHECKED_TCP", ClosedPort::new().addr().to_string()),
        ("UNCHECKED_PIPE", unused),
    ];
    let mut command = ProxyCommand::new(FIXTURE, dir).args(["--log-level", "info"]);
    for (key, default) in defaults {
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(default, |(_, v)| v.clone());
        command = command.env(key, value);
    }
    let mut proxy = command.spawn();
    let addr = proxy.tcp_listener("main");
    (proxy, addr)
}

/// One `health changed` line of the proxy's log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthChange {
    cluster: String,
    endpoint: String,
    old: String,
    new: String,
}

/// The value of `key=` in a tracing line, unquoted.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

fn health_changes(log: &str) -> Vec<HealthChange> {
    strip_ansi(log)
        .lines()
        .filter(|line| line.contains("health changed"))
        .map(|line| HealthChange {
            cluster: field(line, "cluster").unwrap_or_default(),
            endpoint: field(line, "endpoint").unwrap_or_default(),
            old: field(line, "old").unwrap_or_default(),
            new: field(line, "new").unwrap_or_default(),
        })
        .collect()
}

/// The transitions of `endpoint` (as the proxy prints it: `ip:port` or `unix:/path`).
fn changes_of(proxy: &ProxyProcess, endpoint: &str) -> Vec<HealthChange> {
    health_changes(&proxy.stderr())
        .into_iter()
        .filter(|c| c.endpoint == endpoint)
        .collect()
}

/// Waits until `endpoint` has logged its `nth` transition (1-based) and checks it went
/// `old → new`; returns when it was seen. Fails after `within`.
fn wait_transition(
    proxy: &ProxyProcess,
    endpoint: &str,
    nth: usize,
    (old, new): (&str, &str),
    within: Duration,
) -> Instant {
    let start = Instant::now();
    let change = loop {
        if let Some(change) = changes_of(proxy, endpoint).into_iter().nth(nth - 1) {
            break change;
        }
        if start.elapsed() > within {
            proxy.fail(&format!(
                "{endpoint} did not log health transition #{nth} ({old} → {new}) within {within:?}"
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let seen = Instant::now();
    if change.old != old || change.new != new || change.cluster != "checked" {
        proxy.fail(&format!(
            "transition #{nth} of {endpoint}: expected {old} → {new} in `checked`, got {change:?}"
        ));
    }
    seen
}

/// Follows an nginx access log incrementally (wrk makes it grow by thousands of lines a
/// second) and counts the requests that were not health checks.
struct Served {
    file: File,
    partial: Vec<u8>,
    served: usize,
    checks: usize,
}

impl Served {
    fn new(log: &AccessLog) -> Self {
        let path: PathBuf = log.path().to_path_buf();
        let file = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut served = Self {
            file,
            partial: Vec::new(),
            served: 0,
            checks: 0,
        };
        served.file.seek(SeekFrom::Start(0)).unwrap();
        served
    }

    /// Reads what was appended since the last call; returns (served, health checks).
    fn update(&mut self) -> (usize, usize) {
        let mut fresh = Vec::new();
        self.file.read_to_end(&mut fresh).unwrap();
        self.partial.extend_from_slice(&fresh);
        let complete = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        for line in self.partial[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            // `connection|requests|method|uri|...` (see `proxy_tests::nginx`).
            if line.split(|&b| b == b'|').nth(3) == Some(b"/healthz".as_slice()) {
                self.checks += 1;
            } else {
                self.served += 1;
            }
        }
        self.partial.drain(..complete);
        (self.served, self.checks)
    }

    fn served(&mut self) -> usize {
        self.update().0
    }

    /// Polls until `count` non-check requests have been served in total.
    fn wait_served(&mut self, count: usize, what: &str) {
        poll_until(what, DEADLINE, || (self.served() >= count).then_some(()));
    }

    /// Polls until `more` non-check requests have been served from now on.
    fn wait_more(&mut self, more: usize, what: &str) {
        let count = self.served() + more;
        self.wait_served(count, what);
    }
}

/// One GET through curl: (status, body, how long it took).
fn get(url: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let out = curl(["-w", "\n%{http_code}", url]);
    let took = start.elapsed();
    assert_eq!(out.code, 0, "curl {url}: {}", out.stderr);
    let text = out.stdout_text();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned(), took)
}

/// The health-checked cluster of the fixture over its own two origins, both healthy.
struct Checked {
    /// nginx on TCP.
    a: Nginx,
    /// nginx on a Unix socket.
    b: Nginx,
    /// How the proxy's log names each endpoint.
    a_endpoint: String,
    b_endpoint: String,
    proxy: ProxyProcess,
    addr: SocketAddr,
}

/// Starts both origins and the proxy, and waits until both endpoints passed their first
/// health check.
fn start_checked(dir: &Path) -> Checked {
    let a = tcp_origin(dir, "a");
    let b = unix_origin(dir, "b");
    let a_endpoint = a.addr("a").to_string();
    let b_endpoint = pipe_name(&b.socket("b"));
    let (proxy, addr) = start_proxy(
        dir,
        &[
            ("CHECKED_TCP", a.addr("a").to_string()),
            ("CHECKED_PIPE", b.socket("b").display().to_string()),
        ],
    );
    wait_transition(&proxy, &a_endpoint, 1, ("pending", "healthy"), DEADLINE);
    wait_transition(&proxy, &b_endpoint, 1, ("pending", "healthy"), DEADLINE);
    Checked {
        a,
        b,
        a_endpoint,
        b_endpoint,
        proxy,
        addr,
    }
}

/// How the proxy names a Unix-socket endpoint in its logs.
fn pipe_name(path: &Path) -> String {
    format!("unix:{}", path.display())
}

#[test]
fn sigkill_of_an_endpoint_under_wrk_load_fails_no_request_and_traffic_returns_after_restart() {
    let dir = tempdir();
    let Checked {
        mut a,
        b,
        a_endpoint,
        b_endpoint: _,
        proxy,
        addr,
    } = start_checked(dir.path());
    let mut a_log = Served::new(&a.access_log("a"));
    let mut b_log = Served::new(&b.access_log("b"));

    let wrk = Wrk::start(
        &format!("http://{addr}/load"),
        2,
        16,
        Duration::from_secs(120),
        Duration::from_secs(2),
        dir.path(),
    );
    // Steady load over both endpoints.
    a_log.wait_more(500, "load on the TCP origin");
    b_log.wait_more(500, "load on the Unix-socket origin");
    std::thread::sleep(STEADY);

    // Crash the TCP origin in the middle of it.
    a.kill();
    let killed = Instant::now();
    let marked = wait_transition(&proxy, &a_endpoint, 2, ("healthy", "unhealthy"), DEADLINE);
    let detection = marked - killed;
    // Load carries on, on the Unix-socket origin alone.
    b_log.wait_more(1000, "load on the Unix-socket origin alone");
    std::thread::sleep(STEADY);
    let served_before_restart = a_log.served();

    // Restart it on the same port: traffic comes back.
    a.restart();
    let restarted = Instant::now();
    let healthy = wait_transition(&proxy, &a_endpoint, 3, ("unhealthy", "healthy"), DEADLINE);
    a_log.wait_served(
        served_before_restart + 1,
        "traffic back on the restarted origin",
    );
    let back = restarted.elapsed();
    let recovery = healthy - restarted;
    // And steady load over both again.
    std::thread::sleep(STEADY);
    a_log.wait_more(500, "load on the restarted TCP origin");
    b_log.wait_more(500, "load on the Unix-socket origin");

    let load_time = wrk.elapsed();
    let report = wrk.stop();
    let (a_served, b_served) = (a_log.served(), b_log.served());
    eprintln!(
        "wrk: {} requests in {load_time:?}; a served {a_served}, b served {b_served}; \
         unhealthy {detection:?} after SIGKILL; healthy {recovery:?} and traffic back \
         {back:?} after restart\n{}",
        report.requests, report.text
    );
    assert!(
        report.clean(),
        "clients saw failures while an endpoint died and came back:\n{}\n--- proxy ---\n{}",
        report.text,
        proxy.stderr()
    );
    assert!(
        report.requests >= 2500,
        "too little load to prove anything: {}",
        report.text
    );
    let bound = INTERVAL * UNHEALTHY_THRESHOLD + SLACK;
    assert!(
        detection <= bound,
        "marked unhealthy {detection:?} after the SIGKILL, more than {bound:?}"
    );
    let bound = INTERVAL * HEALTHY_THRESHOLD + SLACK;
    assert!(
        back <= bound,
        "traffic returned {back:?} after the restart, more than {bound:?}"
    );
}

#[test]
fn blackholed_endpoint_costs_each_request_at_most_its_per_try_timeouts() {
    let dir = tempdir();
    let blackhole = Origin::blackhole();
    let b = unix_origin(dir.path(), "b");
    let (_proxy, addr) = start_proxy(
        dir.path(),
        &[
            ("UNCHECKED_TCP", blackhole.addr().to_string()),
            ("UNCHECKED_PIPE", b.socket("b").display().to_string()),
        ],
    );
    let bound = PER_TRY_TIMEOUT * (NUM_RETRIES + 1) + SLACK;

    // Sequential requests, each timed.
    let mut timings = Vec::new();
    for i in 0..20 {
        let (status, body, took) = get(&format!("http://{addr}/unchecked/seq-{i}"));
        assert_eq!((status, body.as_str()), (200, "origin=b\n"), "request {i}");
        assert!(
            took <= bound,
            "request {i} took {took:?}, more than {bound:?}"
        );
        timings.push(took);
    }
    // Round robin sent some of them to the blackhole first: those waited one
    // per-try timeout, then were retried on the Unix-socket origin.
    let slow = timings.iter().filter(|t| **t >= PER_TRY_TIMEOUT).count();
    let max = timings.iter().max().copied().unwrap_or_default();
    eprintln!(
        "sequential: {slow}/20 hit the blackhole first; slowest {max:?}; blackhole accepted {}",
        blackhole.accepted()
    );
    assert!(
        slow >= 1 && blackhole.accepted() >= 1,
        "no request reached the blackhole, so nothing was proven: {timings:?}"
    );

    // The same under load: no request fails or exceeds wrk's 2s timeout.
    let accepted = blackhole.accepted();
    let wrk = Wrk::start(
        &format!("http://{addr}/unchecked/load"),
        2,
        16,
        Duration::from_secs(120),
        Duration::from_secs(2),
        dir.path(),
    );
    let mut b_log = Served::new(&b.access_log("b"));
    let start = b_log.served();
    b_log.wait_served(start + 50, "load on the Unix-socket origin");
    poll_until("load to reach the blackhole", DEADLINE, || {
        (blackhole.accepted() >= accepted + 16).then_some(())
    });
    // Let the load run for a while (a duration, not a synchronisation).
    std::thread::sleep(Duration::from_secs(2));
    let report = wrk.stop();
    eprintln!(
        "wrk: {} requests, blackhole accepted {} connections\n{}",
        report.requests,
        blackhole.accepted() - accepted,
        report.text
    );
    assert!(
        report.clean(),
        "requests failed or timed out with a blackholed endpoint:\n{}",
        report.text
    );
}

#[test]
fn health_transitions_of_the_unix_socket_endpoint_follow_interval_and_thresholds() {
    let dir = tempdir();
    let Checked {
        a,
        mut b,
        a_endpoint,
        b_endpoint,
        proxy,
        addr,
    } = start_checked(dir.path());
    let mut a_log = Served::new(&a.access_log("a"));
    let mut b_log = Served::new(&b.access_log("b"));
    // The checker's requests arrive over the Unix socket itself.
    poll_until(
        "health checks in the Unix-socket origin's log",
        DEADLINE,
        || (b_log.update().1 >= 2).then_some(()),
    );

    let serve = |count: usize| -> Vec<String> {
        (0..count)
            .map(|i| {
                let (status, body, _) = get(&format!("http://{addr}/r{i}"));
                assert_eq!(status, 200, "request {i}: {body}");
                body
            })
            .collect()
    };
    let bodies = serve(10);
    assert!(
        bodies.contains(&"origin=a\n".to_owned()) && bodies.contains(&"origin=b\n".to_owned()),
        "both endpoints should serve while healthy: {bodies:?}"
    );

    // SIGKILL the Unix-socket origin: unhealthy after `unhealthy_threshold` failed checks.
    b.kill();
    let killed = Instant::now();
    let down_bound = INTERVAL * UNHEALTHY_THRESHOLD + SLACK;
    let marked = wait_transition(&proxy, &b_endpoint, 2, ("healthy", "unhealthy"), down_bound);
    let down = marked - killed;
    assert!(
        down >= INTERVAL * (UNHEALTHY_THRESHOLD - 1),
        "unhealthy {down:?} after the kill: sooner than {UNHEALTHY_THRESHOLD} checks {INTERVAL:?} apart allow"
    );
    // Everything goes to the TCP origin now.
    let a_before = a_log.served();
    let bodies = serve(10);
    assert!(
        bodies.iter().all(|body| body == "origin=a\n"),
        "a request reached the dead endpoint's slot: {bodies:?}"
    );
    a_log.wait_served(a_before + 10, "the TCP origin to log the 10 requests");

    // Restart it on the same socket: healthy after `healthy_threshold` passed checks.
    b.restart();
    let restarted = Instant::now();
    let up_bound = INTERVAL * HEALTHY_THRESHOLD + SLACK;
    let marked = wait_transition(&proxy, &b_endpoint, 3, ("unhealthy", "healthy"), up_bound);
    let up = marked - restarted;
    assert!(
        up >= INTERVAL * (HEALTHY_THRESHOLD - 1),
        "healthy {up:?} after the restart: sooner than {HEALTHY_THRESHOLD} checks {INTERVAL:?} apart allow"
    );
    let b_before = b_log.served();
    let bodies = serve(10);
    let on_b = bodies.iter().filter(|body| *body == "origin=b\n").count();
    assert!(
        on_b >= 1,
        "no traffic back on the restarted origin: {bodies:?}"
    );
    b_log.wait_served(b_before + on_b, "the restarted origin to log its requests");

    // The TCP endpoint never changed state: each check dialed its own endpoint.
    let a_changes = changes_of(&proxy, &a_endpoint);
    assert_eq!(
        a_changes.len(),
        1,
        "the TCP endpoint changed state although its origin never failed: {a_changes:?}"
    );
    eprintln!(
        "unix endpoint: unhealthy {down:?} after SIGKILL (bound {down_bound:?}), healthy {up:?} \
         after restart (bound {up_bound:?}); {on_b}/10 requests back on it"
    );
}
