//! One deployment: the fields a user writes (in the file, the admin API or
//! the dashboard form) and their validated, resolved form.
//!
//! The config file's `[[models.deployments]]` tables are read straight into
//! [`DeploymentSpec`], so a deployment added at run time is checked by
//! exactly the same rules as one loaded from the file.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::secret::ApiKey;

/// Which API a deployment's upstream speaks, and so how the gateway calls
/// it and translates for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenAI-compatible API: `Authorization: Bearer <key>`.
    #[default]
    OpenAi,
    /// Azure OpenAI: `api-key: <key>`; the classic `deployments/...` API
    /// with `api_version`, else Azure's OpenAI-compatible `/openai/v1`.
    Azure,
    /// Anthropic's Messages API, translated both ways.
    Anthropic,
    /// Amazon Bedrock's Converse API: AWS SigV4 or a Bedrock API key.
    Bedrock,
    /// Google Vertex AI: Claude through rawPredict, other models through
    /// its OpenAI-compatible endpoint; OAuth from a service-account file.
    Vertex,
}

impl Provider {
    /// Every provider, in the order the dashboard's form offers them.
    pub const ALL: [Provider; 5] = [
        Provider::OpenAi,
        Provider::Azure,
        Provider::Anthropic,
        Provider::Bedrock,
        Provider::Vertex,
    ];

    /// The name used in the config file and the admin API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
            Provider::Vertex => "vertex",
        }
    }

    /// The `api_base` used when a deployment gives none, for providers with
    /// a well-known endpoint (per region for the clouds).
    pub fn default_api_base(&self, region: Option<&str>) -> Option<String> {
        match self {
            Provider::Anthropic => Some("https://api.anthropic.com".into()),
            Provider::Bedrock => {
                region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            }
            Provider::Vertex => region.map(|r| format!("https://{r}-aiplatform.googleapis.com")),
            Provider::OpenAi | Provider::Azure => None,
        }
    }

    /// An example `api_base`, for messages and the form.
    pub fn example_api_base(&self) -> &'static str {
        match self {
            Provider::OpenAi => "https://api.openai.com/v1",
            Provider::Azure => "https://NAME.openai.azure.com (with api_version) or …/openai/v1",
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::Bedrock => "https://bedrock-runtime.REGION.amazonaws.com (the default)",
            Provider::Vertex => "https://REGION-aiplatform.googleapis.com (the default)",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated deployment with its key resolved.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub name: String,
    pub provider: Provider,
    /// An `http://` or `https://` URL with a host, without a trailing `/`
    /// (the provider's default when the spec gave none).
    pub api_base: String,
    /// Azure's classic API version (`2024-10-21`); only for `azure`.
    pub api_version: Option<String>,
    /// None for upstreams that need no key (local vLLM, Ollama).
    pub api_key: Option<ApiKey>,
    pub model_id: String,
    /// Tokens per minute; greater than zero when present.
    pub tpm_limit: Option<u64>,
    pub enabled: bool,
    /// Bedrock's and Vertex's region (`us-east-1`, `europe-west4`).
    pub region: Option<String>,
    /// Bedrock with AWS keys (else `api_key` is a Bedrock API key).
    pub aws: Option<AwsKeys>,
    /// Vertex: the Google Cloud project.
    pub project: Option<String>,
    /// Vertex: the service-account key file, read at load (its content
    /// never appears in a message).
    pub credentials: Option<std::sync::Arc<super::cloud::ServiceAccount>>,
    /// The tier: a lower number is tried first (default 1).
    pub priority: u32,
    /// Timeouts of its own, overriding the server's where set.
    pub timeouts: Timeouts,
    /// The most output tokens its model takes: a request asking more
    /// (Claude Code's `max_tokens: 32000` to a GPT-4o) is capped to it.
    pub max_output_tokens: Option<u64>,
    /// `responses = "bridged"`: the Responses door reaches it through its
    /// chat endpoint even though its provider has a Responses API.
    pub responses_bridged: bool,
    /// Its limits beyond tokens per minute.
    pub capacity: super::Capacity,
}

/// Per-deployment overrides of the server's timeouts (`None`: the server's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte: Option<std::time::Duration>,
    pub request: Option<std::time::Duration>,
    pub stream_idle: Option<std::time::Duration>,
}

