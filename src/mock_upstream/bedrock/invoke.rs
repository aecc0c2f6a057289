//! Bedrock's InvokeModel for Claude: `POST /model/{modelId}/invoke` and
//! `/invoke-with-response-stream` with Anthropic's Messages body
//! (`anthropic_version: "bedrock-2023-05-31"`, no `model`, no `stream`,
//! betas in `anthropic_beta` from [`BEDROCK_BETAS`] only), and
//! `POST /model/{modelId}/count-tokens` (CountTokens:
//! `{"input": {"invokeModel": {"body": <base64 of that body>}}}` or
//! `{"input": {"converse": {...}}}` → `{"inputTokens": N}`).
//!
//! The answer is Anthropic's message JSON; the stream is event-stream
//! frames, each a `chunk` event whose payload is `{"bytes": <base64 of one
//! Anthropic stream event>, "p": <padding>}`, the last `message_stop`
//! carrying `amazon-bedrock-invocationMetrics`. Authorization, forced
//! failures, throttling and the stream faults are those of Converse.
//!
//! [`BEDROCK_BETAS`]: crate::mock_upstream::anthropic::request::BEDROCK_BETAS

use std::time::Duration;

use aws_smithy_types::base64;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::super::Mode;
use super::super::anthropic::{Flavor, reply::Reply, request};
use super::super::body::MockBody;
use super::super::limits::Need;
use super::super::state::Shared;
use super::{error, eventstream, for_status};

const INPUT_TOKENS: HeaderName = HeaderName::from_static("x-amzn-bedrock-input-token-count");
const OUTPUT_TOKENS: HeaderName = HeaderName::from_static("x-amzn-bedrock-output-token-count");
const LATENCY: HeaderName = HeaderName::from_static("x-amzn-bedrock-invocation-latency");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("x-amzn-bedrock-content-type");

/// Which of the three operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Invoke,
    Stream,
    Count,
}

