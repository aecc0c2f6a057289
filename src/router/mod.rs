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
//! - a failed attempt is retried on the next such deployment not yet tried;
//! - deployments sit in tiers (`priority`, lower first): a pick looks only
//!   at the best tier that has a deployment able to take the request, so
//!   lower tiers take what the better ones cannot (see [`TierChange`]);
//! - a request with a session key goes where the session's last request
//!   went while that deployment can take it and is in the best tier open;
//!   a new session goes to the deployment of that tier furthest below its
//!   share of the tokens, so that shares follow the weights in tokens, not
//!   in sessions ([`affinity`]).

pub mod affinity;
pub mod capacity;
pub mod health;
pub mod limits;
pub(crate) mod pick;
pub mod select;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use crate::config::RoutingConfig;
use affinity::Pins;
pub use affinity::SessionKey;
use health::Health;
pub use health::{Blocked, Cause, Transition, Verdict};
pub use limits::{Dim, Limits, Need, Spent, Used};
pub use window::{Reservation, TpmWindow};

/// One deployment's routing state.
#[derive(Debug, Clone)]
struct Slot {
    name: Arc<str>,
    enabled: bool,
    limits: Limits,
    weight: i64,
    credit: i64,
    meter: limits::Meter,
    health: Health,
    requests: u64,
    failures: u64,
    /// Removed from the config: takes no traffic and is not shown, but keeps
    /// its index so that requests still in flight settle where they started.
    retired: bool,
    /// Its tier: lower is tried first.
    priority: u32,
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
    /// The tier traffic spills to while the best one has no room.
    spilled_to: Option<u32>,
    /// The live deployments are in more than one tier.
    tiered: bool,
    /// Their one tier, when they are not.
    single_tier: u32,
    pins: Pins,
}

/// The deployment chosen for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub reservation: Reservation,
    /// The first request after a failure cooldown.
    pub probe: bool,
    /// The model's traffic moved to another tier with this pick.
    pub tier_change: Option<TierChange>,
    /// The session had a pin elsewhere, which could not take it.
    pub repinned_from: Option<usize>,
}

/// A change of the tier a model's traffic goes to: announced once per
/// change, not per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierChange {
    /// The best tier with an enabled deployment could not take a request;
    /// `reason` says why of each of its deployments (`ptu at limit`).
    Spilled { from: u32, to: u32, reason: String },
    /// A request went to the best tier again.
    Returned { to: u32 },
}

