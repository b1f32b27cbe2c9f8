//! Envoy's priority load: how much of the traffic each priority level receives, and
//! whether a level is in panic.
//!
//! Rules (Envoy's `LoadBalancerBase::recalculatePriorityLoad`, counting hosts, without
//! degraded hosts):
//!
//! 1. Health of level *P* = `min(100, healthy / total × overprovisioning_factor)`, in
//!    percent, rounded down (factor 140 by default: a level at ≥ 72 % healthy is
//!    "fully healthy").
//! 2. Normalized total availability = `min(100, Σ health)`.
//! 3. If it is 0 (no healthy endpoint anywhere), *total panic*: each level gets load in
//!    proportion to its endpoint count and every level is in panic.
//! 4. Otherwise, from the highest priority (lowest number) down, level *P* takes
//!    `min(remaining, health(P) × 100 / availability)`; rounding leftovers go to the first
//!    level with any health.
//! 5. A level is in panic when its healthy share (`healthy × 100 / total`, no
//!    overprovisioning) is below the panic threshold — unless the total availability is
//!    100, in which case no level is.

/// Most priority levels a cluster may have. Priorities past the last distinct level are
/// folded into it (with a warning at start-up), so the per-pick computation needs no
/// allocation.
pub(crate) const MAX_LEVELS: usize = 16;

/// Healthy and total endpoint counts of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LevelHealth {
    pub healthy: u32,
    pub total: u32,
}

/// The computed load, in percent summing to 100 (or all 0 when no level has endpoints),
/// and the panic flag, per level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PriorityLoad {
    pub load: [u8; MAX_LEVELS],
    pub panic: [bool; MAX_LEVELS],
}

pub(crate) fn priority_load(
    levels: &[LevelHealth],
    overprovisioning_factor: u32,
    panic_threshold: u8,
) -> PriorityLoad {
    let levels = levels.get(..levels.len().min(MAX_LEVELS)).unwrap_or(levels);
    let mut out = PriorityLoad::default();
    let mut health = [0u32; MAX_LEVELS];
    for (slot, level) in health.iter_mut().zip(levels) {
        *slot = match level.total {
            0 => 0,
            total => {
                let scaled = u64::from(level.healthy) * u64::from(overprovisioning_factor)
                    / u64::from(total);
                scaled.min(100) as u32
            }
        };
    }
    let availability = health.iter().sum::<u32>().min(100);
    if availability == 0 {
        // Total panic: load follows endpoint counts.
        let hosts: u64 = levels.iter().map(|level| u64::from(level.total)).sum();
        if hosts == 0 {
            return out;
        }
        distribute(&mut out.load, levels.iter().map(|l| l.total), hosts);
    } else {
        distribute(
            &mut out.load,
            health.iter().copied(),
            u64::from(availability),
        );
    }
    if availability < 100 {
        for (panic, level) in out.panic.iter_mut().zip(levels) {
            *panic = level.total > 0
                && u64::from(level.healthy) * 100
                    < u64::from(panic_threshold) * u64::from(level.total);
        }
    }
    out
}

/// Shares 100 in proportion to `weights` (summing to `total`), in order, each capped by
/// what remains; the rounding leftover goes to the first level with a nonzero weight.
fn distribute(load: &mut [u8; MAX_LEVELS], weights: impl Iterator<Item = u32>, total: u64) {
    let mut remaining: u64 = 100;
    let mut first = None;
    for (index, (slot, weight)) in load.iter_mut().zip(weights).enumerate() {
        if weight > 0 && first.is_none() {
            first = Some(index);
        }
        let share = (u64::from(weight) * 100 / total).min(remaining);
        remaining -= share;
        *slot = share as u8;
    }
    if let Some(slot) = first.and_then(|index| load.get_mut(index)) {
        *slot += remaining as u8;
    }
}

/// The level that value `draw` (0..100) falls in under `load`.
pub(crate) fn choose(load: &PriorityLoad, levels: usize, draw: u32) -> usize {
    let mut cumulative = 0u32;
    for (index, &share) in load.load.iter().take(levels).enumerate() {
        cumulative += u32::from(share);
        if draw < cumulative {
            return index;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(healthy: u32, total: u32) -> LevelHealth {
        LevelHealth { healthy, total }
    }

    fn loads(levels: &[LevelHealth]) -> Vec<u8> {
        let computed = priority_load(levels, 140, 50);
        computed
            .load
            .get(..levels.len())
            .unwrap_or_default()
            .to_vec()
    }

    #[test]
    fn envoy_documented_examples() {
        // Envoy docs, "Priority levels": P0 health → load on P0/P1.
        assert_eq!(loads(&[level(10, 10), level(10, 10)]), [100, 0]);
        assert_eq!(loads(&[level(8, 10), level(10, 10)]), [100, 0]);
        assert_eq!(loads(&[level(7, 10), level(10, 10)]), [98, 2]);
        assert_eq!(loads(&[level(5, 10), level(10, 10)]), [70, 30]);
        assert_eq!(loads(&[level(1, 10), level(10, 10)]), [14, 86]);
        // Three levels, all degraded: normalized over availability.
        assert_eq!(
            loads(&[level(2, 10), level(2, 10), level(2, 10)]),
            // health 28 each, availability 84: 33 each, leftover 1 to P0.
            [34, 33, 33]
        );
    }

    #[test]
    fn panic_rules() {
        let computed = priority_load(&[level(4, 10), level(1, 10)], 140, 50);
        // Availability 56+14 = 70 < 100: both below 50 % are in panic.
        assert_eq!(computed.panic[..2], [true, true]);
        let computed = priority_load(&[level(4, 10), level(10, 10)], 140, 50);
        // Availability 100: no panic even though P0 is at 40 %.
        assert_eq!(computed.panic[..2], [false, false]);
        assert_eq!(computed.load[..2], [56, 44]);
        let computed = priority_load(&[level(0, 2), level(0, 6)], 140, 50);
        assert_eq!(computed.load[..2], [25, 75]);
        assert_eq!(computed.panic[..2], [true, true]);
        assert_eq!(priority_load(&[], 140, 50), PriorityLoad::default());
    }

    #[test]
    fn choose_follows_cumulative_load() {
        let computed = priority_load(&[level(5, 10), level(10, 10)], 140, 50);
        assert_eq!(choose(&computed, 2, 0), 0);
        assert_eq!(choose(&computed, 2, 69), 0);
        assert_eq!(choose(&computed, 2, 70), 1);
        assert_eq!(choose(&computed, 2, 99), 1);
    }
}
