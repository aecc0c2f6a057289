//! Forwarding one request: pick a deployment, call it, fail over, answer.
//!
//! The attempt loop here knows nothing of providers: each deployment's
//! [`Dialect`](super::provider::Dialect) builds its body, reads its answer
//! and says what its errors mean. A [`Flight`] keeps the books.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

pub(super) use super::attempt::{Attempted, Tokens};
use super::attempt::{ServerTimeouts, attempt, far, outcome_summary, scrubbed};
use super::door::{self, Asked};
use super::error::ApiError;
use super::flight::Flight;
use super::flight::Passback;
use super::provider::Decoder;
use super::refusal;
use super::relay::Relay;
use super::request::{self, Endpoint, Inspected};
use super::upstream::Upstream;
pub(super) use super::waiting::Waited;
use super::{Gateway, auth};
use crate::events::{AttemptOutcome, RequestOutcome};
use crate::router::{Unavailable, Verdict};

// Header names made once: inserting by `&str` validates and hashes the name
// on every request (1.8% of the gateway's instructions in a profile).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchboard-deployment");
pub(super) const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchboard-attempts");
pub(super) const X_MODEL: HeaderName = HeaderName::from_static("x-switchboard-model");
const X_DROPPED_BETAS: HeaderName = HeaderName::from_static("x-switchboard-dropped-betas");

/// The headers that name a request's session, in the order they count:
/// ours, Claude Code's, Codex's.
const SESSION_HEADERS: [&str; 3] = [
    "x-switchboard-session",
    "x-claude-code-session-id",
    "session-id",
];

/// The request's session: the first session header present, else the
/// body's `prompt_cache_key`. One pass over the headers comparing names
/// (a request has a handful) costs a fraction of three hashed lookups,
/// and every request pays it.
fn session_of(headers: &HeaderMap, req: &Inspected) -> Option<crate::router::SessionKey> {
    let mut best: Option<(usize, &HeaderValue)> = None;
    for (name, value) in headers {
        let name = name.as_str();
        // Cheap length test first: most headers are none of these.
        if !matches!(name.len(), 21 | 24 | 10) {
            continue;
        }
        if let Some(rank) = SESSION_HEADERS.iter().position(|h| *h == name)
            && best.is_none_or(|(r, _)| rank < r)
            && !value.is_empty()
        {
            best = Some((rank, value));
        }
    }
    best.map(|(_, v)| crate::router::SessionKey::of(&String::from_utf8_lossy(v.as_bytes())))
        .or(req.cache_key)
}

/// How long a deployment that answered "endpoint not offered" is tried for
/// that endpoint only when no other deployment can take the request.
const NOT_OFFERED_MEMORY: Duration = Duration::from_secs(60);

pub(super) async fn chat_completions(State(gw): State<Gateway>, request: Request) -> Response {
    handle(gw, Endpoint::ChatCompletions, request).await
}

pub(super) async fn completions(State(gw): State<Gateway>, request: Request) -> Response {
    handle(gw, Endpoint::Completions, request).await
}

pub(super) async fn embeddings(State(gw): State<Gateway>, request: Request) -> Response {
    handle(gw, Endpoint::Embeddings, request).await
}

pub(super) async fn messages(State(gw): State<Gateway>, request: Request) -> Response {
    handle(gw, Endpoint::Messages, request).await
}

pub(super) async fn responses(State(gw): State<Gateway>, request: Request) -> Response {
    handle(gw, Endpoint::Responses, request).await
}