/// The tier every deployment is in unless it says otherwise.
pub const DEFAULT_PRIORITY: u32 = 1;
/// Tiers beyond this are a typo, not a plan.
pub const MAX_PRIORITY: i64 = 1000;

/// AWS credentials for SigV4, each resolved like an API key.
#[derive(Debug, Clone)]
pub struct AwsKeys {
    pub access_key_id: ApiKey,
    pub secret_access_key: ApiKey,
    pub session_token: Option<ApiKey>,
}

/// What a user submits for a deployment: the raw fields, with `api_key`
/// still as written (`env:VAR`, `file:PATH` or a literal key).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a deployment table")]
pub struct DeploymentSpec {
    pub name: String,
    #[serde(default)]
    pub provider: Provider,
    /// Empty: the provider's default, for those that have one.
    #[serde(default)]
    pub api_base: String,
    /// Azure's classic API: `{api_base}/openai/deployments/{model_id}/…?api-version=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    pub model_id: String,
    /// Signed so that a negative value is reported as such, not as a type error.
    #[serde(default)]
    pub tpm_limit: Option<i64>,
    /// Default: true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Bedrock and Vertex: the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Bedrock: AWS keys, each a reference like `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<String>,
    /// Vertex: the Google Cloud project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Vertex: `file:PATH` of a service-account key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// The tier (default 1); signed so that a negative value gets our message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout_s: Option<f64>,
    /// Signed so that 0 and negatives get our message, not serde's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
    /// `"native"` (default for openai and azure) or `"bridged"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<String>,
    /// Capacity (see `capacity.rs`); signed so that 0 and negatives get
    /// our message, not serde's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_slice_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tpm_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tpm_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<i64>,
}

