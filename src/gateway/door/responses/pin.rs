//! Stateful Responses requests go where their state is: a request with
//! `previous_response_id` to the deployment that produced that response,
//! and only there. When it cannot take the request the client hears why,
//! as OpenAI answers for a response it does not have; nothing is sent to a
//! deployment that never saw the conversation.
//!
//! Who produced a response is this instance's memory, and in a cluster
//! also Redis's (see `memory`): noted in both, looked up here first.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::State;
use super::memory::Producer;
use crate::events::RequestOutcome;
use crate::gateway::Gateway;
use crate::gateway::door::Asked;
use crate::gateway::flight::Flight;
use crate::gateway::upstream::Upstream;
use crate::router::Unavailable;

/// The cluster could not be asked who produced a response: only this
/// instance's memory counted.
pub(in crate::gateway) struct Unasked;

/// Who produced response `id`: this instance's memory, then, when it is
/// not known here and the gateway is in a cluster, the cluster's (one GET).
///
/// What the cluster answers is not copied into this instance's memory: a
/// DELETE through another instance then holds here too, and a GET costs
/// less than keeping the copy true.
pub(in crate::gateway) async fn producer(
    gw: &Gateway,
    id: &str,
) -> Result<Option<Producer>, Unasked> {
    if let Some(p) = gw.shared.responses.producer(id, gw.now()) {
        return Ok(Some(p));
    }
    let Some(cluster) = gw.cluster() else {
        return Ok(None);
    };
    if !cluster.is_up() {
        tracing::debug!(
            id,
            "response id unknown here, and Redis is away: not asked of the cluster"
        );
        return Err(Unasked);
    }
    // Boxed: inline, the Redis call would make every Responses request's
    // future larger, though only those that name a response wait for it.
    match Box::pin(cluster.response_producer(id)).await {
        Ok(found) => Ok(found.map(|(model, deployment)| Producer {
            model: model.into(),
            deployment: deployment.into(),
        })),
        Err(e) => {
            tracing::debug!(
                id,
                "response id unknown here, and the cluster could not be asked: {e}"
            );
            Err(Unasked)
        }
    }
}

/// Forgets response `id` here and in the cluster.
pub(in crate::gateway) fn forget(gw: &Gateway, id: &str) {
    gw.shared.responses.forget(id);
    if let Some(cluster) = gw.cluster() {
        cluster.forget_response(id);
    }
}

/// The producer a continuation is held to, if the gateway knows it; a
/// response it never produced (or has forgotten, or cannot ask the cluster
/// about while Redis is away) is routed freely, and the upstream answers
/// for itself.
pub(in crate::gateway) async fn place(
    gw: &Gateway,
    flight: &mut Flight,
    state: &State,
) -> Result<Option<Box<(String, Producer)>>, Box<Response>> {
    let Some(id) = state.previous.as_deref() else {
        return Ok(None);
    };
    let Ok(Some(producer)) = producer(gw, id).await else {
        return Ok(None);
    };
    if producer.model != flight.route.name {
        return Ok(None);
    }
    if !flight.only(&producer.deployment) {
        let why = format!(
            "the deployment `{}` that produced it is no longer configured",
            producer.deployment
        );
        return Err(Box::new(refuse(flight, id, &why)));
    }
    // Boxed: the request's future carries it across every await.
    Ok(Some(Box::new((id.to_string(), producer))))
}

/// The producer cannot take the request: OpenAI's answer for a response it
/// does not have, saying why.
pub(in crate::gateway) fn unavailable(
    flight: &mut Flight,
    pinned: &(String, Producer),
    why: Unavailable,
) -> Response {
    let (id, producer) = pinned;
    let state = match (why, flight.last_failure.as_deref()) {
        (_, Some(failure)) => format!("failed: {failure}"),
        (Unavailable::NoneEnabled, _) => "is disabled".to_string(),
        (Unavailable::Exhausted, _) if disabled(flight, &producer.deployment) => {
            "is disabled".to_string()
        }
        (Unavailable::RateLimited { retry_after }, _) => format!(
            "is rate limited for {:.0}s more",
            retry_after.as_secs_f64().ceil()
        ),
        (Unavailable::Failing { .. }, _) => "is cooling down after failures".to_string(),
        (Unavailable::Exhausted, _) => "could not take it".to_string(),
    };
    let why = format!(
        "the deployment `{}` that produced it {state}, and the conversation's state is there only",
        producer.deployment
    );
    refuse(flight, id, &why)
}

/// Whether deployment `name` is disabled. With the others set aside and
/// still enabled, a disabled producer leaves the pick nothing to try
/// (`Exhausted`, not `NoneEnabled`).
fn disabled(flight: &Flight, name: &str) -> bool {
    let now = flight.gw.now();
    let mut state = flight.route.lock();
    let Some(i) = state.upstreams.iter().position(|u| &*u.name == name) else {
        return false;
    };
    state.pool.status(i, now).state == crate::router::State::Disabled
}

fn refuse(flight: &mut Flight, id: &str, why: &str) -> Response {
    flight.finish(400, RequestOutcome::Failed, 0, 0, false);
    let body = json!({"error": {
        "message": format!("Previous response with id '{id}' cannot be continued here: {why}."),
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Notes who produced a whole answer, when the upstream keeps it: in a
/// cluster, in Redis before the answer goes (see
/// `Cluster::remember_response_now`).
pub(in crate::gateway) async fn note_answer(
    gw: &Gateway,
    asked: &Asked,
    flight: &Flight,
    up: &Arc<Upstream>,
    id: &str,
) {
    if let Some(cluster) = gw.cluster()
        && asked.responses_state().is_some_and(|s| s.stored)
    {
        cluster
            .remember_response_now(
                id,
                &flight.route.name,
                &up.name,
                super::memory::TTL,
                super::memory::CAPACITY,
            )
            .await;
        note_here(gw, flight, up, id);
        return;
    }
    note(gw, asked, flight, up, id);
}

/// Notes that `up` produced response `id`, when the request asked the
/// upstream to keep it.
pub(in crate::gateway) fn note(
    gw: &Gateway,
    asked: &Asked,
    flight: &Flight,
    up: &Arc<Upstream>,
    id: &str,
) {
    if asked.responses_state().is_some_and(|s| s.stored) {
        if let Some(cluster) = gw.cluster() {
            cluster.remember_response(
                id,
                &flight.route.name,
                &up.name,
                super::memory::TTL,
                super::memory::CAPACITY,
            );
        }
        note_here(gw, flight, up, id);
    }
}

/// Notes it in this instance's memory.
fn note_here(gw: &Gateway, flight: &Flight, up: &Arc<Upstream>, id: &str) {
    let producer = Producer {
        model: flight.route.name.clone(),
        deployment: up.name.clone(),
    };
    gw.shared.responses.note(id, producer, gw.now());
}
