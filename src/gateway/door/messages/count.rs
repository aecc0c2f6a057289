//! `POST /v1/messages/count_tokens`: asked of a deployment that can count
//! (`anthropic`; Claude on `vertex` through count-tokens rawPredict; Claude
//! on `bedrock` through CountTokens), in turn, skipping those disabled or
//! cooling down; when none can, an estimate from the body's size, marked
//! `x-switchboard-estimate: true`.
//!
//! Counting spends no tokens: it is neither counted in the windows nor
//! shown as traffic (Claude Code's `/context` sends a dozen at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

use super::native::{Betas, Platform};
use crate::gateway::error::ApiError;
use crate::gateway::provider::{Dialect, ErrorVerdict};
use crate::gateway::request::{Endpoint, Inspected};
use crate::gateway::upstream::Upstream;
use crate::gateway::{Gateway, auth};

const X_ESTIMATE: HeaderName = HeaderName::from_static("x-switchboard-estimate");

/// Where the next count starts, so counts spread over the deployments.
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub(in crate::gateway) async fn handle(State(gw): State<Gateway>, request: Request) -> Response {
    let response = count(gw, request).await;
    if response.status().is_success() {
        response
    } else {
        super::error::reshape(response).await
    }
}

async fn count(gw: Gateway, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let settings = gw.settings();
    if !auth::anthropic_client_allowed(&parts.headers, &settings.api_keys) {
        return super::error::response(ApiError::Unauthorized);
    }
    let timeout = settings.first_byte_timeout;
    let body = match crate::gateway::proxy::read_body(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    drop(settings);
    let req = match super::inspect(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::BadRequest {
                message: e.message,
                param: e.param,
            }
            .into_response();
        }
    };
    let Some(route) = gw.shared.table.load().get(&req.model).cloned() else {
        return ApiError::ModelNotFound(req.model).into_response();
    };
    let counters: Vec<Arc<Upstream>> = {
        let now = gw.now();
        let mut guard = route.lock();
        let state = &mut *guard;
        let live: Vec<usize> = state.pool.live().collect();
        live.into_iter()
            .filter(|&i| state.upstreams[i].plan.offers(Endpoint::CountTokens))
            .filter(|&i| state.pool.status(i, now).state == crate::router::State::Healthy)
            .map(|i| state.upstreams[i].clone())
            .collect()
    };
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    for k in 0..counters.len() {
        let up = &counters[(start + k) % counters.len()];
        let platform = Platform::of(up.plan.dialect);
        let betas = Betas::filter(parts.headers.get("anthropic-beta"), platform);
        let payload = body_for(platform, &req, &body, up, &betas);
        let extra = super::native::headers(platform, &parts.headers, &betas);
        let sent = tokio::time::timeout(
            timeout,
            up.request(gw.client(), Endpoint::CountTokens, false, payload, &extra),
        )
        .await;
        let Ok(Ok(response)) = sent else {
            tracing::debug!(deployment = %up.name, "count_tokens: no answer");
            continue;
        };
        let status = response.status();
        let headers = response.headers().clone();
        let answer = match tokio::time::timeout(timeout, read(response)).await {
            Ok(Some(b)) => b,
            _ => continue,
        };
        if status.is_success() {
            match counted(up.plan.dialect, &answer) {
                Some(n) => return answer_with(n, Some(up), false),
                None => continue,
            }
        }
        match up
            .plan
            .dialect
            .error(Endpoint::CountTokens, status, &headers, &answer)
        {
            // The client's mistake, said by the deployment: the same
            // request would fail everywhere.
            ErrorVerdict::Client { body } => {
                let mut r = Response::new(Body::from(up.scrub_bytes(body)));
                *r.status_mut() = status;
                return r;
            }
            _ => tracing::debug!(deployment = %up.name, %status, "count_tokens: refused"),
        }
    }
    answer_with(req.prompt_estimate, None, true)
}

async fn read(response: crate::gateway::upstream::Response) -> Option<Bytes> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(response.into_body(), 1 << 20);
    body.collect().await.ok().map(|b| b.to_bytes())
}

fn answer_with(tokens: u64, up: Option<&Arc<Upstream>>, estimate: bool) -> Response {
    let mut r = axum::Json(serde_json::json!({ "input_tokens": tokens })).into_response();
    let h = r.headers_mut();
    if estimate {
        h.insert(X_ESTIMATE, HeaderValue::from_static("true"));
    }
    if let Some(up) = up {
        h.insert(
            HeaderName::from_static("x-switchboard-deployment"),
            up.header_name.clone(),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct Counted {
    #[serde(default)]
    input_tokens: Option<u64>,
    /// Bedrock's CountTokens.
    #[serde(default, rename = "inputTokens")]
    input_tokens_aws: Option<u64>,
}

fn counted(dialect: Dialect, body: &[u8]) -> Option<u64> {
    let c: Counted = serde_json::from_slice(body).ok()?;
    match dialect {
        Dialect::Bedrock => c.input_tokens_aws.or(c.input_tokens),
        _ => c.input_tokens,
    }
}

/// The count request for a platform: Anthropic's body with the model
/// replaced; Vertex's with the model kept in it and its version added;
/// Bedrock's the InvokeModel body (which must have a `max_tokens`),
/// base64 in `{"input": {"invokeModel": {"body": …}}}`.
fn body_for(
    platform: Platform,
    req: &Inspected,
    body: &Bytes,
    up: &Upstream,
    betas: &Betas,
) -> Bytes {
    match platform {
        Platform::Anthropic => req.rewrite(body, &up.model_json),
        Platform::Vertex => {
            let native = super::native::body(platform, req, body, &up.model_json, betas);
            let mut out = BytesMut::with_capacity(native.len() + up.model_json.len() + 10);
            out.put_slice(b"{\"model\":");
            out.put_slice(&up.model_json);
            out.put_u8(b',');
            out.put_slice(&native[1..]);
            out.freeze()
        }
        Platform::Bedrock => {
            let native = super::native::body(platform, req, body, &up.model_json, betas);
            let mut has_max = false;
            let _ = crate::gateway::json::object_members(&native, |key, _| {
                has_max |= key == b"max_tokens";
                Ok(())
            });
            let invoke = if !has_max {
                let mut with = b"{\"max_tokens\":1,".to_vec();
                with.extend_from_slice(&native[1..]);
                Bytes::from(with)
            } else {
                native
            };
            let wrapped = serde_json::json!({"input": {"invokeModel": {
                "body": aws_smithy_types::base64::encode(&invoke),
            }}});
            Bytes::from(wrapped.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_in_each_platforms_shape() {
        assert_eq!(
            counted(Dialect::Anthropic, br#"{"input_tokens":42}"#),
            Some(42)
        );
        assert_eq!(
            counted(Dialect::Bedrock, br#"{"inputTokens":42}"#),
            Some(42)
        );
        assert_eq!(counted(Dialect::VertexClaude, b"{}"), None);
        assert_eq!(counted(Dialect::Anthropic, b"oops"), None);
    }
}
