//! The shipped `custom-filters` app (release build), whose two filters are plain user
//! code: `ApiKey` (401 unless `x-api-key` matches; disabled on `/public/` and `/healthz`)
//! and `AbTagger` (bucket `a`/`b` by a hash of `x-user-id`, sent upstream and back; `/beta/`
//! overrides it with 100% `b`). nginx echoes what it received, and its access log proves
//! what never reached it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Method, StatusCode};
use proxy_tests::client::empty;
use proxy_tests::*;

const API_KEY: &str = "s3cr3t-key";

/// nginx answering every path with the request headers the filters touch.
const ECHO: &str = r#"
    location / {
        default_type text/plain;
        return 200 "uri=$request_uri\nkey=$http_x_api_key\ngroup=$http_x_ab_group\nuser=$http_x_user_id\n";
    }
"#;

fn fields(body: &str) -> BTreeMap<&str, &str> {
    body.lines()
        .filter_map(|line| line.split_once('='))
        .collect()
}

/// Field order matters: the proxy goes first, then nginx, then the directory.
struct Site {
    _proxy: ProxyProcess,
    addr: SocketAddr,
    nginx: Nginx,
    _dir: tempfile::TempDir,
}

impl Site {
    fn start() -> Self {
        let dir = tempdir();
        let nginx = Nginx::builder(dir.path()).tcp("app", ECHO).start();
        let mut proxy = ProxyCommand::new(release_bin("custom-filters"), dir.path())
            .env("SITE_ADDR", "127.0.0.1:0")
            .env("APP_ADDR", nginx.addr("app").to_string())
            .env("API_KEY", API_KEY)
            .spawn();
        let addr = proxy.tcp_listener("site");
        Self {
            _proxy: proxy,
            addr,
            nginx,
            _dir: dir,
        }
    }

    async fn conn(&self, proto: Proto) -> Conn {
        Conn::tcp(self.addr, proto).await
    }
}

