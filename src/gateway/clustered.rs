//! The gateway's side of a cluster: the tasks that keep it in (heartbeat,
//! off-path writes, changes from the others, room freed elsewhere for the
//! requests waiting here), applying what other instances change, and the
//! state the admin API shows: the cluster's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::control::StateView;
use super::stats::{DeploymentRates, Rates};
use crate::cluster::{Change, Cluster};
use crate::events::{DeploymentChange, unix_ms};
use crate::router::State;

/// `/admin/state`'s `cluster` block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterView {
    pub name: String,
    /// `ok` or `down`.
    pub redis: String,
    /// Unix ms since when Redis has been as it is.
    pub since_ms: u64,
    /// This instance.
    pub this: String,
    pub instances: Vec<InstanceView>,
    /// False once a change could not be written to this instance's config
    /// file (read-only, as a ConfigMap): the change lives in the cluster.
    pub config_writable: bool,
    /// `local` or `closed`: what this instance does while Redis is away.
    pub on_redis_down: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InstanceView {
    pub id: String,
    pub advertise: Option<String>,
    pub requests_per_s: f64,
    pub last_seen_s: f64,
}

/// An instance's last minute, as its heartbeat carries it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Figures {
    total: Rates,
    history: Vec<u64>,
    models: Vec<ModelFigures>,
}

/// A model's name, its figures and its deployments' figures.
type ModelFigures = (String, Rates, Vec<(String, DeploymentRates)>);

fn figures_of(state: &StateView) -> Figures {
    Figures {
        total: state.last_minute,
        history: state.requests_per_s_history.clone(),
        models: state
            .models
            .iter()
            .map(|m| {
                let deps = m
                    .deployments
                    .iter()
                    .map(|d| (d.name.clone(), d.last_minute))
                    .collect();
                (m.name.clone(), m.last_minute, deps)
            })
            .collect(),
    }
}

fn add_rates(into: &mut Rates, r: &Rates) {
    into.per_second += r.per_second;
    into.requests += r.requests;
    into.errors += r.errors;
    into.tokens_per_minute += r.tokens_per_minute;
}