/// A field that failed validation, named as in the config (`api_base`,
/// `tpm_limit`, ...). The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl DeploymentSpec {
    /// Validates the fields and resolves the key (a relative `file:` path
    /// against `base_dir`). The error names the field at fault.
    pub fn resolve(&self, base_dir: &Path) -> Result<DeploymentConfig, FieldError> {
        let checked = self.check()?;
        let api_key = self
            .api_key
            .as_deref()
            .map(|reference| ApiKey::parse(reference, base_dir))
            .transpose()
            .map_err(|message| FieldError::new("api_key", message))?;
        Ok(DeploymentConfig {
            name: self.name.clone(),
            provider: self.provider,
            api_base: checked.api_base,
            api_version: self.api_version.as_ref().map(|v| v.trim().to_string()),
            api_key,
            model_id: self.model_id.clone(),
            tpm_limit: checked.tpm_limit,
            enabled: self.enabled.unwrap_or(true),
            region: self.region.as_ref().map(|r| r.trim().to_string()),
            aws: self.aws_keys(base_dir)?,
            project: self.project.as_ref().map(|p| p.trim().to_string()),
            credentials: self
                .credentials
                .as_deref()
                .map(|c| super::cloud::credentials(c, base_dir))
                .transpose()
                .map_err(|m| FieldError::new("credentials", m))?,
            priority: checked.priority,
            timeouts: checked.timeouts,
            max_output_tokens: checked.max_output_tokens,
            responses_bridged: checked.responses_bridged,
            capacity: checked.capacity,
        })
    }

    fn aws_keys(&self, base_dir: &Path) -> Result<Option<AwsKeys>, FieldError> {
        let key = |field: &str, reference: &Option<String>| {
            reference
                .as_deref()
                .map(|r| ApiKey::parse(r, base_dir))
                .transpose()
                .map_err(|m| FieldError::new(field, m))
        };
        let id = key("aws_access_key_id", &self.aws_access_key_id)?;
        let secret = key("aws_secret_access_key", &self.aws_secret_access_key)?;
        let token = key("aws_session_token", &self.aws_session_token)?;
        Ok(match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Some(AwsKeys {
                access_key_id,
                secret_access_key,
                session_token: token,
            }),
            // check() made sure they come together.
            _ => None,
        })
    }

    /// Validates everything but the key's resolution: no I/O, no
    /// environment. Used before a spec is written to the config file.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check().map(|_| ())
    }

    fn check(&self) -> Result<Checked, FieldError> {
        check_name(&self.name).map_err(|m| FieldError::new("name", m))?;
        super::cloud::check(self)?;
        let region = self.region.as_deref().map(str::trim);
        let api_base = match (self.api_base.trim(), self.provider.default_api_base(region)) {
            ("", Some(default)) => default,
            ("", None) => {
                return Err(FieldError::new(
                    "api_base",
                    format!(
                        "is needed for provider {}, e.g. {}",
                        self.provider,
                        self.provider.example_api_base()
                    ),
                ));
            }
            (given, _) => normalize_api_base(given).map_err(|m| FieldError::new("api_base", m))?,
        };
        check_api_version(self.provider, self.api_version.as_deref())
            .map_err(|m| FieldError::new("api_version", m))?;
        if let Some(reference) = &self.api_key
            && reference.trim().is_empty()
        {
            // Omit the field for upstreams that need no key; an empty one is a mistake.
            return Err(FieldError::new(
                "api_key",
                "is empty; omit api_key when the upstream needs none",
            ));
        }
        if self.model_id.trim().is_empty() {
            return Err(FieldError::new("model_id", "must not be empty"));
        }
        let tpm_limit =
            check_tpm_limit(self.tpm_limit).map_err(|m| FieldError::new("tpm_limit", m))?;
        let priority = match self.priority {
            None => DEFAULT_PRIORITY,
            Some(p) if (0..=MAX_PRIORITY).contains(&p) => p as u32,
            Some(p) => {
                return Err(FieldError::new(
                    "priority",
                    format!(
                        "must be a whole number from 0 to {MAX_PRIORITY} (got {p}); lower is tried first"
                    ),
                ));
            }
        };
        let seconds = |field: &str, value: Option<f64>| {
            value
                .map(positive_seconds)
                .transpose()
                .map_err(|m| FieldError::new(field, m))
        };
        let timeouts = Timeouts {
            first_byte: seconds("first_byte_timeout_s", self.first_byte_timeout_s)?,
            request: seconds("request_timeout_s", self.request_timeout_s)?,
            stream_idle: seconds("stream_idle_timeout_s", self.stream_idle_timeout_s)?,
        };
        let max_output_tokens = match self.max_output_tokens {
            None => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => {
                return Err(FieldError::new(
                    "max_output_tokens",
                    format!("must be a whole number greater than 0 (got {n})"),
                ));
            }
        };
        let responses_bridged = match self.responses.as_deref().map(str::trim) {
            None | Some("native") => false,
            Some("bridged") => true,
            Some(other) => {
                return Err(FieldError::new(
                    "responses",
                    format!("must be \"native\" or \"bridged\" (got {other:?})"),
                ));
            }
        };
        Ok(Checked {
            api_base,
            tpm_limit,
            priority,
            timeouts,
            max_output_tokens,
            responses_bridged,
            capacity: super::capacity::check(self)?,
        })
    }
}

/// The fields whose validated form differs from what was written.
struct Checked {
    api_base: String,
    tpm_limit: Option<u64>,
    priority: u32,
    timeouts: Timeouts,
    max_output_tokens: Option<u64>,
    responses_bridged: bool,
    capacity: super::Capacity,
}

/// A timeout as written: seconds, integer or fractional, greater than zero.
pub(crate) fn positive_seconds(seconds: f64) -> Result<std::time::Duration, String> {
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!(
            "must be a positive number of seconds (got {seconds})"
        ));
    }
    // Beyond a year a timeout means "never"; capping it keeps every
    // `now + timeout` far from overflowing.
    const YEAR_S: f64 = 365.0 * 86_400.0;
    if seconds > YEAR_S {
        return Err(format!(
            "{seconds} seconds is more than a year; at most {YEAR_S}"
        ));
    }
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{seconds} seconds is too long"))
}

/// Names appear in URLs, headers and the dashboard: a blank, padded or
/// control-character name is always a typo.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.trim() != name {
        return Err("must not start or end with whitespace".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// `api_version` belongs to Azure's classic API, and goes into a query
/// string: a date-like token such as `2024-10-21` or `2025-01-01-preview`.
fn check_api_version(provider: Provider, version: Option<&str>) -> Result<(), String> {
    let Some(version) = version else {
        return Ok(());
    };
    if provider != Provider::Azure {
        return Err(format!(
            "only azure deployments take an api_version (this one is {provider})"
        ));
    }
    let version = version.trim();
    if version.is_empty() {
        return Err("is empty; omit it for Azure's /openai/v1 API".into());
    }
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!(
            "\"{version}\" is not an API version; expected e.g. \"2024-10-21\""
        ));
    }
    Ok(())
}

