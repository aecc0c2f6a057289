//! Hot reload: the config file is watched, and an edit that validates is
//! applied while requests keep flowing; one that does not is reported and the
//! running config stays.
//!
//! Applying keeps what the router knows: a deployment that is still in the
//! file keeps its TPM window, health and counters (only what changed is
//! changed); one that left is retired, so requests in flight on it still
//! settle their tokens; models and deployments that are new start fresh.
//!
//! The file is polled rather than watched with inotify: a poll every half
//! second costs nothing, sees editors that replace the file by rename, and
//! works on every filesystem. A change is applied once the file has stayed
//! the same for one poll, so a save in several writes is read whole.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::upstream::Upstream;
use super::{Gateway, ModelRoute, RouteTable, Settings};
use crate::config::{Config, DeploymentConfig, ModelConfig, RoutingConfig};
use crate::events::{ConfigEvent, DeploymentChange, Event, unix_ms};

const NO_CHANGE: &str = "no change";

/// How often the file is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

pub(super) fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

impl Gateway {
    /// Watches the config file until `stop` is cancelled.
    pub async fn watch_config(self, stop: tokio_util::sync::CancellationToken) {
        let path = self.config_path().to_path_buf();
        // The file as it was when the gateway was built from it: an edit
        // made between then and now is still picked up.
        let mut applied = self.shared.loaded_stamp.clone();
        let mut pending: Option<Stamp> = None;
        let mut missing_reported = false;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = match stamp(&path) {
                Ok(s) => s,
                Err(e) => {
                    // Mid-rename, or deleted: keep running on what we have.
                    if !missing_reported {
                        tracing::warn!(
                            "cannot read {} ({e}); the running config stays",
                            path.display()
                        );
                        missing_reported = true;
                    }
                    continue;
                }
            };
            missing_reported = false;
            if applied.as_ref() == Some(&now) {
                pending = None;
                continue;
            }
            // Changed since last time: wait one poll for it to settle.
            if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            }
            pending = None;
            applied = Some(now);
            self.reload().await;
        }
    }

    /// Reads the config file and applies it, or reports why not.
    pub async fn reload(&self) -> Option<String> {
        // Edits by the admin API and the dashboard hold this lock from their
        // write to their apply, so a reload never applies an older file over
        // a change they just made.
        let _edit = self.shared.edits.lock().await;
        let path = self.config_path().to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let outcome = match loaded {
            Ok(Ok(config)) => self.apply_config(&config),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the reload task failed: {e}")),
        };
        let (applied, message) = match outcome {
            // Our own writes (toggles, added deployments) come back this way.
            Ok(summary) if summary == NO_CHANGE => {
                tracing::debug!("config file changed; nothing to apply");
                return Some(summary);
            }
            Ok(summary) => {
                tracing::info!(
                    "config reloaded from {}: {summary}",
                    self.config_path().display()
                );
                (true, summary)
            }
            Err(why) => {
                tracing::error!(
                    "config change not applied; the previous config keeps running: {why}"
                );
                (false, why)
            }
        };
        self.events().publish(Event::Config(ConfigEvent {
            at_ms: unix_ms(),
            applied,
            message: message.clone(),
        }));
        applied.then_some(message)
    }

    /// Makes `config` the running config; returns a summary of the changes.
    /// Refused (and nothing changed) when it would leave a reachable address
    /// without client keys.
    pub fn apply_config(&self, config: &Config) -> Result<String, String> {
        // The rule that refused to start unguarded also refuses to become so.
        if let Some(&bound) = self.shared.bound.get() {
            super::check_exposure(bound, &config.server, self.unauthenticated_allowed())
                .map_err(|m| format!("{}: server.api_keys: {m}", config.path.display()))?;
        }
        let mut changes: Vec<String> = Vec::new();
        let old = self.settings();
        if config.server.listen != old.listen {
            changes.push(format!(
                "server.listen {} takes effect at the next start",
                config.server.listen
            ));
        }
        if config.server.workers != old.workers {
            changes.push(format!(
                "server.workers {} takes effect at the next start",
                config.server.workers
            ));
        }
        if config.server.header_read_timeout != old.header_read_timeout {
            changes.push("header_read_timeout_s applies to new connections".into());
        }
        self.shared
            .settings
            .store(Arc::new(Settings::from(&config.server)));

        let old_table = self.shared.table.load_full();
        let mut table = RouteTable::default();
        for model in &config.models {
            let route = match old_table.get(&model.name) {
                Some(route) => {
                    self.reconcile(route, model, &config.routing, &mut changes);
                    route.clone()
                }
                None => {
                    changes.push(format!("model {} added", model.name));
                    let route = ModelRoute::new(model, &config.routing);
                    for d in &model.deployments {
                        self.publish_change(
                            route.name.clone(),
                            d.name.as_str().into(),
                            DeploymentChange::Added,
                        );
                    }
                    route
                }
            };
            table.insert(route);
        }
        for route in &old_table.models {
            if table.get(&route.name).is_none() {
                changes.push(format!("model {} removed", route.name));
            }
        }
        self.shared.table.store(Arc::new(table));
        Ok(if changes.is_empty() {
            NO_CHANGE.into()
        } else {
            changes.join("; ")
        })
    }

    /// Brings one model's deployments in line with the file, in place.
    fn reconcile(
        &self,
        route: &Arc<ModelRoute>,
        model: &ModelConfig,
        routing: &RoutingConfig,
        changes: &mut Vec<String>,
    ) {
        let mut events = Vec::new();
        {
            let mut state = route.lock();
            state.pool.set_policy(routing.clone());
            state.policy = super::ModelPolicy::from(model);
            for d in &model.deployments {
                let Some(i) = state.pool.index_of(&d.name) else {
                    let up = Arc::new(Upstream::new(d.clone()));
                    let index = state.pool.push(up.name.clone(), d, d.enabled);
                    state.pool.set_priority(index, d.priority);
                    state.upstreams.push(up.clone());
                    changes.push(format!("{}/{} added", model.name, d.name));
                    events.push((up.name.clone(), DeploymentChange::Added));
                    continue;
                };
                let name = state.pool.name(i).clone();
                let limit_changed = state.pool.set_limits(i, d);
                let tier_changed = state.pool.set_priority(i, d.priority);
                if limit_changed
                    || tier_changed
                    || state.upstreams[i].config.timeouts != d.timeouts
                    || !same_endpoint(&state.upstreams[i].config, d)
                {
                    // Requests in flight keep the old Upstream they hold.
                    state.upstreams[i] = Arc::new(Upstream::new(d.clone()));
                    changes.push(format!("{}/{} updated", model.name, d.name));
                    events.push((name.clone(), DeploymentChange::Updated));
                }
                if state.pool.set_enabled(i, d.enabled) {
                    let word = if d.enabled { "enabled" } else { "disabled" };
                    changes.push(format!("{}/{} {word}", model.name, d.name));
                    events.push((name, DeploymentChange::Enabled { enabled: d.enabled }));
                }
            }
            let gone: Vec<usize> = state
                .pool
                .live()
                .filter(|&i| {
                    !model
                        .deployments
                        .iter()
                        .any(|d| **state.pool.name(i) == *d.name)
                })
                .collect();
            for i in gone {
                let name = state.pool.name(i).clone();
                state.pool.retire(i);
                changes.push(format!("{}/{} removed", model.name, name));
                events.push((name, DeploymentChange::Removed));
            }
            route.note_shape(&state);
        }
        for (deployment, change) in events {
            self.publish_change(route.name.clone(), deployment, change);
        }
    }
}

