//! The config as written, and its validation into the types the program uses.
//!
//! Serde checks the shape (unknown fields, types); the functions here check
//! the rules serde cannot express. Every error names the field by its path;
//! the caller turns the path into a line of the file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::deployment::{DeploymentSpec, check_name, positive_seconds};
use super::locate::FieldPath;
use super::secret::ApiKey;
use super::{Affinity, ClusterConfig, ModelConfig, OnRedisDown, RoutingConfig, ServerConfig};

const MIB: f64 = 1024.0 * 1024.0;

// `expecting` keeps the structs' Rust names out of type errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a switchboard config")]
pub(super) struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    cluster: Option<RawCluster>,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cluster] table")]
struct RawCluster {
    redis_url: String,
    name: Option<String>,
    advertise: Option<String>,
    on_redis_down: Option<String>,
    lease_ttl_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [server] table")]
struct RawServer {
    listen: Option<String>,
    #[serde(default)]
    api_keys: Vec<String>,
    admin_key: Option<String>,
    /// Seconds as f64: serde accepts TOML integers and floats alike.
    request_timeout_s: Option<f64>,
    first_byte_timeout_s: Option<f64>,
    stream_idle_timeout_s: Option<f64>,
    header_read_timeout_s: Option<f64>,
    shutdown_timeout_s: Option<f64>,
    max_body_mb: Option<f64>,
    /// Signed so that 0 and negatives get our message, not serde's.
    workers: Option<i64>,
    max_wait_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [routing] table")]
struct RawRouting {
    /// Signed so that 0 and negatives get our message, not serde's.
    failure_threshold: Option<i64>,
    cooldown_s: Option<f64>,
    max_cooldown_s: Option<f64>,
    rate_limit_cooldown_s: Option<f64>,
    probe_interval_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[models]] table")]
struct RawModel {
    name: String,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    context_window_fallbacks: Vec<String>,
    #[serde(default)]
    content_policy_fallbacks: Vec<String>,
    #[serde(default)]
    report_served_model: bool,
    affinity: Option<String>,
    affinity_ttl_s: Option<f64>,
    max_wait_s: Option<f64>,
    max_queue: Option<i64>,
    #[serde(default)]
    deployments: Vec<DeploymentSpec>,
}

/// A rule the config breaks: which field, and why.
#[derive(Debug)]
pub(super) struct Invalid {
    pub path: FieldPath,
    pub message: String,
}

impl Invalid {
    fn new(path: FieldPath, message: impl Into<String>) -> Invalid {
        Invalid {
            path,
            message: message.into(),
        }
    }
}

/// The validated parts of a [`super::Config`].
pub(super) struct Validated {
    pub server: ServerConfig,
    pub routing: RoutingConfig,
    pub cluster: Option<ClusterConfig>,
    pub models: Vec<ModelConfig>,
}

impl RawConfig {
    /// Checks every rule and resolves the secrets (relative `file:` paths
    /// against `base_dir`). Stops at the first problem.
    pub(super) fn validate(self, base_dir: &Path) -> Result<Validated, Invalid> {
        let root = FieldPath::default();
        let max_wait = self
            .server
            .max_wait_s
            .map(super::capacity::wait_seconds)
            .transpose()
            .map_err(|m| Invalid::new(root.key("server").key("max_wait_s"), m))?
            .unwrap_or_default();
        Ok(Validated {
            server: self.server.validate(&root.key("server"), base_dir)?,
            routing: self.routing.validate(&root.key("routing"))?,
            cluster: self
                .cluster
                .map(|c| c.validate(&root.key("cluster"), base_dir))
                .transpose()?,
            models: validate_models(self.models, &root.key("models"), base_dir, max_wait)?,
        })
    }
}

impl RawCluster {
    fn validate(self, at: &FieldPath, base_dir: &Path) -> Result<ClusterConfig, Invalid> {
        let redis_url = resolve_key(&self.redis_url, &at.key("redis_url"), base_dir)?;
        let url = redis_url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            // Never the URL itself: it may hold a password.
            return Err(Invalid::new(
                at.key("redis_url"),
                "must be a redis:// or rediss:// URL",
            ));
        }
        let name = self.name.unwrap_or_else(|| "switchboard".to_string());
        check_name(&name).map_err(|m| Invalid::new(at.key("name"), m))?;
        if let Some(a) = &self.advertise
            && !(a.starts_with("http://") || a.starts_with("https://"))
        {
            return Err(Invalid::new(
                at.key("advertise"),
                format!("\"{a}\" must be an http:// or https:// URL other instances can reach"),
            ));
        }
        let on_redis_down = match self.on_redis_down.as_deref() {
            None | Some("local") => OnRedisDown::Local,
            Some("closed") => OnRedisDown::Closed,
            Some(other) => {
                return Err(Invalid::new(
                    at.key("on_redis_down"),
                    format!("\"{other}\" is not one of \"local\", \"closed\""),
                ));
            }
        };
        let lease_ttl = seconds_or(
            self.lease_ttl_s,
            super::DEFAULT_LEASE_TTL,
            &at.key("lease_ttl_s"),
        )?;
        if !(Duration::from_secs(1)..=super::DEFAULT_LEASE_TTL).contains(&lease_ttl) {
            return Err(Invalid::new(
                at.key("lease_ttl_s"),
                format!(
                    "must be between 1 and {} seconds: the leases of an instance that died come free within it",
                    super::DEFAULT_LEASE_TTL.as_secs()
                ),
            ));
        }
        Ok(ClusterConfig {
            redis_url,
            name,
            advertise: self.advertise.map(|a| a.trim_end_matches('/').to_string()),
            on_redis_down,
            lease_ttl,
        })
    }
}

/// More serving threads than this only adds memory: each holds a runtime
/// and a connection pool.
const MAX_WORKERS: usize = 256;

impl RawServer {
    fn validate(self, at: &FieldPath, base_dir: &Path) -> Result<ServerConfig, Invalid> {
        let defaults = ServerConfig::default();
        let listen = match &self.listen {
            None => defaults.listen,
            Some(text) => parse_listen(text).map_err(|m| Invalid::new(at.key("listen"), m))?,
        };
        let api_keys = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, reference)| resolve_key(reference, &at.key("api_keys").index(i), base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_key = self
            .admin_key
            .as_deref()
            .map(|reference| resolve_key(reference, &at.key("admin_key"), base_dir))
            .transpose()?;
        Ok(ServerConfig {
            listen,
            api_keys,
            admin_key,
            request_timeout: seconds_or(
                self.request_timeout_s,
                defaults.request_timeout,
                &at.key("request_timeout_s"),
            )?,
            first_byte_timeout: seconds_or(
                self.first_byte_timeout_s,
                defaults.first_byte_timeout,
                &at.key("first_byte_timeout_s"),
            )?,
            stream_idle_timeout: self
                .stream_idle_timeout_s
                .map(positive_seconds)
                .transpose()
                .map_err(|m| Invalid::new(at.key("stream_idle_timeout_s"), m))?,
            header_read_timeout: seconds_or(
                self.header_read_timeout_s,
                defaults.header_read_timeout,
                &at.key("header_read_timeout_s"),
            )?,
            shutdown_timeout: seconds_or(
                self.shutdown_timeout_s,
                defaults.shutdown_timeout,
                &at.key("shutdown_timeout_s"),
            )?,
            max_body_bytes: match self.max_body_mb {
                None => defaults.max_body_bytes,
                Some(mb) => mebibytes(mb).map_err(|m| Invalid::new(at.key("max_body_mb"), m))?,
            },
            workers: match self.workers {
                None => defaults.workers,
                Some(n) => usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_WORKERS).contains(n))
                    .ok_or_else(|| {
                        Invalid::new(
                            at.key("workers"),
                            format!("must be a whole number from 1 to {MAX_WORKERS} (got {n})"),
                        )
                    })?,
            },
        })
    }
}

