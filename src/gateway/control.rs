//! What operators can see and change while the gateway runs: the state of every
//! deployment, the enable toggle, adding a deployment, testing one. The admin
//! API and the dashboard both go through here, so both behave the same, and
//! every change is written to the config file before it takes effect.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::stats::{DeploymentRates, Rates, Stats};
use super::testing::TestReport;
use super::upstream::Upstream;
use super::{Gateway, ModelRoute};
use crate::config::{DeploymentConfig, DeploymentSpec, Provider, persist};
use crate::events::{DeploymentChange, DeploymentEvent, Event, unix_ms};
use crate::router::{Cause, SlotStatus, State, Transition};

/// How many seconds of requests-per-second history `/admin/state` carries:
/// a sparkline as wide as a wide terminal.
pub const HISTORY_SHOWN_S: usize = 300;

/// `/admin/state`: what the contract fixes (`models`, each deployment's
/// router state) and, beyond it, the last minute's figures and where the
/// gateway runs, so a dashboard attached from elsewhere shows the same as
/// one in the gateway's own process from its first frame.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateView {
    pub models: Vec<ModelView>,
    /// Every model together.
    #[serde(default)]
    pub last_minute: Rates,
    /// Requests completed in each of the last whole seconds, oldest first.
    #[serde(default)]
    pub requests_per_s_history: Vec<u64>,
    #[serde(default)]
    pub gateway: GatewayView,
    /// In a cluster: its name, Redis, the instances; the figures above are then the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::clustered::ClusterView>,
}

/// Where the gateway runs and what it runs from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayView {
    pub version: String,
    /// Where clients send requests: `http://127.0.0.1:4000/v1`.
    pub address: String,
    /// The config file toggles and added deployments are written to.
    pub config_path: String,
    /// Unix time in milliseconds when this state was taken, by the gateway's clock.
    pub now_ms: u64,
    /// Unix time in milliseconds when the gateway started.
    pub started_ms: u64,
    /// The number of the last routing event (the `id` of `/admin/events`).
    pub last_event: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    #[serde(default)]
    pub last_minute: Rates,
    pub deployments: Vec<DeploymentView>,
    /// `spilling`: the tier now serving while the best one has no room
    /// (null when the best one serves).
    #[serde(default, rename = "spilling")]
    pub spilling_to: Option<u32>,
    /// The models tried, in order, once this one has nothing left.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default = "session_affinity")]
    pub affinity: crate::config::Affinity,
    /// Requests waiting for room.
    #[serde(default)]
    pub queue: QueueView,
    /// The share of the admissible token capacity the current rate
    /// leaves (0 to 1); null when no deployment has a token limit.
    #[serde(default)]
    pub headroom: Option<f64>,
    /// The same per tier, best first.
    #[serde(default)]
    pub headroom_by_tier: Vec<crate::router::capacity::TierHeadroom>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueView {
    pub length: usize,
    /// How long the first in line has waited; null when nobody waits.
    pub oldest_ms: Option<u64>,
}

