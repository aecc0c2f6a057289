//! The admin API: `/admin/*` and `/metrics`, guarded by the admin key.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::proxy::read_body;
use super::{Gateway, Peer, auth};
use crate::config::DeploymentSpec;

fn guard(gw: &Gateway, headers: &HeaderMap, peer: Option<Extension<Peer>>) -> Result<(), ApiError> {
    auth::admin_access(
        headers,
        gw.settings().admin_key.as_ref(),
        peer.map(|Extension(Peer(p))| p),
        gw.unauthenticated_allowed(),
    )
}

pub(super) async fn state(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    Ok(Json(gw.state()).into_response())
}

pub(super) async fn metrics(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    let text = gw.shared.metrics.render(&gw.statuses());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(super) async fn events(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    guard(&gw, &headers, peer)?;
    let rx = gw.events().subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(event) => serde_json::to_string(&*event).unwrap_or_default(),
            // A slow watcher is told how much it missed, then goes on.
            Err(RecvError::Lagged(n)) => format!(r#"{{"type":"lagged","missed":{n}}}"#),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().data(data)), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub(super) async fn set_enabled(
    State(gw): State<Gateway>,
    Path((model, deployment)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    body: Body,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    let body = read_body(body, 1024).await?;
    let enabled: bool = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest {
        message: "the body must be `true` or `false`".into(),
        param: None,
    })?;
    let changed = gw.set_enabled(&model, &deployment, enabled).await?;
    Ok(Json(serde_json::json!({"model": model, "deployment": deployment, "enabled": enabled, "changed": changed}))
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct AddQuery {
    #[serde(default)]
    test: Option<bool>,
}

pub(super) async fn add_deployment(
    State(gw): State<Gateway>,
    Path(model): Path<String>,
    Query(query): Query<AddQuery>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    body: Body,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    gw.route(&model)?;
    let body = read_body(body, 64 << 10).await?;
    let spec: DeploymentSpec = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        message: format!("invalid deployment: {e}"),
        param: None,
    })?;
    let added = gw
        .add_deployment(&model, spec, query.test.unwrap_or(true))
        .await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}
