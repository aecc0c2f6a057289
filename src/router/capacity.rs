//! What a model has left: the room of its deployments that can take
//! traffic now (for the `x-ratelimit-*` headers clients back off by) and
//! its headroom against the current demand (for operators).

use std::time::Duration;

use super::Pool;
use super::limits::part;

/// A model's room in one kind of limit, summed over its deployments that
/// can take traffic and have that limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    pub remaining: u64,
    /// When the windows are whole again (the latest of them).
    pub reset: Duration,
}

/// A model's room in requests and tokens; `None` where no deployment has
/// such a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    pub requests: Option<Room>,
    pub tokens: Option<Room>,
}

/// A tier's (or the model's) headroom: the share of its admissible token
/// capacity that the current rate leaves, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TierHeadroom {
    pub tier: u32,
    pub headroom: Option<f64>,
}

impl Pool {
    /// The room left now in the deployments that can take traffic.
    pub fn remaining(&mut self, now: Duration) -> Remaining {
        let share = self.share;
        let mut out = Remaining::default();
        for slot in self.slots.iter_mut() {
            if !slot.enabled || slot.retired || slot.health.blocked(now).is_some() {
                continue;
            }
            let l = slot.limits;
            if let Some(rpm) = l.rpm {
                let (used, reset) = slot.meter.requests_left(now);
                add(
                    &mut out.requests,
                    part(rpm, share).saturating_sub(used),
                    reset,
                );
            }
            if let Some(tokens) = l.tokens() {
                let (used, reset) = slot.meter.tokens_left(now, &l);
                add(
                    &mut out.tokens,
                    part(tokens, share).saturating_sub(used),
                    reset,
                );
            }
        }
        out
    }

    /// Headroom of the whole model and of each tier (`None` where no
    /// deployment has a token limit): of the token capacity of the
    /// deployments that can take traffic (enabled, not cooling down), the
    /// share the current rate of every enabled one leaves. Deployments
    /// without a token limit are left out of both sides: their capacity
    /// is unknown.
    pub fn headroom(&mut self, now: Duration) -> (Option<f64>, Vec<TierHeadroom>) {
        let mut tiers: Vec<(u32, u64, f64)> = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.enabled && !s.retired) {
            let Some(capacity) = slot.limits.tokens() else {
                continue;
            };
            let demand = slot.meter.token_rate(now) * 60.0;
            let capacity = if slot.health.blocked(now).is_some() {
                0
            } else {
                capacity
            };
            match tiers.iter_mut().find(|t| t.0 == slot.priority) {
                Some(t) => {
                    t.1 += capacity;
                    t.2 += demand;
                }
                None => tiers.push((slot.priority, capacity, demand)),
            }
        }
        tiers.sort_by_key(|t| t.0);
        let share = |capacity: u64, demand: f64| {
            if capacity == 0 {
                0.0
            } else {
                (1.0 - demand / capacity as f64).clamp(0.0, 1.0)
            }
        };
        let model = (!tiers.is_empty()).then(|| {
            let capacity = tiers.iter().map(|t| t.1).sum();
            share(capacity, tiers.iter().map(|t| t.2).sum())
        });
        let tiers = tiers
            .into_iter()
            .map(|(tier, capacity, demand)| TierHeadroom {
                tier,
                headroom: Some(share(capacity, demand)),
            })
            .collect();
        (model, tiers)
    }
}

fn add(room: &mut Option<Room>, remaining: u64, reset: Duration) {
    let r = room.get_or_insert_with(Room::default);
    r.remaining = r.remaining.saturating_add(remaining);
    r.reset = r.reset.max(reset);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutingConfig;
    use crate::router::Limits;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn room_is_summed_over_the_deployments_that_can_take_traffic() {
        let mut p = Pool::new(RoutingConfig::default());
        let both = Limits {
            tpm: Some(1_000),
            rpm: Some(10),
            ..Limits::default()
        };
        p.push("a".into(), both, true);
        p.push("b".into(), Limits::tpm(Some(500)), true);
        p.push("off".into(), Limits::tpm(Some(9_999)), false);
        p.push("free".into(), Limits::default(), true);
        let r = p.pick(s(10), 300, &[1, 2, 3]).unwrap();
        p.end(r.index);
        let room = p.remaining(s(20));
        assert_eq!(room.requests.unwrap().remaining, 9);
        assert_eq!(room.tokens.unwrap().remaining, 1_500 - 300);
        // Whole again when second 10 leaves.
        assert_eq!(room.tokens.unwrap().reset, s(50));
        // A deployment cooling down offers nothing.
        p.record(1, s(20), crate::router::Verdict::RateLimited(Some(s(30))));
        assert_eq!(p.remaining(s(21)).tokens.unwrap().remaining, 700);
        // No limits at all: nothing to say.
        let mut q = Pool::new(RoutingConfig::default());
        q.push("x".into(), Limits::default(), true);
        assert_eq!(q.remaining(s(0)), Remaining::default());
    }

    #[test]
    fn headroom_is_capacity_left_at_the_current_rate_per_tier() {
        let mut p = Pool::new(RoutingConfig::default());
        p.push("ptu".into(), Limits::tpm(Some(6_000)), true);
        let b = p.push("paygo".into(), Limits::tpm(Some(6_000)), true);
        p.set_priority(b, 2);
        // 50 tokens a second for a minute to the first tier: 3,000 a minute.
        for t in 0..60 {
            let r = p.pick(s(t), 50, &[]).unwrap();
            p.end(r.index);
        }
        let (model, tiers) = p.headroom(s(60));
        let t1 = tiers[0].headroom.unwrap();
        assert!((0.45..0.56).contains(&t1), "{t1}");
        assert_eq!(tiers[1].headroom, Some(1.0));
        let m = model.unwrap();
        assert!((0.72..0.78).contains(&m), "{m}");
        let mut none = Pool::new(RoutingConfig::default());
        none.push("x".into(), Limits::default(), true);
        assert_eq!(none.headroom(s(0)).0, None);
    }
}