/// `GET /v1/responses`: Codex asks for a WebSocket first when its provider
/// is OpenAI's. A 426 sends it to HTTP at once (a 404 cost it ~6 s of
/// retries); WebSocket mode itself is not offered.
pub(super) async fn responses_upgrade(headers: HeaderMap) -> Response {
    let wants_socket = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !wants_socket {
        return ApiError::MethodNotAllowed.into_response();
    }
    let body = json!({"error": {
        "message": "WebSocket mode is not offered by this gateway; use HTTP (POST /v1/responses).",
        "type": "invalid_request_error",
        "param": null,
        "code": "upgrade_required",
    }});
    (StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response()
}

pub(super) async fn models(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    if !auth::client_allowed(&headers, &gw.settings().api_keys) {
        return ApiError::Unauthorized.into_response();
    }
    let table = gw.shared.table.load();
    let data: Vec<_> = table.models.iter().map(|m| model_object(&m.name)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

fn model_object(name: &str) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": "switchboard"})
}

/// `GET /v1/models/{model}`, for SDKs' `models.retrieve` (names may hold `/`).
pub(super) async fn model(
    State(gw): State<Gateway>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if !auth::client_allowed(&headers, &gw.settings().api_keys) {
        return ApiError::Unauthorized.into_response();
    }
    match gw.shared.table.load().get(&name) {
        Some(m) => axum::Json(model_object(&m.name)).into_response(),
        None => ApiError::ModelNotFound(name).into_response(),
    }
}

/// Reads the body up to `limit` bytes; over it is a 413.
///
/// The rest of an oversized body is read and thrown away (within bounds)
/// before answering: closing a socket with unread data resets the
/// connection, and the client would see a broken pipe instead of the 413
/// (and an SDK would retry the same oversized request).
pub(super) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let unreadable = |e: axum::Error| ApiError::BadRequest {
        message: format!("could not read the request body: {e}"),
        param: None,
    };
    let mut whole = super::answer::Gathered::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        if whole.len() + data.len() > limit {
            drain(body, limit).await;
            return Err(ApiError::PayloadTooLarge { limit });
        }
        whole.push(data);
    }
    Ok(whole.into_bytes())
}

/// Discards what is left of an oversized body: at most a few times the
/// limit and for at most two seconds, so a client cannot hold us here.
async fn drain(mut body: Body, limit: usize) {
    use http_body_util::BodyExt;
    let budget = limit.saturating_mul(4).clamp(1 << 20, 256 << 20);
    let mut seen = 0usize;
    let discard = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > budget {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), discard).await;
}

/// The endpoint a POST to `path` is proxied to. The serving threads send
/// these straight to [`handle`], past the router: its matching, boxed
/// futures and body re-wrapping were 3% of the instructions of a request.
pub(super) fn endpoint_for(path: &str) -> Option<Endpoint> {
    match path {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/completions" => Some(Endpoint::Completions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        // A base URL given with `/v1` (the address the dashboard shows)
        // to a client that adds `/v1/messages` itself, as Claude Code does.
        "/v1/messages" | "/v1/v1/messages" => Some(Endpoint::Messages),
        "/v1/responses" => Some(Endpoint::Responses),
        _ => None,
    }
}

/// The gateway's own error, in the shape of the door it answers on.
pub(super) fn refuse(endpoint: Endpoint, e: ApiError) -> Response {
    match endpoint {
        Endpoint::Messages => door::messages::error::response(e),
        _ => e.into_response(),
    }
}