impl Gateway {
    /// Starts what keeps this instance in its cluster; stops with `stop`.
    pub(super) fn start_cluster(&self, cluster: Arc<Cluster>, stop: CancellationToken) {
        let until = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = f => {}
                }
            });
        };
        let gw = self.clone();
        until(Box::pin(cluster.clone().heartbeat(move || {
            let state = gw.state();
            let figures = serde_json::to_value(figures_of(&state)).unwrap_or_default();
            (state.last_minute.per_second, figures)
        })));
        let (relay_on, relay) = tokio::sync::watch::channel(false);
        until(Box::pin(cluster.clone().watch_marks(relay_on)));
        until(Box::pin(cluster.clone().relay(relay)));
        until(Box::pin(cluster.clone().receive_events()));
        until(Box::pin(cluster.clone().renew_leases()));
        let gw = self.clone();
        until(Box::pin(cluster.clone().listen_freed(move |model| {
            if let Some(route) = gw.shared.table.load().get(model) {
                route.queue.wake();
            }
        })));
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        until(Box::pin(cluster.clone().listen(tx)));
        let gw = self.clone();
        until(Box::pin(async move {
            while let Some(change) = rx.recv().await {
                gw.apply_change(change).await;
            }
        }));
    }

    /// A change another instance made, made here too (and written to this
    /// instance's config file when it can be).
    async fn apply_change(&self, change: Change) {
        match change {
            Change::Toggle {
                from,
                model,
                deployment,
                enabled,
            } => {
                tracing::info!(%model, %deployment, enabled, %from, "toggled by another instance");
                if let Err(e) = self.set_enabled_here(&model, &deployment, enabled).await {
                    tracing::warn!(%model, %deployment, "a toggle from {from} could not be applied: {e}");
                }
            }
            Change::Add { from, model, spec } => {
                let name = spec.name.clone();
                match self.add_deployment_here(&model, *spec).await {
                    Ok(_) => {
                        tracing::info!(%model, deployment = %name, %from, "added by another instance")
                    }
                    Err(e) => {
                        tracing::warn!(%model, deployment = %name, "a deployment added by {from} could not be added here: {e}")
                    }
                }
            }
        }
    }

    /// The state, with what the cluster holds in place of this instance's
    /// own view: enabled flags, the windows and leases of the limits set,
    /// cooldowns and counters from Redis, the last minute's figures summed
    /// over the instances.
    pub async fn current_state(&self) -> StateView {
        let mut state = self.state();
        let Some(cluster) = self.cluster() else {
            return state;
        };
        let others: Vec<Figures> = cluster
            .instances()
            .iter()
            .filter(|i| *i.id != *cluster.id)
            .filter_map(|i| serde_json::from_value(i.figures.clone()).ok())
            .collect();
        if cluster.is_up() {
            for m in &mut state.models {
                let deps: Vec<(&str, bool)> = m
                    .deployments
                    .iter()
                    .map(|d| (d.name.as_str(), d.enabled))
                    .collect();
                match cluster.state(&m.name, &deps).await {
                    Ok(shared) => {
                        for (d, s) in m.deployments.iter_mut().zip(shared) {
                            d.enabled = s.enabled;
                            d.tpm_used = s.tpm_used;
                            // The cluster keeps these only for the limits set.
                            if d.rpm_limit.is_some() {
                                d.rpm_used = s.rpm_used;
                            }
                            if d.input_tpm_limit.is_some() {
                                d.input_tpm_used = s.input_tpm_used;
                            }
                            if d.output_tpm_limit.is_some() {
                                d.output_tpm_used = s.output_tpm_used;
                            }
                            if d.max_in_flight.is_some() {
                                d.in_flight = s.in_flight;
                            }
                            d.cooldown_cause = s.cooldown.map(|(c, _)| c);
                            d.cooldown_remaining_s = s
                                .cooldown
                                .map_or(0.0, |(_, r)| (r.as_secs_f64() * 10.0).ceil() / 10.0);
                            d.consecutive_failures = s.consecutive_failures;
                            d.requests = s.requests;
                            d.failures = s.failures;
                            d.state = if !s.enabled {
                                State::Disabled
                            } else if s.cooldown.is_some() {
                                State::CoolingDown
                            } else {
                                State::Healthy
                            };
                        }
                    }
                    Err(e) => cluster.mark_down(&e),
                }
            }
        }
        for f in &others {
            add_rates(&mut state.last_minute, &f.total);
            for (i, v) in f.history.iter().enumerate() {
                if let Some(h) = state.requests_per_s_history.get_mut(i) {
                    *h += v;
                }
            }
            for (name, rates, deps) in &f.models {
                let Some(m) = state.models.iter_mut().find(|m| &m.name == name) else {
                    continue;
                };
                add_rates(&mut m.last_minute, rates);
                for (dep, r) in deps {
                    if let Some(d) = m.deployments.iter_mut().find(|d| &d.name == dep) {
                        d.last_minute.attempts += r.attempts;
                        d.last_minute.failures += r.failures;
                        d.last_minute.answered += r.answered;
                    }
                }
            }
        }
        if !others.is_empty() {
            // Shares of the cluster's answers; percentiles stay this instance's.
            for m in &mut state.models {
                let total: u64 = m.deployments.iter().map(|d| d.last_minute.answered).sum();
                for d in &mut m.deployments {
                    d.last_minute.share =
                        (total > 0).then(|| d.last_minute.answered as f64 / total as f64);
                }
            }
        }
        let now = unix_ms();
        state.cluster = Some(ClusterView {
            name: cluster.name.clone(),
            redis: if cluster.is_up() { "ok" } else { "down" }.into(),
            since_ms: cluster.since_ms(),
            this: cluster.id.to_string(),
            instances: cluster
                .instances()
                .iter()
                .map(|i| InstanceView {
                    id: i.id.clone(),
                    advertise: i.advertise.clone(),
                    requests_per_s: i.requests_per_s,
                    last_seen_s: now.saturating_sub(i.at_ms) as f64 / 1000.0,
                })
                .collect(),
            config_writable: self.config_writable(),
            on_redis_down: match cluster.on_down {
                crate::config::OnRedisDown::Local => "local",
                crate::config::OnRedisDown::Closed => "closed",
            }
            .into(),
        });
        state
    }

    /// Publishes what this instance changed, for the others.
    pub(super) async fn share_change(&self, change: Change) {
        if let Some(cluster) = self.cluster()
            && !cluster.publish(&change).await
        {
            tracing::warn!(
                "cluster {}: Redis is away; the other instances learn this change from the shared state only",
                cluster.name
            );
        }
    }

    pub(super) fn publish_enabled(&self, model: &Arc<str>, deployment: &Arc<str>, enabled: bool) {
        self.publish_change(
            model.clone(),
            deployment.clone(),
            DeploymentChange::Enabled { enabled },
        );
    }
}