fn session_affinity() -> crate::config::Affinity {
    crate::config::Affinity::Session
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentView {
    pub name: String,
    pub provider: Provider,
    pub api_base: String,
    pub model_id: String,
    /// Masked, e.g. `sk-…3456`.
    pub api_key: Option<String>,
    /// Bedrock and Vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Bedrock with SigV4: the key ID, masked (the secret and the session
    /// token are never shown, not even masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    /// Vertex: where the service-account file is (nothing of its content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    pub enabled: bool,
    pub tpm_limit: Option<u64>,
    pub tpm_used: u64,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub rpm_used: u64,
    #[serde(default)]
    pub input_tpm_limit: Option<u64>,
    #[serde(default)]
    pub input_tpm_used: u64,
    #[serde(default)]
    pub output_tpm_limit: Option<u64>,
    #[serde(default)]
    pub output_tpm_used: u64,
    #[serde(default)]
    pub max_in_flight: Option<u64>,
    #[serde(default)]
    pub in_flight: u64,
    /// The limit it is at now (`tokens`, `requests`, `slice`, `input`,
    /// `output`, `in_flight`), if any.
    #[serde(default)]
    pub limited_by: Option<crate::router::Dim>,
    /// Seconds until a limit is reached at the current rate; null when
    /// none will be at this rate.
    #[serde(default)]
    pub forecast_full_s: Option<f64>,
    /// The forecast of each of its limits (`{"limit", "full_s"}`).
    #[serde(default)]
    pub forecasts: Vec<crate::router::limits::Forecast>,
    /// Its tier: lower is tried first.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Sessions whose last request it served (their pins still alive).
    #[serde(default)]
    pub pinned_sessions: u32,
    pub state: State,
    pub cooldown_remaining_s: f64,
    pub cooldown_cause: Option<Cause>,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    /// The share of traffic the deployment gets while all are open.
    pub weight: i64,
    /// Attempts, failures, latency and share of the last 60 s.
    #[serde(default)]
    pub last_minute: DeploymentRates,
    /// After an add in a cluster: whether the other instances have it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

fn default_priority() -> u32 {
    crate::config::DEFAULT_PRIORITY
}

fn view(up: &Upstream, s: SlotStatus) -> DeploymentView {
    DeploymentView {
        name: up.config.name.clone(),
        provider: up.config.provider,
        api_base: up.config.api_base.clone(),
        model_id: up.config.model_id.clone(),
        api_key: up.config.api_key.as_ref().map(|k| k.masked()),
        region: up.config.region.clone(),
        project: up.config.project.clone(),
        aws_access_key_id: up.config.aws.as_ref().map(|a| a.access_key_id.masked()),
        credentials: up
            .config
            .credentials
            .as_ref()
            .map(|c| format!("file:{}", c.path.display())),
        enabled: s.enabled,
        tpm_limit: s.tpm_limit,
        tpm_used: s.tpm_used,
        rpm_limit: s.rpm_limit,
        rpm_used: s.rpm_used,
        input_tpm_limit: s.input_tpm_limit,
        input_tpm_used: s.input_tpm_used,
        output_tpm_limit: s.output_tpm_limit,
        output_tpm_used: s.output_tpm_used,
        max_in_flight: s.max_in_flight,
        in_flight: s.in_flight,
        limited_by: s.limited_by,
        forecast_full_s: s.forecast_full_s.map(|f| (f * 10.0).round() / 10.0),
        forecasts: s
            .forecasts
            .iter()
            .map(|f| crate::router::limits::Forecast {
                full_s: f.full_s.map(|s| (s * 10.0).round() / 10.0),
                ..*f
            })
            .collect(),
        priority: s.priority,
        pinned_sessions: s.pinned_sessions,
        state: s.state,
        cooldown_remaining_s: (s.cooldown_remaining_s * 10.0).ceil() / 10.0,
        cooldown_cause: s.cooldown_cause,
        consecutive_failures: s.consecutive_failures,
        requests: s.requests,
        failures: s.failures,
        weight: s.weight,
        last_minute: DeploymentRates::default(),
        cluster: None,
    }
}

impl StateView {
    /// Fills in the last minute's figures of every model and deployment.
    pub fn fill_last_minute(&mut self, stats: &Stats, now_ms: u64) {
        self.last_minute = stats.totals(now_ms);
        self.requests_per_s_history = stats.history(now_ms, HISTORY_SHOWN_S);
        for m in &mut self.models {
            m.last_minute = stats.model(&m.name, now_ms);
            for d in &mut m.deployments {
                d.last_minute = stats.deployment(&m.name, &d.name, now_ms);
            }
        }
    }
}

fn duplicate(model: &str, name: &str) -> ApiError {
    ApiError::Conflict {
        message: format!("model `{model}` already has a deployment named `{name}`"),
    }
}

impl Gateway {
    pub(super) fn route(&self, model: &str) -> Result<Arc<ModelRoute>, ApiError> {
        self.shared
            .table
            .load()
            .get(model)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("model `{model}` is not configured")))
    }

    /// Every model and deployment as it is now, with the last minute's figures.
    pub fn state(&self) -> StateView {
        let now_ms = unix_ms();
        let mut state = self.router_state();
        self.shared
            .metrics
            .with_minute(|stats| state.fill_last_minute(stats, now_ms));
        state.gateway = GatewayView {
            version: env!("CARGO_PKG_VERSION").into(),
            address: self
                .shared
                .bound
                .get()
                .map(|a| format!("http://{a}/v1"))
                .unwrap_or_default(),
            config_path: std::path::absolute(self.config_path())
                .unwrap_or_else(|_| self.config_path().to_path_buf())
                .display()
                .to_string(),
            now_ms,
            started_ms: self.shared.started_ms,
            last_event: self.events().last_seq(),
        };
        state
    }

    /// The router's view of every model and deployment.
    fn router_state(&self) -> StateView {
        let now = self.now();
        let table = self.shared.table.load();
        let models = table
            .models
            .iter()
            .map(|route| {
                let mut state = route.lock();
                let ttl = state.policy.affinity_ttl;
                let live: Vec<usize> = state.pool.live().collect();
                let statuses = state.pool.statuses(now, ttl);
                let deployments = live
                    .into_iter()
                    .zip(statuses)
                    .map(|(i, status)| view(&state.upstreams[i], status))
                    .collect();
                let (headroom, headroom_by_tier) = state.pool.headroom(now);
                let (length, oldest) = route.queue.snapshot();
                let policy = &state.policy;
                ModelView {
                    queue: QueueView {
                        length,
                        oldest_ms: oldest.map(|d| d.as_millis() as u64),
                    },
                    headroom: headroom.map(|h| (h * 1000.0).round() / 1000.0),
                    headroom_by_tier,
                    name: route.name.to_string(),
                    last_minute: Rates::default(),
                    deployments,
                    spilling_to: state.pool.spilled_to(),
                    fallbacks: policy.fallbacks.iter().map(|f| f.to_string()).collect(),
                    affinity: policy.affinity,
                }
            })
            .collect();
        StateView {
            models,
            ..StateView::default()
        }
    }

    /// Raw router statuses for the metrics gauges.
    pub(super) fn statuses(&self) -> Vec<(String, Vec<SlotStatus>)> {
        let now = self.now();
        let table = self.shared.table.load();
        table
            .models
            .iter()
            .map(|route| {
                let mut state = route.lock();
                let ttl = state.policy.affinity_ttl;
                (route.name.to_string(), state.pool.statuses(now, ttl))
            })
            .collect()
    }

    pub(super) fn announce(&self, model: &Arc<str>, deployment: &Arc<str>, t: Transition) {
        let change = match t {
            Transition::CoolingDown { cause, for_ } => {
                tracing::warn!(%model, %deployment, ?cause, seconds = for_.as_secs_f64(), "deployment cooling down");
                DeploymentChange::CoolingDown {
                    cause,
                    seconds: for_.as_secs_f64(),
                }
            }
            Transition::Recovered => {
                tracing::info!(%model, %deployment, "deployment recovered");
                DeploymentChange::Recovered
            }
        };
        self.publish_change(model.clone(), deployment.clone(), change);
    }

    pub(super) fn publish_change(
        &self,
        model: Arc<str>,
        deployment: Arc<str>,
        change: DeploymentChange,
    ) {
        self.events().publish(Event::Deployment(DeploymentEvent {
            at_ms: unix_ms(),
            model,
            deployment,
            change,
            instance: None,
        }));
    }

    /// Enables or disables a deployment: written to the config file first, then
    /// applied at once; in a cluster also to the shared state and the other
    /// instances. Returns whether anything changed.
    pub async fn set_enabled(
        &self,
        model: &str,
        deployment: &str,
        enabled: bool,
    ) -> Result<bool, ApiError> {
        let changed = self.set_enabled_here(model, deployment, enabled).await?;
        if let Some(c) = self.cluster() {
            if let Err(e) = c
                .toggle(model, deployment, enabled, !enabled || !changed)
                .await
            {
                c.mark_down(&e);
            }
            self.share_change(crate::cluster::Change::Toggle {
                from: c.id.to_string(),
                model: model.to_string(),
                deployment: deployment.to_string(),
                enabled,
            })
            .await;
        }
        Ok(changed)
    }

    /// [`Gateway::set_enabled`] on this instance only: its config file and
    /// its router (a change another instance made arrives here).
    pub(super) async fn set_enabled_here(
        &self,
        model: &str,
        deployment: &str,
        enabled: bool,
    ) -> Result<bool, ApiError> {
        let route = self.route(model)?;
        let (index, name) = {
            let state = route.lock();
            let index = state.pool.index_of(deployment).ok_or_else(|| {
                ApiError::NotFound(format!("model `{model}` has no deployment `{deployment}`"))
            })?;
            (index, state.pool.name(index).clone())
        };
        let _edit = self.shared.edits.lock().await;
        let path = self.config_path().to_path_buf();
        let (m, d) = (model.to_string(), deployment.to_string());
        let written =
            tokio::task::spawn_blocking(move || persist::set_enabled(&path, &m, &d, enabled))
                .await
                .map_err(|e| ApiError::Internal(format!("config write task failed: {e}")))?;
        self.wrote_config(written, "the change")?;
        let changed = route.lock().pool.set_enabled(index, enabled);
        if changed {
            self.publish_enabled(&route.name, &name, enabled);
            route.queue.kick();
        }
        tracing::info!(model, deployment, enabled, "deployment toggled");
        Ok(changed)
    }

    /// Whether the config file took a change. Outside a cluster a failed
    /// write refuses the change; in one the state lives in Redis, so a
    /// read-only file (a Kubernetes ConfigMap) is noted and the change goes on.
    fn wrote_config(
        &self,
        written: Result<(), persist::PersistError>,
        what: &str,
    ) -> Result<(), ApiError> {
        match (written, self.cluster()) {
            (Ok(()), _) => Ok(()),
            (Err(e), None) => Err(ApiError::Internal(format!("could not save {what}: {e}"))),
            (Err(e), Some(_)) => {
                if self
                    .shared
                    .config_writable
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        "{}: {e}; changes live in the cluster's shared state",
                        self.config_path().display()
                    );
                }
                Ok(())
            }
        }
    }

    /// False once the config file refused a change (in a cluster).
    pub fn config_writable(&self) -> bool {
        self.shared
            .config_writable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The test `add_deployment` would make, and nothing else: for a form
    /// that tests before it saves. A duplicate name or a field at fault is
    /// refused as the add would refuse it.
    pub async fn try_deployment(
        &self,
        model: &str,
        spec: &DeploymentSpec,
    ) -> Result<TestReport, ApiError> {
        let (_, config) = self.vet(model, spec)?;
        Ok(self.test_deployment(&config).await)
    }

    /// A new deployment for `model` checked as an add checks it: the model
    /// exists, the name is free, the fields resolve.
    fn vet(
        &self,
        model: &str,
        spec: &DeploymentSpec,
    ) -> Result<(Arc<ModelRoute>, DeploymentConfig), ApiError> {
        let route = self.route(model)?;
        if route.lock().pool.index_of(&spec.name).is_some() {
            return Err(duplicate(model, &spec.name));
        }
        let base_dir = crate::config::base_dir_of(self.config_path());
        let config = spec.resolve(&base_dir).map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
            param: None,
        })?;
        Ok((route, config))
    }

    /// Adds a deployment to a model: validated, tested (unless `test` is
    /// false), written to the config file, then live at once.
    pub async fn add_deployment(
        &self,
        model: &str,
        spec: DeploymentSpec,
        test: bool,
    ) -> Result<DeploymentView, ApiError> {
        let (route, config) = self.vet(model, &spec)?;
        if test {
            let report = self.test_deployment(&config).await;
            if !report.ok {
                return Err(ApiError::Unprocessable {
                    message: format!(
                        "the test request through `{}` failed: {}",
                        config.name, report.message
                    ),
                });
            }
        }
        // Every secret field, not only api_key: AWS keys are keys too.
        let shareable = [
            &spec.api_key,
            &spec.aws_access_key_id,
            &spec.aws_secret_access_key,
            &spec.aws_session_token,
        ]
        .iter()
        .all(|k| {
            k.as_deref()
                .is_none_or(|k| k.starts_with("env:") || k.starts_with("file:"))
        });
        let mut added = self.insert_deployment(model, &route, &spec, config).await?;
        if let Some(c) = self.cluster() {
            if shareable {
                self.share_change(crate::cluster::Change::Add {
                    from: c.id.to_string(),
                    model: model.to_string(),
                    spec: Box::new(spec),
                })
                .await;
                added.cluster = Some("added on every instance of the cluster".into());
            } else {
                added.cluster = Some(
                    "added on this instance only: a literal key never leaves the instance it was given to; give it as env: or file: to add it everywhere".into(),
                );
            }
        }
        Ok(added)
    }

    /// A deployment another instance added, added here too (untested: it
    /// was tested where it was added).
    pub(super) async fn add_deployment_here(
        &self,
        model: &str,
        spec: DeploymentSpec,
    ) -> Result<DeploymentView, ApiError> {
        let (route, config) = self.vet(model, &spec)?;
        self.insert_deployment(model, &route, &spec, config).await
    }

    /// Writes a vetted deployment to the config file and makes it live.
    async fn insert_deployment(
        &self,
        model: &str,
        route: &Arc<ModelRoute>,
        spec: &DeploymentSpec,
        config: DeploymentConfig,
    ) -> Result<DeploymentView, ApiError> {
        let _edit = self.shared.edits.lock().await;
        if route.lock().pool.index_of(&spec.name).is_some() {
            return Err(duplicate(model, &spec.name));
        }
        let path = self.config_path().to_path_buf();
        let (m, s) = (model.to_string(), spec.clone());
        let written = tokio::task::spawn_blocking(move || persist::add_deployment(&path, &m, &s))
            .await
            .map_err(|e| ApiError::Internal(format!("config write task failed: {e}")))?;
        self.wrote_config(written, "the deployment")?;
        let upstream = Arc::new(Upstream::new(config));
        let now = self.now();
        let added = {
            let mut state = route.lock();
            let index = state.pool.push(
                upstream.name.clone(),
                upstream.config.tpm_limit,
                upstream.config.enabled,
            );
            state.pool.set_priority(index, upstream.config.priority);
            state.upstreams.push(upstream.clone());
            route.note_shape(&state);
            let status = state.pool.status(index, now);
            view(&upstream, status)
        };
        self.publish_change(
            route.name.clone(),
            upstream.name.clone(),
            DeploymentChange::Added,
        );
        tracing::info!(model, deployment = %upstream.name, "deployment added");
        Ok(added)
    }
}
