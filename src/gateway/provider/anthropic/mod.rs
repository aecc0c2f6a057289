//! Anthropic's Messages API (`provider = "anthropic"`): `POST
//! {api_base}/v1/messages` with `x-api-key` and `anthropic-version`, the
//! request and the answer translated both ways. Claude on Vertex AI speaks
//! the same messages format, so these translators serve it too.

pub mod answer;
pub mod request;
pub mod stream;

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{Dialect, ErrorVerdict, Plan, Target, header, limits};
use crate::config::DeploymentConfig;

/// The API version this translation is written against.
pub const VERSION: &str = "2023-06-01";

pub fn plan(config: &DeploymentConfig) -> Plan {
    let base = config.api_base.trim_end_matches('/');
    let mut headers = vec![];
    if let Some(key) = &config.api_key
        && let Some(h) = header("x-api-key", key.expose(), true)
    {
        headers.push(h);
    }
    headers.extend(header("anthropic-version", VERSION, false));
    let messages = Target::new(&format!("{base}/v1/messages"));
    Plan {
        // Messages only: completions and embeddings go to other deployments.
        targets: [
            Some(messages.clone()),
            None,
            None,
            Some(messages),
            Some(Target::new(&format!("{base}/v1/messages/count_tokens"))),
            None,
        ],
        headers,
        dialect: Dialect::Anthropic,
        streaming: None,
        streaming_messages: None,
        auth: super::Auth::Static,
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Anthropic's error `type` and `message`, when the body is its error shape.
fn detail(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.kind, b.error.message),
        Err(_) => (None, None),
    }
}

/// Anthropic's error types that mean "not now" rather than "broken": the
/// deployment cools down as for a 429 instead of counting a failure.
pub fn is_rate_limit(kind: &str) -> bool {
    matches!(kind, "overloaded_error" | "rate_limit_error")
}

/// What an Anthropic error status means: 429 and 529 `overloaded_error`
/// cool the deployment down (for `retry-after` or the
/// `anthropic-ratelimit-*-reset` times when given); 5xx, 408 and the
/// deployment's own 401/403/404 fail over; other 4xx are the client's and
/// go back in OpenAI's error shape.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ErrorVerdict {
    let (kind, message) = detail(body);
    let text = message.clone().unwrap_or_else(|| {
        let raw = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string();
        if raw.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            raw
        }
    });
    let text: String = text.chars().take(300).collect();
    let code = status.as_u16();
    // An overload is the provider's capacity, not this deployment's fault:
    // counted as a failure, a deployment stayed in rotation at 1/3 strength
    // while every request to it bounced.
    if matches!(code, 429 | 529) || kind.as_deref().is_some_and(is_rate_limit) {
        return ErrorVerdict::RateLimited {
            hint: limits::rate_limit_hint(headers),
            message: text,
        };
    }
    match code {
        401 | 403 | 404 | 408 => ErrorVerdict::Failed { message: text },
        _ if status.is_server_error() => ErrorVerdict::Failed { message: text },
        _ if status.is_client_error() => ErrorVerdict::client(
            &text,
            kind.as_deref().unwrap_or("invalid_request_error"),
            None,
        ),
        _ => ErrorVerdict::Failed { message: text },
    }
}

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`.
pub fn finish(stop_reason: Option<&str>) -> super::chunk::Finish {
    use super::chunk::Finish;
    match stop_reason {
        Some("max_tokens") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("refusal") => Finish::ContentFilter,
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => Finish::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: u16, body: &str) -> ErrorVerdict {
        error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn errors_fail_over_cool_down_or_go_back_in_openais_shape() {
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(
            matches!(verdict(529, overloaded), ErrorVerdict::RateLimited { message, hint: None } if message == "Overloaded")
        );
        // However it comes: the error type says what it is.
        assert!(matches!(
            verdict(503, overloaded),
            ErrorVerdict::RateLimited { .. }
        ));
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert!(matches!(
            error(StatusCode::from_u16(529).unwrap(), &headers, overloaded.as_bytes()),
            ErrorVerdict::RateLimited { hint: Some(h), .. } if h.as_secs() == 7
        ));
        assert!(matches!(
            verdict(
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#
            ),
            ErrorVerdict::Failed { .. }
        ));
        assert!(matches!(
            verdict(
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            ),
            ErrorVerdict::RateLimited { .. }
        ));
        assert!(matches!(verdict(401, "{}"), ErrorVerdict::Failed { .. }));
        match verdict(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#,
        ) {
            ErrorVerdict::Client { body } => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["message"], "max_tokens: too big");
                assert_eq!(v["error"]["type"], "invalid_request_error");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        use super::super::chunk::Finish;
        for (stop, finish) in [
            (Some("end_turn"), Finish::Stop),
            (Some("stop_sequence"), Finish::Stop),
            (Some("pause_turn"), Finish::Stop),
            (Some("max_tokens"), Finish::Length),
            (Some("tool_use"), Finish::ToolCalls),
            (Some("refusal"), Finish::ContentFilter),
            (None, Finish::Stop),
        ] {
            assert_eq!(super::finish(stop), finish, "{stop:?}");
        }
    }
}
