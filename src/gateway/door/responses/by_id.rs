//! `GET` / `DELETE /v1/responses/{id}`, `GET …/{id}/input_items`, `POST
//! …/{id}/cancel`: asked of the deployment that produced the response,
//! and of no other. A response the gateway does not know, or whose
//! producer cannot be asked now, gets OpenAI's 404 saying why. In a
//! cluster the producer may be known to another instance only: then Redis
//! says who it is (see `memory`).

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::gateway::error::ApiError;
use crate::gateway::request::Endpoint;
use crate::gateway::{Gateway, auth};

/// How long the producer has to answer.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn not_found(id: &str, why: &str) -> Response {
    let body = json!({"error": {
        "message": format!("No response with id '{id}' found: {why}."),
        "type": "invalid_request_error",
        "param": null,
        "code": null,
    }});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

pub(in crate::gateway) async fn response(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    ask(gw, id, "", request).await
}

pub(in crate::gateway) async fn input_items(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    ask(gw, id, "/input_items", request).await
}

pub(in crate::gateway) async fn cancel(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    ask(gw, id, "/cancel", request).await
}

async fn ask(gw: Gateway, id: String, suffix: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let settings = gw.settings();
    if !auth::client_allowed(&parts.headers, &settings.api_keys) {
        return ApiError::Unauthorized.into_response();
    }
    let body = match crate::gateway::proxy::read_body(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    drop(settings);
    let producer = match super::pin::producer(&gw, &id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let by = if gw.cluster().is_some() {
                ", by the whole cluster"
            } else {
                ""
            };
            let why = format!(
                "this gateway did not produce it (or has forgotten it: the newest {} responses are remembered for {} hours{by})",
                super::memory::CAPACITY,
                super::memory::TTL.as_secs() / 3600,
            );
            return not_found(&id, &why);
        }
        Err(super::pin::Unasked) => {
            return not_found(
                &id,
                "this instance did not produce it, and Redis, where the cluster remembers which deployment did, cannot be reached now",
            );
        }
    };
    let Some(route) = gw.shared.table.load().get(&producer.model).cloned() else {
        return not_found(
            &id,
            &format!("its model `{}` is no longer configured", producer.model),
        );
    };
    let up = {
        let now = gw.now();
        let mut guard = route.lock();
        let state = &mut *guard;
        let Some(i) = state
            .upstreams
            .iter()
            .position(|u| u.name == producer.deployment)
        else {
            drop(guard);
            return not_found(
                &id,
                &format!(
                    "the deployment `{}` that produced it is no longer configured",
                    producer.deployment
                ),
            );
        };
        let status = state.pool.status(i, now);
        if status.state != crate::router::State::Healthy {
            drop(guard);
            let why = match status.state {
                crate::router::State::Disabled => "is disabled".to_string(),
                _ => format!(
                    "is cooling down for {:.0}s more",
                    status.cooldown_remaining_s.ceil()
                ),
            };
            return not_found(
                &id,
                &format!(
                    "the deployment `{}` that produced it {why}, and it is kept there only",
                    producer.deployment
                ),
            );
        }
        state.upstreams[i].clone()
    };
    let Some(target) = up.plan.target(Endpoint::Responses) else {
        return not_found(&id, "its deployment has no Responses API");
    };
    // `{…}/responses/{id}{suffix}`, before the target's own query (Azure's
    // api-version), then the client's.
    let url = target.url.to_string();
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    let id_segment = crate::gateway::provider::openai::path_segment(&id);
    let mut full = format!("{base}/{id_segment}{suffix}");
    let client_query = parts.uri.query().unwrap_or_default();
    let joined: Vec<&str> = [query, client_query]
        .into_iter()
        .filter(|q| !q.is_empty())
        .collect();
    if !joined.is_empty() {
        full.push('?');
        full.push_str(&joined.join("&"));
    }
    let method = parts.method.clone();
    let sent = tokio::time::timeout(
        WAIT,
        up.about_response(gw.client(), method.clone(), &full, body),
    )
    .await;
    let Ok(Ok(answer)) = sent else {
        return not_found(
            &id,
            &format!(
                "the deployment `{}` that produced it did not answer",
                producer.deployment
            ),
        );
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    use http_body_util::BodyExt;
    let bytes: Bytes = http_body_util::Limited::new(answer.into_body(), 64 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if method == Method::DELETE && status.is_success() {
        super::pin::forget(&gw, &id);
    }
    let mut r = Response::new(Body::from(up.scrub_bytes(bytes)));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r.headers_mut().insert(
        axum::http::HeaderName::from_static("x-switchboard-deployment"),
        up.header_name.clone(),
    );
    r
}