/// What a request brings to a pick beyond its size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// Its session, with the model's pin lifetime.
    pub session: Option<(SessionKey, Duration)>,
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
    pub rpm_limit: Option<u64>,
    pub rpm_used: u64,
    pub input_tpm_limit: Option<u64>,
    pub input_tpm_used: u64,
    pub output_tpm_limit: Option<u64>,
    pub output_tpm_used: u64,
    pub max_in_flight: Option<u64>,
    pub in_flight: u64,
    /// The limit it is at now, if any (ours or the provider's word).
    pub limited_by: Option<Dim>,
    /// Seconds until a limit is reached at the recent rate; `None`: not at
    /// this rate.
    pub forecast_full_s: Option<f64>,
    /// The same for each of its limits.
    pub forecasts: Vec<limits::Forecast>,
    pub state: State,
    pub cooldown_cause: Option<Cause>,
    pub cooldown_remaining_s: f64,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    pub weight: i64,
    pub priority: u32,
    /// Sessions whose last request it served (pins still alive).
    pub pinned_sessions: u32,
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
            spilled_to: None,
            tiered: false,
            single_tier: crate::config::DEFAULT_PRIORITY,
            pins: Pins::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a deployment; returns its index (indices never change).
    pub fn push(&mut self, name: Arc<str>, limits: impl Into<Limits>, enabled: bool) -> usize {
        self.slots.push(Slot {
            name,
            enabled,
            limits: limits.into(),
            weight: 1,
            credit: 0,
            meter: limits::Meter::default(),
            health: Health::default(),
            requests: 0,
            failures: 0,
            retired: false,
            priority: crate::config::DEFAULT_PRIORITY,
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
        self.pins.forget(index);
        self.reweigh();
    }

    /// Moves a deployment to another tier; returns whether it changed.
    pub fn set_priority(&mut self, index: usize, priority: u32) -> bool {
        let changed = self.slots[index].priority != priority;
        self.slots[index].priority = priority;
        self.reweigh();
        changed
    }

    /// The tier traffic is spilling to, while the best one has no room.
    pub fn spilled_to(&self) -> Option<u32> {
        self.spilled_to
    }

    /// Changes a deployment's limits (a config reload); weights follow at
    /// once. The windows keep their counts: they were spent whatever the
    /// new limits.
    pub fn set_limits(&mut self, index: usize, limits: impl Into<Limits>) -> bool {
        let limits = limits.into();
        let changed = self.slots[index].limits != limits;
        if changed {
            self.slots[index].limits = limits;
            self.reweigh();
        }
        changed
    }

    pub fn limits(&self, index: usize) -> &Limits {
        &self.slots[index].limits
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

    /// Recomputes what follows from the set of live deployments: weights
    /// and whether there are tiers.
    fn reweigh(&mut self) {
        let mut tiers = self.slots.iter().filter(|s| !s.retired).map(|s| s.priority);
        let first = tiers.next();
        self.tiered = tiers.any(|p| Some(p) != first);
        self.single_tier = first.unwrap_or(crate::config::DEFAULT_PRIORITY);
        if !self.tiered {
            self.spilled_to = None;
        }
        // Weights follow the first kind of limit any deployment has: tokens
        // (`tpm_limit`, else input and output together), else requests a
        // minute, else requests in flight. One kind only: a token limit and
        // a request limit are not comparable.
        let kinds: [fn(&Limits) -> Option<u64>; 3] =
            [Limits::tokens, |l| l.rpm, |l| l.max_in_flight];
        let live = || self.slots.iter().filter(|s| !s.retired);
        let basis = kinds
            .into_iter()
            .find(|kind| live().any(|s| kind(&s.limits).is_some()));
        let largest = basis.and_then(|kind| live().filter_map(|s| kind(&s.limits)).max());
        for slot in &mut self.slots {
            let own = basis.and_then(|kind| kind(&slot.limits));
            slot.weight = match (own, largest) {
                (Some(limit), _) => limit.min(i64::MAX as u64 / 1024) as i64,
                (None, Some(largest)) => largest.min(i64::MAX as u64 / 1024) as i64,
                (None, None) => 1,
            }
            .max(1);
        }
    }

    /// Each instance's part of every limit while it decides alone: the
    /// limits divided by the instances that share them (1: the whole).
    pub fn set_share(&mut self, instances: u64) {
        self.share = instances.max(1);
    }

    /// Counts `tokens` for a deployment another decider chose (the cluster),
    /// so that this instance knows what it sent if it must decide alone.
    pub fn reserve(&mut self, index: usize, now: Duration, need: impl Into<Need>) -> Reservation {
        let slot = &mut self.slots[index];
        slot.requests += 1;
        slot.meter.add(now, need.into())
    }

    /// The live deployments as a shared pick needs them: index, name,
    /// weight, limits, enabled, tier.
    pub fn for_sharing(
        &self,
    ) -> impl Iterator<Item = (usize, &Arc<str>, i64, Limits, bool, u32)> + '_ {
        self.live().map(|i| {
            let s = &self.slots[i];
            (i, &s.name, s.weight, s.limits, s.enabled, s.priority)
        })
    }

    pub fn policy(&self) -> &RoutingConfig {
        &self.policy
    }

    /// A failure cooldown the cluster's shared state began for a deployment
    /// (this instance saw only some of the failures): noted here, so that
    /// the probes come from here too.
    pub fn mirror_failing(&mut self, index: usize, now: Duration, for_: Duration) {
        self.slots[index].health.mirror_failing(now, for_);
    }

    /// The deployments to probe now (cooling down after failures, not
    /// tried for `every`), marked as probed.
    pub fn due_probes(&mut self, now: Duration, every: Duration) -> Vec<usize> {
        let mut due = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.enabled && slot.health.probe_due(now, every) {
                slot.health.probe_sent(now);
                due.push(index);
            }
        }
        due
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
    pub fn settle(
        &mut self,
        index: usize,
        now: Duration,
        reservation: Reservation,
        spent: impl Into<Spent>,
    ) {
        self.slots[index]
            .meter
            .settle(now, reservation, spent.into());
    }

    /// A request picked for `index` was never sent: nothing of it counts,
    /// and it is no longer in flight.
    pub fn undo(&mut self, index: usize, now: Duration, reservation: Reservation) {
        let meter = &mut self.slots[index].meter;
        meter.undo(now, reservation);
        meter.end();
    }

    /// A request picked for `index` finished: its place in flight is free.
    pub fn end(&mut self, index: usize) {
        self.slots[index].meter.end();
    }

    /// The provider said one of the deployment's limits ran out until `until`.
    pub fn exhaust(&mut self, index: usize, dim: Dim, until: Duration) {
        self.slots[index].meter.exhaust(dim, until);
    }

    /// What the deployment's windows hold now.
    pub fn used(&mut self, index: usize, now: Duration) -> Used {
        self.slots[index].meter.used(now)
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
        let used = slot.meter.used(now);
        let limited_by = slot.meter.full(now, Need::default(), &slot.limits, 1);
        let forecasts = slot.meter.forecasts(now, &slot.limits);
        let forecast_full_s = forecasts.iter().filter_map(|f| f.full_s).reduce(f64::min);
        let l = slot.limits;
        SlotStatus {
            name: slot.name.clone(),
            enabled: slot.enabled,
            tpm_limit: l.tpm,
            tpm_used: used.tokens,
            rpm_limit: l.rpm,
            rpm_used: used.requests,
            input_tpm_limit: l.input_tpm,
            input_tpm_used: used.input,
            output_tpm_limit: l.output_tpm,
            output_tpm_used: used.output,
            max_in_flight: l.max_in_flight,
            in_flight: used.in_flight,
            limited_by,
            forecast_full_s,
            forecasts,
            state,
            cooldown_cause: cooling.map(|(c, _)| c),
            cooldown_remaining_s: cooling.map_or(0.0, |(_, d)| d.as_secs_f64()),
            consecutive_failures: slot.health.consecutive_failures(),
            requests: slot.requests,
            failures: slot.failures,
            weight: slot.weight,
            priority: slot.priority,
            pinned_sessions: 0,
        }
    }

    /// The statuses of the live deployments, in order, with their pinned
    /// sessions counted under the pin lifetime `ttl`.
    pub fn statuses(&mut self, now: Duration, ttl: Duration) -> Vec<SlotStatus> {
        let pins = self.pins.counts(self.slots.len(), now, ttl);
        let live: Vec<usize> = self.live().collect();
        live.into_iter()
            .map(|i| SlotStatus {
                pinned_sessions: pins[i],
                ..self.status(i, now)
            })
            .collect()
    }

    /// Pins the session to `index`, where another decider (the cluster)
    /// sent its request.
    pub fn pin(
        &mut self,
        key: SessionKey,
        index: usize,
        now: Duration,
        ttl: Duration,
        tokens: u64,
    ) {
        let before = self.pins.get(key, now, ttl).map_or(0, |p| p.tokens);
        self.pins
            .set(key, index, now, ttl, before.saturating_add(tokens));
    }

    /// The deployment a session is pinned to, if its pin is alive.
    pub fn pinned(&self, key: SessionKey, now: Duration, ttl: Duration) -> Option<usize> {
        self.pins.get(key, now, ttl).map(|p| p.index)
    }
}

#[cfg(test)]
mod tests;