async fn send(conn: &mut Conn, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = conn.request(method, "site.test", path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    conn.send(request.body(empty()).unwrap()).await
}

fn all_values<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// A request through the A/B tagger: the bucket nginx saw must be the one the client got.
async fn bucket(conn: &mut Conn, path: &str, user: Option<&str>) -> String {
    let mut headers = vec![("x-api-key", API_KEY)];
    if let Some(user) = user {
        headers.push(("x-user-id", user));
    }
    let reply = send(conn, Method::GET, path, &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{path} {user:?}: {reply:?}");
    let got = fields(reply.text());
    let upstream = got["group"];
    assert!(
        upstream == "a" || upstream == "b",
        "{path} {user:?}: nginx saw group {upstream:?}"
    );
    assert_eq!(
        reply.header("x-ab-group"),
        upstream,
        "{path} {user:?}: response and request buckets differ"
    );
    upstream.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_and_never_forwarded() {
    let site = Site::start();
    for proto in Proto::BOTH {
        let mut conn = site.conn(proto).await;
        for (label, headers) in [
            ("no key", &[][..]),
            ("wrong key", &[("x-api-key", "nope")][..]),
            ("key with a suffix", &[("x-api-key", "s3cr3t-key2")][..]),
            (
                "other header",
                &[("authorization", "Bearer s3cr3t-key")][..],
            ),
        ] {
            for (method, path) in [(Method::GET, "/"), (Method::POST, "/private/x")] {
                let reply = send(&mut conn, method.clone(), path, headers).await;
                assert_eq!(
                    reply.local_reply(),
                    (
                        401,
                        None,
                        Some("text/plain"),
                        "missing or wrong x-api-key\n"
                    ),
                    "{proto:?} {label} {method} {path}"
                );
                assert_eq!(reply.header("www-authenticate"), "ApiKey");
                assert_eq!(reply.header("content-length"), "27");
                // The tagger after the key check never saw the request.
                assert!(
                    !reply.headers.contains_key("x-ab-group"),
                    "{proto:?} {label}: {reply:?}"
                );
            }
        }
        // HEAD is refused the same way, with the length but no body.
        let reply = send(&mut conn, Method::HEAD, "/", &[]).await;
        assert_eq!(
            (
                reply.status,
                reply.header("content-length"),
                reply.body.len()
            ),
            (StatusCode::UNAUTHORIZED, "27", 0),
            "{proto:?} HEAD"
        );
        // The connection survives refusals; the right key goes through, without the key.
        let reply = send(
            &mut conn,
            Method::GET,
            "/private/data?x=1",
            &[("x-api-key", API_KEY)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {reply:?}");
        let got = fields(reply.text());
        assert_eq!(got["uri"], "/private/data?x=1");
        assert_eq!(got["key"], "", "{proto:?}: the api key reached the origin");
    }
    // Only the two authorised requests reached nginx.
    let entries = site.nginx.access_log("app").wait_for(2);
    assert_eq!(
        entries.iter().map(|e| e.uri.as_str()).collect::<Vec<_>>(),
        ["/private/data?x=1", "/private/data?x=1"],
        "{entries:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_paths_and_healthz_need_no_key() {
    let site = Site::start();
    for proto in Proto::BOTH {
        let mut conn = site.conn(proto).await;
        let reply = send(&mut conn, Method::GET, "/public/page", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {reply:?}");
        let got = fields(reply.text());
        assert_eq!(got["uri"], "/public/page");
        // Only the key check is disabled there: the tagger still runs.
        assert_eq!(reply.header("x-ab-group"), got["group"]);
        // A key sent anyway is not the filter's business on this route: forwarded as is.
        let reply = send(&mut conn, Method::GET, "/public/k", &[("x-api-key", "x")]).await;
        assert_eq!(fields(reply.text())["key"], "x", "{proto:?}");

        let reply = send(&mut conn, Method::GET, "/healthz", &[]).await;
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::OK, "ok\n"),
            "{proto:?}"
        );
        // Both filters are disabled on /healthz.
        assert!(
            !reply.headers.contains_key("x-ab-group"),
            "{proto:?}: {reply:?}"
        );
        // `/publicity` is not `/public/`: the key is required.
        let reply = send(&mut conn, Method::GET, "/publicity", &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{proto:?}");
    }
    let entries = site.nginx.access_log("app").wait_for(4);
    assert_eq!(entries.len(), 4, "{entries:#?}");
    assert!(entries.iter().all(|e| e.uri.starts_with("/public/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_bucket_is_stable_per_user_across_requests_and_connections() {
    let site = Site::start();
    let users: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let mut first = BTreeMap::new();
    let mut conn = site.conn(Proto::H1).await;
    for user in &users {
        first.insert(user.clone(), bucket(&mut conn, "/", Some(user)).await);
    }
    // Again, over other connections and both protocols, several times each.
    for proto in [Proto::H2c, Proto::H1, Proto::H2c] {
        let mut conn = site.conn(proto).await;
        for round in 0..3 {
            for user in &users {
                let again = bucket(&mut conn, &format!("/page/{round}"), Some(user)).await;
                assert_eq!(
                    again, first[user],
                    "{proto:?} round {round}: {user} changed buckets"
                );
            }
        }
    }
    // A bucket sent by the client is replaced, not trusted.
    for user in &users {
        let spoofed = if first[user] == "a" { "b" } else { "a" };
        let reply = send(
            &mut conn,
            Method::GET,
            "/",
            &[
                ("x-api-key", API_KEY),
                ("x-user-id", user),
                ("x-ab-group", spoofed),
            ],
        )
        .await;
        assert_eq!(fields(reply.text())["group"], first[user], "{user}");
        assert_eq!(
            all_values(&reply, "x-ab-group"),
            [first[user].as_str()],
            "{user}"
        );
    }
    // The user id itself reaches the origin unchanged.
    let reply = send(
        &mut conn,
        Method::GET,
        "/",
        &[("x-api-key", API_KEY), ("x-user-id", "user-7")],
    )
    .await;
    assert_eq!(fields(reply.text())["user"], "user-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_buckets_split_users_roughly_in_half() {
    let site = Site::start();
    let h2 = site.conn(Proto::H2c).await;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let mut conn = h2.h2_clone();
        tasks.push(tokio::spawn(async move {
            let mut b = 0;
            for i in 0..100 {
                let user = format!("customer-{}", task * 100 + i);
                if bucket(&mut conn, "/", Some(&user)).await == "b" {
                    b += 1;
                }
            }
            b
        }));
    }
    let mut in_b = 0;
    for task in tasks {
        in_b += task.await.unwrap();
    }
    // 50% of 400: expect 200 with a standard deviation of 10; allow a wide margin.
    assert!(
        (140..=260).contains(&in_b),
        "{in_b} of 400 users in bucket b"
    );

    // Without a user id, the bucket follows the (random) request id: both appear.
    let mut conn = site.conn(Proto::H1).await;
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        *seen
            .entry(bucket(&mut conn, "/anonymous", None).await)
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "anonymous requests all in one bucket: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_route_overrides_the_tagger_with_everyone_in_b() {
    let site = Site::start();
    for proto in Proto::BOTH {
        let mut conn = site.conn(proto).await;
        let mut outside = BTreeMap::new();
        for i in 0..40 {
            let user = format!("beta-{i}");
            assert_eq!(
                bucket(&mut conn, "/beta/feature", Some(&user)).await,
                "b",
                "{proto:?} {user}"
            );
            *outside
                .entry(bucket(&mut conn, "/feature", Some(&user)).await)
                .or_insert(0) += 1;
        }
        // The same users outside /beta/ are split, so the override is what put them in b.
        assert!(outside.contains_key("a"), "{proto:?}: {outside:?}");
        // The key check is inherited by /beta/ unchanged.
        let reply = send(&mut conn, Method::GET, "/beta/feature", &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{proto:?}");
    }
}

#[test]
fn check_lists_filters_and_disables() {
    let dir = tempdir();
    let run = ProxyCommand::new(release_bin("custom-filters"), dir.path())
        .arg("--check")
        .env("APP_ADDR", "127.0.0.1:9")
        .run();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let compiled = run
        .stdout
        .split_once("\nresolved at start-up:\n")
        .map(|(compiled, _)| compiled)
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let lines: Vec<&str> = compiled.lines().take(10).collect();
    assert_eq!(
        lines,
        [
            "listener site on env SITE_ADDR (default 127.0.0.1:8080)",
            "  filters: [api_key, ab]",
            "  virtual_host all [*]",
            "    site/all/0  exact(\"/healthz\") -> direct_response 200 \"ok\\n\"",
            "      disable: [api_key, ab]",
            "    site/all/1  prefix(\"/public/\") -> cluster app (timeout 15s)",
            "      disable: [api_key]",
            "    site/all/2  prefix(\"/beta/\") -> cluster app (timeout 15s)",
            "      filters: [ab]",
            "    site/all/3  prefix(\"/\") -> cluster app (timeout 15s)",
        ],
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  cluster app -> [127.0.0.1:9]"),
        "{}",
        run.stdout
    );
}
