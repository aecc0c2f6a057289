//! Choosing a deployment: the best tier with room, then the session's pin,
//! the least loaded deployment for a new session, or the smooth weighted
//! round robin; and why nothing could be chosen.

use std::time::Duration;

/// How far above its share of the tokens a deployment may go before its
/// sessions start to move (see `Pool::should_move`).
pub const OVERLOAD_PCT: u128 = 5;

use super::health::{Blocked, Cause};
use super::limits::Need;
use super::select::{Candidate, smooth_wrr};
use super::{Pick, Pool, Slot, TierChange, Unavailable, Want};

/// One attempt's question to every deployment: may it take `need` now,
/// not having been tried, with this instance's `share` of the limits?
#[derive(Clone, Copy)]
struct Ask<'a> {
    now: Duration,
    need: Need,
    tried: &'a [usize],
    share: u64,
}

impl Pool {
    /// Chooses the deployment for the next attempt of a request estimated at
    /// `estimate` tokens, skipping the ones in `tried`, and counts the estimate
    /// in its window.
    pub fn pick(
        &mut self,
        now: Duration,
        estimate: impl Into<Need>,
        tried: &[usize],
    ) -> Result<Pick, Unavailable> {
        self.pick_for(now, estimate, tried, Want::default())
    }

    /// [`Pool::pick`] for a request that may belong to a session.
    pub fn pick_for(
        &mut self,
        now: Duration,
        need: impl Into<Need>,
        tried: &[usize],
        want: Want,
    ) -> Result<Pick, Unavailable> {
        let need = need.into();
        let ask = Ask {
            now,
            need,
            tried,
            share: self.share,
        };
        // The best tier that has a deployment able to take the request now.
        // One tier (the common case): no pass over the deployments for it.
        let tier = if self.tiered {
            match self.best_open_tier(&ask) {
                Some(tier) => tier,
                None => return Err(self.why_unavailable(now, need, tried)),
            }
        } else {
            self.single_tier
        };
        let pinned = want
            .session
            .and_then(|(key, ttl)| self.pins.get(key, now, ttl));
        let keep = pinned
            .map(|p| p.index)
            .filter(|&i| self.slots[i].open_in(tier, i, &ask));
        let keep = keep.filter(|&i| {
            let weight = pinned.map_or(0, |p| p.tokens);
            !self.should_move(&ask, i, weight, tier)
        });
        let index = match (keep, want.session) {
            (Some(index), _) => Some(index),
            (None, Some(_)) => self.least_loaded(&ask, tier),
            (None, None) => self.rotate(&ask, tier),
        };
        let Some(index) = index else {
            return Err(self.why_unavailable(now, need, tried));
        };
        if let Some((key, ttl)) = want.session {
            let tokens = pinned.map_or(0, |p| p.tokens).saturating_add(need.total());
            self.pins.set(key, index, now, ttl, tokens);
        }
        let tier_change = if self.tiered {
            self.note_tier(&ask, tier)
        } else {
            None
        };
        let slot = &mut self.slots[index];
        let probe = slot.health.on_pick();
        slot.requests += 1;
        let reservation = slot.meter.add(now, need);
        Ok(Pick {
            index,
            reservation,
            probe,
            tier_change,
            repinned_from: pinned.map(|p| p.index).filter(|&p| p != index),
        })
    }

