//! One run of the model test: the core and the scripts side by side.

use std::time::Duration;

use proptest::prelude::*;
use switchboard::cluster::shared::{
    Applied, Counted, Mark, ModelKeys, PickRequest, Picked, Scripts, Windows, lease_name,
};
use switchboard::config::RoutingConfig;
use switchboard::router::{Limits, Need, Pick, Pool, Spent, Unavailable};

use super::{HOLD, NAMES, OWNER, Op, need_of, specs, terms, verdict, want};

/// A request picked both ways and not ended yet.
#[derive(Debug)]
pub(super) struct Flying {
    pub(super) index: usize,
    pub(super) reservation: switchboard::router::Reservation,
    pub(super) counted: Counted,
    pub(super) lease: Option<String>,
    pub(super) settled: bool,
}

/// The state of one run: both implementations and what is in flight.
pub(super) struct Run<'a> {
    pub(super) con: &'a mut ::redis::aio::MultiplexedConnection,
    pub(super) scripts: Scripts,
    pub(super) keys: ModelKeys,
    pub(super) pool: Pool,
    pub(super) policy: RoutingConfig,
    pub(super) limits: [Limits; 3],
    pub(super) flying: Vec<Flying>,
    pub(super) leases: u64,
    pub(super) now_ms: u64,
}

