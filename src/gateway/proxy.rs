//! Forwarding one request: pick a deployment, call it, fail over, answer.
//!
//! A [`Flight`] follows the request from arrival to its last byte. It is the one
//! place that tells the router core how each attempt went, corrects the token
//! count, and publishes the request's event, including when the client goes
//! away halfway (its `Drop` does the bookkeeping then), so no request and no
//! token goes unaccounted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::json;
use super::relay::{ByteStream, Relay};
use super::request::{self, Endpoint, Inspected};
use super::sse::{SseScanner, Usage};
use super::upstream::{Response as UpResponse, Upstream, rate_limit_hint};
use super::{Gateway, ModelRoute, auth};
use crate::events::{self, AttemptOutcome, Event, RequestEvent, RequestOutcome};
use crate::router::{Reservation, Unavailable, Verdict};

// Header names made once: inserting by `&str` validates and hashes the name
// on every request (1.8% of the gateway's instructions in a profile).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchboard-deployment");
const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchboard-attempts");

/// The largest answer read into memory from an upstream (non-streaming).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How much of an upstream's error body is kept for messages.
const MAX_ERROR_BYTES: usize = 64 << 10;
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

/// `at + d`, or a year from `at` when the sum would overflow (a timeout of
/// 1e19 seconds passes validation and means "never").
fn far(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
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
    let mut whole = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        if whole.len() + first.as_ref().map_or(0, Bytes::len) + data.len() > limit {
            drain(body, limit).await;
            return Err(ApiError::PayloadTooLarge { limit });
        }
        // Most bodies arrive in one frame: keep it as is, copy only when a
        // second one comes.
        match first.take() {
            None if whole.is_empty() => first = Some(data),
            Some(f) => {
                whole.extend_from_slice(&f);
                whole.extend_from_slice(&data);
            }
            None => whole.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| whole.freeze()))
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
        _ => None,
    }
}

