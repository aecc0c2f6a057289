//! Cooldowns: who may receive traffic after failures and rate limits.
//!
//! Two causes keep a deployment out of rotation for a while:
//! - a rate limit (HTTP 429): for as long as the upstream asked (Retry-After and
//!   friends), else a fixed time; a later, longer signal extends the cooldown,
//!   a shorter one never shortens it;
//! - repeated failures: after `failure_threshold` consecutive failures the
//!   deployment cools down for `cooldown`, doubling with every further failure
//!   up to `max_cooldown`. When that cooldown ends, one request is let through
//!   as a probe while the others keep away; its success resets the count, its
//!   failure starts a longer cooldown.

use std::time::Duration;

use crate::config::RoutingConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    RateLimited,
    Failing,
}

/// What an attempt at a deployment came to, as far as its health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered (success, or a client error that is the caller's fault).
    Answered,
    /// HTTP 429; the upstream's own hint of how long to stay away, if any.
    RateLimited(Option<Duration>),
    /// Connection error, timeout, 5xx, 408, 401/403/404, a broken answer.
    Failed,
    /// The attempt ended without a verdict (the client went away first).
    Abandoned,
    /// It does not offer the endpoint asked for (a 404 for `/embeddings`
    /// from a chat-only server): nothing about its health, which is that of
    /// the endpoints it does offer.
    NotOffered,
}

#[derive(Debug, Clone, Default)]
pub struct Health {
    consecutive_failures: u32,
    cooldown_until: Option<Duration>,
    cause: Option<Cause>,
    /// Set when a failure cooldown ends: the next request is a probe.
    needs_probe: bool,
    probe_in_flight: bool,
    /// When the failure cooldown running now began.
    since: Duration,
    /// When the gateway last sent a probe of its own during it.
    last_probe: Option<Duration>,
}

/// A change worth telling the operator about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    CoolingDown { cause: Cause, for_: Duration },
    Recovered,
}

/// Why a deployment cannot take a request right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Blocked {
    Cooling {
        cause: Cause,
        remaining: Duration,
    },
    /// A probe is deciding whether it is back; no known end.
    Probing,
}

impl Health {
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Why it may not take traffic at `now`, or `None` when it may.
    pub fn blocked(&self, now: Duration) -> Option<Blocked> {
        if let (Some(until), Some(cause)) = (self.cooldown_until, self.cause)
            && until > now
        {
            return Some(Blocked::Cooling {
                cause,
                remaining: until - now,
            });
        }
        if self.needs_probe && self.probe_in_flight {
            return Some(Blocked::Probing);
        }
        None
    }

    /// The cooldown still running at `now`, if any.
    pub fn cooling(&self, now: Duration) -> Option<(Cause, Duration)> {
        match self.blocked(now) {
            Some(Blocked::Cooling { cause, remaining }) => Some((cause, remaining)),
            _ => None,
        }
    }

    /// Whether the gateway should send a probe of its own now: the
    /// deployment is cooling down after failures and has not been tried
    /// for `every`. A back-off that doubles to minutes would otherwise keep
    /// a deployment that recovered in seconds out for minutes.
    pub fn probe_due(&self, now: Duration, every: Duration) -> bool {
        let cooling = matches!(self.cooling(now), Some((Cause::Failing, _)));
        let last = self.last_probe.map_or(self.since, |p| p.max(self.since));
        cooling && now.saturating_sub(last) >= every
    }

    /// Notes that the gateway sent a probe of its own at `now`.
    pub fn probe_sent(&mut self, now: Duration) {
        self.last_probe = Some(now);
    }

    /// Takes over a failure cooldown another decider began (the cluster's
    /// shared state), so that this instance probes the deployment too.
    pub fn mirror_failing(&mut self, now: Duration, for_: Duration) {
        if self.extend(now, for_, Cause::Failing).is_some() {
            self.needs_probe = true;
        }
    }

    /// Marks that a request was sent; returns true when it is the probe.
    pub fn on_pick(&mut self) -> bool {
        if self.needs_probe {
            self.probe_in_flight = true;
            true
        } else {
            false
        }
    }