/// Takes the whole request rather than axum's `HeaderMap` extractor, which
/// clones every header.
pub(super) async fn handle(gw: Gateway, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let started = Instant::now();
    let settings = gw.settings();
    let allowed = match endpoint {
        Endpoint::Messages => auth::anthropic_client_allowed(&headers, &settings.api_keys),
        _ => auth::client_allowed(&headers, &settings.api_keys),
    };
    if !allowed {
        return refuse(endpoint, ApiError::Unauthorized);
    }
    let body = match read_body(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return refuse(endpoint, e),
    };
    // Boxed: the chat path carries a pointer.
    let mut kept: Option<Box<door::responses::State>> = None;
    let inspected = match endpoint {
        Endpoint::Messages => door::messages::inspect(&body),
        Endpoint::Responses => door::responses::read(&body).map(|(req, state)| {
            kept = Some(Box::new(state));
            req
        }),
        _ => request::inspect(&body, endpoint),
    };
    let req = match inspected {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::BadRequest {
                message: e.message,
                param: e.param,
            };
            return refuse(endpoint, e);
        }
    };
    let Some(route) = gw.shared.table.load().get(&req.model).cloned() else {
        return refuse(endpoint, ApiError::ModelNotFound(req.model));
    };
    let deadline = tokio::time::Instant::from_std(far(started, settings.request_timeout));
    let timeouts = ServerTimeouts::of(&settings);
    drop(settings);
    let cluster = gw.cluster().cloned();
    let mut flight = Flight::new(gw.clone(), route, endpoint, &req, started);
    if flight.route.sticky() {
        flight.session = session_of(&headers, &req);
    }
    let asked = match (endpoint, kept) {
        (Endpoint::Messages, _) => Asked::messages(req, body, &headers),
        (Endpoint::Responses, Some(state)) => Asked::responses(req, body, *state),
        _ => Asked::chat(endpoint, req, body),
    };
    let req = &asked.req;
    // A continuation goes where its state is, and nowhere else.
    let pinned = match asked.responses_state() {
        Some(state) => match door::responses::pin::place(&gw, &mut flight, state).await {
            Ok(p) => p,
            Err(refused) => return *refused,
        },
        None => None,
    };
    let origin = flight.route.clone();
    let mut place = None;
    if !origin.queue.is_empty()
        && pinned.is_none()
        && let Err(why) = Box::pin(flight.line_up(&origin, &mut place)).await
    {
        return flight.give_up(why);
    }
    loop {
        let picked = match &cluster {
            None => flight.pick(),
            // Boxed: inline, the cluster's pick would make every request's
            // future larger to move, in a cluster or not.
            Some(c) => Box::pin(flight.pick_in_cluster(c)).await,
        };
        let mut upstream = match picked {
            Ok(up) => {
                if place.is_some() {
                    flight.admitted(&mut place);
                }
                up
            }
            Err(why) => {
                if let Some(p) = &pinned {
                    return door::responses::pin::unavailable(&mut flight, p, why);
                }
                if flight.fall_back(why, deadline) {
                    continue;
                }
                // Boxed: waiting is rare, and inline it would make every
                // request's future larger to move.
                match Box::pin(flight.wait_for_room(&origin, &mut place, why)).await {
                    Waited::Again => continue,
                    Waited::No(why) => return flight.give_up(why),
                }
            }
        };
        let attempted = attempt(&gw, &flight, &upstream, &asked, deadline, timeouts).await;
        match scrubbed(attempted, &upstream) {
            Attempted::Answered {
                status,
                headers,
                body,
                usage,
            } => {
                let client_error = !status.is_success();
                let outcome = if client_error {
                    AttemptOutcome::Status {
                        status: status.as_u16(),
                    }
                } else {
                    AttemptOutcome::Ok {
                        status: status.as_u16(),
                    }
                };
                // An upstream that rejects the request (400, 422...) did not use tokens.
                let tokens = match (client_error, usage) {
                    (true, _) => Tokens::NOTHING,
                    (false, Some(u)) => Tokens::Actual(u.spent()),
                    (false, None) => Tokens::Estimate,
                };
                flight.conclude(outcome, Verdict::Answered, Some(tokens));
                let (status, headers, body, served) = if client_error {
                    // A prompt too long or a policy refusal may go to other
                    // models; anything else goes back to the client.
                    let kind = refusal::classify(status.as_u16(), &body);
                    let answer = Passback {
                        status,
                        headers,
                        body,
                        upstream: upstream.clone(),
                        model: flight.served_header().clone(),
                    };
                    match flight.divert(kind, answer, deadline) {
                        Ok(()) => continue,
                        Err(a) => {
                            let a = *a;
                            // Perhaps an earlier model's answer (see `divert`).
                            upstream = a.upstream;
                            let body = match endpoint {
                                Endpoint::Messages => {
                                    door::messages::error::reshape_body(a.status, &a.body)
                                }
                                _ => a.body,
                            };
                            (a.status, a.headers, body, Some(a.model))
                        }
                    }
                } else {
                    flight.served_by_origin();
                    if !endpoint.everywhere() {
                        upstream.mark_offered(endpoint);
                    }
                    // Other doors' native answers go as the upstream sent them.
                    let body = if flight.renames_answer()
                        && !matches!(endpoint, Endpoint::Messages | Endpoint::Responses)
                        && upstream.plan.dialect == super::provider::Dialect::OpenAi
                    {
                        super::chain::rename_model(body, &flight.origin().name)
                    } else {
                        body
                    };
                    // The model that served is the flight's: no copy of its name.
                    // Only a kept response is noted: Codex's `store: false`
                    // costs nothing here.
                    if endpoint == Endpoint::Responses
                        && asked.responses_state().is_some_and(|s| s.stored)
                        && let Some(id) = door::responses::answer::id_of(&body)
                    {
                        if gw.cluster().is_some() {
                            Box::pin(door::responses::pin::note_answer(
                                &gw, &asked, &flight, &upstream, &id,
                            ))
                            .await;
                        } else {
                            door::responses::pin::note(&gw, &asked, &flight, &upstream, &id);
                        }
                    }
                    (status, headers, body, None)
                };
                let (prompt, completion, estimated) = match usage {
                    Some(u) => (u.prompt_tokens, u.completion_tokens, false),
                    None if client_error => (0, 0, false),
                    None => (
                        req.prompt_estimate,
                        req.estimate - req.prompt_estimate,
                        true,
                    ),
                };
                let kind = if client_error {
                    RequestOutcome::ClientError
                } else {
                    RequestOutcome::Ok
                };
                let attempts = flight.attempts.len();
                flight.finish(status.as_u16(), kind, prompt, completion, estimated);
                let mut response = respond(
                    status,
                    &headers,
                    Body::from(body),
                    &upstream,
                    attempts,
                    served.as_ref().unwrap_or(flight.served_header()),
                );
                if client_error && endpoint == Endpoint::Messages {
                    door::messages::error::no_retry(&mut response);
                }
                flight.mark(&mut response);
                return response;
            }
            Attempted::Streaming {
                status,
                headers,
                first,
                rest,
                decoder,
            } => {
                flight.conclude(
                    AttemptOutcome::Ok {
                        status: status.as_u16(),
                    },
                    Verdict::Answered,
                    None,
                );
                if !endpoint.everywhere() {
                    upstream.mark_offered(endpoint);
                }
                // The upstream may stream what the gateway could not tell was
                // a stream request (`"stream": "yes"` to a lenient server).
                flight.stream = true;
                flight.served_by_origin();
                let attempts = flight.attempts.len();
                let served = flight.served_header().clone();
                if let Decoder::Responses(r) = &decoder
                    && let Some(id) = r.response_id()
                {
                    door::responses::pin::note(&gw, &asked, &flight, &upstream, id);
                }
                let marks = flight.marks();
                let relay = Relay::new(flight, first, rest, decoder, deadline);
                let mut response = respond(
                    status,
                    &headers,
                    Body::from_stream(relay),
                    &upstream,
                    attempts,
                    &served,
                );
                if let Some(marks) = marks {
                    marks.apply(&mut response);
                }
                return response;
            }
            Attempted::NotOffered {
                status,
                headers,
                body,
            } => {
                // Not this deployment's fault, and not the client's: another
                // deployment may offer the endpoint.
                tracing::debug!(model = %flight.route.name, deployment = %upstream.name, %status, endpoint = endpoint.name(), "endpoint not offered");
                upstream.mark_not_offered(endpoint, gw.now() + NOT_OFFERED_MEMORY);
                flight.not_offered.push(flight.attempts.len());
                flight.conclude(
                    AttemptOutcome::NotOffered {
                        status: status.as_u16(),
                    },
                    Verdict::NotOffered,
                    Some(Tokens::NOTHING),
                );
                flight.not_offered_answer = Some(Passback {
                    status,
                    headers,
                    body,
                    upstream,
                    model: flight.served_header().clone(),
                });
                if endpoint == Endpoint::Responses {
                    // It has no Responses API: the same deployment is asked
                    // again through its chat endpoint (the bridge).
                    flight.untry_last();
                }
                if tokio::time::Instant::now() >= deadline {
                    return flight.give_up(Unavailable::Exhausted);
                }
            }
            Attempted::Refused(error) => {
                // Never sent: this deployment's API cannot take the request
                // as it is; another one may.
                tracing::debug!(model = %flight.route.name, deployment = %upstream.name, "request refused for this provider: {error}");
                flight.withdraw(error);
            }
            Attempted::Failed {
                outcome,
                verdict,
                detail,
                tokens,
                exhausted,
            } => {
                if !exhausted.is_empty() {
                    flight.exhausted(exhausted);
                }
                if matches!(outcome, AttemptOutcome::Status { status: 401 | 403 }) {
                    // A refused key or signature is the operator's to fix: said
                    // at the default level (the cooldown keeps it to a few lines).
                    tracing::warn!(model = %flight.route.name, deployment = %upstream.name, %detail, "attempt refused by the upstream");
                } else {
                    tracing::debug!(model = %flight.route.name, deployment = %upstream.name, %detail, "attempt failed");
                }
                flight.last_failure =
                    Some(format!("{} {}", upstream.name, outcome_summary(&outcome)));
                flight.conclude(outcome, verdict, Some(tokens));
                if tokio::time::Instant::now() >= deadline {
                    return flight.give_up(Unavailable::Exhausted);
                }
            }
        }
    }
}

