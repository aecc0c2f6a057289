//! The config file: read, validated and resolved once, into plain types.
//!
//! Loading goes in three steps, each with its own kind of error:
//! 1. TOML syntax (`locate`), reported with the line;
//! 2. shape (unknown fields, types) by serde into the `raw` structs,
//!    reported with the line and the field found from the error's span;
//! 3. rules serde cannot express (`raw`): ranges, uniqueness, URLs, and
//!    the resolution of `env:` / `file:` secrets, reported with the field and
//!    the line found from the field's path.
//!
//! No error message ever holds the value of a secret.
//!
//! [`persist`] writes changes back into the user's file.

mod capacity;
mod cloud;
mod deployment;
mod locate;
pub mod persist;
mod raw;
pub mod secret;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use capacity::{Capacity, DEFAULT_MAX_QUEUE, Queueing};
pub use cloud::ServiceAccount;
pub use deployment::{
    AwsKeys, DEFAULT_PRIORITY, DeploymentConfig, DeploymentSpec, FieldError, Provider, Timeouts,
};
pub use secret::{ApiKey, KeySource};

use locate::{FieldPath, SpannedDoc};
use raw::RawConfig;
use secret::SECRET_FIELDS;

/// The commented starter config that `switchboard init` writes.
pub const EXAMPLE_CONFIG: &str = include_str!("../../assets/switchboard.example.toml");