fn check_tpm_limit(limit: Option<i64>) -> Result<Option<u64>, String> {
    match limit {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
        Some(n) => Err(format!(
            "must be greater than 0 (got {n}); omit it for no limit"
        )),
    }
}

/// Checks that `api_base` is an `http(s)://` URL with a host and trims its
/// trailing `/`. Deliberately small: the HTTP client reports anything subtler
/// on the first request. The messages do not repeat the URL, which may carry
/// credentials.
fn normalize_api_base(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    if host_and_port.is_empty() || host_and_port.starts_with(':') {
        return Err("has no host (expected e.g. https://api.openai.com/v1)".into());
    }
    if rest.contains(['?', '#']) {
        return Err("must not contain a query or fragment: the gateway appends paths such as /chat/completions".into());
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        DeploymentSpec {
            name: "east".into(),
            api_base: "https://example.com/v1/".into(),
            model_id: "gpt-4o".into(),
            ..DeploymentSpec::default()
        }
    }

    #[test]
    fn resolves_with_defaults() {
        let d = spec().resolve(Path::new(".")).unwrap();
        assert_eq!(d.api_base, "https://example.com/v1");
        assert_eq!(d.provider, Provider::OpenAi);
        assert!(d.enabled && d.api_key.is_none() && d.tpm_limit.is_none());
    }

    #[test]
    fn api_base_needs_scheme_and_host() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://",
            "http:///v1",
            "https://:80/v1",
            "https://a b",
            "https://x/v1?a=1",
        ] {
            let s = DeploymentSpec {
                api_base: bad.into(),
                ..spec()
            };
            assert_eq!(s.validate().unwrap_err().field, "api_base", "{bad}");
        }
        for good in [
            "http://127.0.0.1:9001/v1",
            "https://[::1]:8080",
            "https://x.openai.azure.com/openai/v1",
        ] {
            let s = DeploymentSpec {
                api_base: good.into(),
                ..spec()
            };
            assert!(s.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn tpm_limit_must_be_positive() {
        for bad in [0, -5] {
            let s = DeploymentSpec {
                tpm_limit: Some(bad),
                ..spec()
            };
            assert_eq!(s.validate().unwrap_err().field, "tpm_limit");
        }
        let s = DeploymentSpec {
            tpm_limit: Some(7),
            ..spec()
        };
        assert_eq!(s.resolve(Path::new(".")).unwrap().tpm_limit, Some(7));
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "  ", " east", "ea\nst"] {
            let s = DeploymentSpec {
                name: bad.into(),
                ..spec()
            };
            assert_eq!(s.validate().unwrap_err().field, "name", "{bad:?}");
        }
    }

    #[test]
    fn api_version_is_azures_and_anthropic_has_a_default_base() {
        let azure = DeploymentSpec {
            provider: Provider::Azure,
            api_version: Some("2024-10-21".into()),
            ..spec()
        };
        assert!(azure.validate().is_ok());
        let bad = DeploymentSpec {
            api_version: Some("2024 10".into()),
            ..azure.clone()
        };
        assert_eq!(bad.validate().unwrap_err().field, "api_version");
        let anthropic = DeploymentSpec {
            provider: Provider::Anthropic,
            api_base: String::new(),
            ..spec()
        };
        let d = anthropic.resolve(Path::new(".")).unwrap();
        assert_eq!(d.api_base, "https://api.anthropic.com");
        let with_version = DeploymentSpec {
            api_version: Some("2024-10-21".into()),
            ..anthropic
        };
        let e = with_version.validate().unwrap_err();
        assert_eq!(e.field, "api_version");
        assert!(e.message.contains("anthropic"), "{e}");
        let openai = DeploymentSpec {
            api_base: String::new(),
            ..spec()
        };
        let e = openai.validate().unwrap_err();
        assert!(
            e.field == "api_base" && e.message.contains("api.openai.com"),
            "{e}"
        );
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let err = serde_json::from_str::<DeploymentSpec>(
            r#"{"name":"a","api_base":"http://x","model_id":"m","tpm_limt":5}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("tpm_limt"));
    }
}