/// Answers one InvokeModel-family request, after the connection faults.
pub(crate) fn answer(
    shared: &Shared,
    mode: &Mode,
    op: Op,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<MockBody> {
    if let Err(r) = super::authorized(shared, path, query, headers, body) {
        return *r;
    }
    if let Mode::Fail {
        status, message, ..
    } = mode
    {
        return for_status(
            super::super::refusal::fail_status(*status),
            message.as_deref(),
        );
    }
    if op == Op::Count {
        return count(body);
    }
    let req = match request::parse(body, Flavor::Bedrock) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ValidationException", &e.message),
    };
    if shared.draw_failure() {
        return for_status(StatusCode::INTERNAL_SERVER_ERROR, None);
    }
    let model = shared.opts.model.clone().unwrap_or_else(|| model_of(path));
    let id = format!("msg_bdrk_{}", shared.completion_id(""));
    let reply = Reply::new(
        &req,
        &model,
        u64::from(shared.opts.tokens),
        shared.opts.cache_read_tokens,
        id,
    );
    let (input, output) = (reply.input_tokens, reply.output_tokens);
    let need = Need::new(input, output, Some(req.max_tokens));
    let admitted = match shared.limits.admit(need) {
        Ok(admitted) => admitted,
        Err(refused) => return super::throttled(&refused),
    };
    shared.count_tokens(input, output);
    let gap = Duration::from_millis(shared.opts.chunk_delay_ms);
    let mut response = if op == Op::Stream {
        let body = MockBody::spoiled(
            mode,
            frames(&reply, input, output),
            gap,
            || {
                vec![Bytes::from_static(
                    b"\x00\x00\x00\x20not an event stream frame......",
                )]
            },
            |exception| {
                let kind = exception.unwrap_or("modelStreamErrorException");
                eventstream::exception(kind, super::stream_message(kind))
            },
            // A well-framed chunk whose bytes are not JSON.
            |_| chunk(br#"{"type":"content_block_delta","index":0,"delta":{"te"#),
        );
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    } else {
        let mut r = Response::new(MockBody::answer(mode, reply.json()));
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(INPUT_TOKENS, HeaderValue::from(input));
        h.insert(OUTPUT_TOKENS, HeaderValue::from(output));
        h.insert(LATENCY, HeaderValue::from(12));
        r
    };
    if let Ok(v) = HeaderValue::try_from(shared.request_id()) {
        response.headers_mut().insert(super::REQUEST_ID, v);
    }
    response.body_mut().hold_settle(admitted.settle);
    response
}

/// The base model's name from `/model/{modelId}/...`: the ID without its
/// provider prefix and version suffix, as Bedrock reports it
/// (`anthropic.claude-3-5-sonnet-20240620-v1:0` → `claude-3-5-sonnet-20240620`).
fn model_of(path: &str) -> String {
    let id = path
        .strip_prefix("/model/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default();
    let id = super::sigv4::percent_decode(id);
    let id = id.rsplit('.').next().unwrap_or(&id);
    let base = id.split(':').next().unwrap_or(id);
    match base.rsplit_once("-v") {
        Some((name, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => name.into(),
        _ => base.to_string(),
    }
}

/// One Anthropic stream event as Bedrock frames it.
fn chunk(event: &[u8]) -> Bytes {
    // Bedrock pads each payload with a `p` of varying length, so that the
    // size of a frame does not tell its content.
    const PAD: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
    let pad = &PAD[..event.len() % PAD.len()];
    let payload = json!({"bytes": base64::encode(event), "p": pad}).to_string();
    eventstream::event("chunk", payload.as_bytes())
}

/// The stream: Anthropic's events without its `ping`, the last with the
/// invocation metrics.
fn frames(reply: &Reply, input: u64, output: u64) -> Vec<Bytes> {
    let mut events = reply.events();
    events.retain(|e| e["type"] != "ping");
    if let Some(last) = events.last_mut() {
        last["amazon-bedrock-invocationMetrics"] = json!({
            "inputTokenCount": input, "outputTokenCount": output,
            "invocationLatency": 12, "firstByteLatency": 5});
    }
    events
        .iter()
        .map(|e| chunk(e.to_string().as_bytes()))
        .collect()
}

/// CountTokens: the InvokeModel body (base64, as the API's blob) checked
/// as InvokeModel checks it, or a Converse input, and its estimate.
fn count(body: &[u8]) -> Response<MockBody> {
    let invalid = |message: &str| error(StatusCode::BAD_REQUEST, "ValidationException", message);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return invalid("Malformed request body: not JSON");
    };
    let input = v.get("input");
    let tokens = match (
        input.and_then(|i| i.get("invokeModel")),
        input.and_then(|i| i.get("converse")),
    ) {
        (Some(invoke), None) => {
            let Some(encoded) = invoke.get("body").and_then(Value::as_str) else {
                return invalid(
                    "1 validation error detected: Value null at 'input.invokeModel.body' failed to satisfy constraint: Member must not be null",
                );
            };
            let Ok(decoded) = base64::decode(encoded) else {
                return invalid("input.invokeModel.body: the blob is not valid base64");
            };
            match request::count(&decoded, Flavor::Bedrock) {
                Ok(n) => n,
                Err(e) => return invalid(&e.message),
            }
        }
        (None, Some(converse)) => {
            let mut converse = converse.clone();
            if let Some(o) = converse.as_object_mut() {
                o.remove("toolConfig");
                o.remove("additionalModelRequestFields");
            }
            match super::request::parse(converse.to_string().as_bytes()) {
                Ok(c) => c.prompt_tokens,
                Err(message) => return invalid(&message),
            }
        }
        _ => return invalid("input: exactly one of invokeModel or converse must be set"),
    };
    let mut r = Response::new(MockBody::full(json!({ "inputTokens": tokens }).to_string()));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_model_is_the_base_models_name() {
        assert_eq!(
            model_of("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"),
            "claude-3-5-sonnet-20240620"
        );
        assert_eq!(
            model_of("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"),
            "claude-sonnet-4-5-20250929"
        );
        assert_eq!(model_of("/model/my-model/invoke"), "my-model");
    }

    #[test]
    fn bodies_are_checked_as_bedrock_checks_them() {
        let ok = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "anthropic_beta": ["interleaved-thinking-2025-05-14"],
            "messages": [{"role": "user", "content": "hi"}]});
        assert!(request::parse(ok.to_string().as_bytes(), Flavor::Bedrock).is_ok());
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut body = ok.clone();
            change(&mut body);
            request::parse(body.to_string().as_bytes(), Flavor::Bedrock)
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused(&|b| b["anthropic_beta"] = json!(["claude-code-20250219"])),
            "invalid beta flag"
        );
        assert!(refused(&|b| b["model"] = json!("claude")).contains("extraneous key [model]"));
        assert!(refused(&|b| b["stream"] = json!(true)).contains("extraneous key [stream]"));
        assert!(
            refused(&|b| {
                b.as_object_mut().unwrap().remove("anthropic_version");
            })
            .contains("anthropic_version")
        );
        assert!(
            refused(&|b| b["anthropic_version"] = json!("vertex-2023-10-16"))
                .contains("bedrock-2023-05-31")
        );
    }

    #[test]
    fn count_tokens_reads_the_base64_body() {
        let inner = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"role": "user", "content": "count these words please"}]});
        let direct = request::count(inner.to_string().as_bytes(), Flavor::Bedrock).unwrap();
        let wrapped =
            json!({"input": {"invokeModel": {"body": base64::encode(inner.to_string())}}});
        let r = count(wrapped.to_string().as_bytes());
        assert_eq!(r.status(), StatusCode::OK);
        let raw = json!({"input": {"invokeModel": {"body": inner.to_string()}}});
        assert_eq!(
            count(raw.to_string().as_bytes()).status(),
            StatusCode::BAD_REQUEST
        );
        assert!(direct > 1);
    }
}