    /// The best tier with a deployment that can take the request.
    fn best_open_tier(&mut self, ask: &Ask) -> Option<u32> {
        let mut tier: Option<u32> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if tier.is_some_and(|t| t <= slot.priority) {
                continue;
            }
            if slot.open(index, ask) {
                tier = Some(slot.priority);
            }
        }
        tier
    }

    /// The smooth weighted round robin among the tier's open deployments.
    fn rotate(&mut self, ask: &Ask, tier: u32) -> Option<usize> {
        let candidates = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                slot.open_in(tier, index, ask).then_some(Candidate {
                    index,
                    weight: slot.weight,
                    credit: &mut slot.credit,
                })
            });
        smooth_wrr(candidates)
    }

    /// Where a new session goes: the tier's open deployment with the fewest
    /// tokens in its window for its weight. Sessions differ in length by
    /// orders of magnitude; counting sessions would let a few long ones
    /// skew the shares, counting their tokens keeps them.
    fn least_loaded(&mut self, ask: &Ask, tier: u32) -> Option<usize> {
        let mut best: Option<(usize, u128, i64)> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !slot.open_in(tier, index, ask) {
                continue;
            }
            // used/weight compared as used_a * weight_b < used_b * weight_a.
            let used = u128::from(slot.meter.tokens_used(ask.now));
            let weight = slot.weight.max(1);
            let better = match best {
                None => true,
                Some((_, best_used, best_weight)) => {
                    let (mine, theirs) = (used * best_weight as u128, best_used * weight as u128);
                    mine < theirs || (mine == theirs && weight > best_weight)
                }
            };
            if better {
                best = Some((index, used, weight));
            }
        }
        best.map(|(index, _, _)| index)
    }

    /// Whether a session pinned to `index`, of `session` faded tokens,
    /// should move: sessions are placed before anyone knows how long they
    /// will run, and a few long ones can pile up on one deployment. It
    /// moves only when its deployment is more than [`OVERLOAD_PCT`] % over
    /// its share of the tier's tokens *and* moving it to the least loaded
    /// one brings the two nearer their shares (a session heavier than the
    /// gap would only move the pile: a lone session never hops). Each move
    /// is a cold prompt cache, so the bar is high.
    fn should_move(&mut self, ask: &Ask, index: usize, session: u64, tier: u32) -> bool {
        let (mut total, mut weights) = (0u128, 0u128);
        // The least loaded other deployment: (used, weight).
        let mut least: Option<(u128, u128)> = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.open_in(tier, i, ask) {
                continue;
            }
            let (used, weight) = (
                u128::from(slot.meter.tokens_used(ask.now)),
                slot.weight.max(1) as u128,
            );
            total += used;
            weights += weight;
            if i != index && least.is_none_or(|(u, w)| used * w < u * weight) {
                least = Some((used, weight));
            }
        }
        let Some((their_used, their_weight)) = least else {
            return false;
        };
        let slot = &mut self.slots[index];
        let (mine, my_weight) = (
            u128::from(slot.meter.tokens_used(ask.now)),
            slot.weight.max(1) as u128,
        );
        // Over its share by more than the margin (all scaled by `weights`).
        let over = mine * weights * 100 > total * my_weight * (100 + OVERLOAD_PCT);
        // Its excess plus the other's shortfall, against the session: a
        // faded sum of a steady stream is half its minute's tokens.
        let excess = (mine * weights).saturating_sub(total * my_weight);
        let shortfall = (total * their_weight).saturating_sub(their_used * weights);
        // Moving must close at least half of that gap, not just shift it:
        // for small or even loads, rotation evens things out by itself.
        over && u128::from(session) * 4 * weights < excess + shortfall
    }

    /// Notes the tier this pick went to: a change from the last one is
    /// worth an event.
    fn note_tier(&mut self, ask: &Ask, tier: u32) -> Option<TierChange> {
        // The model spills when a fresh request would: a deployment this
        // one already tried (a 500, a timeout) says nothing about the tier.
        if ask.tried.is_empty() {
            return self.note_spill(ask, tier);
        }
        let fresh = Ask { tried: &[], ..*ask };
        // The pick found room in `tier`, so a fresh request finds some too.
        let tier = self.best_open_tier(&fresh).unwrap_or(tier);
        self.note_spill(&fresh, tier)
    }

    /// Notes that the model's traffic goes to `tier` now.
    fn note_spill(&mut self, ask: &Ask, tier: u32) -> Option<TierChange> {
        let best = self
            .slots
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.priority)
            .min()?;
        if tier <= best {
            return self
                .spilled_to
                .take()
                .map(|_| TierChange::Returned { to: tier });
        }
        if self.spilled_to == Some(tier) {
            return None;
        }
        self.spilled_to = Some(tier);
        Some(TierChange::Spilled {
            from: best,
            to: tier,
            reason: self.why_not_above(ask, tier),
        })
    }

    /// Notes a pick another decider made (the cluster): the tier change
    /// to announce, as [`Pool::pick_for`] gives it.
    pub fn note_shared_pick(
        &mut self,
        index: usize,
        now: Duration,
        need: impl Into<Need>,
        tried: &[usize],
    ) -> Option<TierChange> {
        if !self.tiered {
            return None;
        }
        let tier = self.slots[index].priority;
        // This instance knows only part of the shared state, so the
        // cluster's pick says where a fresh request goes; a failover pick
        // (a better tier already tried) says nothing about the model.
        if tried
            .iter()
            .any(|&t| self.slots.get(t).is_some_and(|s| s.priority < tier))
        {
            return None;
        }
        let ask = Ask {
            now,
            need: need.into(),
            tried: &[],
            share: self.share,
        };
        self.note_spill(&ask, tier)
    }

    /// Why a deployment could not take a request of `estimate` tokens now
    /// (for a session moved off it), in a few words.
    #[cold]
    pub fn why_not(
        &mut self,
        index: usize,
        now: Duration,
        need: impl Into<Need>,
        tried: &[usize],
    ) -> &'static str {
        let ask = Ask {
            now,
            need: need.into(),
            tried,
            share: self.share,
        };
        let slot = &mut self.slots[index];
        if !slot.enabled {
            return "disabled";
        }
        if slot.open(index, &ask) {
            return "a better tier has room";
        }
        slot.why_closed(index, &ask)
    }

    /// Why each enabled deployment above `tier` could not take a request.
    #[cold]
    fn why_not_above(&mut self, ask: &Ask, tier: u32) -> String {
        let mut tiers: Vec<u32> = self
            .slots
            .iter()
            .filter(|s| s.enabled && s.priority < tier)
            .map(|s| s.priority)
            .collect();
        tiers.sort_unstable();
        tiers.dedup();
        let mut parts = Vec::new();
        for t in tiers {
            let why: Vec<String> = self
                .slots
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.enabled && s.priority == t)
                .map(|(i, s)| {
                    let why = s.why_closed(i, ask);
                    format!("{} {why}", s.name)
                })
                .collect();
            parts.push(format!("tier {t} full ({})", why.join(", ")));
        }
        parts.join("; ")
    }

    /// Why a request of `estimate` tokens could not be placed now, counting
    /// every enabled deployment (for the Retry-After of a final answer).
    pub fn pick_hint(&mut self, now: Duration, need: impl Into<Need>) -> Unavailable {
        self.why_unavailable(now, need.into(), &[])
    }

    fn why_unavailable(&mut self, now: Duration, need: Need, tried: &[usize]) -> Unavailable {
        let mut any_enabled = false;
        let mut any_limited = false;
        let mut soonest: Option<Duration> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !slot.enabled {
                continue;
            }
            any_enabled = true;
            if tried.contains(&index) {
                continue;
            }
            let wait = match slot.health.blocked(now) {
                Some(Blocked::Cooling { cause, remaining }) => {
                    any_limited |= cause == Cause::RateLimited;
                    remaining
                }
                // A probe answers within a request's time; a second is a fair hint.
                Some(Blocked::Probing) => Duration::from_secs(1),
                None => match slot
                    .meter
                    .time_until_fits(now, need, &slot.limits, self.share)
                {
                    Some(wait) => {
                        any_limited |= !wait.is_zero();
                        wait
                    }
                    // A place in flight frees when a request ends, at no
                    // known time: a second is a fair hint.
                    None => {
                        any_limited = true;
                        IN_FLIGHT_HINT
                    }
                },
            };
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        match (any_enabled, soonest) {
            (false, _) => Unavailable::NoneEnabled,
            (true, None) => Unavailable::Exhausted,
            (true, Some(retry_after)) if any_limited => Unavailable::RateLimited { retry_after },
            (true, Some(retry_after)) => Unavailable::Failing { retry_after },
        }
    }
}

