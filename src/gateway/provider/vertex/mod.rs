//! Google Vertex AI (`provider = "vertex"`): Claude models (`model_id`
//! starting `claude`) through `:rawPredict` / `:streamRawPredict` with
//! Anthropic's Messages format (the version in the body, no `model`);
//! other models (Gemini, Llama, …) through Vertex's OpenAI-compatible
//! endpoint, bodies passed through. Auth is an OAuth access token from the
//! deployment's service-account file ([`token::TokenSource`]).

pub mod token;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};

use super::openai::path_segment;
use super::{Auth, Dialect, ErrorVerdict, Plan, Target, limits};
use crate::config::DeploymentConfig;

/// The Messages API version Vertex takes, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub fn is_claude(model_id: &str) -> bool {
    model_id.starts_with("claude")
}

pub fn plan(config: &DeploymentConfig) -> Plan {
    let base = config.api_base.trim_end_matches('/');
    let project = path_segment(config.project.as_deref().unwrap_or_default());
    let region = path_segment(config.region.as_deref().unwrap_or_default());
    let root = format!("{base}/v1/projects/{project}/locations/{region}");
    let auth = match &config.credentials {
        Some(account) => Auth::Google(shared_source(account)),
        None => Auth::Static,
    };
    if is_claude(&config.model_id) {
        // Vertex names Claude versions with `@` (claude-sonnet-4-5@20250929): kept as written.
        let model = config.model_id.replace(['/', '?', '#', ' '], "");
        let publisher = format!("{root}/publishers/anthropic/models");
        let model = format!("{publisher}/{model}");
        let raw = Target::new(&format!("{model}:rawPredict"));
        let stream = Target::new(&format!("{model}:streamRawPredict"));
        Plan {
            targets: [
                Some(raw.clone()),
                None,
                None,
                Some(raw),
                Some(Target::new(&format!("{publisher}/count-tokens:rawPredict"))),
                None,
            ],
            streaming: Some(stream.clone()),
            streaming_messages: Some(stream),
            headers: vec![],
            dialect: Dialect::VertexClaude,
            auth,
        }
    } else {
        Plan {
            targets: [
                Some(Target::new(&format!(
                    "{root}/endpoints/openapi/chat/completions"
                ))),
                None,
                None,
                None,
                None,
                None,
            ],
            streaming: None,
            streaming_messages: None,
            headers: vec![],
            dialect: Dialect::OpenAi,
            auth,
        }
    }
}

/// Deployments with the same service account share one token source, so
/// the token endpoint sees one refresh per account, not per deployment.
fn shared_source(account: &Arc<crate::config::ServiceAccount>) -> Arc<token::TokenSource> {
    // The key's fingerprint too: an edited file must not get the old key's tokens.
    type Key = (std::path::PathBuf, String, String, Vec<u8>);
    static SOURCES: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<Key, std::sync::Weak<token::TokenSource>>>,
    > = std::sync::LazyLock::new(Default::default);
    let fingerprint = {
        use secrecy::ExposeSecret;
        ring::digest::digest(
            &ring::digest::SHA256,
            account.private_key.expose_secret().as_bytes(),
        )
        .as_ref()
        .to_vec()
    };
    let key = (
        account.path.clone(),
        account.client_email.clone(),
        account.token_uri.clone(),
        fingerprint,
    );
    let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
    sources.retain(|_, s| s.strong_count() > 0);
    if let Some(source) = sources.get(&key).and_then(std::sync::Weak::upgrade) {
        return source;
    }
    let source = Arc::new(token::TokenSource::system(account.clone()));
    sources.insert(key, Arc::downgrade(&source));
    source
}

/// A Google API error: `{"error": {"code", "message", "status"}}`.
fn google_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    // Claude on Vertex may answer in Anthropic's own error shape.
    let status = e
        .get("status")
        .or_else(|| e.get("type"))
        .and_then(|s| s.as_str())
        .map(String::from);
    let message = e.get("message")?.as_str()?.to_string();
    Some((status, message))
}

/// What a Vertex error means: 429 / `RESOURCE_EXHAUSTED` (quota) and 529
/// `overloaded_error` cool the deployment down as Anthropic's do; 401/403/404
/// (the service account's rights, the model's availability in the region)
/// and 5xx fail over; other 4xx are the client's.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ErrorVerdict {
    let (kind, message) = google_error(body).unwrap_or_else(|| {
        (
            None,
            String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_string(),
        )
    });
    let text: String = match &kind {
        Some(k) => format!("{k}: {message}"),
        None if message.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        None => message,
    }
    .chars()
    .take(300)
    .collect();
    let code = status.as_u16();
    let overloaded = kind.as_deref().is_some_and(super::anthropic::is_rate_limit);
    if matches!(code, 429 | 529) || overloaded || kind.as_deref() == Some("RESOURCE_EXHAUSTED") {
        return ErrorVerdict::RateLimited {
            hint: limits::rate_limit_hint(headers),
            message: text,
        };
    }
    match code {
        401 | 403 | 404 | 408 => ErrorVerdict::Failed { message: text },
        _ if status.is_client_error() => {
            ErrorVerdict::client(&text, "invalid_request_error", kind.as_deref())
        }
        _ => ErrorVerdict::Failed { message: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_cools_down_and_the_rest_fails_over_or_goes_back() {
        let v = |status: u16, body: &str| {
            error(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                body.as_bytes(),
            )
        };
        assert!(matches!(
            v(429, r#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}"#),
            ErrorVerdict::RateLimited { message, .. } if message.starts_with("RESOURCE_EXHAUSTED: Quota")
        ));
        assert!(matches!(
            v(
                403,
                r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#
            ),
            ErrorVerdict::Failed { .. }
        ));
        assert!(matches!(
            v(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            ErrorVerdict::RateLimited { .. }
        ));
        assert!(matches!(
            v(
                400,
                r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#
            ),
            ErrorVerdict::Client { .. }
        ));
    }
}
