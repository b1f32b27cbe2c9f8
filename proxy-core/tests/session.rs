//! Session persistence (sticky sessions by cookie or header) and avoidance of endpoints a
//! request already tried, through `Cluster::select`, and end to end through a real
//! `Server` in front of real in-test origins that answer with their own name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::HeaderValue;
use http::header::{COOKIE, SET_COOKIE};
use proxy_core::cluster::{
    Cluster, ClusterOptions, Endpoint, HashPolicy, LbPolicy, Selection, SessionPersistence,
};
use proxy_core::config::EndpointAddress;
use support::{answer_with_name, exchange, leak};

const COOKIE_NAME: &str = "proxy-session";

fn sticky_cookie(ttl: Option<Duration>) -> ClusterOptions {
    ClusterOptions::DEFAULT.session_persistence(SessionPersistence::Cookie {
        name: COOKIE_NAME,
        path: "/",
        ttl,
    })
}

/// Addresses nobody listens on: `select` never dials.
fn addresses(count: u16) -> Vec<EndpointAddress> {
    (0..count)
        .map(|i| EndpointAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9 + i)))
        .collect()
}

fn request(headers: &[(&http::HeaderName, &str)]) -> http::request::Parts {
    let mut request = http::Request::new(());
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).unwrap());
    }
    request.into_parts().0
}

fn index_of(cluster: &Cluster, endpoint: &Endpoint) -> usize {
    cluster
        .endpoints()
        .iter()
        .position(|candidate| std::ptr::eq(candidate, endpoint))
        .expect("an endpoint of this cluster")
}

/// The `name=value` pair of a `set-cookie` value.
fn cookie_pair(selection: &Selection<'_>) -> String {
    let (name, value) = selection.session.as_ref().expect("a session header");
    assert_eq!(name, SET_COOKIE);
    let value = value.to_str().unwrap();
    value.split(';').next().unwrap().to_owned()
}

#[test]
fn cookie_set_once_then_sticks_under_round_robin() {
    let cluster = Cluster::new("sticky", addresses(3), sticky_cookie(None));
    let first = cluster.select(&request(&[]), None, &[]).unwrap();
    let (_, value) = first.session.as_ref().unwrap();
    let value = value.to_str().unwrap();
    assert!(value.starts_with(&format!("{COOKIE_NAME}=")), "{value}");
    assert!(value.ends_with("; Path=/; HttpOnly"), "{value}");
    let token = cookie_pair(&first)
        .strip_prefix(&format!("{COOKIE_NAME}="))
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 16);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    // Opaque: the token is not the address in any obvious form.
    let address = first.endpoint.address().to_string();
    assert!(
        !value.contains(&address) && !value.contains("127.0.0.1"),
        "{value}"
    );
    let chosen = index_of(&cluster, first.endpoint);

    // Among other cookies, across two Cookie headers, as browsers and HTTP/2 send them.
    let cookie = cookie_pair(&first);
    let mut seen = Vec::new();
    for _ in 0..20 {
        let parts = request(&[
            (&COOKIE, "theme=dark"),
            (&COOKIE, &format!("a=1; {cookie}")),
        ]);
        let selection = cluster.select(&parts, None, &[]).unwrap();
        assert!(selection.session.is_none(), "no new cookie while sticking");
        seen.push(index_of(&cluster, selection.endpoint));
    }
    assert_eq!(seen, vec![chosen; 20]);

    // Without the cookie, round robin spreads (and keeps handing out cookies).
    let spread: std::collections::HashSet<usize> = (0..6)
        .map(|_| {
            let selection = cluster.select(&request(&[]), None, &[]).unwrap();
            assert!(selection.session.is_some());
            index_of(&cluster, selection.endpoint)
        })
        .collect();
    assert_eq!(spread.len(), 3);
}

#[test]
fn max_age_when_ttl_is_set() {
    let cluster = Cluster::new(
        "ttl",
        addresses(2),
        sticky_cookie(Some(Duration::from_secs(3600))),
    );
    let selection = cluster.select(&request(&[]), None, &[]).unwrap();
    let (_, value) = selection.session.unwrap();
    assert!(
        value
            .to_str()
            .unwrap()
            .ends_with("; Path=/; Max-Age=3600; HttpOnly"),
        "{value:?}"
    );
}