/// Takes the whole request rather than axum's `HeaderMap` extractor, which
/// clones every header.
pub(super) async fn handle(gw: Gateway, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let started = Instant::now();
    let settings = gw.settings();
    if !auth::client_allowed(&headers, &settings.api_keys) {
        return ApiError::Unauthorized.into_response();
    }
    let body = match read_body(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req = match request::inspect(&body, endpoint) {
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
    let deadline = tokio::time::Instant::from_std(far(started, settings.request_timeout));
    let first_byte = settings.first_byte_timeout;
    drop(settings);
    let mut flight = Flight::new(gw.clone(), route, endpoint, &req, started);
    loop {
        let upstream = match flight.pick() {
            Ok(up) => up,
            Err(why) => return flight.give_up(why),
        };
        let attempted = attempt(&gw, &upstream, endpoint, &req, &body, deadline, first_byte).await;
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
                    (true, _) => Tokens::Actual(0),
                    (false, Some(u)) => Tokens::Actual(u.total()),
                    (false, None) => Tokens::Estimate,
                };
                flight.conclude(outcome, Verdict::Answered, Some(tokens));
                if !client_error && endpoint != Endpoint::ChatCompletions {
                    upstream.mark_offered(endpoint);
                }
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
                return respond(status, &headers, Body::from(body), &upstream, attempts);
            }
            Attempted::Streaming {
                status,
                headers,
                first,
                rest,
                scanner,
            } => {
                flight.conclude(
                    AttemptOutcome::Ok {
                        status: status.as_u16(),
                    },
                    Verdict::Answered,
                    None,
                );
                if endpoint != Endpoint::ChatCompletions {
                    upstream.mark_offered(endpoint);
                }
                // The upstream may stream what the gateway could not tell was
                // a stream request (`"stream": "yes"` to a lenient server).
                flight.stream = true;
                let attempts = flight.attempts.len();
                let relay = Relay::new(flight, first, rest, scanner, deadline);
                return respond(
                    status,
                    &headers,
                    Body::from_stream(relay),
                    &upstream,
                    attempts,
                );
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
                    Some(Tokens::Actual(0)),
                );
                flight.not_offered_answer = Some(Passback {
                    status,
                    headers,
                    body,
                    upstream,
                });
                if tokio::time::Instant::now() >= deadline {
                    return flight.give_up(Unavailable::Exhausted);
                }
            }
            Attempted::Failed {
                outcome,
                verdict,
                detail,
                tokens,
            } => {
                tracing::debug!(model = %flight.route.name, deployment = %upstream.name, %detail, "attempt failed");
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
pub(super) struct Passed {
    content_type: Option<HeaderValue>,
    cache_control: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
}

impl Passed {
    fn from(h: &HeaderMap) -> Self {
        Self {
            content_type: h.get(header::CONTENT_TYPE).cloned(),
            cache_control: h.get(header::CACHE_CONTROL).cloned(),
            request_id: h.get(X_REQUEST_ID).cloned(),
        }
    }
}

fn respond(
    status: StatusCode,
    passed: &Passed,
    body: Body,
    up: &Upstream,
    attempts: usize,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    if let Some(v) = &passed.content_type {
        h.insert(header::CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &passed.cache_control {
        h.insert(header::CACHE_CONTROL, v.clone());
    }
    if let Some(v) = &passed.request_id {
        h.insert(X_REQUEST_ID, v.clone());
    }
    h.insert(X_DEPLOYMENT, up.header_name.clone());
    h.insert(X_ATTEMPTS, HeaderValue::from(attempts));
    response
}

/// What to count against the deployment's window for an attempt.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tokens {
    /// The upstream's report (or zero for a request it refused).
    Actual(u64),
    /// Keep the estimate: the upstream may have spent tokens we cannot see.
    Estimate,
}

pub(super) enum Attempted {
    Answered {
        status: StatusCode,
        headers: Passed,
        body: Bytes,
        usage: Option<Usage>,
    },
    Streaming {
        status: StatusCode,
        headers: Passed,
        first: Bytes,
        rest: ByteStream,
        scanner: SseScanner,
    },
    /// The deployment does not offer the endpoint (see [`not_offered`]):
    /// try another; if none offers it, this answer goes back to the client.
    NotOffered {
        status: StatusCode,
        headers: Passed,
        body: Bytes,
    },
    Failed {
        outcome: AttemptOutcome,
        verdict: Verdict,
        detail: String,
        tokens: Tokens,
    },
}

/// An upstream's answer kept to be passed back if nothing better comes.
struct Passback {
    status: StatusCode,
    headers: Passed,
    body: Bytes,
    upstream: Arc<Upstream>,
}

/// What a client may learn about a failed attempt: the kind, not the upstream's words.
fn outcome_summary(outcome: &AttemptOutcome) -> String {
    match outcome {
        AttemptOutcome::Status { status } => format!("answered {status}"),
        AttemptOutcome::Timeout => "timed out".into(),
        AttemptOutcome::Connect => "could not be reached".into(),
        AttemptOutcome::InvalidResponse => "sent an invalid answer".into(),
        AttemptOutcome::NotOffered { status } => format!("does not offer this endpoint ({status})"),
        AttemptOutcome::Ok { .. } | AttemptOutcome::Cancelled => "did not answer".into(),
    }
}

/// Keeps the deployment's key out of what an upstream said about a failure
/// (it goes to the log and the events) and out of error bodies passed back
/// to the client, who must never see the provider's key.
fn scrubbed(attempted: Attempted, up: &Upstream) -> Attempted {
    match attempted {
        Attempted::Failed {
            outcome,
            verdict,
            detail,
            tokens,
        } => Attempted::Failed {
            outcome,
            verdict,
            detail: up.scrub(detail),
            tokens,
        },
        Attempted::Answered {
            status,
            headers,
            body,
            usage,
        } if !status.is_success() => Attempted::Answered {
            status,
            headers,
            body: up.scrub_bytes(body),
            usage,
        },
        Attempted::NotOffered {
            status,
            headers,
            body,
        } => Attempted::NotOffered {
            status,
            headers,
            body: up.scrub_bytes(body),
        },
        other => other,
    }
}

fn failed(outcome: AttemptOutcome, detail: impl Into<String>, tokens: Tokens) -> Attempted {
    Attempted::Failed {
        outcome,
        verdict: Verdict::Failed,
        detail: detail.into(),
        tokens,
    }
}

async fn attempt(
    gw: &Gateway,
    up: &Upstream,
    endpoint: Endpoint,
    req: &Inspected,
    body: &Bytes,
    deadline: tokio::time::Instant,
    first_byte: Duration,
) -> Attempted {
    let payload = req.rewrite(body, &up.model_json);
    let first_deadline =
        tokio::time::Instant::from_std(far(Instant::now(), first_byte)).min(deadline);
    let sent =
        tokio::time::timeout_at(first_deadline, up.request(gw.client(), endpoint, payload)).await;
    let response = match sent {
        Err(_) => {
            return failed(
                AttemptOutcome::Timeout,
                format!("did not answer within {:.1}s", first_byte.as_secs_f64()),
                Tokens::Estimate,
            );
        }
        Ok(Err(e)) if e.is_connect() => {
            return failed(
                AttemptOutcome::Connect,
                format!("could not connect: {}", root_cause(&e)),
                Tokens::Actual(0),
            );
        }
        Ok(Err(e)) => {
            return failed(
                AttemptOutcome::Connect,
                format!("request failed: {}", root_cause(&e)),
                Tokens::Estimate,
            );
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if !status.is_success() {
        return upstream_error(response, endpoint, first_deadline, deadline).await;
    }
    // A request the gateway could not tell was a stream (`"stream": "yes"`)
    // is relayed as one when a lenient upstream answers with one.
    if req.stream || is_event_stream(response.headers()) {
        start_stream(response, req, first_deadline).await
    } else {
        read_answer(response, first_deadline, deadline).await
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// The innermost error message: the outer ones only say "client error".
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Reads a whole body of at most `limit` bytes. The first bytes must come by
/// `first_deadline` (an upstream that sends headers and then stalls is as good
/// as one that never answered), the rest by `deadline`.
async fn read_limited(
    response: UpResponse,
    limit: usize,
    first_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Result<Bytes, (AttemptOutcome, String)> {
    let mut stream = http_body_util::BodyDataStream::new(response.into_body());
    let mut buf = BytesMut::new();
    let mut started = false;
    loop {
        let until = if started {
            deadline
        } else {
            first_deadline.min(deadline)
        };
        match tokio::time::timeout_at(until, stream.next()).await {
            Err(_) => {
                let detail = if started {
                    "timed out while sending its answer"
                } else {
                    "sent headers but no body in time"
                };
                return Err((AttemptOutcome::Timeout, detail.into()));
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => {
                return Err((
                    AttemptOutcome::InvalidResponse,
                    format!("broke off its answer: {}", root_cause(&e)),
                ));
            }
            Ok(Some(Ok(chunk))) => {
                started = true;
                if buf.len() + chunk.len() > limit {
                    return Err((
                        AttemptOutcome::InvalidResponse,
                        format!("sent an answer larger than {limit} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// Checks that an answer is one JSON object and reads its `usage`.
fn answer_usage(body: &[u8]) -> Result<Option<Usage>, json::Invalid> {
    let mut usage = None;
    let mut seen = false;
    json::object_members(body, |key, value| {
        if key == b"usage" {
            if std::mem::replace(&mut seen, true) {
                return Err("a second `usage`");
            }
            usage = serde_json::from_slice::<Option<Usage>>(value)
                .map_err(|_| "a `usage` that is not token counts")?;
        }
        Ok(())
    })?;
    Ok(usage)
}

async fn read_answer(
    response: UpResponse,
    first_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Attempted {
    let status = response.status();
    let headers = Passed::from(response.headers());
    match read_limited(response, MAX_ANSWER_BYTES, first_deadline, deadline).await {
        Err((outcome, detail)) => failed(outcome, detail, Tokens::Estimate),
        Ok(body) => match answer_usage(&body) {
            Ok(usage) => Attempted::Answered {
                status,
                headers,
                body,
                usage,
            },
            // Nothing has reached the client yet, so a broken answer can be retried elsewhere.
            Err(e) => failed(
                AttemptOutcome::InvalidResponse,
                format!("answered {status} with a body that is not JSON ({e})"),
                Tokens::Estimate,
            ),
        },
    }
}

async fn start_stream(
    response: UpResponse,
    req: &Inspected,
    first_deadline: tokio::time::Instant,
) -> Attempted {
    let status = response.status();
    let headers = Passed::from(response.headers());
    let mut rest: ByteStream = Box::pin(http_body_util::BodyDataStream::new(response.into_body()));
    let mut scanner = SseScanner::new(req.adds_usage());
    // Wait for the first bytes worth sending: until then, failing over is invisible to the client.
    loop {
        match tokio::time::timeout_at(first_deadline, rest.next()).await {
            Err(_) => {
                return failed(
                    AttemptOutcome::Timeout,
                    "sent headers but no data in time",
                    Tokens::Estimate,
                );
            }
            Ok(Some(Ok(chunk))) => {
                if let Some(first) = scanner.feed(chunk) {
                    if scanner.saw_invalid {
                        return failed(
                            AttemptOutcome::InvalidResponse,
                            "streamed an event that is not JSON",
                            Tokens::Estimate,
                        );
                    }
                    if scanner.saw_error {
                        let text = String::from_utf8_lossy(&first).trim().to_string();
                        return failed(
                            AttemptOutcome::InvalidResponse,
                            format!("streamed an error: {text}"),
                            Tokens::Actual(0),
                        );
                    }
                    return Attempted::Streaming {
                        status,
                        headers,
                        first,
                        rest,
                        scanner,
                    };
                }
            }
            Ok(Some(Err(e))) => {
                return failed(
                    AttemptOutcome::InvalidResponse,
                    format!("broke off before its first event: {}", root_cause(&e)),
                    Tokens::Estimate,
                );
            }
            Ok(None) => {
                return match scanner.finish() {
                    Some(first) => Attempted::Streaming {
                        status,
                        headers,
                        first,
                        rest,
                        scanner,
                    },
                    None => failed(
                        AttemptOutcome::InvalidResponse,
                        "ended the stream before any data",
                        Tokens::Estimate,
                    ),
                };
            }
        }
    }
}

#[derive(Deserialize)]
struct ErrorProbe {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// Whether an error answer means that this deployment does not offer
/// `endpoint` at all, rather than that its key or model is wrong (which
/// counts against it) or that the request is (which the client hears).
///
/// On `/completions` and `/embeddings`, which many deployments lack (a chat
/// model, a server that only serves chat), a 404 or 405 is "not offered":
/// OpenAI's `Invalid URL (POST /v1/embeddings)` and "This is a chat model and
/// not supported in the v1/completions endpoint", vLLM's and FastAPI's
/// `{"detail":"Not Found"}`, Ollama's `404 page not found`. Unless it names a
/// missing model or deployment: code `model_not_found` (OpenAI),
/// `DeploymentNotFound` (Azure), or a message saying the model does not exist
/// or is not found (vLLM: "The model `x` does not exist.", Ollama: `model
/// "x" not found, try pulling it first`): that is the deployment's model,
/// wrong for every endpoint. On chat completions, which every deployment
/// is there for, a 404 is always the deployment's failure.
fn not_offered(endpoint: Endpoint, status: StatusCode, body: &[u8]) -> bool {
    if endpoint == Endpoint::ChatCompletions || !matches!(status.as_u16(), 404 | 405) {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let missing_model = text.contains("model_not_found")
        || text.contains("deploymentnotfound")
        || (text.contains("model")
            && (text.contains("does not exist") || text.contains("not found")));
    !missing_model
}

async fn upstream_error(
    response: UpResponse,
    endpoint: Endpoint,
    first_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Attempted {
    let status = response.status();
    let hint = rate_limit_hint(response.headers());
    let headers = Passed::from(response.headers());
    let body = read_limited(response, MAX_ERROR_BYTES, first_deadline, deadline)
        .await
        .unwrap_or_default();
    if not_offered(endpoint, status, &body) {
        return Attempted::NotOffered {
            status,
            headers,
            body,
        };
    }
    let code = status.as_u16();
    let retry_elsewhere = matches!(code, 401 | 403 | 404 | 408 | 429) || status.is_server_error();
    if !retry_elsewhere && status.is_client_error() {
        // The caller's mistake: pass it back as the upstream said it.
        return Attempted::Answered {
            status,
            headers,
            body,
            usage: None,
        };
    }
    let message = serde_json::from_slice::<ErrorProbe>(&body)
        .ok()
        .and_then(|p| p.error.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let mut message: String = message.chars().take(300).collect();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    Attempted::Failed {
        outcome: AttemptOutcome::Status { status: code },
        verdict: if code == 429 {
            Verdict::RateLimited(hint)
        } else {
            Verdict::Failed
        },
        detail: format!("answered {code}: {message}"),
        tokens: Tokens::Actual(0),
    }
}

/// The bookkeeping of one request.
pub(super) struct Flight {
    gw: Gateway,
    route: Arc<ModelRoute>,
    id: u64,
    at_ms: u64,
    started: Instant,
    endpoint: Endpoint,
    stream: bool,
    pub(super) prompt_estimate: u64,
    estimate: u64,
    tried: Vec<usize>,
    pub(super) attempts: Vec<events::Attempt>,
    /// The attempt in progress.
    current: Option<Current>,
    /// The deployment that answered, until its tokens are settled.
    answered: Option<Current>,
    last_failure: Option<String>,
    /// The attempts (indices in `attempts`) whose deployment does not offer
    /// the endpoint, and the last such answer.
    not_offered: Vec<usize>,
    not_offered_answer: Option<Passback>,
    finished: bool,
}

struct Current {
    index: usize,
    name: Arc<str>,
    reservation: Reservation,
    started: Instant,
}

impl Flight {
    fn new(
        gw: Gateway,
        route: Arc<ModelRoute>,
        endpoint: Endpoint,
        req: &Inspected,
        started: Instant,
    ) -> Self {
        Self {
            id: gw.next_id(),
            gw,
            route,
            at_ms: events::unix_ms(),
            started,
            endpoint,
            stream: req.stream,
            prompt_estimate: req.prompt_estimate,
            estimate: req.estimate,
            tried: Vec::new(),
            attempts: Vec::new(),
            current: None,
            answered: None,
            last_failure: None,
            not_offered: Vec::new(),
            not_offered_answer: None,
            finished: false,
        }
    }

    fn pick(&mut self) -> Result<Arc<Upstream>, Unavailable> {
        let now = self.gw.now();
        let mut guard = self.route.lock();
        let state = &mut *guard;
        let (ups, endpoint) = (&state.upstreams, self.endpoint);
        let not_offering = |i: &usize| ups[*i].known_not_to_offer(endpoint, now);
        // Deployments known not to offer the endpoint come last: only when
        // no other can take the request (their answer is then passed back).
        let avoid = (endpoint != Endpoint::ChatCompletions
            && (0..ups.len()).any(|i| !self.tried.contains(&i) && not_offering(&i)))
        .then(|| {
            let mut avoid = self.tried.clone();
            avoid.extend((0..ups.len()).filter(not_offering));
            avoid
        });
        let pick = match avoid.and_then(|avoid| state.pool.pick(now, self.estimate, &avoid).ok()) {
            Some(pick) => pick,
            None => state.pool.pick(now, self.estimate, &self.tried)?,
        };
        let upstream = state.upstreams[pick.index].clone();
        drop(guard);
        self.tried.push(pick.index);
        self.current = Some(Current {
            index: pick.index,
            name: upstream.name.clone(),
            reservation: pick.reservation,
            started: Instant::now(),
        });
        Ok(upstream)
    }

    /// Records the end of the current attempt. With `tokens`, the window is
    /// corrected now; without, later by [`Flight::settle`].
    pub(super) fn conclude(
        &mut self,
        outcome: AttemptOutcome,
        verdict: Verdict,
        tokens: Option<Tokens>,
    ) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let now = self.gw.now();
        let transition = {
            let mut state = self.route.lock();
            if let Some(Tokens::Actual(actual)) = tokens {
                state.pool.settle(cur.index, now, cur.reservation, actual);
            }
            state.pool.record(cur.index, now, verdict)
        };
        if let Some(t) = transition {
            self.gw.announce(&self.route.name, &cur.name, t);
        }
        self.attempts.push(events::Attempt {
            deployment: cur.name.clone(),
            outcome,
            latency_ms: cur.started.elapsed().as_secs_f64() * 1000.0,
        });
        if tokens.is_none() {
            self.answered = Some(cur);
        }
    }

    /// Corrects the answering deployment's window to the tokens really used.
    pub(super) fn settle(&mut self, tokens: u64) {
        if let Some(cur) = self.answered.take() {
            let now = self.gw.now();
            self.route
                .lock()
                .pool
                .settle(cur.index, now, cur.reservation, tokens);
        }
    }

    /// A stream broke after it was committed: the deployment failed after all.
    pub(super) fn fail_answering(&mut self) {
        if let Some(cur) = &self.answered {
            let now = self.gw.now();
            let transition = self
                .route
                .lock()
                .pool
                .record(cur.index, now, Verdict::Failed);
            if let Some(t) = transition {
                self.gw.announce(&self.route.name, &cur.name, t);
            }
        }
    }

    pub(super) fn finish(
        &mut self,
        status: u16,
        outcome: RequestOutcome,
        prompt: u64,
        completion: u64,
        estimated: bool,
    ) {
        if self.finished {
            return;
        }
        self.finished = true;
        let event = RequestEvent {
            id: self.id,
            at_ms: self.at_ms,
            model: self.route.name.clone(),
            endpoint: self.endpoint.name().into(),
            stream: self.stream,
            attempts: std::mem::take(&mut self.attempts),
            status,
            outcome,
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            prompt_tokens: prompt,
            completion_tokens: completion,
            tokens_estimated: estimated,
        };
        self.gw.shared.metrics.record(&event);
        self.gw.events().publish(Event::Request(event));
    }

    /// Nothing (more) to try: the gateway's own answer.
    fn give_up(&mut self, why: Unavailable) -> Response {
        let model = self.route.name.clone();
        let attempts = self.attempts.len();
        // Only failures count here: an attempt whose deployment does not
        // offer the endpoint says nothing about the others.
        let tried = attempts - self.not_offered.len();
        if tried == 0
            && why == Unavailable::Exhausted
            && let Some(answer) = self.not_offered_answer.take()
        {
            // No deployment offers the endpoint: the upstream's own answer.
            self.finish(
                answer.status.as_u16(),
                RequestOutcome::ClientError,
                0,
                0,
                false,
            );
            return respond(
                answer.status,
                &answer.headers,
                Body::from(answer.body),
                &answer.upstream,
                attempts,
            );
        }
        let failures = || {
            self.attempts
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.not_offered.contains(i))
                .map(|(_, a)| &a.outcome)
        };
        let all = |f: fn(&AttemptOutcome) -> bool| tried > 0 && failures().all(f);
        let all_rate_limited = all(|o| matches!(o, AttemptOutcome::Status { status: 429 }));
        let all_timed_out = all(|o| matches!(o, AttemptOutcome::Timeout));
        let error = if tried == 0 {
            match why {
                Unavailable::NoneEnabled => ApiError::Unavailable {
                    message: format!("No deployment of model `{model}` is enabled."),
                    retry_after: None,
                },
                Unavailable::RateLimited { retry_after } => ApiError::RateLimited {
                    message: format!(
                        "Every enabled deployment of `{model}`{} is at its tokens-per-minute limit or rate limited; retry after {:.0}s.",
                        self.offering(),
                        retry_after.as_secs_f64().ceil()
                    ),
                    retry_after,
                },
                Unavailable::Failing { retry_after } => ApiError::Unavailable {
                    message: format!(
                        "Every enabled deployment of `{model}`{} is cooling down after failures.",
                        self.offering()
                    ),
                    retry_after: Some(retry_after),
                },
                Unavailable::Exhausted => ApiError::Unavailable {
                    message: format!("No deployment of `{model}` could take the request."),
                    retry_after: None,
                },
            }
        } else if all_rate_limited
            && matches!(
                why,
                Unavailable::RateLimited { .. } | Unavailable::Exhausted
            )
        {
            let retry_after = self.soonest_free();
            ApiError::RateLimited {
                message: format!(
                    "Every deployment of `{model}` tried ({tried}) answered 429 (rate limited)."
                ),
                retry_after,
            }
        } else if all_timed_out {
            ApiError::GatewayTimeout {
                message: format!("Every deployment of `{model}` tried ({tried}) timed out."),
            }
        } else {
            ApiError::BadGateway {
                message: format!(
                    "All {tried} deployment(s) of `{model}` tried failed; last: {}.",
                    self.last_failure.as_deref().unwrap_or("unknown error")
                ),
            }
        };
        let status = error.status().as_u16();
        self.finish(status, RequestOutcome::Failed, 0, 0, false);
        let mut response = error.into_response();
        if let Some(last) = self.tried.last() {
            let state = self.route.lock();
            response
                .headers_mut()
                .insert(X_DEPLOYMENT, state.upstreams[*last].header_name.clone());
        }
        if attempts > 0 {
            response
                .headers_mut()
                .insert(X_ATTEMPTS, HeaderValue::from(attempts));
        }
        response
    }

    /// Which deployments a "no deployment available" answer is about.
    fn offering(&self) -> String {
        match self.not_offered.len() {
            0 => String::new(),
            _ => format!(" that may offer {}", self.endpoint.path()),
        }
    }

    fn soonest_free(&self) -> Duration {
        let now = self.gw.now();
        match self.route.lock().pool.pick_hint(now, self.estimate) {
            Unavailable::RateLimited { retry_after } | Unavailable::Failing { retry_after } => {
                retry_after
            }
            _ => Duration::from_secs(1),
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // The client left (the handler future or the response body was dropped).
        if self.current.is_some() {
            self.conclude(
                AttemptOutcome::Cancelled,
                Verdict::Abandoned,
                Some(Tokens::Estimate),
            );
        }
        let (prompt, estimate) = (self.prompt_estimate, self.estimate);
        self.finish(
            499,
            RequestOutcome::ClientClosed,
            prompt,
            estimate - prompt,
            true,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_or_405_off_the_chat_endpoint_is_an_endpoint_not_offered_unless_it_names_the_model() {
        let not_found = StatusCode::NOT_FOUND;
        let embeddings =
            |status, body: &str| not_offered(Endpoint::Embeddings, status, body.as_bytes());
        // Servers without the endpoint, as they say it.
        for body in [
            r#"{"error":{"message":"Invalid URL (POST /v1/embeddings)","type":"invalid_request_error","param":null,"code":null}}"#,
            r#"{"detail":"Not Found"}"#,
            "404 page not found",
            "",
            r#"{"error":{"message":"This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?","type":"invalid_request_error","param":"model","code":null}}"#,
            r#"{"error":{"code":"404","message":"Resource not found"}}"#,
        ] {
            assert!(embeddings(not_found, body), "{body}");
            assert!(not_offered(
                Endpoint::Completions,
                not_found,
                body.as_bytes()
            ));
            assert!(embeddings(StatusCode::METHOD_NOT_ALLOWED, body));
        }
        // A deployment whose model is wrong: wrong for every endpoint.
        for body in [
            r#"{"error":{"message":"The model `x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
            r#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#,
            r#"{"error":{"message":"model \"x\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#,
        ] {
            assert!(!embeddings(not_found, body), "{body}");
        }
        // Chat completions is what every deployment is there for.
        assert!(!not_offered(
            Endpoint::ChatCompletions,
            not_found,
            br#"{"detail":"Not Found"}"#
        ));
        for status in [400, 401, 403, 410, 500] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!embeddings(status, r#"{"detail":"Not Found"}"#));
        }
    }

    #[test]
    fn an_answer_is_one_json_object_whose_usage_is_read() {
        let usage = |doc: &str| answer_usage(doc.as_bytes());
        assert_eq!(
            usage(
                r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
            ),
            Ok(Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            }))
        );
        assert_eq!(usage(r#"{"id":"x"}"#), Ok(None));
        assert_eq!(
            usage(r#"{"us\u0061ge":{"total_tokens":3}}"#).map(|u| u.map(|u| u.total())),
            Ok(Some(3))
        );
        assert_eq!(usage(r#"{"usage":null}"#), Ok(None));
        // A `usage` key inside the content is not the answer's usage.
        assert_eq!(
            usage(r#"{"choices":[{"usage":{"total_tokens":99}}],"note":"\"usage\":{}"}"#),
            Ok(None)
        );
        for broken in [
            r#"[{"usage":{"total_tokens":1}}]"#,
            r#"{"usage":{"total_tokens":1}"#,
            r#"{"usage":"many"}"#,
            r#"{"usage":{"total_tokens":-1}}"#,
            r#"{"usage":null,"usage":{"total_tokens":1}}"#,
            "<html>502 Bad Gateway</html>",
        ] {
            assert!(usage(broken).is_err(), "{broken}");
        }
    }
}