impl RawRouting {
    fn validate(self, at: &FieldPath) -> Result<RoutingConfig, Invalid> {
        let defaults = RoutingConfig::default();
        let failure_threshold = match self.failure_threshold {
            None => defaults.failure_threshold,
            Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                Invalid::new(
                    at.key("failure_threshold"),
                    format!("must be a whole number from 1 to {} (got {n})", u32::MAX),
                )
            })?,
        };
        let cooldown = seconds_or(self.cooldown_s, defaults.cooldown, &at.key("cooldown_s"))?;
        let max_cooldown = seconds_or(
            self.max_cooldown_s,
            defaults.max_cooldown,
            &at.key("max_cooldown_s"),
        )?;
        if max_cooldown < cooldown {
            // Point at whichever of the two the user wrote; the other is a default.
            let field = if self.max_cooldown_s.is_some() {
                "max_cooldown_s"
            } else {
                "cooldown_s"
            };
            return Err(Invalid::new(
                at.key(field),
                format!(
                    "max_cooldown_s ({} s) must not be less than cooldown_s ({} s)",
                    max_cooldown.as_secs_f64(),
                    cooldown.as_secs_f64()
                ),
            ));
        }
        Ok(RoutingConfig {
            failure_threshold,
            cooldown,
            max_cooldown,
            rate_limit_cooldown: seconds_or(
                self.rate_limit_cooldown_s,
                defaults.rate_limit_cooldown,
                &at.key("rate_limit_cooldown_s"),
            )?,
            probe_interval: seconds_or(
                self.probe_interval_s,
                defaults.probe_interval,
                &at.key("probe_interval_s"),
            )?,
        })
    }
}

