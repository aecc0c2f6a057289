//! The bookkeeping of one request, from arrival to its last byte.
//!
//! A [`Flight`] is the one place that tells the router core how each attempt
//! went, corrects the token count, and publishes the request's event,
//! including when the client goes away halfway (its `Drop` does the
//! bookkeeping then), so no request and no token goes unaccounted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;

use super::error::ApiError;
use super::proxy::{Passed, Tokens};
use super::request::{Endpoint, Inspected};
use super::upstream::Upstream;
use super::{Gateway, ModelRoute};
use crate::config::Affinity;
use crate::events::{self, AttemptOutcome, Event, RequestEvent, RequestOutcome};
use crate::events::{RouteChange, RouteEvent};
use crate::router::{Need, Reservation, SessionKey, Spent, TierChange, Unavailable, Verdict, Want};

/// An upstream's answer kept to be passed back if nothing better comes.
pub(super) struct Passback {
    pub(super) status: StatusCode,
    pub(super) headers: Passed,
    pub(super) body: Bytes,
    pub(super) upstream: Arc<Upstream>,
    /// `x-switchboard-model`: the model of the deployment that answered.
    pub(super) model: HeaderValue,
}

/// The bookkeeping of one request.
pub(super) struct Flight {
    pub(super) gw: Gateway,
    pub(super) route: Arc<ModelRoute>,
    id: u64,
    at_ms: u64,
    started: Instant,
    pub(super) endpoint: Endpoint,
    pub(super) stream: bool,
    pub(super) prompt_estimate: u64,
    pub(super) estimate: u64,
    /// Deployments not to pick again: tried, or never able to take it.
    pub(super) tried: Vec<usize>,
    /// How many deployments' providers do not offer the endpoint at all.
    pub(super) incapable: usize,
    pub(super) attempts: Vec<events::Attempt>,
    /// The attempt in progress.
    pub(super) current: Option<Current>,
    /// The deployment that answered, until its tokens are settled.
    answered: Option<Current>,
    pub(super) last_failure: Option<String>,
    /// The attempts (indices in `attempts`) whose deployment does not offer
    /// the endpoint, and the last such answer.
    pub(super) not_offered: Vec<usize>,
    pub(super) not_offered_answer: Option<Passback>,
    /// Why a deployment's API could not take the request, for the client
    /// when no other deployment could either.
    pub(super) refusal: Option<ApiError>,
    /// Deployments withdrawn for that.
    pub(super) withdrawn: usize,
    finished: bool,
    /// The session the request belongs to, when the client said.
    pub(super) session: Option<SessionKey>,
    /// Where the request goes once its model has nothing left; set up by
    /// the first fallback (see `chain`).
    pub(super) chain: Option<Box<super::chain::Chain>>,
    /// How long it waited for room, when it did.
    pub(super) queued: Option<Duration>,
    /// The latest reading of the clock (an attempt's or the request's
    /// end), for what is worked out right after it.
    pub(super) clock: Option<Instant>,
}

/// An attempt from its pick until its deployment's answer is over (the
/// local pool's place in flight, and the cluster's lease, end with it).
pub(super) struct Current {
    pub(super) index: usize,
    pub(super) name: Arc<str>,
    pub(super) reservation: Reservation,
    /// Where the cluster counted the estimates, when the cluster picked.
    pub(super) shared: Option<crate::cluster::shared::Counted>,
    /// Where the cluster noted the estimate, when this instance picked
    /// alone (Redis away).
    pub(super) alone: Option<Reservation>,
    /// The cluster's lease of a place in flight, released when dropped.
    #[allow(dead_code)] // held for its Drop
    pub(super) lease: Option<crate::cluster::Lease>,
    pub(super) started: Instant,
}

impl Flight {
    pub(super) fn new(
        gw: Gateway,
        route: Arc<ModelRoute>,
        endpoint: Endpoint,
        req: &Inspected,
        started: Instant,
    ) -> Self {
        let mut flight = Self {
            id: gw.next_id(),
            at_ms: gw.unix_ms_at(started),
            gw,
            route,
            started,
            endpoint,
            stream: req.stream,
            prompt_estimate: req.prompt_estimate,
            estimate: req.estimate,
            tried: Vec::new(),
            incapable: 0,
            attempts: Vec::new(),
            current: None,
            answered: None,
            last_failure: None,
            not_offered: Vec::new(),
            not_offered_answer: None,
            refusal: None,
            withdrawn: 0,
            finished: false,
            session: None,
            chain: None,
            queued: None,
            clock: None,
        };
        flight.skip_incapable();
        flight
    }

    /// Every provider offers chat completions; for the other endpoints,
    /// deployments whose provider lacks it are never picked.
    pub(super) fn skip_incapable(&mut self) {
        self.tried.clear();
        self.incapable = 0;
        if !self.endpoint.everywhere() {
            let state = self.route.lock();
            let lacking: Vec<usize> = (0..state.upstreams.len())
                .filter(|&i| !state.upstreams[i].plan.offers(self.endpoint))
                .collect();
            drop(state);
            self.incapable = lacking.len();
            self.tried = lacking;
        }
    }