/// Whether requests would go out the same way (the enabled flag and the TPM
/// limit are the router's, not the connection's): every field that shapes
/// a request, its URL or its auth.
fn same_endpoint(a: &DeploymentConfig, b: &DeploymentConfig) -> bool {
    use secrecy::ExposeSecret;
    fn key(x: Option<&crate::config::ApiKey>, y: Option<&crate::config::ApiKey>) -> bool {
        match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => x.expose() == y.expose(),
            _ => false,
        }
    }
    let aws = match (&a.aws, &b.aws) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            key(Some(&x.access_key_id), Some(&y.access_key_id))
                && key(Some(&x.secret_access_key), Some(&y.secret_access_key))
                && key(x.session_token.as_ref(), y.session_token.as_ref())
        }
        _ => false,
    };
    let credentials = match (&a.credentials, &b.credentials) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.path == y.path
                && x.client_email == y.client_email
                && x.token_uri == y.token_uri
                && x.private_key_id == y.private_key_id
                && x.private_key.expose_secret() == y.private_key.expose_secret()
        }
        _ => false,
    };
    a.provider == b.provider
        && a.api_base == b.api_base
        && a.api_version == b.api_version
        && a.model_id == b.model_id
        && a.region == b.region
        && a.project == b.project
        && key(a.api_key.as_ref(), b.api_key.as_ref())
        && aws
        && credentials
}
