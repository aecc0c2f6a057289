//! The router core: which deployment of a model takes the next request.
//!
//! Pure: no I/O, no clock of its own. Every call takes `now` (time since an
//! arbitrary epoch), so tests drive time exactly. The gateway owns one [`Pool`]
//! per model behind a short mutex and never awaits while holding it.
//!
//! Rules (see CONTRACT.md, "Routing"):
//! - only enabled deployments take traffic;
//! - weights follow the TPM limits; with no limits, equal weights; with a mix,
//!   a deployment without a limit weighs as much as the largest limit in its
//!   pool (it has no known cap, so it is treated as at least as big as any);
//! - picks follow a smooth weighted round robin among the deployments that may
//!   take the request right now (enabled, not cooling down, not held back by a
//!   probe in flight, and with room in their TPM window for the estimate);
//! - a failed attempt is retried on the next such deployment not yet tried.

pub mod health;
pub mod select;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use crate::config::RoutingConfig;
use health::Health;
pub use health::{Blocked, Cause, Transition, Verdict};
use select::{Candidate, smooth_wrr};
pub use window::{Reservation, TpmWindow};

/// One deployment's routing state.
#[derive(Debug, Clone)]
struct Slot {
    name: Arc<str>,
    enabled: bool,
    tpm_limit: Option<u64>,
    weight: i64,
    credit: i64,
    window: TpmWindow,
    health: Health,
    requests: u64,
    failures: u64,
    /// Removed from the config: takes no traffic and is not shown, but keeps
    /// its index so that requests still in flight settle where they started.
    retired: bool,
}

/// The deployments of one model.
#[derive(Debug, Clone)]
pub struct Pool {
    slots: Vec<Slot>,
    policy: RoutingConfig,
    /// How many instances share the limits while this one decides alone
    /// (a cluster whose Redis is away): each limit counts as 1/share. 1
    /// outside a cluster.
    share: u64,
}

/// The deployment chosen for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub reservation: Reservation,
    /// The first request after a failure cooldown.
    pub probe: bool,
}

/// Why no (further) deployment can take the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unavailable {
    /// No deployment of the model is enabled.
    NoneEnabled,
    /// Every enabled deployment not yet tried is at its TPM limit or rate
    /// limited (some may also be cooling down after failures); `retry_after`
    /// is when the soonest frees.
    RateLimited { retry_after: Duration },
    /// Every enabled deployment not yet tried is cooling down after failures.
    Failing { retry_after: Duration },
    /// Every enabled deployment has been tried for this request.
    Exhausted,
}

/// What a deployment looks like right now, for the admin API and the dashboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlotStatus {
    pub name: Arc<str>,
    pub enabled: bool,
    pub tpm_limit: Option<u64>,
    pub tpm_used: u64,
    pub state: State,
    pub cooldown_cause: Option<Cause>,
    pub cooldown_remaining_s: f64,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    pub weight: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Healthy,
    CoolingDown,
    Disabled,
}

impl Pool {
    pub fn new(policy: RoutingConfig) -> Self {
        Self {
            slots: Vec::new(),
            policy,
            share: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a deployment; returns its index (indices never change).
    pub fn push(&mut self, name: Arc<str>, tpm_limit: Option<u64>, enabled: bool) -> usize {
        self.slots.push(Slot {
            name,
            enabled,
            tpm_limit,
            weight: 1,
            credit: 0,
            window: TpmWindow::new(),
            health: Health::default(),
            requests: 0,
            failures: 0,
            retired: false,
        });
        self.reweigh();
        self.slots.len() - 1
    }

    /// The live (not retired) deployment of that name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| !s.retired && &*s.name == name)
    }

    /// Indices of the deployments in the config, in order.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|&i| !self.slots[i].retired)
    }

    /// Takes a deployment out for good (it left the config). Its index stays
    /// valid for the requests still using it; its name may be added again as
    /// a new deployment.
    pub fn retire(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.retired = true;
        slot.enabled = false;
        self.reweigh();
    }