    /// Answers `why` unless a deployment is tried after all.
    pub(super) fn refuse(&mut self, why: ApiError) {
        self.refusal = Some(why);
    }

    /// The current deployment was never called (its API cannot take the
    /// request): its reservation is returned, nothing is counted against it.
    pub(super) fn withdraw(&mut self, why: ApiError) {
        if let Some(cur) = self.current.take() {
            let now = self.gw.now();
            let mut state = self.route.lock();
            state.pool.undo(cur.index, now, cur.reservation);
            // No verdict on its health; a probe it was is left to the next request.
            state.pool.record(cur.index, now, Verdict::Abandoned);
            drop(state);
            self.route.queue.kick();
            self.share_undo(&cur);
            self.share_verdict(&cur, Verdict::Abandoned, None);
        }
        self.withdrawn += 1;
        self.refusal = Some(why);
    }

    /// Lets only deployment `name` be picked (where a response's state
    /// is); false when the model has no such deployment any more.
    pub(super) fn only(&mut self, name: &str) -> bool {
        let state = self.route.lock();
        let Some(keep) = state.upstreams.iter().position(|u| &*u.name == name) else {
            return false;
        };
        let others: Vec<usize> = (0..state.upstreams.len()).filter(|&i| i != keep).collect();
        drop(state);
        for i in others {
            if !self.tried.contains(&i) {
                self.tried.push(i);
            }
        }
        true
    }

    /// The last deployment picked may be picked again (it is to be asked
    /// another way).
    pub(super) fn untry_last(&mut self) {
        self.tried.pop();
    }

    pub(super) fn pick(&mut self) -> Result<Arc<Upstream>, Unavailable> {
        let started = Instant::now();
        let now = self.gw.at(started);
        let mut guard = self.route.lock();
        let state = &mut *guard;
        let (ups, endpoint) = (&state.upstreams, self.endpoint);
        let not_offering = |i: &usize| ups[*i].known_not_to_offer(endpoint, now);
        // Deployments known not to offer the endpoint come last: only when
        // no other can take the request (their answer is then passed back).
        let avoid = (!endpoint.everywhere()
            && (0..ups.len()).any(|i| !self.tried.contains(&i) && not_offering(&i)))
        .then(|| {
            let mut avoid = self.tried.clone();
            avoid.extend((0..ups.len()).filter(not_offering));
            avoid
        });
        let want = Want {
            session: self
                .session
                .filter(|_| state.policy.affinity == Affinity::Session)
                .map(|key| (key, state.policy.affinity_ttl)),
        };
        let mut pick = match avoid
            .and_then(|avoid| state.pool.pick_for(now, self.need(), &avoid, want).ok())
        {
            Some(pick) => pick,
            None => state.pool.pick_for(now, self.need(), &self.tried, want)?,
        };
        let upstream = state.upstreams[pick.index].clone();
        let kept = self
            .gw
            .cluster()
            .map(|_| crate::cluster::shared::Windows::of(state.pool.limits(pick.index)));
        let changes = (pick.tier_change.is_some() || pick.repinned_from.is_some()).then(|| {
            self.route_changes(
                &mut state.pool,
                pick.index,
                pick.tier_change.take(),
                pick.repinned_from,
                now,
            )
        });
        drop(guard);
        for change in changes.into_iter().flatten() {
            self.publish_route(change);
        }
        self.tried.push(pick.index);
        // Deciding alone while Redis is away: noted, to add later.
        let alone =
            self.gw.cluster().zip(kept).map(|(c, kept)| {
                c.admitted_alone(&self.route.name, &upstream.name, self.need(), kept)
            });
        self.current = Some(Current {
            index: pick.index,
            name: upstream.name.clone(),
            reservation: pick.reservation,
            shared: None,
            alone,
            lease: None,
            started,
        });
        Ok(upstream)
    }

    /// What a pick changed in where the model's traffic goes.
    #[cold]
    pub(super) fn route_changes(
        &self,
        pool: &mut crate::router::Pool,
        index: usize,
        tier_change: Option<TierChange>,
        repinned_from: Option<usize>,
        now: Duration,
    ) -> Vec<RouteChange> {
        let mut changes = Vec::new();
        match &tier_change {
            Some(TierChange::Spilled { from, to, reason }) => {
                tracing::info!(model = %self.route.name, from, to, %reason, "traffic spills to a lower tier");
                changes.push(RouteChange::Spilled {
                    from_tier: *from,
                    to_tier: *to,
                    reason: reason.clone(),
                });
            }
            Some(TierChange::Returned { to }) => {
                tracing::info!(model = %self.route.name, tier = to, "traffic back on the best tier");
                changes.push(RouteChange::Returned { tier: *to });
            }
            None => {}
        }
        if let Some(from) = repinned_from {
            let reason = pool.why_not(from, now, self.need(), &self.tried);
            changes.push(RouteChange::Repinned {
                from: pool.name(from).clone(),
                to: pool.name(index).clone(),
                reason: reason.to_string(),
            });
        }
        changes
    }