#[test]
fn unhealthy_endpoint_falls_back_and_gets_a_new_cookie() {
    let cluster = Cluster::new("fallback", addresses(3), sticky_cookie(None));
    let first = cluster.select(&request(&[]), None, &[]).unwrap();
    let cookie = cookie_pair(&first);
    let chosen = index_of(&cluster, first.endpoint);

    cluster.endpoints()[chosen].set_healthy(false);
    let parts = request(&[(&COOKIE, &cookie)]);
    for _ in 0..10 {
        let selection = cluster.select(&parts, None, &[]).unwrap();
        assert_ne!(index_of(&cluster, selection.endpoint), chosen);
        let fresh = cookie_pair(&selection);
        assert_ne!(fresh, cookie, "the new cookie names the new endpoint");
        // And the new cookie sticks to the new endpoint.
        let again = cluster
            .select(&request(&[(&COOKIE, &fresh)]), None, &[])
            .unwrap();
        assert!(again.session.is_none());
        assert!(std::ptr::eq(again.endpoint, selection.endpoint));
    }

    // Once healthy again, the old cookie leads back to it.
    cluster.endpoints()[chosen].set_healthy(true);
    let back = cluster.select(&parts, None, &[]).unwrap();
    assert_eq!(index_of(&cluster, back.endpoint), chosen);
    assert!(back.session.is_none());
}

#[test]
fn header_mode_round_trips_the_token_in_a_header() {
    let options = ClusterOptions::DEFAULT
        .session_persistence(SessionPersistence::Header { name: "x-session" });
    let cluster = Cluster::new("header", addresses(3), options);
    let first = cluster.select(&request(&[]), None, &[]).unwrap();
    let (name, token) = first.session.clone().unwrap();
    assert_eq!(name.as_str(), "x-session");
    assert_eq!(token.len(), 16);
    let chosen = index_of(&cluster, first.endpoint);
    let header = http::HeaderName::from_static("x-session");
    for _ in 0..20 {
        let parts = request(&[(&header, token.to_str().unwrap())]);
        let selection = cluster.select(&parts, None, &[]).unwrap();
        assert_eq!(index_of(&cluster, selection.endpoint), chosen);
        assert!(selection.session.is_none());
    }
    // A cookie means nothing in header mode.
    let as_cookie = format!("x-session={}", token.to_str().unwrap());
    let selection = cluster
        .select(&request(&[(&COOKIE, &as_cookie)]), None, &[])
        .unwrap();
    assert!(selection.session.is_some());
}

#[test]
fn forged_and_foreign_tokens_are_ignored() {
    let cluster = Cluster::new("forged", addresses(3), sticky_cookie(None));
    // A token of the same address in another cluster names nothing here.
    let other = Cluster::new("other", addresses(3), sticky_cookie(None));
    let foreign = cookie_pair(&other.select(&request(&[]), None, &[]).unwrap());
    let forged = [
        format!("{COOKIE_NAME}=garbage"),
        format!("{COOKIE_NAME}=0123456789abcdef"),
        format!("{COOKIE_NAME}=127.0.0.1:9"),
        format!("{COOKIE_NAME}="),
        format!("{COOKIE_NAME}=0123456789abcdef0"),
        COOKIE_NAME.to_owned(),
        foreign,
    ];
    let mut picked = std::collections::HashSet::new();
    for _ in 0..3 {
        for cookie in &forged {
            let selection = cluster
                .select(&request(&[(&COOKIE, cookie)]), None, &[])
                .unwrap();
            assert!(
                selection.session.is_some(),
                "{cookie}: balanced, new cookie"
            );
            picked.insert(index_of(&cluster, selection.endpoint));
        }
    }
    // Round robin went on as if no cookie had been sent.
    assert_eq!(picked.len(), 3);
}

#[test]
fn tried_endpoints_are_avoided_under_round_robin() {
    let cluster = Cluster::new("retry", addresses(3), ClusterOptions::DEFAULT);
    let endpoints = cluster.endpoints();
    let parts = request(&[]);
    for _ in 0..30 {
        let selection = cluster.select(&parts, None, &[&endpoints[0]]).unwrap();
        assert_ne!(index_of(&cluster, selection.endpoint), 0);
        assert!(selection.session.is_none(), "persistence is off");
        let selection = cluster
            .select(&parts, None, &[&endpoints[0], &endpoints[2]])
            .unwrap();
        assert_eq!(index_of(&cluster, selection.endpoint), 1);
    }
    // All tried: an endpoint is still returned rather than none.
    let all: Vec<&Endpoint> = endpoints.iter().collect();
    assert!(cluster.select(&parts, None, &all).is_some());
    // Tried never revives an unhealthy endpoint.
    endpoints[1].set_healthy(false);
    for _ in 0..10 {
        let selection = cluster.select(&parts, None, &[&endpoints[0]]).unwrap();
        assert_eq!(index_of(&cluster, selection.endpoint), 2);
    }
}

