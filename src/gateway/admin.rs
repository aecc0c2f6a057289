//! The admin API: `/admin/*` and `/metrics`, guarded by the admin key.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::error::ApiError;
use super::proxy::read_body;
use super::{Gateway, Peer, auth};
use crate::config::DeploymentSpec;
use crate::events::{Event, LaggedEvent, Published, Watching, unix_ms};

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
    Ok(Json(gw.current_state().await).into_response())
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

/// `/admin/events`: one `data:` line of JSON per routing event, each with
/// `id: <gateway start>.<event number>`. A watcher that reconnects with
/// `Last-Event-ID` first gets a `lagged` event saying how many it missed
/// (or that the gateway restarted). Events that are waiting go out in one
/// write, and a comment every few seconds keeps the connection (and any
/// proxy in between) from going idle.
pub(super) async fn events(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    let rx = gw.events().subscribe();
    let boot = gw.shared.started_ms;
    let now = gw.events().last_seq();
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.trim().split_once('.'))
        .and_then(|(b, s)| Some((b.parse::<u64>().ok()?, s.parse::<u64>().ok()?)));
    let mut stream = EventStream {
        rx,
        stopping: gw.shared.stopping.clone(),
        boot,
        // Where the stream starts: the events up to here are not sent (those
        // of a resumed stream are counted as missed instead, even the few
        // the subscription caught, so the count is exact).
        skip_to: now,
        first: None,
        started: false,
        _watching: gw.events().watch(),
    };
    if let Some((their_boot, seen)) = resumed {
        stream.first = if their_boot != boot {
            Some(LaggedEvent {
                at_ms: unix_ms(),
                missed: None,
                note: Some("the gateway restarted".into()),
            })
        } else if now > seen {
            Some(LaggedEvent {
                at_ms: unix_ms(),
                missed: Some(now - seen),
                note: None,
            })
        } else {
            None
        };
    }
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), s))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // nginx in front: pass each event on at once.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// How often a quiet event stream says it is still there.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
/// The most events in one write.
const EVENTS_PER_WRITE: usize = 256;

struct EventStream {
    rx: tokio::sync::broadcast::Receiver<Published>,
    stopping: tokio_util::sync::CancellationToken,
    boot: u64,
    skip_to: u64,
    first: Option<LaggedEvent>,
    /// The position has been sent.
    started: bool,
    /// Counted as a watcher: in a cluster, the others' events come too.
    _watching: Watching,
}

impl EventStream {
    /// The next bytes to send: the events waiting, or a keep-alive.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        use std::io::Write;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            // The position first, as an id alone: a watcher that reconnects
            // before any event came can still say where it was.
            let _ = writeln!(out, "id: {}.{}\n", self.boot, self.skip_to);
            if let Some(lagged) = self.first.take() {
                frame(&mut out, None, &Event::Lagged(lagged));
            }
            return Some(Bytes::from(out));
        }
        let mut count = 0;
        if out.is_empty() {
            let first = tokio::select! {
                _ = self.stopping.cancelled() => return None,
                r = self.rx.recv() => r,
                _ = tokio::time::sleep(KEEP_ALIVE) => return Some(Bytes::from_static(b": keep-alive\n\n")),
            };
            count += self.add(&mut out, first)?;
        }
        while count < EVENTS_PER_WRITE {
            match self.rx.try_recv() {
                Ok(p) => count += self.add(&mut out, Ok(p))?,
                Err(TryRecvError::Lagged(n)) => {
                    count += self.add(&mut out, Err(RecvError::Lagged(n)))?
                }
                Err(_) => break,
            }
        }
        Some(Bytes::from(out))
    }

    /// Writes one received event; None when the bus is gone.
    fn add(&self, out: &mut Vec<u8>, r: Result<Published, RecvError>) -> Option<usize> {
        match r {
            Ok(p) if p.seq <= self.skip_to => Some(0),
            Ok(p) => {
                frame(out, Some((self.boot, p.seq)), &p.event);
                Some(1)
            }
            // A slow watcher is told how much it missed, then goes on.
            Err(RecvError::Lagged(n)) => {
                let lagged = LaggedEvent {
                    at_ms: unix_ms(),
                    missed: Some(n),
                    note: Some("the watcher fell behind".into()),
                };
                frame(out, None, &Event::Lagged(lagged));
                Some(1)
            }
            Err(RecvError::Closed) => None,
        }
    }
}

fn frame(out: &mut Vec<u8>, id: Option<(u64, u64)>, event: &Event) {
    use std::io::Write;
    if let Some((boot, seq)) = id {
        let _ = writeln!(out, "id: {boot}.{seq}");
    }
    out.extend_from_slice(b"data: ");
    // Serialising our own event types cannot fail.
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
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
    /// Only the test the add would make; nothing is saved.
    #[serde(default)]
    dry_run: Option<bool>,
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
    if query.dry_run.unwrap_or(false) {
        let report = gw.try_deployment(&model, &spec).await?;
        return Ok(Json(report.answer()).into_response());
    }
    let added = gw
        .add_deployment(&model, spec, query.test.unwrap_or(true))
        .await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

/// `POST /admin/models/{model}/deployments/{deployment}/test`: one minimal
/// request through it; 200 with the outcome either way.
pub(super) async fn test(
    State(gw): State<Gateway>,
    Path((model, deployment)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Result<Response, ApiError> {
    guard(&gw, &headers, peer)?;
    let report = gw.test_existing(&model, &deployment).await?;
    Ok(Json(report.answer()).into_response())
}
