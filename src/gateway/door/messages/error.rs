//! Errors on the Messages door, in Anthropic's shape:
//! `{"type": "error", "error": {"type": ..., "message": ...}}`, the type
//! by status, as Anthropic's SDKs and Claude Code read them. The gateway's
//! own errors and the upstreams' (OpenAI's shape or Anthropic's) are all
//! given this envelope; the message stays the upstream's own words, which
//! Claude Code matches on (a refused thinking signature, a prompt too long).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

/// Anthropic's error type for a status.
pub fn kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The message of an error body in either API's shape, or its text.
fn message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(String::from)
    });
    from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(2000)]);
        text.trim().to_string()
    })
}

pub fn body(status: StatusCode, message: &str) -> Bytes {
    let v =
        serde_json::json!({"type": "error", "error": {"type": kind(status), "message": message}});
    Bytes::from(v.to_string())
}

const X_SHOULD_RETRY: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-should-retry");

/// Tells Anthropic's SDKs not to send the same request again when it is
/// the client's to fix (`x-should-retry: false`): Claude Code otherwise
/// retries a 401 ten times over three minutes before saying the key is
/// wrong. Timeouts, conflicts, rate limits and 5xx keep their retries.
pub fn no_retry(response: &mut Response) {
    let status = response.status();
    if status.is_client_error() && !matches!(status.as_u16(), 408 | 409 | 429) {
        response
            .headers_mut()
            .insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
    }
}

/// The gateway's own error in Anthropic's envelope, with its
/// `retry-after`, or `x-should-retry: false` when it is the client's.
#[cold]
pub fn response(e: crate::gateway::error::ApiError) -> Response {
    use crate::gateway::error::ApiError;
    let message = match &e {
        // This door's clients send their key as x-api-key.
        ApiError::Unauthorized => "invalid x-api-key: send 'x-api-key: <key>' (or 'Authorization: Bearer <key>') with a key configured in server.api_keys".to_string(),
        e => e.to_string(),
    };
    let mut r = e.clone().into_response();
    *r.body_mut() = Body::from(body(e.status(), &message));
    r.headers_mut().remove(header::CONTENT_LENGTH);
    no_retry(&mut r);
    r
}

/// An upstream's error body in Anthropic's envelope, its words kept.
#[cold]
pub fn reshape_body(status: StatusCode, upstream: &[u8]) -> Bytes {
    let message = match message(upstream) {
        m if m.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        m => m,
    };
    body(status, &message)
}

/// The response with its error body in Anthropic's envelope; its status
/// and headers (`retry-after`, the gateway's own) kept.
pub async fn reshape(response: Response) -> Response {
    use http_body_util::BodyExt;
    let (mut parts, old) = response.into_parts();
    // Error bodies are small and whole (the gateway's, or an upstream's
    // read within its limit).
    let bytes = old
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = match message(&bytes) {
        m if m.is_empty() => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string(),
        m => m,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let status = parts.status;
    let mut r = Response::from_parts(parts, Body::from(body(status, &message)));
    no_retry(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn the_gateways_own_errors_come_in_anthropics_envelope_with_retry_after() {
        let e = crate::gateway::error::ApiError::RateLimited {
            message: "every deployment is at its limit".into(),
            retry_after: std::time::Duration::from_secs(7),
        };
        let r = reshape(e.into_response()).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "every deployment is at its limit");
    }

    #[test]
    fn types_follow_the_status_and_messages_are_kept() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (504, "api_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(super::kind(StatusCode::from_u16(status).unwrap()), kind);
        }
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: Invalid `signature` in `thinking` block"}}"#;
        assert!(message(anthropic).contains("Invalid `signature`"));
        assert_eq!(
            message(br#"{"error":{"message":"too long","type":"x"}}"#),
            "too long"
        );
        assert_eq!(message(b"plain words"), "plain words");
    }
}
