//! A request's path in a cluster: the pick made by the cluster's state in
//! Redis (one script call, bounded; it takes the request's lease when the
//! deployment limits requests in flight), the settling, the verdict and
//! the lease's release sent after, off the path. The local pool keeps
//! counting what this instance sent, so that when Redis is away the
//! instance can decide alone with its share of each limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::flight::{Current, Flight};
use super::upstream::Upstream;
use crate::cluster::Cluster;
use crate::cluster::shared::{Counted, DepSpec, Mark, PickRequest, Picked, Windows};
use crate::config::OnRedisDown;
use crate::router::{Spent, Unavailable, Verdict};

impl Flight {
    /// The next deployment, as the cluster decides it.
    pub(super) async fn pick_in_cluster(
        &mut self,
        cluster: &Arc<Cluster>,
    ) -> Result<Arc<Upstream>, Unavailable> {
        if !cluster.is_up() {
            return self.pick_alone(cluster);
        }
        let now = self.gw.now();
        // Whether a request that finds no room will wait for it in this
        // model's line (`wait_for_room`): only for its own model, before
        // anything was sent. The pick then marks the model as waited for,
        // so that room freed elsewhere wakes this instance (cluster::freed).
        let may_wait = self.attempts.is_empty() && Arc::ptr_eq(self.origin(), &self.route);
        let (indices, deps, marks, session, kept, wait) = {
            let state = self.route.lock();
            let session = self
                .session
                .filter(|_| state.policy.affinity == crate::config::Affinity::Session)
                .map(|key| (key, state.policy.affinity_ttl));
            let wait = if may_wait {
                state.policy.queueing.max_wait
            } else {
                Duration::ZERO
            };
            let mut indices = Vec::new();
            let mut deps = Vec::new();
            let mut marks = Vec::new();
            let mut kept = Vec::new();
            for (i, name, weight, limits, enabled, priority) in state.pool.for_sharing() {
                indices.push(i);
                kept.push(Windows::of(&limits));
                deps.push(DepSpec {
                    name: name.clone(),
                    weight,
                    limits,
                    enabled,
                    priority,
                });
                // Known not to offer the endpoint: tried last, as in `Flight::pick`.
                marks.push(if self.tried.contains(&i) {
                    Mark::Tried
                } else if !self.endpoint.everywhere()
                    && state.upstreams[i].known_not_to_offer(self.endpoint, now)
                {
                    Mark::NotOffering
                } else {
                    Mark::Open
                });
            }
            (indices, deps, marks, session, kept, wait)
        };
        let need = self.need();
        let lease = cluster.lease_number();
        let request = PickRequest {
            need,
            marks,
            session,
            lease,
            wait,
        };
        let keys = cluster.keys(&self.route.name);
        let picked = cluster.pick(keys.clone(), deps, request).await;
        match picked {
            Err(down) => {
                cluster.mark_down(&down);
                self.pick_alone(cluster)
            }
            Ok(Picked::Unavailable(why)) => Err(why),
            Ok(Picked::Deployment {
                index,
                second,
                repinned_from,
                leased,
                ..
            }) => {
                let i = indices[index];
                let now = self.gw.now();
                let (upstream, reservation, changes) = {
                    let mut guard = self.route.lock();
                    let state = &mut *guard;
                    let reservation = state.pool.reserve(i, now, self.need());
                    // This instance's view: its pins (for the counts shown)
                    // and the tier its traffic goes to.
                    if let Some((key, ttl)) = session {
                        state.pool.pin(key, i, now, ttl, self.estimate);
                    }
                    let tier_change =
                        state
                            .pool
                            .note_shared_pick(i, now, self.estimate, &self.tried);
                    let repinned_from = repinned_from.and_then(|r| indices.get(r).copied());
                    let changes = (tier_change.is_some() || repinned_from.is_some()).then(|| {
                        self.route_changes(&mut state.pool, i, tier_change, repinned_from, now)
                    });
                    (state.upstreams[i].clone(), reservation, changes)
                };
                for change in changes.into_iter().flatten() {
                    self.publish_route(change);
                }
                self.tried.push(i);
                let lease = leased
                    .then(|| cluster.hold(keys, upstream.name.clone(), lease))
                    .flatten();
                self.current = Some(Current {
                    index: i,
                    name: upstream.name.clone(),
                    reservation,
                    shared: Some(Counted::new(second, need, kept[index])),
                    alone: None,
                    lease,
                    started: Instant::now(),
                });
                Ok(upstream)
            }
        }
    }

    /// Without Redis: alone with this instance's share of each limit, or
    /// (`on_redis_down = "closed"`) not at all.
    fn pick_alone(&mut self, cluster: &Arc<Cluster>) -> Result<Arc<Upstream>, Unavailable> {
        if cluster.on_down == OnRedisDown::Closed {
            self.refuse(ApiError::Unavailable {
                message: format!(
                    "The cluster `{}` cannot reach its Redis, and on_redis_down is \"closed\".",
                    cluster.name
                ),
                retry_after: Some(Duration::from_secs(1)),
            });
            return Err(Unavailable::Exhausted);
        }
        self.route.lock().pool.set_share(cluster.share());
        self.pick()
    }

    /// Sends how the attempt went to the cluster (with the tokens, when
    /// known). Returns whether the cluster decided this attempt: then its
    /// changes, not the local pool's, are the ones to announce.
    pub(super) fn share_verdict(
        &self,
        cur: &Current,
        verdict: Verdict,
        actual: Option<Spent>,
    ) -> bool {
        let Some(cluster) = self.gw.cluster() else {
            return false;
        };
        let Some(shared) = cur.shared else {
            if let (Some(alone), Some(actual)) = (cur.alone, actual) {
                cluster.settle_alone(&self.route.name, &cur.name, alone, actual, false);
            }
            return false;
        };
        let keys = cluster.keys(&self.route.name);
        if let Some(actual) = actual {
            cluster.settle(keys.clone(), cur.name.clone(), shared, actual);
        }
        let policy = self.route.lock().pool.policy().clone();
        cluster.record(
            keys,
            self.route.name.clone(),
            cur.name.clone(),
            verdict,
            policy,
        );
        true
    }

    /// The tokens an answer really used, to the cluster's windows.
    pub(super) fn share_settle(&self, cur: &Current, spent: Spent) {
        let Some(cluster) = self.gw.cluster() else {
            return;
        };
        if let Some(shared) = cur.shared {
            cluster.settle(
                cluster.keys(&self.route.name),
                cur.name.clone(),
                shared,
                spent,
            );
        } else if let Some(alone) = cur.alone {
            cluster.settle_alone(&self.route.name, &cur.name, alone, spent, false);
        }
    }

    /// The attempt was never sent: nothing of it counts in the cluster's
    /// windows either (its lease goes with `cur`).
    pub(super) fn share_undo(&self, cur: &Current) {
        let Some(cluster) = self.gw.cluster() else {
            return;
        };
        if let Some(shared) = cur.shared {
            cluster.undo(cluster.keys(&self.route.name), cur.name.clone(), shared);
        } else if let Some(alone) = cur.alone {
            cluster.settle_alone(&self.route.name, &cur.name, alone, Spent::default(), true);
        }
    }
}
