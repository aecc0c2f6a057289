//! The gateway's own probes of deployments cooling down after failures.
//!
//! A failure cooldown doubles up to minutes; a deployment that recovers in
//! seconds would sit out the rest of it while its fallbacks (or a lower
//! tier) take its traffic. So every `probe_interval_s` (10 s by default)
//! the gateway sends each such deployment the same minimal request `t`
//! sends, and an answer ends the cooldown at once. A failed probe changes
//! nothing: the cooldown runs on and the next probe comes one interval on.
//! No user's request is ever the probe of a long cooldown.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Gateway, ModelRoute};
use crate::router::Verdict;

/// How often the probe loop looks for deployments due: often enough that a
/// probe is at most this late.
const LOOK_EVERY: Duration = Duration::from_millis(500);

impl Gateway {
    /// Probes what is due until `stop`.
    pub(super) async fn probe_cooling(self, stop: CancellationToken) {
        if self.cluster().is_some() {
            tokio::spawn(self.clone().mirror_shared_cooldowns(stop.clone()));
        }
        loop {
            let look = self.probe_look_interval();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(look) => {}
            }
            let now = self.now();
            let table = self.shared.table.load_full();
            for route in &table.models {
                let due: Vec<_> = {
                    let mut state = route.lock();
                    let every = state.pool.policy().probe_interval;
                    let due = state.pool.due_probes(now, every);
                    due.into_iter()
                        .map(|i| (i, state.upstreams[i].clone()))
                        .collect()
                };
                for (index, upstream) in due {
                    tokio::spawn(self.clone().probe(route.clone(), index, upstream));
                }
            }
        }
    }

    /// In a cluster, failures through several instances add up to one
    /// cooldown that none of them may have seen alone. The instance whose
    /// verdict began it hears the shared transition: it notes the cooldown
    /// in its own pool, and so probes it.
    async fn mirror_shared_cooldowns(self, stop: CancellationToken) {
        use crate::events::{DeploymentChange, Event};
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.events().subscribe_changes();
        loop {
            let published = tokio::select! {
                _ = stop.cancelled() => return,
                p = events.recv() => p,
            };
            let p = match published {
                Ok(p) => p,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let Event::Deployment(d) = &*p.event else {
                continue;
            };
            let DeploymentChange::CoolingDown {
                cause: crate::router::Cause::Failing,
                seconds,
            } = d.change
            else {
                continue;
            };
            // Others' events (relayed for a watcher) are theirs to mirror.
            if d.instance.is_some() && d.instance.as_ref() != self.events().instance() {
                continue;
            }
            let Some(route) = self.shared.table.load().get(&d.model).cloned() else {
                continue;
            };
            let now = self.now();
            let mut state = route.lock();
            if let Some(index) = state.pool.index_of(&d.deployment) {
                let for_ = Duration::try_from_secs_f64(seconds).unwrap_or_default();
                state.pool.mirror_failing(index, now, for_);
            }
        }
    }

    /// The look interval: [`LOOK_EVERY`], or less for a shorter probe interval.
    fn probe_look_interval(&self) -> Duration {
        let table = self.shared.table.load();
        let shortest = table
            .models
            .iter()
            .map(|r| r.lock().pool.policy().probe_interval)
            .min()
            .unwrap_or(LOOK_EVERY);
        (shortest / 2).clamp(Duration::from_millis(20), LOOK_EVERY)
    }

    async fn probe(
        self,
        route: Arc<ModelRoute>,
        index: usize,
        upstream: Arc<super::upstream::Upstream>,
    ) {
        tracing::debug!(model = %route.name, deployment = %upstream.name, "probing a deployment cooling down after failures");
        let report = self.test_deployment(&upstream.config).await;
        if !report.ok {
            tracing::debug!(model = %route.name, deployment = %upstream.name, "probe failed: {}", report.message);
            return;
        }
        let now = self.now();
        let (transition, policy) = {
            let mut state = route.lock();
            // The deployment may have left (a reload) while the probe ran.
            if !Arc::ptr_eq(&state.upstreams[index], &upstream) {
                return;
            }
            let t = state.pool.record(index, now, Verdict::Answered);
            (t, state.pool.policy().clone())
        };
        tracing::info!(model = %route.name, deployment = %upstream.name, latency_ms = report.latency_ms, "probe answered: the deployment is back");
        match self.cluster() {
            // The cluster's state announces its own changes.
            Some(cluster) => cluster.record(
                cluster.keys(&route.name),
                route.name.clone(),
                upstream.name.clone(),
                Verdict::Answered,
                policy,
            ),
            None => {
                if let Some(t) = transition {
                    self.announce(&route.name, &upstream.name, t);
                }
            }
        }
    }
}
