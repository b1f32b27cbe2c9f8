//! How a DSL-built proxy chooses endpoints, seen from curl against real nginx origins
//! (two on TCP, one on a Unix socket), through `balance_fixture`:
//! session cookies, consistent hashing, weighted clusters, mirroring, and strict DNS
//! discovery through the system resolver (`localhost`, IPv4 only).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use proxy_tests::*;

const FIXTURE: &str = env!("CARGO_BIN_EXE_balance_fixture");

/// Each origin answers with its name, so the client can tell who served it.
fn origin(name: &str) -> String {
    format!(
        r#"
        location = /healthz {{ default_type text/plain; return 200 "ok\n"; }}
        location / {{ default_type text/plain; return 200 "{name}\n"; }}
        "#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    /// `$host $uri` of every mirrored request the shadow (`c`) received.
    shadow_hosts: std::path::PathBuf,
    nginx: Nginx,
    _proxy: ProxyProcess,
    addr: SocketAddr,
}

fn start() -> Setup {
    let dir = tempdir();
    let hosts_log = dir.path().join("shadow-hosts.log");
    let shadow = format!(
        r#"
        location /mirror/ {{ access_log {} hosts; default_type text/plain; return 200 "c\n"; }}
        {}
        "#,
        hosts_log.display(),
        origin("c")
    );
    let nginx = Nginx::builder(dir.path())
        .http("log_format hosts '$host $uri';")
        .tcp("a", &origin("a"))
        .tcp("b", &origin("b"))
        .unix("c", &shadow)
        .tcp("d", &origin("d"))
        .start();
    let d = nginx.addr("d");
    let mut proxy = ProxyCommand::new(FIXTURE, dir.path())
        .env("A_ADDR", nginx.addr("a").to_string())
        .env("B_ADDR", nginx.addr("b").to_string())
        .env("C_SOCK", nginx.socket("c"))
        .env("DNS_TARGET", format!("localhost:{}", d.port()))
        .spawn();
    let addr = proxy.tcp_listener("main");
    Setup {
        _dir: dir,
        shadow_hosts: hosts_log,
        nginx,
        _proxy: proxy,
        addr,
    }
}

/// curl with `args`; its stdout. `URL[1-N]` globbing sends N requests on one connection.
fn curl_text(args: &[&str]) -> String {
    require_tool("curl", "curl");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// How many answers each origin gave.
fn tally(bodies: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in bodies.lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

#[test]
fn a_session_cookie_keeps_a_client_on_its_endpoint_without_revealing_it() {
    let setup = start();
    let base = format!("http://{}/sticky/", setup.addr);

    // Without the cookie, round robin visits all three (one of them a Unix socket).
    let spread = tally(&curl_text(&[&format!("{base}[1-30]")]));
    assert_eq!(spread.len(), 3, "{spread:?}");

    // With curl's cookie engine on, the first answer's cookie pins the other 29.
    let pinned = tally(&curl_text(&["-b", "", &format!("{base}[1-30]")]));
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert_eq!(pinned.values().sum::<usize>(), 30);

    // The cookie is opaque: neither an address nor a socket path.
    let head = curl_text(&["-D", "-", "-o", "/dev/null", &base]);
    let cookie = head
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: srv="))
        .unwrap_or_else(|| panic!("no session cookie in\n{head}"));
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    for secret in [
        setup.nginx.addr("a").to_string(),
        setup.nginx.addr("b").port().to_string(),
        setup.nginx.socket("c").display().to_string(),
        "127.0.0.1".to_owned(),
    ] {
        assert!(!cookie.contains(&secret), "{cookie} reveals {secret}");
    }

    // A forged cookie is ignored: the request is balanced and gets a real one.
    let head = curl_text(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "cookie: srv=0123456789abcdef",
        &base,
    ]);
    assert!(
        head.to_ascii_lowercase().contains("set-cookie: srv="),
        "{head}"
    );
}

#[test]
fn ring_hash_sends_each_user_to_one_endpoint() {
    let setup = start();
    let url = format!("http://{}/hashed/[1-20]", setup.addr);
    let mut owners = BTreeMap::new();
    for user in 0..30 {
        let header = format!("x-user: user-{user}");
        let answers = tally(&curl_text(&["-H", &header, &url]));
        assert_eq!(answers.len(), 1, "user-{user} moved: {answers:?}");
        let owner = answers.into_keys().next().unwrap();
        *owners.entry(owner).or_insert(0) += 1;
    }
    // 30 users over 3 endpoints: each endpoint owns some (P(one owns none) < 1e-4).
    assert_eq!(owners.len(), 3, "{owners:?}");
}

#[test]
fn weighted_clusters_split_traffic_by_weight() {
    let setup = start();
    let answers = tally(&curl_text(&[&format!(
        "http://{}/split/[1-1000]",
        setup.addr
    )]));
    let count = |name: &str| answers.get(name).copied().unwrap_or(0);
    let (blue, green) = (count("a"), count("b"));
    assert_eq!(blue + green, 1000, "{answers:?}");
    // Binomial(1000, 0.2): σ ≈ 12.6; ±80 is more than 6σ.
    assert!((120..=280).contains(&green), "{answers:?}");
}

#[test]
fn mirrored_requests_reach_the_shadow_with_a_shadow_host_and_never_answer() {
    let setup = start();
    let answers = tally(&curl_text(&[&format!(
        "http://{}/mirror/[1-10]",
        setup.addr
    )]));
    assert_eq!(answers.get("a"), Some(&10), "{answers:?}");
    let log = &setup.shadow_hosts;
    let lines = poll_until("10 mirrored requests at the shadow", DEADLINE, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        (text.lines().count() >= 10).then_some(text)
    });
    for line in lines.lines() {
        let (host, uri) = line.split_once(' ').unwrap();
        assert!(host.ends_with("-shadow"), "{line}");
        assert!(uri.starts_with("/mirror/"), "{line}");
    }
}

#[test]
fn strict_dns_resolves_the_target_and_serves_from_it() {
    let setup = start();
    let url = format!("http://{}/dns/[1-5]", setup.addr);
    // The first resolution happens before the listener binds; the endpoint then turns
    // healthy at its first check.
    let answers = poll_until("the DNS cluster to serve", DEADLINE, || {
        let answers = tally(&curl_text(&[&url]));
        (answers.get("d") == Some(&5)).then_some(answers)
    });
    assert_eq!(answers.len(), 1, "{answers:?}");
}