    pub(super) fn publish_route(&self, change: RouteChange) {
        self.gw
            .events()
            .publish(crate::events::Event::Route(RouteEvent {
                at_ms: events::unix_ms(),
                model: self.route.name.clone(),
                change,
                instance: None,
            }));
    }

    /// Records the end of the current attempt. With `tokens`, the window is
    /// corrected now; without, later by [`Flight::settle`].
    pub(super) fn conclude(
        &mut self,
        outcome: AttemptOutcome,
        verdict: Verdict,
        tokens: Option<Tokens>,
    ) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let ended = Instant::now();
        self.clock = Some(ended);
        let now = self.gw.at(ended);
        let transition = {
            let mut state = self.route.lock();
            if let Some(Tokens::Actual(actual)) = tokens {
                state.pool.settle(cur.index, now, cur.reservation, actual);
            }
            // The attempt is over unless its answer is still coming.
            if tokens.is_some() {
                state.pool.end(cur.index);
            }
            state.pool.record(cur.index, now, verdict)
        };
        if tokens.is_some() {
            self.route.queue.kick();
        }
        let actual = match tokens {
            Some(Tokens::Actual(a)) => Some(a),
            _ => None,
        };
        // In a cluster the shared state's changes are the ones announced.
        if !self.share_verdict(&cur, verdict, actual)
            && let Some(t) = transition
        {
            self.gw.announce(&self.route.name, &cur.name, t);
        }
        let model = (self.chain.is_some() && !Arc::ptr_eq(self.origin(), &self.route))
            .then(|| self.route.name.clone());
        self.attempts.push(events::Attempt {
            model,
            deployment: cur.name.clone(),
            outcome,
            latency_ms: ended.duration_since(cur.started).as_secs_f64() * 1000.0,
        });
        if tokens.is_none() {
            self.answered = Some(cur);
        }
    }

    /// Corrects the answering deployment's windows to the tokens really
    /// used; its answer is over.
    pub(super) fn settle(&mut self, spent: Spent) {
        if let Some(cur) = self.answered.take() {
            let now = self.gw.now();
            let mut state = self.route.lock();
            state.pool.settle(cur.index, now, cur.reservation, spent);
            state.pool.end(cur.index);
            drop(state);
            self.route.queue.kick();
            self.share_settle(&cur, spent);
        }
    }

    /// The provider said some of the current deployment's limits ran out.
    #[cold]
    pub(super) fn exhausted(&self, exhausted: super::attempt::Exhausted) {
        if let Some(cur) = &self.current {
            let now = self.gw.now();
            let mut state = self.route.lock();
            for (dim, wait) in exhausted.dims() {
                state.pool.exhaust(cur.index, dim, now + wait);
            }
        }
    }

    /// What the request asks of a deployment's windows.
    pub(super) fn need(&self) -> Need {
        Need {
            input: self.prompt_estimate,
            output: self.estimate - self.prompt_estimate,
        }
    }

    /// A stream broke after it was committed: the deployment failed after all.
    pub(super) fn fail_answering(&mut self, verdict: Verdict) {
        if let Some(cur) = &self.answered {
            let now = self.gw.now();
            let transition = self.route.lock().pool.record(cur.index, now, verdict);
            let shared = self.share_verdict(cur, verdict, None);
            if !shared && let Some(t) = transition {
                self.gw.announce(&self.route.name, &cur.name, t);
            }
        }
    }

    pub(super) fn finish(
        &mut self,
        status: u16,
        outcome: RequestOutcome,
        prompt: u64,
        completion: u64,
        estimated: bool,
    ) {
        if self.finished {
            return;
        }
        self.finished = true;
        let ended = Instant::now();
        self.clock = Some(ended);
        let event = RequestEvent {
            id: self.id,
            at_ms: self.at_ms,
            model: self.origin().name.clone(),
            endpoint: self.endpoint.name().into(),
            stream: self.stream,
            attempts: std::mem::take(&mut self.attempts),
            status,
            outcome,
            latency_ms: ended.duration_since(self.started).as_secs_f64() * 1000.0,
            prompt_tokens: prompt,
            completion_tokens: completion,
            tokens_estimated: estimated,
            instance: None,
        };
        self.gw.shared.metrics.record(&event);
        self.gw.events().publish(Event::Request(event));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // An answer whose end was never settled (the client left before
        // its last byte): its place in flight frees now, its estimate stays.
        if let Some(cur) = self.answered.take() {
            self.route.lock().pool.end(cur.index);
            self.route.queue.kick();
        }
        // The client left (the handler future or the response body was dropped).
        if self.current.is_some() {
            self.conclude(
                AttemptOutcome::Cancelled,
                Verdict::Abandoned,
                Some(Tokens::Estimate),
            );
        }
        let (prompt, estimate) = (self.prompt_estimate, self.estimate);
        self.finish(
            499,
            RequestOutcome::ClientClosed,
            prompt,
            estimate - prompt,
            true,
        );
    }
}
