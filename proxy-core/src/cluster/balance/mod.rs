//! Load balancing: which endpoint of a cluster serves the next request.
//!
//! A pick runs in three steps, as in Envoy:
//!
//! 1. **Priority.** Endpoints are grouped by priority (0 is highest; at most 16
//!    distinct levels, lower ones are merged into the 16th). Every pick computes Envoy's
//!    priority load from the live health of each level (counting endpoints, not
//!    weights):
//!    - health of a level = `min(100, healthy × overprovisioning_factor / total)` percent
//!      (factor 140 by default, so a level ≥ 72 % healthy counts as fully healthy);
//!    - availability = `min(100, Σ health)`;
//!    - from the highest priority down, a level takes `min(remaining,
//!      health × 100 / availability)` percent of the traffic; rounding leftovers go to
//!      the first level with any health. So P0 at 7/10 healthy keeps 98 %, at 5/10 70 %
//!      (30 % spills to P1), at 1/10 14 %;
//!    - if availability is 0 (nothing healthy anywhere: *total panic*), levels get
//!      traffic in proportion to their endpoint counts.
//!
//!    A level is drawn by that load: by the request hash for the hash balancers (so a
//!    key keeps its level while health is stable), else at random.
//! 2. **Panic.** The drawn level is in panic when the cluster's availability is below
//!    100 and the level's healthy share (`healthy × 100 / total`, no overprovisioning) is
//!    below the panic threshold (50 % by default; 0 disables panic mode). In panic the
//!    level balances across *all* its endpoints, healthy or not: sending some traffic to
//!    endpoints believed down beats piling all of it on the few left.
//! 3. **Endpoint.** Within the level, the cluster's [`LbPolicy`] chooses among its
//!    healthy endpoints (all of them in panic). No policy ever returns an unhealthy
//!    endpoint outside panic.
//!
//! The pick path takes no lock and allocates nothing: health is read from each
//! endpoint's atomic flag, schedules, rings and tables are built once at start-up over
//! every endpoint (for a DNS cluster, once per change of its host set, off the request
//! path), and unhealthy entries are skipped at pick time. A pick costs one pass over the
//! cluster's health flags, plus the policy's own work. Endpoints a request already
//! tried are skipped the same way (see `Balancer::pick`).

mod hash;
mod priority;

pub(crate) use hash::{cookies, ip_key, request_key};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use self::priority::{LevelHealth, MAX_LEVELS};
use super::Endpoint;

/// How an endpoint is chosen within a priority level (Envoy's `lb_policy`).
///
/// Every policy skips unhealthy endpoints, unless the level is in panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    /// Each endpoint in turn, as often as its weight (the default). With weights, the
    /// order is the smooth weighted round robin sequence (weights 5:1:1 go
    /// `a a b a c a a`, not `a a a a a b c`). Skipping an unhealthy endpoint consumes its
    /// turn, so healthy endpoints keep their relative shares.
    RoundRobin,
    /// Power of N choices: sample `choice_count` endpoints at random and take the one
    /// with the fewest requests in flight ([`Endpoint::active_requests`]). With unequal
    /// weights the sample is compared on `(active + 1) / weight`, Envoy's effective
    /// weight with `active_request_bias` 1. Envoy's default `choice_count` is 2.
    LeastRequest { choice_count: u32 },
    /// A uniformly random endpoint (weights are ignored, as in Envoy).
    Random,
    /// Consistent hashing on a ring (Ketama-style): each endpoint owns points on a ring
    /// in proportion to its weight, at least `minimum_ring_size` points in all, and a
    /// request goes to the owner of the first point at or after its hash (the cluster's
    /// [`HashPolicy`]). An unhealthy endpoint's points are skipped, which is exactly
    /// Envoy's ring without that endpoint: only its keys move.
    RingHash { minimum_ring_size: u32 },
    /// Consistent hashing with a Maglev lookup table of `table_size` entries (rounded up
    /// to a prime), filled in proportion to weight. A key whose entry is an unhealthy
    /// endpoint moves to the next healthy entry, so only that endpoint's keys move (Envoy
    /// rebuilds the table instead, which also moves a few other keys).
    Maglev { table_size: u32 },
}

