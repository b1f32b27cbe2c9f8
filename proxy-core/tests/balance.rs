//! Load balancing distributions, through the public `Cluster` API (no network).
//!
//! Deterministic policies (round robin, consistent hashing) are checked exactly; random
//! ones against bounds many standard deviations wide, so they cannot flake.

#![allow(clippy::expect_used)] // a test: a failed step should panic with its error

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proxy_core::cluster::{Cluster, ClusterOptions, HashPolicy, LbEndpoint, LbPolicy};
use proxy_core::config::EndpointAddress;

const BASE_PORT: u16 = 10_000;

fn address(index: usize) -> EndpointAddress {
    let port = BASE_PORT + u16::try_from(index).unwrap_or(u16::MAX - BASE_PORT);
    EndpointAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

fn uniform(count: usize, options: ClusterOptions) -> Cluster {
    Cluster::new("test", (0..count).map(address).collect(), options)
}

fn lb_cluster(endpoints: &[(u32, u32)], options: ClusterOptions) -> Cluster {
    let endpoints = endpoints
        .iter()
        .enumerate()
        .map(|(index, &(weight, priority))| {
            LbEndpoint::new(address(index))
                .weight(weight)
                .priority(priority)
        })
        .collect();
    Cluster::with_lb_endpoints("test", endpoints, options)
}

/// The index of the endpoint picked for `key`, or `None`.
fn pick_index(cluster: &Cluster, key: Option<u64>) -> Option<usize> {
    let endpoint = cluster.pick_for(key)?;
    cluster
        .endpoints()
        .iter()
        .position(|candidate| std::ptr::eq(candidate, endpoint))
}

/// How many of `picks` picks went to each endpoint.
fn histogram(cluster: &Cluster, picks: usize, key: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
    let mut counts = vec![0; cluster.endpoints().len()];
    for pick in 0..picks {
        let index = pick_index(cluster, key(pick)).expect("an endpoint");
        counts[index] += 1;
    }
    counts
}

/// Well-spread keys, as request hashes are (SplitMix64).
fn spread(seed: usize) -> u64 {
    let mut z = (seed as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn chi_square(counts: &[usize], expected: &[f64]) -> f64 {
    counts
        .iter()
        .zip(expected)
        .map(|(&observed, &expected)| (observed as f64 - expected).powi(2) / expected)
        .sum()
}

fn set_down(cluster: &Cluster, indices: &[usize]) {
    for &index in indices {
        cluster.endpoints()[index].set_healthy(false);
    }
}

const POLICIES: [LbPolicy; 5] = [
    LbPolicy::RoundRobin,
    LbPolicy::LEAST_REQUEST,
    LbPolicy::Random,
    LbPolicy::RING_HASH,
    LbPolicy::MAGLEV,
];

#[test]
fn round_robin_exact_cycle() {
    let cluster = uniform(3, ClusterOptions::DEFAULT);
    let order: Vec<_> = (0..9).map(|_| pick_index(&cluster, None)).collect();
    let expected: Vec<_> = [0, 1, 2, 0, 1, 2, 0, 1, 2].map(Some).into();
    assert_eq!(order, expected);
    assert!(cluster.pick().is_some());
}

#[test]
fn a_lone_endpoint_is_picked_while_healthy_and_in_panic_only_when_down() {
    for policy in POLICIES {
        for key in [None, Some(7)] {
            let cluster = uniform(1, ClusterOptions::DEFAULT.lb(policy));
            assert_eq!(pick_index(&cluster, key), Some(0), "{policy:?}");
            // Down, under the default 50 % threshold: panic, so it is still used.
            set_down(&cluster, &[0]);
            assert_eq!(pick_index(&cluster, key), Some(0), "{policy:?} in panic");
            let strict = uniform(
                1,
                ClusterOptions::DEFAULT
                    .lb(policy)
                    .healthy_panic_threshold(0),
            );
            set_down(&strict, &[0]);
            assert_eq!(pick_index(&strict, key), None, "{policy:?} without panic");
        }
    }
}

#[test]
fn empty_cluster_picks_nothing() {
    for policy in POLICIES {
        let cluster = uniform(0, ClusterOptions::DEFAULT.lb(policy));
        assert!(cluster.pick().is_none(), "{policy:?}");
        assert!(cluster.pick_for(Some(7)).is_none(), "{policy:?}");
    }
}

#[test]
fn weighted_round_robin_proportions_are_exact() {
    let cluster = lb_cluster(&[(1, 0), (2, 0), (7, 0)], ClusterOptions::DEFAULT);
    assert_eq!(histogram(&cluster, 10_000, |_| None), [1_000, 2_000, 7_000]);
    // Smooth: the heavy endpoint never takes more than 4 turns in a row (7 of 10).
    let order: Vec<_> = (0..20).filter_map(|_| pick_index(&cluster, None)).collect();
    let longest_run = order
        .chunk_by(|a, b| a == b)
        .map(<[usize]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run <= 4, "{order:?}");
}

#[test]
fn round_robin_skips_unhealthy_and_keeps_shares() {
    let cluster = lb_cluster(
        &[(1, 0), (2, 0), (7, 0), (1, 0), (1, 0)],
        ClusterOptions::DEFAULT,
    );
    set_down(&cluster, &[2]);
    // 4 of 5 healthy: above the panic threshold, and the remaining weights 1:2:1:1.
    let counts = histogram(&cluster, 5_000, |_| None);
    assert_eq!(counts[2], 0);
    let expected = [1_000, 2_000, 0, 1_000, 1_000];
    for (count, expected) in counts.iter().zip(expected) {
        assert!(count.abs_diff(expected) <= 10, "{counts:?}");
    }
}

#[test]
fn least_request_prefers_less_loaded() {
    let cluster = uniform(4, ClusterOptions::DEFAULT.lb(LbPolicy::LEAST_REQUEST));
    // Endpoints 1..4 each have 5 requests in flight; endpoint 0 has none.
    let in_flight: Vec<_> = cluster.endpoints()[1..]
        .iter()
        .flat_map(|endpoint| (0..5).map(|_| endpoint.track_request()))
        .collect();
    assert_eq!(cluster.endpoints()[1].active_requests(), 5);
    let counts = histogram(&cluster, 10_000, |_| None);
    // Two choices out of four: the idle endpoint wins whenever sampled, 1 − (3/4)² =
    // 43.75 % (standard deviation 0.5 %), against 25 % for a uniform pick.
    assert!(counts[0] > 3_500, "{counts:?}");
    drop(in_flight);
    assert_eq!(cluster.endpoints()[1].active_requests(), 0);

    // With more choices the idle endpoint is nearly always found.
    let eager = uniform(
        4,
        ClusterOptions::DEFAULT.lb(LbPolicy::LeastRequest { choice_count: 16 }),
    );
    let _busy: Vec<_> = eager.endpoints()[1..]
        .iter()
        .map(|endpoint| endpoint.track_request())
        .collect();
    let counts = histogram(&eager, 10_000, |_| None);
    assert!(counts[0] > 9_700, "{counts:?}");
}

#[test]
fn least_request_weighs_by_weight() {
    // Equal load, weights 1 and 9: the heavier one wins every comparison it is in.
    let cluster = lb_cluster(
        &[(1, 0), (9, 0)],
        ClusterOptions::DEFAULT.lb(LbPolicy::LEAST_REQUEST),
    );
    let counts = histogram(&cluster, 10_000, |_| None);
    // Endpoint 0 only when both samples are endpoint 0: 25 %.
    assert!(counts[1] > 7_000, "{counts:?}");
}

#[test]
fn random_is_roughly_uniform() {
    let cluster = uniform(5, ClusterOptions::DEFAULT.lb(LbPolicy::Random));
    let counts = histogram(&cluster, 50_000, |_| None);
    // Chi-square with 4 degrees of freedom exceeds 60 with probability below 1e-11.
    let statistic = chi_square(&counts, &[10_000.0; 5]);
    assert!(statistic < 60.0, "{counts:?}: {statistic}");
}

fn consistent_hash_properties(policy: LbPolicy, spread_tolerance: f64) {
    const ENDPOINTS: usize = 5;
    const KEYS: usize = 50_000;
    let cluster = uniform(ENDPOINTS, ClusterOptions::DEFAULT.lb(policy));
    // Same key, same endpoint.
    for key in 0..100 {
        let first = pick_index(&cluster, Some(spread(key)));
        assert!((0..10).all(|_| pick_index(&cluster, Some(spread(key))) == first));
    }
    // Roughly even over many keys.
    let before: Vec<_> = (0..KEYS)
        .map(|key| pick_index(&cluster, Some(spread(key))))
        .collect();
    let mut counts = [0usize; ENDPOINTS];
    for index in before.iter().flatten() {
        counts[*index] += 1;
    }
    let fair = (KEYS / ENDPOINTS) as f64;
    for count in counts {
        let deviation = (count as f64 - fair).abs() / fair;
        assert!(deviation < spread_tolerance, "{policy:?}: {counts:?}");
    }
    // Endpoint 2 goes down: exactly its keys move, all of them elsewhere.
    set_down(&cluster, &[2]);
    let mut moved = 0;
    for (key, was) in before.iter().enumerate() {
        let now = pick_index(&cluster, Some(spread(key)));
        assert_ne!(now, Some(2));
        if now != *was {
            assert_eq!(
                *was,
                Some(2),
                "{policy:?}: key {key} moved off a healthy endpoint"
            );
            moved += 1;
        }
    }
    assert_eq!(moved, counts[2]);
    let moved_share = moved as f64 / KEYS as f64;
    assert!(
        (0.1..0.3).contains(&moved_share),
        "{policy:?}: {moved_share}"
    );
    // And back: every key returns to where it was.
    cluster.endpoints()[2].set_healthy(true);
    for (key, was) in before.iter().enumerate().step_by(7) {
        assert_eq!(pick_index(&cluster, Some(spread(key))), *was);
    }
}

#[test]
fn ring_hash_is_consistent_even_and_minimally_disrupted() {
    // 1024 points over 5 endpoints: ~205 each, so shares vary by several percent.
    consistent_hash_properties(LbPolicy::RING_HASH, 0.25);
}

#[test]
fn maglev_is_consistent_even_and_minimally_disrupted() {
    consistent_hash_properties(LbPolicy::MAGLEV, 0.05);
}

#[test]
fn consistent_hash_respects_weights() {
    for (policy, tolerance) in [(LbPolicy::RING_HASH, 0.15), (LbPolicy::MAGLEV, 0.03)] {
        let cluster = lb_cluster(&[(1, 0), (3, 0)], ClusterOptions::DEFAULT.lb(policy));
        let counts = histogram(&cluster, 40_000, |key| Some(spread(key)));
        let share = counts[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < tolerance, "{policy:?}: {counts:?}");
    }
}

#[test]
fn request_hash_follows_the_hash_policy() {
    let request = |headers: &[(&str, &str)]| {
        let mut builder = http::Request::builder().uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("valid request").into_parts().0
    };
    let client: IpAddr = [192, 0, 2, 7].into();
    let by_header = uniform(
        8,
        ClusterOptions::DEFAULT
            .lb(LbPolicy::MAGLEV)
            .hash_policy(HashPolicy::Header("x-user")),
    );
    let alice = request(&[("x-user", "alice")]);
    let key = by_header.request_hash(&alice, Some(client));
    assert!(key.is_some());
    assert_eq!(
        key,
        by_header.request_hash(&request(&[("x-user", "alice")]), None)
    );
    assert_ne!(
        key,
        by_header.request_hash(&request(&[("x-user", "bob")]), None)
    );
    assert_eq!(by_header.request_hash(&request(&[]), Some(client)), None);
    let first = pick_index(&by_header, key);
    assert!((0..20).all(|_| pick_index(&by_header, key) == first));

    let by_cookie = uniform(
        8,
        ClusterOptions::DEFAULT
            .lb(LbPolicy::RING_HASH)
            .hash_policy(HashPolicy::Cookie("sid")),
    );
    let with_cookie = request(&[("cookie", "theme=dark; sid=abc")]);
    let key = by_cookie.request_hash(&with_cookie, None);
    assert!(key.is_some());
    assert_eq!(
        key,
        by_cookie.request_hash(&request(&[("cookie", "sid=abc")]), None)
    );
    assert_eq!(
        by_cookie.request_hash(&request(&[("cookie", "theme=dark")]), None),
        None
    );

    let by_ip = uniform(
        8,
        ClusterOptions::DEFAULT
            .lb(LbPolicy::RING_HASH)
            .hash_policy(HashPolicy::SourceIp),
    );
    let key = by_ip.request_hash(&alice, Some(client));
    assert!(key.is_some());
    assert_eq!(key, by_ip.connection_hash(Some(client)));
    assert_eq!(by_ip.request_hash(&alice, None), None);

    // Not a consistent-hash policy: no hashing work at all.
    let round_robin = uniform(8, ClusterOptions::DEFAULT.hash_policy(HashPolicy::SourceIp));
    assert_eq!(round_robin.request_hash(&alice, Some(client)), None);
    assert_eq!(round_robin.connection_hash(Some(client)), None);
}

#[test]
fn unhealthy_endpoints_are_never_picked_above_panic_threshold() {
    for policy in POLICIES {
        let cluster = uniform(5, ClusterOptions::DEFAULT.lb(policy));
        // 3 of 5 healthy: 60 %, above the 50 % threshold.
        set_down(&cluster, &[1, 3]);
        let counts = histogram(&cluster, 5_000, |key| Some(spread(key)));
        assert_eq!((counts[1], counts[3]), (0, 0), "{policy:?}: {counts:?}");
        assert!(
            [0, 2, 4].iter().all(|&index| counts[index] > 1_000),
            "{policy:?}: {counts:?}"
        );
    }
}

#[test]
fn panic_mode_balances_across_all_endpoints() {
    for policy in POLICIES {
        let cluster = uniform(5, ClusterOptions::DEFAULT.lb(policy));
        // 2 of 5 healthy: 40 %, below the 50 % threshold.
        set_down(&cluster, &[0, 1, 2]);
        let counts = histogram(&cluster, 10_000, |key| Some(spread(key)));
        assert!(
            counts.iter().all(|&count| count > 1_000),
            "{policy:?}: {counts:?}"
        );
    }
    // Exactly even under round robin, even with none healthy at all.
    let cluster = uniform(4, ClusterOptions::DEFAULT);
    set_down(&cluster, &[0, 1, 2, 3]);
    assert_eq!(histogram(&cluster, 4_000, |_| None), [1_000; 4]);
    // With panic disabled, an unhealthy cluster has nothing to offer (503 `UH`).
    let strict = cluster_without_panic();
    set_down(&strict, &[0, 1, 2]);
    let counts = histogram(&strict, 3_000, |_| None);
    assert_eq!(counts, [0, 0, 0, 1_500, 1_500]);
    set_down(&strict, &[3, 4]);
    assert!(strict.pick().is_none());
}

fn cluster_without_panic() -> Cluster {
    uniform(5, ClusterOptions::DEFAULT.healthy_panic_threshold(0))
}

/// Share of `picks` picks that went to endpoints of priority 1 (indices ≥ `p0`).
fn priority1_share(cluster: &Cluster, p0: usize, picks: usize) -> f64 {
    let counts = histogram(cluster, picks, |_| None);
    counts[p0..].iter().sum::<usize>() as f64 / picks as f64
}

#[test]
fn priority_failover_follows_envoy_load() {
    const PICKS: usize = 100_000;
    let levels: Vec<(u32, u32)> = (0..20).map(|index| (1, u32::from(index >= 10))).collect();
    let cases: [(&[usize], f64); 5] = [
        // P0 healthy: all traffic to P0.
        (&[], 0.0),
        // 8/10 healthy × 1.4 = 112 % → still all of it.
        (&[0, 1], 0.0),
        // 7/10 × 1.4 = 98 % → 2 % spills to P1.
        (&[0, 1, 2], 0.02),
        // 5/10 → 70 % / 30 %.
        (&[0, 1, 2, 3, 4], 0.30),
        // 1/10 → 14 % / 86 % (P0 is not in panic: total availability is 100 %).
        (&[0, 1, 2, 3, 4, 5, 6, 7, 8], 0.86),
    ];
    for (down, expected) in cases {
        let cluster = lb_cluster(&levels, ClusterOptions::DEFAULT);
        set_down(&cluster, down);
        let counts = histogram(&cluster, PICKS, |_| None);
        // Never an unhealthy P0 endpoint: availability is 100 %, so no panic.
        assert!(
            down.iter().all(|&index| counts[index] == 0),
            "{down:?}: {counts:?}"
        );
        // Standard deviation at most 0.16 %; the bound is 10 of them.
        let share = priority1_share(&cluster, 10, PICKS);
        assert!(
            (share - expected).abs() < 0.016,
            "{down:?}: {share} vs {expected}"
        );
    }
    // P0 entirely down: all traffic to P1.
    let cluster = lb_cluster(&levels, ClusterOptions::DEFAULT);
    set_down(&cluster, &(0..10).collect::<Vec<_>>());
    assert_eq!(priority1_share(&cluster, 10, 10_000), 1.0);
}

#[test]
fn priority_spill_and_panic_across_levels() {
    // P0: 4 of 10 healthy (56 %), P1: 1 of 10 healthy (14 %): availability 70 % < 100,
    // so both levels are in panic and each balances across all its endpoints, with
    // load 56/70 = 80 % and 14/70 = 20 %.
    let levels: Vec<(u32, u32)> = (0..20).map(|index| (1, u32::from(index >= 10))).collect();
    let cluster = lb_cluster(&levels, ClusterOptions::DEFAULT);
    set_down(&cluster, &[0, 1, 2, 3, 4, 5]);
    set_down(&cluster, &(11..20).collect::<Vec<_>>());
    let counts = histogram(&cluster, 100_000, |_| None);
    let p1: usize = counts[10..].iter().sum();
    assert!((p1 as f64 / 100_000.0 - 0.20).abs() < 0.015, "{counts:?}");
    // Panic: unhealthy endpoints in both levels receive traffic.
    assert!(counts[0] > 5_000 && counts[19] > 1_000, "{counts:?}");

    // Nothing healthy anywhere: load by endpoint count (P0 4, P1 12 → 25 % / 75 %).
    let levels: Vec<(u32, u32)> = (0..16).map(|index| (1, u32::from(index >= 4))).collect();
    let cluster = lb_cluster(&levels, ClusterOptions::DEFAULT);
    set_down(&cluster, &(0..16).collect::<Vec<_>>());
    let share = priority1_share(&cluster, 4, 100_000);
    assert!((share - 0.75).abs() < 0.015, "{share}");
}

#[test]
fn options_stay_const() {
    const OPTIONS: ClusterOptions = ClusterOptions::DEFAULT
        .lb(LbPolicy::RingHash {
            minimum_ring_size: 4096,
        })
        .hash_policy(HashPolicy::Cookie("sid"))
        .healthy_panic_threshold(30)
        .overprovisioning_factor(100);
    assert_eq!(
        OPTIONS.lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 4096
        }
    );
    assert_eq!(ClusterOptions::default().lb_policy, LbPolicy::RoundRobin);
    assert_eq!(
        ClusterOptions::DEFAULT
            .healthy_panic_threshold(200)
            .healthy_panic_threshold,
        100
    );
}