fn validate_models(
    raw: Vec<RawModel>,
    at: &FieldPath,
    base_dir: &Path,
    max_wait: Duration,
) -> Result<Vec<ModelConfig>, Invalid> {
    let mut models: Vec<ModelConfig> = Vec::with_capacity(raw.len());
    for (i, model) in raw.into_iter().enumerate() {
        let at = at.index(i);
        check_name(&model.name).map_err(|m| Invalid::new(at.key("name"), m))?;
        if let Some(first) = models.iter().position(|m| m.name == model.name) {
            return Err(Invalid::new(
                at.key("name"),
                format!(
                    "model \"{}\" is already defined (models[{first}])",
                    model.name
                ),
            ));
        }
        let deployments =
            validate_deployments(&model.deployments, &at.key("deployments"), base_dir)?;
        let affinity = match model.affinity.as_deref() {
            None | Some("session") => Affinity::Session,
            Some("off") => Affinity::Off,
            Some(other) => {
                return Err(Invalid::new(
                    at.key("affinity"),
                    format!("\"{other}\" is not one of \"session\", \"off\""),
                ));
            }
        };
        let queueing = super::Queueing {
            max_wait: model
                .max_wait_s
                .map(super::capacity::wait_seconds)
                .transpose()
                .map_err(|m| Invalid::new(at.key("max_wait_s"), m))?
                .unwrap_or(max_wait),
            max_queue: model
                .max_queue
                .map(super::capacity::queue_size)
                .transpose()
                .map_err(|m| Invalid::new(at.key("max_queue"), m))?
                .unwrap_or(super::DEFAULT_MAX_QUEUE),
        };
        models.push(ModelConfig {
            queueing,
            name: model.name,
            deployments,
            fallbacks: model.fallbacks,
            context_window_fallbacks: model.context_window_fallbacks,
            content_policy_fallbacks: model.content_policy_fallbacks,
            report_served_model: model.report_served_model,
            affinity,
            affinity_ttl: seconds_or(
                model.affinity_ttl_s,
                super::DEFAULT_AFFINITY_TTL,
                &at.key("affinity_ttl_s"),
            )?,
        });
    }
    // Fallbacks may name models defined further down: checked once all are known.
    for (i, model) in models.iter().enumerate() {
        let at = at.index(i);
        for (field, list) in [
            ("fallbacks", &model.fallbacks),
            ("context_window_fallbacks", &model.context_window_fallbacks),
            ("content_policy_fallbacks", &model.content_policy_fallbacks),
        ] {
            for (k, name) in list.iter().enumerate() {
                let at = at.key(field).index(k);
                if *name == model.name {
                    return Err(Invalid::new(
                        at,
                        format!(
                            "\"{name}\" is this model itself; a fallback must be another model"
                        ),
                    ));
                }
                if !models.iter().any(|m| m.name == *name) {
                    return Err(Invalid::new(
                        at,
                        format!("no model is named \"{name}\" in this config"),
                    ));
                }
                if list[..k].contains(name) {
                    return Err(Invalid::new(at, format!("\"{name}\" is listed twice")));
                }
            }
        }
    }
    Ok(models)
}

fn validate_deployments(
    specs: &[DeploymentSpec],
    at: &FieldPath,
    base_dir: &Path,
) -> Result<Vec<super::DeploymentConfig>, Invalid> {
    let mut deployments: Vec<super::DeploymentConfig> = Vec::with_capacity(specs.len());
    for (j, spec) in specs.iter().enumerate() {
        let at = at.index(j);
        let deployment = spec
            .resolve(base_dir)
            .map_err(|e| Invalid::new(at.key(&e.field), e.message))?;
        if let Some(first) = deployments.iter().position(|d| d.name == deployment.name) {
            return Err(Invalid::new(
                at.key("name"),
                format!(
                    "deployment \"{}\" is already defined in this model (deployments[{first}])",
                    deployment.name
                ),
            ));
        }
        deployments.push(deployment);
    }
    Ok(deployments)
}

fn resolve_key(reference: &str, at: &FieldPath, base_dir: &Path) -> Result<ApiKey, Invalid> {
    ApiKey::parse(reference, base_dir).map_err(|m| Invalid::new(at.clone(), m))
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "\"{text}\" is not a socket address; expected e.g. \"127.0.0.1:4000\" or \"[::1]:4000\""
        )
    })
}

fn seconds_or(value: Option<f64>, default: Duration, at: &FieldPath) -> Result<Duration, Invalid> {
    match value {
        None => Ok(default),
        Some(s) => positive_seconds(s).map_err(|m| Invalid::new(at.clone(), m)),
    }
}

fn mebibytes(mb: f64) -> Result<usize, String> {
    if mb.is_nan() || mb <= 0.0 {
        return Err(format!("must be a positive number of MiB (got {mb})"));
    }
    let bytes = (mb * MIB).round();
    if bytes < 1.0 {
        return Err(format!("{mb} MiB is less than one byte"));
    }
    if bytes >= usize::MAX as f64 {
        return Err(format!("{mb} MiB is too large"));
    }
    // In range and integral by the checks above.
    Ok(bytes as usize)
}