    pub fn record(
        &mut self,
        now: Duration,
        verdict: Verdict,
        policy: &RoutingConfig,
    ) -> Option<Transition> {
        match verdict {
            Verdict::Answered => {
                let was_down = self.needs_probe || self.cause == Some(Cause::Failing);
                self.consecutive_failures = 0;
                self.needs_probe = false;
                self.probe_in_flight = false;
                // A rate limit is not lifted by an answer to an older request.
                if self.cause == Some(Cause::Failing) {
                    self.cooldown_until = None;
                    self.cause = None;
                }
                was_down.then_some(Transition::Recovered)
            }
            Verdict::RateLimited(hint) => {
                self.probe_in_flight = false;
                let wait = hint.unwrap_or(policy.rate_limit_cooldown);
                self.extend(now, wait, Cause::RateLimited)
            }
            Verdict::Failed => {
                // Requests that were already in flight when the cooldown began
                // fail too; they say nothing new and must not escalate it.
                if matches!(self.cooling(now), Some((Cause::Failing, _))) {
                    return None;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let probe_failed = self.probe_in_flight;
                self.probe_in_flight = false;
                if self.consecutive_failures < policy.failure_threshold.max(1) && !probe_failed {
                    return None;
                }
                self.needs_probe = true;
                let extra = self
                    .consecutive_failures
                    .saturating_sub(policy.failure_threshold.max(1))
                    .min(30);
                let wait = policy
                    .cooldown
                    .saturating_mul(1u32 << extra)
                    .min(policy.max_cooldown);
                self.extend(now, wait, Cause::Failing)
            }
            // No verdict: a probe that ended so leaves the question open
            // for the next request.
            Verdict::Abandoned | Verdict::NotOffered => {
                self.probe_in_flight = false;
                None
            }
        }
    }

    /// Starts or extends a cooldown; never shortens one.
    fn extend(&mut self, now: Duration, wait: Duration, cause: Cause) -> Option<Transition> {
        let until = now + wait;
        match self.cooldown_until {
            Some(current) if current >= until && current > now => None,
            _ => {
                self.since = now;
                self.cooldown_until = Some(until);
                self.cause = Some(cause);
                Some(Transition::CoolingDown { cause, for_: wait })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn policy() -> RoutingConfig {
        RoutingConfig::default()
    }

    #[test]
    fn three_failures_cool_down_then_double_up_to_the_cap() {
        let p = policy();
        let mut h = Health::default();
        assert_eq!(h.record(ms(0), Verdict::Failed, &p), None);
        assert_eq!(h.record(ms(0), Verdict::Failed, &p), None);
        assert!(h.blocked(ms(0)).is_none());
        assert_eq!(
            h.record(ms(0), Verdict::Failed, &p),
            Some(Transition::CoolingDown {
                cause: Cause::Failing,
                for_: ms(5000)
            })
        );
        assert!(h.blocked(ms(4999)).is_some());
        assert!(h.blocked(ms(5000)).is_none());
        // The first pick after the cooldown is the probe; others keep away.
        assert!(h.on_pick());
        assert_eq!(h.blocked(ms(5000)), Some(Blocked::Probing));
        // The probe fails: twice as long.
        assert_eq!(
            h.record(ms(6000), Verdict::Failed, &p),
            Some(Transition::CoolingDown {
                cause: Cause::Failing,
                for_: ms(10_000)
            })
        );
        let mut t = 16_000;
        for _ in 0..10 {
            h.on_pick();
            h.record(ms(t), Verdict::Failed, &p);
            t += 400_000;
        }
        assert_eq!(
            h.cooling(ms(t - 400_000)),
            Some((Cause::Failing, ms(300_000)))
        );
    }

    #[test]
    fn failures_already_in_flight_do_not_escalate_a_cooldown() {
        let p = policy();
        let mut h = Health::default();
        for _ in 0..3 {
            h.record(ms(0), Verdict::Failed, &p);
        }
        for _ in 0..5 {
            assert_eq!(h.record(ms(100), Verdict::Failed, &p), None);
        }
        assert_eq!(h.cooling(ms(100)), Some((Cause::Failing, ms(4900))));
    }

    #[test]
    fn a_probe_success_resets() {
        let p = policy();
        let mut h = Health::default();
        for _ in 0..3 {
            h.record(ms(0), Verdict::Failed, &p);
        }
        assert!(h.on_pick());
        assert_eq!(
            h.record(ms(5001), Verdict::Answered, &p),
            Some(Transition::Recovered)
        );
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.on_pick(), "no probe needed once recovered");
        assert!(h.blocked(ms(5001)).is_none());
    }

    #[test]
    fn an_abandoned_probe_lets_another_request_probe() {
        let p = policy();
        let mut h = Health::default();
        for _ in 0..3 {
            h.record(ms(0), Verdict::Failed, &p);
        }
        assert!(h.on_pick());
        h.record(ms(5001), Verdict::Abandoned, &p);
        assert!(h.blocked(ms(5001)).is_none());
        assert!(h.on_pick());
    }

    #[test]
    fn rate_limits_extend_but_never_shorten() {
        let p = policy();
        let mut h = Health::default();
        h.record(ms(0), Verdict::RateLimited(Some(ms(20_000))), &p);
        assert_eq!(
            h.record(ms(1000), Verdict::RateLimited(Some(ms(2000))), &p),
            None
        );
        assert_eq!(h.cooling(ms(1000)), Some((Cause::RateLimited, ms(19_000))));
        h.record(ms(1000), Verdict::RateLimited(Some(ms(30_000))), &p);
        assert_eq!(h.cooling(ms(1000)), Some((Cause::RateLimited, ms(30_000))));
        // Without a hint: the configured default.
        let mut h = Health::default();
        h.record(ms(0), Verdict::RateLimited(None), &p);
        assert_eq!(h.cooling(ms(0)), Some((Cause::RateLimited, ms(5000))));
        // A rate limit is not a failure and needs no probe.
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.on_pick());
    }

    #[test]
    fn an_endpoint_not_offered_says_nothing_about_health() {
        let p = policy();
        let mut h = Health::default();
        h.record(ms(0), Verdict::Failed, &p);
        h.record(ms(0), Verdict::Failed, &p);
        for _ in 0..10 {
            assert_eq!(h.record(ms(0), Verdict::NotOffered, &p), None);
        }
        assert_eq!(h.consecutive_failures(), 2);
        assert!(h.blocked(ms(0)).is_none());
        // A probe that met an endpoint not offered leaves the probe to the next request.
        h.record(ms(0), Verdict::Failed, &p);
        assert!(h.on_pick());
        h.record(ms(5001), Verdict::NotOffered, &p);
        assert!(h.blocked(ms(5001)).is_none());
        assert!(h.on_pick());
        assert_eq!(h.consecutive_failures(), 3);
    }

    #[test]
    fn a_long_failure_cooldown_is_probed_every_interval_and_an_answer_ends_it() {
        let p = RoutingConfig {
            cooldown: ms(120_000),
            ..policy()
        };
        let mut h = Health::default();
        for _ in 0..3 {
            h.record(ms(1000), Verdict::Failed, &p);
        }
        let every = ms(10_000);
        assert!(!h.probe_due(ms(10_999), every));
        assert!(h.probe_due(ms(11_000), every));
        h.probe_sent(ms(11_000));
        assert!(!h.probe_due(ms(20_999), every));
        // A failed probe changes nothing: still cooling, due again later.
        assert_eq!(h.record(ms(11_500), Verdict::Failed, &p), None);
        assert!(h.probe_due(ms(21_000), every));
        assert_eq!(
            h.record(ms(21_100), Verdict::Answered, &p),
            Some(Transition::Recovered)
        );
        assert!(h.blocked(ms(21_100)).is_none());
        assert!(!h.probe_due(ms(40_000), every));
    }

    #[test]
    fn a_rate_limit_is_never_probed() {
        let mut h = Health::default();
        h.record(ms(0), Verdict::RateLimited(Some(ms(60_000))), &policy());
        assert!(!h.probe_due(ms(30_000), ms(10_000)));
    }

    #[test]
    fn an_answer_does_not_lift_a_rate_limit() {
        let p = policy();
        let mut h = Health::default();
        h.record(ms(0), Verdict::RateLimited(Some(ms(10_000))), &p);
        h.record(ms(10), Verdict::Answered, &p);
        assert!(h.cooling(ms(10)).is_some());
    }
}