/// The upstream headers passed on to the client; the rest are the upstream's business.
pub(crate) struct Passed {
    pub(super) content_type: Option<HeaderValue>,
    cache_control: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    /// `x-switchboard-dropped-betas`: Anthropic betas the deployment's
    /// platform does not take, left out (boxed: rare, and this is moved).
    pub(super) dropped_betas: Option<Box<HeaderValue>>,
}

impl Passed {
    /// The headers passed on from an upstream's answer.
    pub(super) fn of(answer: &super::upstream::Response) -> Self {
        Self {
            content_type: answer.header(&header::CONTENT_TYPE),
            cache_control: answer.header(&header::CACHE_CONTROL),
            request_id: answer.header(&X_REQUEST_ID),
            dropped_betas: None,
        }
    }

    /// For a body the gateway wrote itself (a translated answer): it is
    /// JSON, whatever the upstream's said. Its request id stays.
    pub(super) fn translated(mut self, dialect: super::provider::Dialect) -> Self {
        if dialect != super::provider::Dialect::OpenAi {
            self.content_type = Some(HeaderValue::from_static("application/json"));
        }
        self
    }
}

pub(super) fn respond(
    status: StatusCode,
    passed: &Passed,
    body: Body,
    up: &Upstream,
    attempts: usize,
    model: &HeaderValue,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    // Room for every header an answer may get (these, the model's
    // `x-ratelimit-*`, a door's own) in one allocation: growing the map
    // part way costs more than all the inserts.
    h.reserve(12);
    if let Some(v) = &passed.content_type {
        h.insert(header::CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &passed.cache_control {
        h.insert(header::CACHE_CONTROL, v.clone());
    }
    if let Some(v) = &passed.request_id {
        h.insert(X_REQUEST_ID, v.clone());
    }
    if let Some(v) = &passed.dropped_betas {
        h.insert(X_DROPPED_BETAS, (**v).clone());
    }
    h.insert(X_DEPLOYMENT, up.header_name.clone());
    h.insert(X_ATTEMPTS, attempts_value(attempts));
    h.insert(X_MODEL, model.clone());
    response
}

/// `x-switchboard-attempts`: a static value for the counts requests have
/// (formatting one allocates, on every request).
pub(super) fn attempts_value(attempts: usize) -> HeaderValue {
    HeaderValue::from_static(match attempts {
        1 => "1",
        2 => "2",
        3 => "3",
        4 => "4",
        5 => "5",
        6 => "6",
        7 => "7",
        8 => "8",
        9 => "9",
        _ => return HeaderValue::from(attempts),
    })
}