impl Slot {
    /// May it take the request now?
    fn open(&mut self, index: usize, ask: &Ask) -> bool {
        self.enabled
            && !ask.tried.contains(&index)
            && self.health.blocked(ask.now).is_none()
            && self
                .meter
                .full(ask.now, ask.need, &self.limits, ask.share)
                .is_none()
    }

    /// In tier `tier`, and may it take the request now?
    fn open_in(&mut self, tier: u32, index: usize, ask: &Ask) -> bool {
        self.priority == tier && self.open(index, ask)
    }

    /// Why it cannot take the request now, in a few words.
    fn why_closed(&mut self, index: usize, ask: &Ask) -> &'static str {
        if ask.tried.contains(&index) {
            return "failed this request";
        }
        match self.health.blocked(ask.now) {
            Some(Blocked::Cooling {
                cause: Cause::RateLimited,
                ..
            }) => return "rate limited",
            Some(Blocked::Cooling {
                cause: Cause::Failing,
                ..
            }) => return "cooling down",
            Some(Blocked::Probing) => return "being probed",
            None => {}
        }
        match self.meter.full(ask.now, ask.need, &self.limits, ask.share) {
            Some(dim) => dim.at_limit(),
            None => "busy",
        }
    }
}

/// The Retry-After hint when only places in flight are missing.
pub const IN_FLIGHT_HINT: Duration = Duration::from_secs(1);