    /// Changes a TPM limit (a config reload); weights follow at once. The
    /// window keeps its tokens: they were spent whatever the new limit.
    pub fn set_limit(&mut self, index: usize, tpm_limit: Option<u64>) -> bool {
        let changed = self.slots[index].tpm_limit != tpm_limit;
        if changed {
            self.slots[index].tpm_limit = tpm_limit;
            self.reweigh();
        }
        changed
    }

    /// New cooldown rules (a config reload), for failures from now on.
    pub fn set_policy(&mut self, policy: RoutingConfig) {
        self.policy = policy;
    }

    pub fn name(&self, index: usize) -> &Arc<str> {
        &self.slots[index].name
    }

    /// Returns whether anything changed.
    pub fn set_enabled(&mut self, index: usize, enabled: bool) -> bool {
        let slot = &mut self.slots[index];
        let changed = slot.enabled != enabled;
        slot.enabled = enabled;
        // An operator putting a deployment back means "try it afresh": old
        // failures must not turn its first hiccup into a long cooldown.
        if enabled && changed {
            slot.health = Health::default();
        }
        // Coming back in, it starts with a clean slate rather than a burst of
        // credit saved up while it was out.
        slot.credit = 0;
        changed
    }

    fn reweigh(&mut self) {
        let largest = self
            .slots
            .iter()
            .filter(|s| !s.retired)
            .filter_map(|s| s.tpm_limit)
            .max();
        for slot in &mut self.slots {
            slot.weight = match (slot.tpm_limit, largest) {
                (Some(limit), _) => limit.min(i64::MAX as u64 / 1024) as i64,
                (None, Some(largest)) => largest.min(i64::MAX as u64 / 1024) as i64,
                (None, None) => 1,
            };
        }
    }

    /// Each instance's part of every limit while it decides alone: the
    /// limits divided by the instances that share them (1: the whole).
    pub fn set_share(&mut self, instances: u64) {
        self.share = instances.max(1);
    }

    /// Counts `tokens` for a deployment another decider chose (the cluster),
    /// so that this instance knows what it sent if it must decide alone.
    pub fn reserve(&mut self, index: usize, now: Duration, tokens: u64) -> Reservation {
        let slot = &mut self.slots[index];
        slot.requests += 1;
        slot.window.add(now, tokens)
    }