impl LbPolicy {
    /// `LeastRequest` with Envoy's default of two choices.
    pub const LEAST_REQUEST: LbPolicy = LbPolicy::LeastRequest { choice_count: 2 };
    /// `RingHash` with Envoy's default minimum ring size, 1024.
    pub const RING_HASH: LbPolicy = LbPolicy::RingHash {
        minimum_ring_size: 1024,
    };
    /// `Maglev` with Envoy's default table size, 65537.
    pub const MAGLEV: LbPolicy = LbPolicy::Maglev { table_size: 65537 };

    /// Whether the policy uses the request hash ([`HashPolicy`]).
    pub const fn is_consistent_hash(self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

/// What a consistent-hash policy hashes (Envoy's route `hash_policy`, one entry). A
/// request without the value is balanced at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    /// Every value of this request header, in order.
    Header(&'static str),
    /// The value of this cookie. Unlike Envoy, no cookie is generated when it is missing.
    Cookie(&'static str),
    /// The client's IP address (IPv4-mapped IPv6 counts as IPv4).
    SourceIp,
}

/// Largest smooth round robin schedule; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 1 << 16;
/// Largest ring, as Envoy's default `maximum_ring_size` (8M points).
const MAX_RING: u64 = 1 << 23;

/// The balancer of one cluster: its priority levels and each level's policy state.
#[derive(Debug)]
pub(crate) struct Balancer {
    levels: Box<[Level]>,
    overprovisioning_factor: u32,
    panic_threshold: u8,
}

/// The endpoints of one priority level (indices into the cluster's endpoints).
#[derive(Debug)]
struct Level {
    members: Box<[usize]>,
    strategy: Strategy,
}

#[derive(Debug)]
enum Strategy {
    /// Positions into `members`, in smooth weighted round robin order.
    RoundRobin {
        schedule: Box<[usize]>,
        next: AtomicUsize,
    },
    LeastRequest {
        choice_count: u32,
        weighted: bool,
    },
    Random,
    /// Points sorted by hash, each with the position of its owner in `members`.
    Ring(Box<[(u64, usize)]>),
    /// Maglev lookup table of positions in `members`.
    Maglev(Box<[usize]>),
}

/// What the balancer needs to know about an endpoint at start-up.
pub(crate) struct Spec<'a> {
    pub key: &'a str,
    pub weight: u32,
    pub priority: u32,
}

impl Balancer {
    pub(crate) fn new(
        cluster: &str,
        specs: &[Spec<'_>],
        policy: LbPolicy,
        overprovisioning_factor: u32,
        panic_threshold: u8,
    ) -> Self {
        let mut by_priority: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, spec) in specs.iter().enumerate() {
            by_priority.entry(spec.priority).or_default().push(index);
        }
        let mut groups: Vec<Vec<usize>> = by_priority.into_values().collect();
        if groups.len() > MAX_LEVELS {
            tracing::warn!(
                cluster,
                levels = groups.len(),
                "more than {MAX_LEVELS} priority levels; the lowest are merged"
            );
            let tail: Vec<usize> = groups.drain(MAX_LEVELS - 1..).flatten().collect();
            groups.push(tail);
        }
        let levels = groups
            .into_iter()
            .map(|members| {
                let strategy = Strategy::new(specs, &members, policy);
                Level {
                    members: members.into_boxed_slice(),
                    strategy,
                }
            })
            .collect();
        Self {
            levels,
            overprovisioning_factor,
            panic_threshold,
        }
    }

    /// The index of the endpoint for the next request, or `None` when no level has an
    /// endpoint that may be used. `endpoint` maps an index (a position in the specs the
    /// balancer was built from) to its endpoint; `key` is the request hash for consistent
    /// hashing.
    ///
    /// Endpoints in `avoid` (earlier attempts of the same request) are treated as
    /// ineligible while any other endpoint is eligible: first in the level drawn, then
    /// in every level in priority order, and only then are they picked again. Skipping
    /// them inside the policy, rather than re-picking a bounded number of times as
    /// Envoy's `previous_hosts` predicate does, always finds another endpoint when one
    /// exists, costs no extra draws, and moves consistent-hash keys to the next
    /// endpoint on the ring (or table) deterministically.
    pub(crate) fn pick<'e>(
        &self,
        endpoint: impl Fn(usize) -> Option<&'e Endpoint>,
        key: Option<u64>,
        avoid: &[&Endpoint],
    ) -> Option<usize> {
        let healthy = |index: usize| endpoint(index).is_some_and(Endpoint::is_healthy);
        // One endpoint (the commonest cluster): what the rules below come to without
        // running them. It is used while healthy, and when not, only in panic (any
        // threshold above 0% has a lone unhealthy endpoint in panic); avoiding it
        // changes nothing, as nothing else could be picked.
        if let [only] = &*self.levels {
            if let [member] = *only.members {
                return (healthy(member) || self.panic_threshold > 0).then_some(member);
            }
        }
        let mut panic = [false; MAX_LEVELS];
        let drawn = match &*self.levels {
            [] => return None,
            [only] => {
                let total = only.members.len() as u64;
                let up = only.members.iter().filter(|&&i| healthy(i)).count() as u64;
                // A single level is fully available at ≥ 100/overprovisioning healthy, and
                // never in panic then; below, in panic under the threshold.
                let available = up * u64::from(self.overprovisioning_factor) >= total * 100;
                panic[0] = !available && up * 100 < u64::from(self.panic_threshold) * total;
                0
            }
            levels => {
                let mut health = [LevelHealth::default(); MAX_LEVELS];
                for (slot, level) in health.iter_mut().zip(levels) {
                    slot.total = level.members.len() as u32;
                    slot.healthy = level.members.iter().filter(|&&i| healthy(i)).count() as u32;
                }
                let count = levels.len().min(MAX_LEVELS);
                let health = health.get(..count).unwrap_or_default();
                let load = priority::priority_load(
                    health,
                    self.overprovisioning_factor,
                    self.panic_threshold,
                );
                let draw = match key {
                    Some(key) => (key % 100) as u32,
                    None => fastrand::u32(..100),
                };
                panic = load.panic;
                priority::choose(&load, count, draw)
            }
        };
        let in_level = |index: usize, avoiding: bool| {
            let level = self.levels.get(index)?;
            let panic = panic.get(index).copied().unwrap_or(false);
            let eligible = |position: usize| {
                level.members.get(position).is_some_and(|&index| {
                    (panic || healthy(index))
                        && !(avoiding
                            && endpoint(index)
                                .is_some_and(|e| avoid.iter().any(|tried| std::ptr::eq(*tried, e))))
                })
            };
            let position = level
                .strategy
                .pick(level.members.len(), key, eligible, |p| {
                    level.members.get(p).and_then(|&index| endpoint(index))
                })?;
            level.members.get(position).copied()
        };
        if avoid.is_empty() {
            return in_level(drawn, false);
        }
        in_level(drawn, true)
            .or_else(|| {
                (0..self.levels.len())
                    .filter(|&index| index != drawn)
                    .find_map(|index| in_level(index, true))
            })
            .or_else(|| in_level(drawn, false))
    }
}

impl Strategy {
    fn new(specs: &[Spec<'_>], members: &[usize], policy: LbPolicy) -> Self {
        let weights: Vec<u64> = members
            .iter()
            .map(|&index| {
                specs
                    .get(index)
                    .map_or(1, |spec| u64::from(spec.weight.max(1)))
            })
            .collect();
        let keys: Vec<&str> = members
            .iter()
            .map(|&index| specs.get(index).map_or("", |spec| spec.key))
            .collect();
        match policy {
            LbPolicy::RoundRobin => Strategy::RoundRobin {
                schedule: smooth_schedule(&weights),
                next: AtomicUsize::new(0),
            },
            LbPolicy::LeastRequest { choice_count } => Strategy::LeastRequest {
                choice_count: choice_count.max(1),
                weighted: weights.windows(2).any(|pair| pair.first() != pair.last()),
            },
            LbPolicy::Random => Strategy::Random,
            LbPolicy::RingHash { minimum_ring_size } => {
                Strategy::Ring(ring(&keys, &weights, u64::from(minimum_ring_size)))
            }
            LbPolicy::Maglev { table_size } => {
                Strategy::Maglev(maglev(&keys, &weights, u64::from(table_size)))
            }
        }
    }

    /// A position in the level (`0..len`) for which `eligible` holds, or `None`.
    fn pick<'e>(
        &self,
        len: usize,
        key: Option<u64>,
        eligible: impl Fn(usize) -> bool,
        endpoint: impl Fn(usize) -> Option<&'e Endpoint>,
    ) -> Option<usize> {
        match len {
            0 => return None,
            // Every policy picks the only endpoint there is; none needs its state
            // advanced for it (a round-robin turn would be the same one).
            1 => return eligible(0).then_some(0),
            _ => {}
        }
        let found = match self {
            Strategy::RoundRobin { schedule, next } => {
                // Each skipped turn is consumed, so the healthy endpoints keep their
                // relative shares of the schedule.
                (0..schedule.len()).find_map(|_| {
                    let turn = next.fetch_add(1, Ordering::Relaxed) % schedule.len();
                    schedule.get(turn).copied().filter(|&p| eligible(p))
                })
            }
            Strategy::Random => random_eligible(len, &eligible),
            Strategy::LeastRequest {
                choice_count,
                weighted,
            } => {
                let cost = |position: usize| {
                    endpoint(position).map_or((u64::MAX, 1), |e| {
                        let active = e.active_requests() as u64 + 1;
                        let weight = if *weighted { u64::from(e.weight()) } else { 1 };
                        (active, weight)
                    })
                };
                let mut best: Option<(usize, (u64, u64))> = None;
                for _ in 0..*choice_count {
                    let Some(candidate) = random_eligible(len, &eligible) else {
                        break;
                    };
                    let (active, weight) = cost(candidate);
                    // Lower active/weight wins; compared by cross-multiplication.
                    let better = best.is_none_or(|(_, (best_active, best_weight))| {
                        u128::from(active) * u128::from(best_weight)
                            < u128::from(best_active) * u128::from(weight)
                    });
                    if better {
                        best = Some((candidate, (active, weight)));
                    }
                }
                best.map(|(position, _)| position)
            }
            Strategy::Ring(points) => {
                let key = key.unwrap_or_else(|| fastrand::u64(..));
                let start = points.partition_point(|&(point, _)| point < key);
                (0..points.len()).find_map(|step| {
                    let slot = (start + step) % points.len();
                    points.get(slot).map(|&(_, p)| p).filter(|&p| eligible(p))
                })
            }
            Strategy::Maglev(table) => {
                let key = key.unwrap_or_else(|| fastrand::u64(..));
                let start = (key % table.len().max(1) as u64) as usize;
                (0..table.len()).find_map(|step| {
                    let slot = (start + step) % table.len();
                    table.get(slot).copied().filter(|&p| eligible(p))
                })
            }
        };
        // Health can change between the level's health count and this pick; in that
        // rare race, any eligible endpoint will do.
        found.or_else(|| (0..len).find(|&p| eligible(p)))
    }
}

/// A uniformly random eligible position: a few rejection-sampling draws (exactly
/// uniform, and one draw when all are eligible), then the n-th of the eligible ones.
fn random_eligible(len: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    const DRAWS: usize = 4;
    if let Some(position) = (0..DRAWS)
        .map(|_| fastrand::usize(..len))
        .find(|&p| eligible(p))
    {
        return Some(position);
    }
    let count = (0..len).filter(|&p| eligible(p)).count();
    if count == 0 {
        return None;
    }
    let nth = fastrand::usize(..count);
    (0..len).filter(|&p| eligible(p)).nth(nth)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Weights reduced by their common divisor, then scaled so they sum to at most `max`
/// (every weight stays ≥ 1).
fn reduce(weights: &[u64], max: u64) -> Vec<u64> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let sum: u64 = reduced.iter().sum();
    if sum <= max {
        return reduced;
    }
    reduced
        .iter()
        .map(|w| (u128::from(*w) * u128::from(max) / u128::from(sum)).max(1) as u64)
        .collect()
}

/// The smooth weighted round robin sequence (nginx's) over positions `0..weights.len()`.
fn smooth_schedule(weights: &[u64]) -> Box<[usize]> {
    let weights = reduce(weights, MAX_SCHEDULE);
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += w as i64;
        }
        let Some((chosen, _)) = current
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.cmp(b).then(j.cmp(i)))
        else {
            break;
        };
        if let Some(c) = current.get_mut(chosen) {
            *c -= total;
        }
        schedule.push(chosen);
    }
    schedule.into_boxed_slice()
}