impl Run<'_> {
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms)
    }

    fn request(&mut self, need: Need, marks: Vec<Mark>, session: Option<u8>) -> PickRequest {
        self.leases += 1;
        PickRequest {
            need,
            marks,
            session: want(session).session,
            lease: self.leases,
            wait: Duration::ZERO,
        }
    }

    /// Picks and riders, on the script's side.
    async fn pick_many(
        &mut self,
        requests: &[PickRequest],
        ops: &[(usize, Applied<'_>)],
    ) -> (Vec<Picked>, Vec<Option<switchboard::router::Transition>>) {
        let now = self.now();
        let specs = specs(&mut self.pool, now, &self.limits);
        self.scripts
            .pick_many(
                self.con,
                &self.keys,
                Some(self.now_ms),
                &specs,
                terms(),
                requests,
                ops,
            )
            .await
            .unwrap()
    }

    /// The same decision, both ways; a pick joins those in flight.
    fn compare(
        &mut self,
        local: Result<Pick, Unavailable>,
        shared: Picked,
        request: &PickRequest,
        step: usize,
        op: &Op,
    ) -> Result<(), TestCaseError> {
        match (local, shared) {
            (
                Ok(l),
                Picked::Deployment {
                    index,
                    second,
                    probe,
                    repinned_from,
                    leased,
                },
            ) => {
                let limits = self.limits[index];
                prop_assert_eq!(
                    (l.index, l.probe, l.reservation.second(), l.repinned_from),
                    (index, probe, second, repinned_from),
                    "step {}: {:?}",
                    step,
                    op
                );
                prop_assert_eq!(leased, limits.max_in_flight.is_some(), "step {}", step);
                self.flying.push(Flying {
                    index,
                    reservation: l.reservation,
                    counted: Counted::new(second, request.need, Windows::of(&limits)),
                    lease: leased.then(|| lease_name(OWNER, request.lease)),
                    settled: false,
                });
            }
            (Err(l), Picked::Unavailable(s)) => {
                prop_assert_eq!(
                    format!("{l:?}"),
                    format!("{s:?}"),
                    "step {}: {:?}",
                    step,
                    op
                )
            }
            (l, s) => prop_assert!(false, "step {}: {:?} vs {:?}", step, l, s),
        }
        Ok(())
    }

    /// Ops on one request, sent as a pick's riders or on their own.
    async fn send(&mut self, index: usize, ops: Vec<Applied<'_>>, ride: bool) {
        let ops: Vec<(usize, Applied<'_>)> = ops.into_iter().map(|op| (index, op)).collect();
        if ride {
            self.pick_many(&[], &ops).await;
        } else {
            let ops: Vec<(usize, Applied<'_>)> = ops.into_iter().map(|(_, op)| (0, op)).collect();
            self.scripts
                .apply(
                    self.con,
                    &self.keys,
                    Some(self.now_ms),
                    OWNER,
                    &[NAMES[index]],
                    &ops,
                )
                .await
                .unwrap();
        }
    }

    /// Every deployment looks the same in both.
    pub(super) async fn same_state(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now();
        let local = self.pool.statuses(now, HOLD);
        let deps: Vec<(&str, bool)> = NAMES.iter().map(|n| (*n, true)).collect();
        let shared = self
            .scripts
            .state(self.con, &self.keys, Some(self.now_ms), &deps)
            .await
            .unwrap();
        for ((l, s), limits) in local.iter().zip(&shared).zip(&self.limits) {
            let local_cooldown = l
                .cooldown_cause
                .map(|c| (c, (l.cooldown_remaining_s * 1000.0).round() as u64));
            let shared_cooldown = s.cooldown.map(|(c, d)| (c, d.as_millis() as u64));
            // The cluster keeps a window or leases only for a limit set.
            let kept = |limit: Option<u64>, used: u64| limit.map(|_| used);
            prop_assert_eq!(
                (
                    l.enabled,
                    l.tpm_used,
                    local_cooldown,
                    l.consecutive_failures,
                    l.requests,
                    l.failures
                ),
                (
                    s.enabled,
                    s.tpm_used,
                    shared_cooldown,
                    s.consecutive_failures,
                    s.requests,
                    s.failures
                ),
                "step {}: {} after {:?}",
                step,
                l.name,
                op
            );
            prop_assert_eq!(
                (
                    kept(limits.rpm, l.rpm_used),
                    kept(limits.input_tpm, l.input_tpm_used),
                    kept(limits.output_tpm, l.output_tpm_used),
                    kept(limits.max_in_flight, l.in_flight),
                ),
                (
                    kept(limits.rpm, s.rpm_used),
                    kept(limits.input_tpm, s.input_tpm_used),
                    kept(limits.output_tpm, s.output_tpm_used),
                    kept(limits.max_in_flight, s.in_flight),
                ),
                "step {}: {}'s capacity after {:?}",
                step,
                l.name,
                op
            );
        }
        Ok(())
    }

    pub(super) async fn step(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now();
        match op {
            Op::Advance(ms) => self.now_ms += ms,
            Op::Pick {
                need,
                tried,
                avoid,
                session,
            } => {
                let need = need_of(*need);
                let set =
                    |mask: u8| -> Vec<usize> { (0..3).filter(|i| mask & (1 << i) != 0).collect() };
                // As a flight picks: the ones not offering the endpoint last.
                let local = match self
                    .pool
                    .pick_for(now, need, &set(tried | avoid), want(*session))
                {
                    Err(_) if *avoid != 0 => {
                        self.pool.pick_for(now, need, &set(*tried), want(*session))
                    }
                    first => first,
                };
                let marks = (0..3)
                    .map(|i| match (tried & (1 << i) != 0, avoid & (1 << i) != 0) {
                        (true, _) => Mark::Tried,
                        (false, true) => Mark::NotOffering,
                        _ => Mark::Open,
                    })
                    .collect();
                let request = self.request(need, marks, *session);
                let (shared, _) = self.pick_many(std::slice::from_ref(&request), &[]).await;
                self.compare(local, shared[0], &request, step, op)?;
            }
            Op::PickMany { needs, ride } => {
                let requests: Vec<PickRequest> = needs
                    .iter()
                    .map(|(n, s)| self.request(need_of(*n), vec![Mark::Open; 3], *s))
                    .collect();
                // The rider happened first: settled and ended first, both ways.
                let rider = (*ride && !self.flying.is_empty()).then(|| self.flying.remove(0));
                let mut riders = Vec::new();
                if let Some(f) = &rider {
                    let spent = Spent {
                        input: f.counted.reservation.tokens() / 2,
                        output: f.counted.reservation.output() / 3,
                    };
                    if !f.settled {
                        self.pool.settle(f.index, now, f.reservation, spent);
                        riders.push((
                            f.index,
                            Applied::Settle {
                                counted: f.counted,
                                spent,
                            },
                        ));
                    }
                    self.pool.end(f.index);
                    if let Some(lease) = &f.lease {
                        riders.push((f.index, Applied::Release { lease }));
                    }
                }
                let (shared, applied) = self.pick_many(&requests, &riders).await;
                prop_assert_eq!(shared.len(), needs.len());
                prop_assert_eq!(applied.len(), riders.len());
                for (((n, session), s), request) in needs.iter().zip(shared).zip(&requests) {
                    let local = self.pool.pick_for(now, need_of(*n), &[], want(*session));
                    self.compare(local, s, request, step, op)?;
                }
            }
            Op::Settle {
                pick,
                spent,
                end,
                ride,
            } => {
                let Some(at) = self.pick_of(*pick, |f| !f.settled) else {
                    return Ok(());
                };
                let spent = need_of(*spent);
                let f = &mut self.flying[at];
                f.settled = true;
                let (index, reservation, counted) = (f.index, f.reservation, f.counted);
                self.pool.settle(index, now, reservation, spent);
                let mut ops = vec![Applied::Settle { counted, spent }];
                let f = if *end {
                    self.pool.end(index);
                    Some(self.flying.remove(at))
                } else {
                    None
                };
                if let Some(lease) = f.as_ref().and_then(|f| f.lease.as_deref()) {
                    ops.push(Applied::Release { lease });
                }
                self.send(index, ops, *ride).await;
            }
            Op::End { pick, ride } => {
                let Some(at) = self.pick_of(*pick, |_| true) else {
                    return Ok(());
                };
                let f = self.flying.remove(at);
                self.pool.end(f.index);
                if let Some(lease) = &f.lease {
                    self.send(f.index, vec![Applied::Release { lease }], *ride)
                        .await;
                }
            }
            Op::Undo { pick, ride } => {
                let Some(at) = self.pick_of(*pick, |f| !f.settled) else {
                    return Ok(());
                };
                let f = self.flying.remove(at);
                self.pool.undo(f.index, now, f.reservation);
                let mut ops = vec![Applied::Undo { counted: f.counted }];
                if let Some(lease) = &f.lease {
                    ops.push(Applied::Release { lease });
                }
                self.send(f.index, ops, *ride).await;
            }
            Op::Record {
                dep,
                verdict: v,
                hint_ms,
                ride,
            } => {
                let v = verdict(*v, *hint_ms);
                let local = self.pool.record(*dep, now, v);
                let policy = self.policy.clone();
                let shared = if *ride {
                    let record = Applied::Record {
                        verdict: v,
                        policy: &policy,
                    };
                    let (_, mut applied) = self.pick_many(&[], &[(*dep, record)]).await;
                    applied.pop().flatten()
                } else {
                    self.scripts
                        .record(
                            self.con,
                            &self.keys,
                            NAMES[*dep],
                            Some(self.now_ms),
                            v,
                            &policy,
                        )
                        .await
                        .unwrap()
                };
                prop_assert_eq!(
                    format!("{local:?}"),
                    format!("{shared:?}"),
                    "step {}: {:?}",
                    step,
                    op
                );
            }
            Op::Toggle { dep, enabled } => {
                let local = self.pool.set_enabled(*dep, *enabled);
                let shared = self
                    .scripts
                    .toggle(self.con, &self.keys, NAMES[*dep], *enabled, true)
                    .await
                    .unwrap();
                prop_assert_eq!(local, shared, "step {}", step);
            }
        }
        Ok(())
    }

    /// The `n`th (cyclically) request in flight that `ok` accepts.
    fn pick_of(&self, n: usize, ok: impl Fn(&Flying) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.flying.len())
            .filter(|&i| ok(&self.flying[i]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[n % candidates.len()])
    }
}