    /// The live deployments as a shared pick needs them: index, name,
    /// weight, limit, enabled.
    pub fn for_sharing(
        &self,
    ) -> impl Iterator<Item = (usize, &Arc<str>, i64, Option<u64>, bool)> + '_ {
        self.live().map(|i| {
            let s = &self.slots[i];
            (i, &s.name, s.weight, s.tpm_limit, s.enabled)
        })
    }

    pub fn policy(&self) -> &RoutingConfig {
        &self.policy
    }

    /// Chooses the deployment for the next attempt of a request estimated at
    /// `estimate` tokens, skipping the ones in `tried`, and counts the estimate
    /// in its window.
    pub fn pick(
        &mut self,
        now: Duration,
        estimate: u64,
        tried: &[usize],
    ) -> Result<Pick, Unavailable> {
        let share = self.share;
        let own = |limit: u64| {
            if share > 1 {
                (limit / share).max(1)
            } else {
                limit
            }
        };
        let candidates = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let open = slot.enabled
                    && !tried.contains(&index)
                    && slot.health.blocked(now).is_none()
                    && slot
                        .tpm_limit
                        .is_none_or(|limit| slot.window.fits(now, estimate, own(limit)));
                open.then_some(Candidate {
                    index,
                    weight: slot.weight,
                    credit: &mut slot.credit,
                })
            });
        match smooth_wrr(candidates) {
            Some(index) => {
                let slot = &mut self.slots[index];
                let probe = slot.health.on_pick();
                slot.requests += 1;
                let reservation = slot.window.add(now, estimate);
                Ok(Pick {
                    index,
                    reservation,
                    probe,
                })
            }
            None => Err(self.why_unavailable(now, estimate, tried)),
        }
    }

    /// Why a request of `estimate` tokens could not be placed now, counting
    /// every enabled deployment (for the Retry-After of a final answer).
    pub fn pick_hint(&mut self, now: Duration, estimate: u64) -> Unavailable {
        self.why_unavailable(now, estimate, &[])
    }

    fn why_unavailable(&mut self, now: Duration, estimate: u64, tried: &[usize]) -> Unavailable {
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
            let own = |limit: u64| {
                if self.share > 1 {
                    (limit / self.share).max(1)
                } else {
                    limit
                }
            };
            let wait = match slot.health.blocked(now) {
                Some(Blocked::Cooling { cause, remaining }) => {
                    any_limited |= cause == Cause::RateLimited;
                    remaining
                }
                // A probe answers within a request's time; a second is a fair hint.
                Some(Blocked::Probing) => Duration::from_secs(1),
                None => match slot.tpm_limit {
                    Some(limit) => {
                        any_limited = true;
                        slot.window.time_until_fits(now, estimate, own(limit))
                    }
                    None => Duration::ZERO,
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

    /// Records how an attempt went; returns a state change to announce.
    pub fn record(&mut self, index: usize, now: Duration, verdict: Verdict) -> Option<Transition> {
        let slot = &mut self.slots[index];
        if verdict == Verdict::Failed {
            slot.failures += 1;
        }
        slot.health.record(now, verdict, &self.policy)
    }

    /// Replaces the estimate counted at pick time by the tokens really used.
    pub fn settle(&mut self, index: usize, now: Duration, reservation: Reservation, actual: u64) {
        self.slots[index].window.settle(now, reservation, actual);
    }

    pub fn status(&mut self, index: usize, now: Duration) -> SlotStatus {
        let slot = &mut self.slots[index];
        let cooling = slot.health.cooling(now);
        let state = if !slot.enabled {
            State::Disabled
        } else if cooling.is_some() {
            State::CoolingDown
        } else {
            State::Healthy
        };
        SlotStatus {
            name: slot.name.clone(),
            enabled: slot.enabled,
            tpm_limit: slot.tpm_limit,
            tpm_used: slot.window.used(now),
            state,
            cooldown_cause: cooling.map(|(c, _)| c),
            cooldown_remaining_s: cooling.map_or(0.0, |(_, d)| d.as_secs_f64()),
            consecutive_failures: slot.health.consecutive_failures(),
            requests: slot.requests,
            failures: slot.failures,
            weight: slot.weight,
        }
    }

    /// The statuses of the live deployments, in order.
    pub fn statuses(&mut self, now: Duration) -> Vec<SlotStatus> {
        let live: Vec<usize> = self.live().collect();
        live.into_iter().map(|i| self.status(i, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    fn pool(limits: &[Option<u64>]) -> Pool {
        let mut p = Pool::new(RoutingConfig::default());
        for (i, l) in limits.iter().enumerate() {
            p.push(format!("d{i}").into(), *l, true);
        }
        p
    }

    fn counts(p: &mut Pool, n: usize) -> Vec<usize> {
        let mut c = vec![0; p.len()];
        for _ in 0..n {
            let pick = p.pick(s(0), 0, &[]).unwrap();
            c[pick.index] += 1;
        }
        c
    }

    #[test]
    fn weights_follow_tpm_limits_exactly() {
        let mut p = pool(&[Some(300_000), Some(100_000)]);
        assert_eq!(counts(&mut p, 8), vec![6, 2]);
    }

    #[test]
    fn no_limits_rotate_evenly() {
        let mut p = pool(&[None, None, None]);
        let order: Vec<usize> = (0..6)
            .map(|_| p.pick(s(0), 10, &[]).unwrap().index)
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn mixed_unlimited_weighs_as_the_largest_limit() {
        let mut p = pool(&[Some(100), Some(300), None]);
        assert_eq!(counts(&mut p, 7), vec![1, 3, 3]);
    }

    #[test]
    fn re_enabling_forgets_old_failures() {
        let mut p = pool(&[None]);
        for _ in 0..5 {
            p.record(0, s(0), Verdict::Failed);
        }
        p.set_enabled(0, false);
        p.set_enabled(0, true);
        assert_eq!(p.status(0, s(0)).state, State::Healthy);
        assert_eq!(p.status(0, s(0)).consecutive_failures, 0);
    }

    #[test]
    fn disabled_deployments_get_nothing() {
        let mut p = pool(&[None, None]);
        p.set_enabled(0, false);
        assert_eq!(counts(&mut p, 4), vec![0, 4]);
        p.set_enabled(1, false);
        assert_eq!(p.pick(s(0), 1, &[]), Err(Unavailable::NoneEnabled));
    }

    #[test]
    fn failover_skips_tried_deployments() {
        let mut p = pool(&[None, None, None]);
        let first = p.pick(s(0), 1, &[]).unwrap().index;
        let second = p.pick(s(0), 1, &[first]).unwrap().index;
        let third = p.pick(s(0), 1, &[first, second]).unwrap().index;
        let mut all = vec![first, second, third];
        all.sort();
        assert_eq!(all, vec![0, 1, 2]);
        assert_eq!(p.pick(s(0), 1, &[0, 1, 2]), Err(Unavailable::Exhausted));
    }

    #[test]
    fn a_full_window_is_skipped_until_it_frees() {
        let mut p = pool(&[Some(1000), Some(1000)]);
        let a = p.pick(s(0), 900, &[]).unwrap();
        let b = p.pick(s(0), 900, &[]).unwrap();
        assert_ne!(a.index, b.index);
        assert_eq!(
            p.pick(Duration::from_millis(30_500), 200, &[]),
            Err(Unavailable::RateLimited {
                retry_after: Duration::from_millis(29_500)
            })
        );
        // The real usage was lower: the window frees at once.
        p.settle(a.index, s(31), a.reservation, 100);
        assert_eq!(p.pick(s(31), 200, &[]).unwrap().index, a.index);
        assert_eq!(p.status(a.index, s(31)).tpm_used, 300);
    }

    #[test]
    fn rate_limited_and_failing_give_different_reasons() {
        let mut p = pool(&[None, None]);
        p.record(0, s(0), Verdict::RateLimited(Some(s(7))));
        for _ in 0..3 {
            p.record(1, s(0), Verdict::Failed);
        }
        assert_eq!(
            p.pick(s(1), 1, &[]),
            Err(Unavailable::RateLimited { retry_after: s(4) })
        );
        let mut q = pool(&[None]);
        for _ in 0..3 {
            q.record(0, s(0), Verdict::Failed);
        }
        assert_eq!(
            q.pick(s(2), 1, &[]),
            Err(Unavailable::Failing { retry_after: s(3) })
        );
        let st = q.status(0, s(2));
        assert_eq!(st.state, State::CoolingDown);
        assert_eq!(st.failures, 3);
    }

    #[test]
    fn the_first_pick_after_a_cooldown_is_the_only_probe() {
        let mut p = pool(&[None, None]);
        for _ in 0..3 {
            p.record(0, s(0), Verdict::Failed);
        }
        assert_eq!(counts(&mut p, 2), vec![0, 2]);
        let mut probes = 0;
        let mut to_zero = 0;
        for _ in 0..4 {
            let pick = p.pick(s(6), 1, &[]).unwrap();
            probes += pick.probe as usize;
            to_zero += (pick.index == 0) as usize;
        }
        assert_eq!((probes, to_zero), (1, 1));
        assert_eq!(
            p.record(0, s(7), Verdict::Answered),
            Some(Transition::Recovered)
        );
        assert_eq!(p.status(0, s(7)).state, State::Healthy);
    }
}