/// A hash ring: each endpoint gets points in proportion to its weight, the lightest at
/// least one and the ring at least `minimum` points (capped at 8M).
fn ring(keys: &[&str], weights: &[u64], minimum: u64) -> Box<[(u64, usize)]> {
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let lightest = weights.iter().copied().min().unwrap_or(1).max(1);
    // Scale so the lightest endpoint gets ⌈minimum·lightest/total⌉ points, as Envoy.
    let lightest_points = (minimum * lightest).div_ceil(total).max(1);
    let mut points = Vec::new();
    for (position, (key, &weight)) in keys.iter().zip(weights).enumerate() {
        let count = (u128::from(lightest_points) * u128::from(weight) / u128::from(lightest))
            .min(u128::from(MAX_RING / keys.len().max(1) as u64)) as u64;
        for replica in 0..count.max(1) {
            let point = hash::hash_parts([key.as_bytes(), &replica.to_le_bytes()[..]]);
            points.push((point, position));
        }
    }
    points.sort_unstable();
    points.into_boxed_slice()
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// A Maglev lookup table (Eisenbud et al., 2016, with weighted turns as Envoy).
fn maglev(keys: &[&str], weights: &[u64], size: u64) -> Box<[usize]> {
    let mut size = size.clamp(2, 1 << 24);
    while !is_prime(size) {
        size += 1;
    }
    let n = keys.len();
    if n == 0 {
        return Box::new([]);
    }
    let permutation: Vec<(u64, u64)> = keys
        .iter()
        .map(|key| {
            let offset = hash::hash_parts([key.as_bytes(), b"offset"]) % size;
            let skip = hash::hash_parts([key.as_bytes(), b"skip"]) % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    let heaviest = weights.iter().copied().max().unwrap_or(1).max(1);
    let mut next = vec![0u64; n];
    let mut credit = vec![0u64; n];
    let mut table: Vec<Option<usize>> = vec![None; size as usize];
    let mut filled = 0u64;
    'fill: loop {
        for position in 0..n {
            // Weighted turns: an endpoint places an entry each time its accumulated
            // weight reaches the heaviest weight.
            let (Some(c), Some(&w)) = (credit.get_mut(position), weights.get(position)) else {
                continue;
            };
            *c += w.max(1);
            if *c < heaviest {
                continue;
            }
            *c -= heaviest;
            let (Some(&(offset, skip)), Some(j)) =
                (permutation.get(position), next.get_mut(position))
            else {
                continue;
            };
            loop {
                let slot = ((offset + *j * skip) % size) as usize;
                *j += 1;
                if let Some(entry @ None) = table.get_mut(slot) {
                    *entry = Some(position);
                    break;
                }
            }
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    table.into_iter().map(|entry| entry.unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_schedule(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(&*smooth_schedule(&[2, 4]), [1, 0, 1]);
    }

    #[test]
    fn huge_weights_are_scaled() {
        let schedule = smooth_schedule(&[u64::from(u32::MAX), 1]);
        assert!(schedule.len() as u64 <= MAX_SCHEDULE + 1);
        assert!(schedule.contains(&1));
    }

    #[test]
    fn maglev_table_is_full_and_weighted() {
        let table = maglev(&["a", "b"], &[1, 3], 1009);
        assert_eq!(table.len(), 1009);
        let b = table.iter().filter(|&&p| p == 1).count();
        assert!((740..=775).contains(&b), "{b}");
        assert_eq!(maglev(&["a"], &[1], 10).len(), 11);
    }
}
