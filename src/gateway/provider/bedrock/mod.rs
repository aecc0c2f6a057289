//! Amazon Bedrock's Converse API (`provider = "bedrock"`): `POST
//! {api_base}/model/{model_id}/converse`, or `/converse-stream` for a
//! stream, which answers in AWS's binary event-stream framing. Converse is
//! the one API every Bedrock chat model speaks (Claude, Llama, Mistral,
//! Nova), so one translation serves them all.
//!
//! Auth is SigV4 from the deployment's AWS keys ([`sign::Signer`], per
//! attempt), or a Bedrock API key sent as `Authorization: Bearer`.

pub mod answer;
pub mod request;
pub mod sign;
pub mod stream;

use axum::http::{HeaderMap, StatusCode};

use super::openai::path_segment;
use super::{Auth, Dialect, ErrorVerdict, Plan, Target, header, limits};
use crate::config::DeploymentConfig;

pub fn plan(config: &DeploymentConfig) -> Plan {
    let base = config.api_base.trim_end_matches('/');
    let model = path_segment(&config.model_id);
    let mut headers = vec![];
    let auth = match &config.aws {
        Some(keys) => Auth::SigV4(Box::new(sign::Signer::new(
            keys,
            config.region.as_deref().unwrap_or_default(),
        ))),
        None => {
            if let Some(key) = &config.api_key
                && let Some(h) = header("authorization", &format!("Bearer {}", key.expose()), true)
            {
                headers.push(h);
            }
            Auth::Static
        }
    };
    // Claude on Bedrock also takes Anthropic's own body (InvokeModel): the
    // Messages door's native path there.
    let claude = is_claude(&config.model_id);
    let at = |path: &str| Target::new(&format!("{base}/model/{model}/{path}"));
    Plan {
        // Chat only: Bedrock has no completions or embeddings in Converse.
        targets: [
            Some(at("converse")),
            None,
            None,
            claude.then(|| at("invoke")),
            // CountTokens takes the model, not a cross-region profile.
            claude.then(|| {
                let model = path_segment(base_model(&config.model_id));
                Target::new(&format!("{base}/model/{model}/count-tokens"))
            }),
            None,
        ],
        streaming: Some(at("converse-stream")),
        streaming_messages: claude.then(|| at("invoke-with-response-stream")),
        headers,
        dialect: Dialect::Bedrock,
        auth,
    }
}

/// Whether a Bedrock model ID names a Claude model (`anthropic.claude-…`,
/// a cross-region profile `us.anthropic.claude-…`, or an ARN naming one).
pub fn is_claude(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    id.contains("anthropic.") || id.contains("claude")
}

/// The model a cross-region inference profile (`us.anthropic.claude-…`)
/// names.
fn base_model(model_id: &str) -> &str {
    for prefix in ["us.", "eu.", "apac.", "jp.", "au.", "us-gov.", "global."] {
        if let Some(rest) = model_id.strip_prefix(prefix) {
            return rest;
        }
    }
    model_id
}

/// The exception's name: `x-amzn-ErrorType` (`ThrottlingException:http://…`),
/// else the body's `__type`, else nothing.
fn error_type(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(v) = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.split(':').next().unwrap_or(v).to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let t = v.get("__type")?.as_str()?;
    Some(t.rsplit('#').next().unwrap_or(t).to_string())
}

fn message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .map(String::from)
}

/// What a Bedrock error status means: `ThrottlingException` (429) and
/// `ModelNotReadyException` cool the deployment down; 5xx
/// (`ServiceUnavailableException`, `InternalServerException`), 408
/// `ModelTimeoutException`, 424 `ModelErrorException` and the deployment's
/// own 401/403/404 (its keys, its model access) fail over; other 4xx
/// (`ValidationException`) are the client's, in OpenAI's error shape.
pub fn error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ErrorVerdict {
    let kind = error_type(headers, body);
    let text =
        message(body).unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let text: String = match &kind {
        Some(k) => format!("{k}: {text}"),
        None => text,
    }
    .chars()
    .take(300)
    .collect();
    let code = status.as_u16();
    let throttled = matches!(
        kind.as_deref(),
        Some("ThrottlingException" | "ModelNotReadyException" | "ServiceQuotaExceededException")
    );
    match code {
        _ if code == 429 || throttled => ErrorVerdict::RateLimited {
            hint: limits::rate_limit_hint(headers),
            message: text,
        },
        401 | 403 | 404 | 408 | 424 => ErrorVerdict::Failed { message: text },
        _ if status.is_client_error() => {
            ErrorVerdict::client(&text, "invalid_request_error", kind.as_deref())
        }
        _ => ErrorVerdict::Failed { message: text },
    }
}

/// Maps Converse's `stopReason` to OpenAI's `finish_reason`.
pub fn finish(stop_reason: Option<&str>) -> super::chunk::Finish {
    use super::chunk::Finish;
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("guardrail_intervened" | "content_filtered") => Finish::ContentFilter,
        // end_turn, stop_sequence, and anything newer.
        _ => Finish::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn verdict(status: u16, kind: Option<&str>, body: &str) -> ErrorVerdict {
        let mut headers = HeaderMap::new();
        if let Some(k) = kind {
            headers.insert("x-amzn-errortype", HeaderValue::from_str(k).unwrap());
        }
        error(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn exceptions_cool_down_fail_over_or_go_back_to_the_client() {
        assert!(matches!(
            verdict(429, Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"), r#"{"message":"Too many requests, please wait before trying again."}"#),
            ErrorVerdict::RateLimited { message, .. } if message.starts_with("ThrottlingException: Too many")
        ));
        assert!(matches!(
            verdict(
                503,
                Some("ServiceUnavailableException"),
                r#"{"message":"down"}"#
            ),
            ErrorVerdict::Failed { .. }
        ));
        assert!(matches!(
            verdict(403, Some("AccessDeniedException"), "{}"),
            ErrorVerdict::Failed { .. }
        ));
        match verdict(
            400,
            Some("ValidationException"),
            r#"{"message":"messages: bad"}"#,
        ) {
            ErrorVerdict::Client { body } => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["message"], "ValidationException: messages: bad");
                assert_eq!(v["error"]["code"], "ValidationException");
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
            (Some("max_tokens"), Finish::Length),
            (Some("tool_use"), Finish::ToolCalls),
            (Some("guardrail_intervened"), Finish::ContentFilter),
            (Some("content_filtered"), Finish::ContentFilter),
            (None, Finish::Stop),
        ] {
            assert_eq!(super::finish(stop), finish, "{stop:?}");
        }
    }

    #[test]
    fn model_ids_are_one_path_segment() {
        let spec = crate::config::DeploymentSpec {
            name: "b".into(),
            provider: crate::config::Provider::Bedrock,
            region: Some("us-east-1".into()),
            api_key: Some("bedrock-api-key".into()),
            model_id: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            ..Default::default()
        };
        let config = spec.resolve(std::path::Path::new(".")).unwrap();
        let plan = plan(&config);
        assert_eq!(
            plan.target_for(crate::gateway::request::Endpoint::ChatCompletions, false)
                .unwrap()
                .url
                .to_string(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert!(
            plan.target_for(crate::gateway::request::Endpoint::ChatCompletions, true)
                .unwrap()
                .url
                .to_string()
                .ends_with("/converse-stream")
        );
        assert!(!plan.offers(crate::gateway::request::Endpoint::Embeddings));
    }
}