#[test]
fn tried_endpoints_are_avoided_under_ring_hash() {
    let options = ClusterOptions::DEFAULT
        .lb(LbPolicy::RING_HASH)
        .hash_policy(HashPolicy::Header("x-user"));
    let cluster = Cluster::new("ring", addresses(3), options);
    let header = http::HeaderName::from_static("x-user");
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let parts = request(&[(&header, user)]);
        let first = cluster.select(&parts, None, &[]).unwrap().endpoint;
        // Consistent: the same key, the same endpoint.
        for _ in 0..5 {
            assert!(std::ptr::eq(
                cluster.select(&parts, None, &[]).unwrap().endpoint,
                first
            ));
        }
        // A retry moves to another endpoint, and always the same one for this key.
        let second = cluster.select(&parts, None, &[first]).unwrap().endpoint;
        assert!(!std::ptr::eq(second, first), "{user}");
        for _ in 0..5 {
            let again = cluster.select(&parts, None, &[first]).unwrap().endpoint;
            assert!(std::ptr::eq(again, second), "{user}");
        }
        let third = cluster
            .select(&parts, None, &[first, second])
            .unwrap()
            .endpoint;
        assert!(!std::ptr::eq(third, first) && !std::ptr::eq(third, second));
    }
}

#[test]
fn tried_sticky_endpoint_is_left_for_another_with_a_new_cookie() {
    let cluster = Cluster::new("sticky-retry", addresses(3), sticky_cookie(None));
    let first = cluster.select(&request(&[]), None, &[]).unwrap();
    let cookie = cookie_pair(&first);
    let parts = request(&[(&COOKIE, &cookie)]);
    let retry = cluster.select(&parts, None, &[first.endpoint]).unwrap();
    assert!(!std::ptr::eq(retry.endpoint, first.endpoint));
    assert_ne!(cookie_pair(&retry), cookie);
}

#[test]
fn tried_avoidance_crosses_priority_levels() {
    use proxy_core::cluster::LbEndpoint;
    let endpoints = addresses(2)
        .into_iter()
        .enumerate()
        .map(|(i, address)| LbEndpoint::new(address).priority(i as u32))
        .collect();
    let cluster = Cluster::with_lb_endpoints("levels", endpoints, ClusterOptions::DEFAULT);
    let parts = request(&[]);
    let primary = &cluster.endpoints()[0];
    for _ in 0..10 {
        assert!(std::ptr::eq(
            cluster.select(&parts, None, &[]).unwrap().endpoint,
            primary
        ));
        let retry = cluster.select(&parts, None, &[primary]).unwrap();
        assert_eq!(index_of(&cluster, retry.endpoint), 1);
    }
}

// ---- end to end: a real server in front of real origins ----

/// An HTTP/1.1 origin on 127.0.0.1 that answers every request with its name.
async fn origin(name: &'static str) -> (EndpointAddress, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(answer_with_name(name, listener));
    (EndpointAddress::Tcp(address), task)
}

/// Status line, headers (lower-cased names) and body of one `Connection: close` request.
async fn get(address: SocketAddr, extra: &str) -> (String, Vec<(String, String)>, String) {
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n");
    let response = exchange(address, &request).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

#[tokio::test]
async fn sticky_cookie_through_the_proxy() {
    let mut origins = Vec::new();
    let mut addresses = Vec::new();
    for name in ["a", "b", "c"] {
        let (address, task) = origin(name).await;
        addresses.push(address);
        origins.push(task);
    }
    let cluster = leak(Cluster::new("sticky-e2e", addresses, sticky_cookie(None)));
    let (server, address) = support::start_proxy(cluster, "test/sticky/0");

    let (status, headers, first) = get(address, "").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let set_cookie = headers
        .iter()
        .find(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.clone())
        .expect("the first response sets the session cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("{COOKIE_NAME}=")),
        "{set_cookie}"
    );

    for _ in 0..20 {
        let (status, headers, body) = get(address, &format!("Cookie: {cookie}\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(body, first, "sticks to the first origin");
        assert!(headers.iter().all(|(name, _)| name != "set-cookie"));
    }

    // The sticky origin goes unhealthy: another one serves, with a new cookie.
    let sticky = cluster
        .endpoints()
        .iter()
        .find(|endpoint| {
            cluster
                .select(&request(&[(&COOKIE, &cookie)]), None, &[])
                .is_some_and(|s| std::ptr::eq(s.endpoint, *endpoint))
        })
        .unwrap();
    sticky.set_healthy(false);
    let (_, headers, body) = get(address, &format!("Cookie: {cookie}\r\n")).await;
    assert_ne!(body, first);
    let fresh = headers
        .iter()
        .find(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.split(';').next().unwrap().to_owned())
        .expect("a new cookie for the new origin");
    assert_ne!(fresh, cookie);
    for _ in 0..5 {
        let (_, _, again) = get(address, &format!("Cookie: {fresh}\r\n")).await;
        assert_eq!(again, body);
    }

    server.shutdown().await;
    for task in origins {
        task.abort();
    }
}