/// A validated config with its secrets resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, as given.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub routing: RoutingConfig,
    /// `[cluster]`: several instances sharing their routing state in Redis.
    pub cluster: Option<ClusterConfig>,
    pub models: Vec<ModelConfig>,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis_url`: a secret reference, as it may hold a password.
    pub redis_url: ApiKey,
    /// `name`: instances with the same Redis and name share state.
    pub name: String,
    /// `advertise`: where others reach this instance.
    pub advertise: Option<String>,
    pub on_redis_down: OnRedisDown,
    /// `lease_ttl_s`: how long a lease of a request in flight holds
    /// without renewal (its instance renews it every third of that), so
    /// the leases of an instance that died come free within it.
    pub lease_ttl: Duration,
}

/// `lease_ttl_s` unless set, and its most (CONTRACT.md, "Capacity").
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// What an instance does while it cannot reach Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Go on alone with its share of each limit.
    Local,
    /// Answer 503.
    Closed,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `listen`, default 127.0.0.1:4000.
    pub listen: SocketAddr,
    /// `api_keys`: the keys clients must present; empty means no auth.
    pub api_keys: Vec<ApiKey>,
    /// `admin_key`: guards `/admin/*` and `/metrics` when set.
    pub admin_key: Option<ApiKey>,
    /// `request_timeout_s`, default 600 s.
    pub request_timeout: Duration,
    /// `first_byte_timeout_s`, default 60 s.
    pub first_byte_timeout: Duration,
    /// `stream_idle_timeout_s`: a stream silent this long between chunks
    /// fails; unset, only the request timeout bounds a silent stream.
    pub stream_idle_timeout: Option<Duration>,
    /// `header_read_timeout_s`, default 30 s: a client must send a request's
    /// headers within this (slow-header clients are cut off); an idle
    /// keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// `shutdown_timeout_s`, default 10 s: how long requests in flight may
    /// run on after SIGTERM / Ctrl-C.
    pub shutdown_timeout: Duration,
    /// `max_body_mb`, default 32 MiB.
    pub max_body_bytes: usize,
    /// `workers`: threads serving connections, each with its own event loop
    /// and upstream connection pool; default one per CPU.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)),
            api_keys: Vec::new(),
            admin_key: None,
            request_timeout: Duration::from_secs(600),
            first_byte_timeout: Duration::from_secs(60),
            stream_idle_timeout: None,
            header_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            max_body_bytes: 32 * 1024 * 1024,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `[routing]`: when a failing deployment is set aside, and for how long.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// `failure_threshold`: consecutive failures before a cooldown (>= 1).
    pub failure_threshold: u32,
    /// `cooldown_s`: the first cooldown; it doubles on each further failure.
    pub cooldown: Duration,
    /// `max_cooldown_s`: the cap of the doubling (>= `cooldown`).
    pub max_cooldown: Duration,
    /// `rate_limit_cooldown_s`: the pause after a 429 that gives no retry hint.
    pub rate_limit_cooldown: Duration,
    /// `probe_interval_s`: how often the gateway probes a deployment cooling
    /// down after failures (default 10 s).
    pub probe_interval: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(300),
            rate_limit_cooldown: Duration::from_secs(5),
            probe_interval: Duration::from_secs(10),
        }
    }
}

/// A model clients ask for, and the deployments that serve it.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    /// May be empty: fallbacks can be added at run time.
    pub deployments: Vec<DeploymentConfig>,
    /// Other models tried in order once every deployment of this one is
    /// unavailable for a request or has failed it.
    pub fallbacks: Vec<String>,
    /// Where a "prompt too long" 400 goes instead of back to the client.
    pub context_window_fallbacks: Vec<String>,
    /// Where a content-policy refusal goes (empty: back to the client).
    pub content_policy_fallbacks: Vec<String>,
    /// The answer's `model` names the model that served, not the one asked for.
    pub report_served_model: bool,
    pub affinity: Affinity,
    /// An idle session's pin expires after this.
    pub affinity_ttl: Duration,
    /// Waiting for room instead of a 429.
    pub queueing: Queueing,
}

impl ModelConfig {
    /// A model with these deployments and every other setting at its default.
    pub fn new(name: impl Into<String>, deployments: Vec<DeploymentConfig>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            deployments,
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            report_served_model: false,
            affinity: Affinity::Session,
            affinity_ttl: DEFAULT_AFFINITY_TTL,
            queueing: Queueing::default(),
        }
    }
}

/// Whether a session's requests stick to one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    Session,
    Off,
}

/// The shortest prompt-cache lifetime of the providers: a pin outliving it
/// keeps a session on a deployment whose cache has already gone cold.
pub const DEFAULT_AFFINITY_TTL: Duration = Duration::from_secs(300);

/// Why a config could not be loaded: `{file}:{line}: {field}: {message}`,
/// the parts that are known. One paragraph, never a secret.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    fn new(
        file: &Path,
        line: Option<usize>,
        field: Option<&FieldPath>,
        message: &str,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line,
            // A quoted key or a value may hold control characters.
            field: field
                .filter(|f| !f.is_root())
                .map(|f| escape_controls(&f.to_string())),
            // One paragraph, whatever the underlying error looks like.
            message: escape_controls(&one_paragraph(message)),
        }
    }

    fn syntax(file: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        // `message()`, not `Display`: the latter quotes the offending line,
        // which may hold a key.
        let line = err.span().map(|s| locate::line_of(text, s.start));
        ConfigError::new(
            file,
            line,
            None,
            &format!("invalid TOML: {}", err.message()),
        )
    }

    fn shape(file: &Path, doc: &SpannedDoc<'_>, err: &toml::de::Error) -> ConfigError {
        let offset = err.span().map(|s| s.start);
        let mut path = offset.map(|o| doc.path_at(o)).unwrap_or_default();
        let message = match missing_field(err.message()) {
            Some(field) => {
                path = path.key(field);
                "is required".to_string()
            }
            None => describe_shape_error(&path, err.message()),
        };
        ConfigError::new(file, offset.map(|o| doc.line_of(o)), Some(&path), &message)
    }

    fn invalid(file: &Path, doc: &SpannedDoc<'_>, invalid: raw::Invalid) -> ConfigError {
        let line = doc.line_of_path(&invalid.path);
        ConfigError::new(file, line, Some(&invalid.path), &invalid.message)
    }
}

/// `\n`, `\u{1b}`, ... for control characters: an error stays one line and
/// cannot drive the terminal.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn one_paragraph(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// serde's `missing field `x``.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// serde's messages, made safe and short. Its type errors quote the value
/// (`invalid type: string "sk-…"`), so for a secret field only a message
/// that cannot hold a value is passed on.
fn describe_shape_error(path: &FieldPath, message: &str) -> String {
    if let Some(tidy) = tidy_unknown_field(message) {
        return tidy;
    }
    match path.last_key() {
        Some("api_keys") if !path.ends_in_index() => {
            "must be an array of key references, e.g. [\"env:SWITCHBOARD_API_KEY\"]".to_string()
        }
        Some(key) if SECRET_FIELDS.contains(&key) => {
            "must be a string: \"env:VAR\", \"file:PATH\" or the key itself".to_string()
        }
        _ => message.to_string(),
    }
}

/// `unknown field `x`, expected one of `a`, `b`` → `unknown field; expected
/// one of a, b` (the field's name is already in the path).
fn tidy_unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_, expected) = rest.split_once("`, ")?;
    Some(format!("unknown field; {}", expected.replace('`', "")))
}

impl Config {
    /// Reads, validates and resolves the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path,
                None,
                None,
                &format!("cannot read the config file: {e}"),
            )
        })?;
        Config::parse(&text, path)
    }

    /// Like [`Config::load`], from text; `path` names the file in errors and
    /// anchors relative `file:` secrets.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = SpannedDoc::parse(text).map_err(|e| ConfigError::syntax(path, text, &e))?;
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::shape(path, &doc, &e))?;
        let valid = raw
            .validate(&base_dir_of(path))
            .map_err(|e| ConfigError::invalid(path, &doc, e))?;
        Ok(Config {
            path: path.to_path_buf(),
            server: valid.server,
            routing: valid.routing,
            cluster: valid.cluster,
            models: valid.models,
        })
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The config file's folder, against which relative `file:` paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        base_dir_of(&self.path)
    }
}

/// The folder that relative `file:` paths in the config at `path` are relative to.
pub fn base_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::parse(text, Path::new("sb.toml")).unwrap_err()
    }

    #[test]
    fn an_empty_config_has_the_defaults() {
        let config = Config::parse("", Path::new("sb.toml")).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(config.server.max_body_bytes, 32 << 20);
        assert_eq!(config.routing.failure_threshold, 3);
        assert!(config.models.is_empty());
        assert_eq!(config.base_dir(), PathBuf::from("."));
    }

    #[test]
    fn unknown_fields_are_tidied() {
        let e = err("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.field.as_deref(), Some("server.listn"));
        assert!(
            e.message
                .starts_with("unknown field; expected one of listen, api_keys"),
            "{e}"
        );
    }

    #[test]
    fn missing_fields_name_the_field() {
        let e = err("[[models]]\n\n[[models]]\nname = \"b\"\n");
        assert_eq!(e.to_string(), "sb.toml:1: models[0].name: is required");
    }

    #[test]
    fn secret_type_errors_do_not_quote_the_value() {
        let e = err("[server]\napi_keys = \"sk-secret-value-1234\"\n");
        assert_eq!(e.field.as_deref(), Some("server.api_keys"));
        assert!(!e.to_string().contains("sk-secret"), "{e}");
    }

    #[test]
    fn type_errors_do_not_name_rust_types() {
        let e = err("routing = 5\n");
        assert_eq!(e.field.as_deref(), Some("routing"));
        assert!(e.message.contains("expected a [routing] table"), "{e}");
        let e = err("[[models]]\nname = \"a\"\ndeployments = [5]\n");
        assert_eq!(e.field.as_deref(), Some("models[0].deployments[0]"));
        assert!(e.message.contains("expected a deployment table"), "{e}");
    }

    #[test]
    fn control_characters_in_keys_and_values_are_escaped() {
        // Found by fuzz/config_parse: a quoted key put a newline in the field.
        let e = err("\"a\\nb\" = 1\n");
        assert_eq!(e.field.as_deref(), Some("a\\nb"));
        let e = err("[server]\nlisten = \"\\u001b[2J\"\n");
        assert!(e.message.starts_with("\"\\u{1b}[2J\" is not"), "{e}");
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }

    #[test]
    fn messages_are_one_paragraph() {
        let e = ConfigError::new(Path::new("f"), None, None, "a\n  b");
        assert_eq!(e.to_string(), "f: a b");
    }
}
