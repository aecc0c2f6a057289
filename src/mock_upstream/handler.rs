//! One request: route it, apply the mode, the key, the fail rate and the
//! limits, and answer.
//!
//! The order is that of a real provider seen through a faulty network:
//! a request over `--max-in-flight` is refused as soon as its body is read
//! (an overloaded server does not wait, look at keys or modes first); then
//! connection faults (hang, reset) hit before anything is checked, then the
//! key, then a forced failure (`Mode::Fail`, an outage answers whatever the
//! body), then the body, then the random failures and the rate limits. The
//! body faults (garbage, cuts) spoil an answer that was otherwise due.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{End, MockBody};
use super::limits::{Dim, Need, Refused};
use super::openai::{self, ApiError, EmbeddingJob, Generation, Kind, Reply, StreamUsage, Usage};
use super::refusal::{self, fail_response, rate_limited};
use super::server::Conn;
use super::state::Shared;
use super::{MockEndpoint, MockProvider, Mode, anthropic, bedrock, vertex};

/// Larger request bodies get a 413; no real prompt comes close.
const MAX_BODY_BYTES: usize = 32 << 20;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// The service's error: hyper answers it by dropping the connection.
#[derive(Debug)]
pub(super) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock-upstream dropped the connection")
    }
}

impl std::error::Error for Dropped {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Models,
    /// OpenAI's Responses API: create, and one response by id.
    Responses,
    ResponseById,
    /// Anthropic's Messages API and its token count.
    Messages,
    CountTokens,
    /// Bedrock's Converse and ConverseStream.
    Converse,
    ConverseStream,
    /// Bedrock's InvokeModel, InvokeModelWithResponseStream and CountTokens.
    Invoke,
    InvokeStream,
    InvokeCount,
    /// Vertex AI: the token endpoint, Claude's rawPredict and its stream.
    Token,
    RawPredict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Mode,
    Stats,
    Api(Endpoint),
    NotFound,
}

/// The API routes match on their suffix, so that every base URL a client
/// may be configured with works: `/v1/chat/completions`,
/// `/openai/v1/chat/completions`, Azure's
/// `/openai/deployments/NAME/chat/completions`.
fn route(path: &str) -> Route {
    match path {
        "/health" => Route::Health,
        "/mock/mode" => Route::Mode,
        "/mock/stats" => Route::Stats,
        p if p.ends_with("/chat/completions") => Route::Api(Endpoint::Chat),
        p if p.ends_with("/completions") => Route::Api(Endpoint::Completions),
        p if p.ends_with("/embeddings") => Route::Api(Endpoint::Embeddings),
        p if p.ends_with("/models") => Route::Api(Endpoint::Models),
        p if p.ends_with("/responses") => Route::Api(Endpoint::Responses),
        p if p.contains("/responses/") => Route::Api(Endpoint::ResponseById),
        p if p.ends_with("/v1/messages") => Route::Api(Endpoint::Messages),
        p if p.ends_with("/v1/messages/count_tokens") => Route::Api(Endpoint::CountTokens),
        "/token" => Route::Api(Endpoint::Token),
        p if p.ends_with(":rawPredict") || p.ends_with(":streamRawPredict") => {
            Route::Api(Endpoint::RawPredict)
        }
        p if p.starts_with("/model/") && p.ends_with("/converse") => Route::Api(Endpoint::Converse),
        p if p.starts_with("/model/") && p.ends_with("/converse-stream") => {
            Route::Api(Endpoint::ConverseStream)
        }
        p if p.starts_with("/model/") && p.ends_with("/invoke") => Route::Api(Endpoint::Invoke),
        p if p.starts_with("/model/") && p.ends_with("/invoke-with-response-stream") => {
            Route::Api(Endpoint::InvokeStream)
        }
        p if p.starts_with("/model/") && p.ends_with("/count-tokens") => {
            Route::Api(Endpoint::InvokeCount)
        }
        _ => Route::NotFound,
    }
}

fn allowed(route: Route, method: &Method) -> bool {
    match route {
        Route::Health => method == Method::GET || method == Method::HEAD,
        Route::Mode => method == Method::GET || method == Method::PUT,
        Route::Stats | Route::Api(Endpoint::Models) => method == Method::GET,
        Route::Api(Endpoint::ResponseById) => {
            method == Method::GET || method == Method::DELETE || method == Method::POST
        }
        Route::Api(_) => method == Method::POST,
        Route::NotFound => true,
    }
}

pub(super) async fn handle(
    conn: &Conn,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Dropped> {
    let shared = &*conn.shared;
    let route = route(req.uri().path());
    let mut response = if !allowed(route, req.method()) {
        error_response(&ApiError::method_not_allowed(
            req.method(),
            req.uri().path(),
        ))
    } else {
        match route {
            Route::Health => json_response(StatusCode::OK, &br#"{"status":"ok"}"#[..]),
            Route::Mode if req.method() == Method::PUT => put_mode(shared, req.into_body()).await,
            Route::Mode => json_response(StatusCode::OK, to_json(&shared.mode())),
            Route::Stats => json_response(StatusCode::OK, to_json(&shared.stats())),
            Route::Api(endpoint) => counted(conn, endpoint, req).await?,
            Route::NotFound => error_response(&ApiError::not_found(req.method(), req.uri().path())),
        }
    };
    if let Ok(id) = HeaderValue::try_from(shared.request_id()) {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
    Ok(response)
}

/// An API request, counted in the stats; one that generates (or embeds)
/// holds an in-flight slot from here until its body ends.
async fn counted(
    conn: &Conn,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Dropped> {
    let shared = &*conn.shared;
    shared.count_request();
    let answer = if generates(endpoint, req.uri().path()) {
        match shared.limits.in_flight.enter() {
            Some(slot) => api(conn, endpoint, req).await.map(|mut response| {
                response.body_mut().hold_slot(Some(slot));
                response
            }),
            None => Ok(over_capacity(shared, endpoint, req).await),
        }
    } else {
        api(conn, endpoint, req).await
    };
    match &answer {
        Ok(response) => shared.count_answer(response.status()),
        Err(Dropped) => shared.count_reset(),
    }
    answer
}

/// The requests that the limits count: those that generate or embed, not
/// the listings, token counts, token grants or stored responses.
fn generates(endpoint: Endpoint, path: &str) -> bool {
    match endpoint {
        Endpoint::Chat
        | Endpoint::Completions
        | Endpoint::Embeddings
        | Endpoint::Responses
        | Endpoint::Messages
        | Endpoint::Converse
        | Endpoint::ConverseStream
        | Endpoint::Invoke
        | Endpoint::InvokeStream => true,
        Endpoint::RawPredict => !path.ends_with("/count-tokens:rawPredict"),
        Endpoint::Models
        | Endpoint::ResponseById
        | Endpoint::CountTokens
        | Endpoint::InvokeCount
        | Endpoint::Token => false,
    }
}

/// The 429 for a request over `--max-in-flight`, in the provider's shape
/// (Anthropic's too: Anthropic says 529 `overloaded_error` when it is
/// itself overloaded, but a concurrency limit is a rate limit of the
/// caller's, and a 429 is what the gateway's accounting is tested on).
async fn over_capacity(
    shared: &Shared,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    // Read to the end so that the connection stays usable.
    let body = read_body(body).await.unwrap_or_default();
    shared.record_body(&body);
    shared.record_head(&parts.uri, &parts.headers);
    shared.limits.count_refused(Dim::InFlight);
    let refused = Refused::in_flight(shared.limits.in_flight.limit().unwrap_or_default());
    match (shared.opts.provider, endpoint) {
        (MockProvider::Anthropic, _) | (MockProvider::Vertex, Endpoint::RawPredict) => {
            anthropic::rate_limited(&refused)
        }
        (MockProvider::Bedrock, _) => bedrock::throttled(&refused),
        _ => {
            let model = shared
                .opts
                .model
                .clone()
                .or_else(|| super::state::model_of(&body))
                .unwrap_or_default();
            rate_limited(&model, &refused)
        }
    }
}

async fn api(
    conn: &Conn,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Dropped> {
    let shared = &*conn.shared;
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return Ok(error_response(&ApiError::too_large())),
        // The client went away mid-request: nobody to answer.
        Err(ReadError::Broken) => return Err(Dropped),
    };
    if endpoint != Endpoint::Models {
        shared.record_body(&body);
        shared.record_head(&parts.uri, &parts.headers);
    }
    if shared.opts.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.opts.latency_ms)).await;
    }
    let mode = shared.current_mode();
    match &*mode {
        Mode::Hang => return std::future::pending().await,
        Mode::SlowFirstByte { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
        }
        Mode::ResetBeforeHeaders => {
            conn.reset_on_close();
            return Err(Dropped);
        }
        _ => {}
    }
    let vertex = shared.opts.provider == MockProvider::Vertex;
    match (shared.opts.provider, endpoint) {
        (MockProvider::Vertex, _) => {
            let which = match endpoint {
                Endpoint::Token => vertex::Route::Token,
                Endpoint::RawPredict => vertex::Route::RawPredict,
                Endpoint::Chat => vertex::Route::Chat,
                _ => vertex::Route::Other,
            };
            if let Some(answer) = vertex::route(
                shared,
                &mode,
                which,
                &parts.headers,
                parts.uri.path(),
                &body,
            ) {
                return Ok(answer);
            }
        }
        (_, Endpoint::Token | Endpoint::RawPredict) => {
            return Ok(error_response(&ApiError::not_found(
                &parts.method,
                parts.uri.path(),
            )));
        }
        (MockProvider::Bedrock, Endpoint::Converse | Endpoint::ConverseStream) => {
            return Ok(bedrock::answer(
                shared,
                &mode,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                &body,
                endpoint == Endpoint::ConverseStream,
            ));
        }
        (
            MockProvider::Bedrock,
            Endpoint::Invoke | Endpoint::InvokeStream | Endpoint::InvokeCount,
        ) => {
            let op = match endpoint {
                Endpoint::Invoke => bedrock::invoke::Op::Invoke,
                Endpoint::InvokeStream => bedrock::invoke::Op::Stream,
                _ => bedrock::invoke::Op::Count,
            };
            return Ok(bedrock::invoke::answer(
                shared,
                &mode,
                op,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                &body,
            ));
        }
        (MockProvider::Bedrock, _) => {
            return Ok(bedrock::error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &format!("Unknown operation {} {}", parts.method, parts.uri.path()),
            ));
        }
        (
            _,
            Endpoint::Converse
            | Endpoint::ConverseStream
            | Endpoint::Invoke
            | Endpoint::InvokeStream
            | Endpoint::InvokeCount,
        ) => {
            return Ok(error_response(&ApiError::not_found(
                &parts.method,
                parts.uri.path(),
            )));
        }
        (MockProvider::Anthropic, Endpoint::Messages) => {
            return Ok(anthropic::answer(shared, &mode, &parts.headers, &body));
        }
        (MockProvider::Anthropic, Endpoint::CountTokens) => {
            return Ok(anthropic::count_tokens(
                shared,
                &mode,
                &parts.headers,
                &body,
            ));
        }
        (MockProvider::Anthropic, _) => {
            return Ok(anthropic::ErrorBody::for_status(
                StatusCode::NOT_FOUND,
                Some(&format!("Not found: {} {}", parts.method, parts.uri.path())),
            )
            .response());
        }
        (_, Endpoint::Messages | Endpoint::CountTokens) => {
            return Ok(error_response(&ApiError::not_found(
                &parts.method,
                parts.uri.path(),
            )));
        }
        (MockProvider::Azure, _) => {
            if let Some(refused) = azure_route(&parts.uri) {
                return Ok(refused);
            }
        }
        _ => {}
    }
    if !vertex && !authorized(shared.opts.api_key.as_deref(), &parts.headers) {
        return Ok(error_response(&ApiError::invalid_api_key()));
    }
    if let Mode::Fail {
        status,
        retry_after_s,
        message,
    } = &*mode
    {
        return Ok(fail_response(*status, *retry_after_s, message.as_deref()));
    }
    let served = match endpoint {
        Endpoint::Chat => MockEndpoint::Chat,
        Endpoint::Completions => MockEndpoint::Completions,
        Endpoint::Embeddings => MockEndpoint::Embeddings,
        Endpoint::Responses | Endpoint::ResponseById => MockEndpoint::Responses,
        _ => MockEndpoint::Chat,
    };
    if endpoint != Endpoint::Models && shared.opts.without.contains(&served) {
        // What OpenAI answers for a path it does not know.
        return Ok(error_response(&ApiError::not_found(
            &parts.method,
            parts.uri.path(),
        )));
    }
    Ok(match endpoint {
        Endpoint::Models => json_response(
            StatusCode::OK,
            openai::models_json(shared.opts.model.as_deref()),
        ),
        Endpoint::Chat => generate(shared, &mode, Kind::Chat, openai::parse_chat(&body)),
        Endpoint::Completions => {
            generate(shared, &mode, Kind::Text, openai::parse_completion(&body))
        }
        Endpoint::Embeddings => embed(shared, &mode, openai::parse_embeddings(&body)),
        Endpoint::Responses => responses::create(shared, &mode, &body),
        Endpoint::ResponseById => responses::by_id(shared, &parts.method, parts.uri.path()),
        _ => unreachable!("answered above"),
    })
}

/// Azure's classic API names the deployment in the path (Responses:
/// `/openai/responses`, the deployment in `model`) and needs an
/// `api-version`; without one Azure answers 404 "Resource not found".
/// `/openai/v1/...` needs none.
fn azure_route(uri: &hyper::Uri) -> Option<Response<MockBody>> {
    let path = uri.path();
    let classic = path.contains("/openai/deployments/")
        || path.ends_with("/openai/responses")
        || path.contains("/openai/responses/");
    let versioned = uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.strip_prefix("api-version=")
                .is_some_and(|v| !v.is_empty())
        })
    });
    (classic && !versioned).then(|| {
        json_response(
            StatusCode::NOT_FOUND,
            &br#"{"error":{"code":"404","message":"Resource not found"}}"#[..],
        )
    })
}

enum ReadError {
    TooLarge,
    Broken,
}

async fn read_body(body: Incoming) -> Result<Bytes, ReadError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ReadError::TooLarge),
        Err(_) => Err(ReadError::Broken),
    }
}

/// `Authorization: Bearer KEY` (OpenAI) or `api-key: KEY` (Azure). A plain
/// comparison: this is a test double, not a vault.
fn authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let header = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header(&header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    bearer == Some(expected) || header(&API_KEY) == Some(expected)
}

/// A chat or text completion.
fn generate(
    shared: &Shared,
    mode: &Mode,
    kind: Kind,
    parsed: Result<Generation, ApiError>,
) -> Response<MockBody> {
    let request = match parsed {
        Ok(request) => request,
        Err(e) => return error_response(&e),
    };
    if shared.draw_failure() {
        return error_response(&ApiError::server_error());
    }
    let configured = u64::from(shared.opts.tokens);
    let completion_tokens = request
        .max_tokens
        .map_or(configured, |max| max.min(configured));
    let usage = Usage::new(request.prompt_tokens, completion_tokens);
    let model = shared.opts.model.as_deref().unwrap_or(&request.model);
    let need = Need::new(usage.prompt_tokens, completion_tokens, request.max_tokens);
    let admitted = match shared.limits.admit(need) {
        Ok(admitted) => admitted,
        Err(refused) => return rate_limited(model, &refused),
    };
    shared.count_tokens(usage.prompt_tokens, usage.completion_tokens);
    let id = shared.completion_id(kind.id_prefix());
    let reply = Reply {
        kind,
        id: &id,
        created: openai::unix_now(),
        model,
        usage,
        finish_reason: if !request.calls.is_empty() {
            "tool_calls"
        } else if completion_tokens < configured {
            "length"
        } else {
            "stop"
        },
        azure: shared.opts.provider == MockProvider::Azure,
        calls: &request.calls,
    };
    let mut response = if request.stream {
        let gap = Duration::from_millis(shared.opts.chunk_delay_ms);
        let usage = match (request.include_usage, shared.opts.usage_in_finish_chunk) {
            (false, _) => StreamUsage::None,
            (true, false) => StreamUsage::OwnChunk,
            (true, true) => StreamUsage::InFinishChunk,
        };
        respond(
            StatusCode::OK,
            EVENT_STREAM,
            stream_body(mode, &reply, usage, gap),
        )
    } else {
        respond(
            StatusCode::OK,
            JSON,
            MockBody::answer(mode, openai::completion_json(&reply)),
        )
    };
    refusal::admitted(&mut response, admitted);
    response
}

fn embed(
    shared: &Shared,
    mode: &Mode,
    parsed: Result<EmbeddingJob, ApiError>,
) -> Response<MockBody> {
    let job = match parsed {
        Ok(job) => job,
        Err(e) => return error_response(&e),
    };
    if shared.draw_failure() {
        return error_response(&ApiError::server_error());
    }
    let model = shared.opts.model.as_deref().unwrap_or(&job.model);
    let tokens = job.prompt_tokens();
    let admitted = match shared.limits.admit(Need::new(tokens, 0, None)) {
        Ok(admitted) => admitted,
        Err(refused) => return rate_limited(model, &refused),
    };
    shared.count_tokens(tokens, 0);
    let mut response = respond(
        StatusCode::OK,
        JSON,
        MockBody::answer(mode, openai::embeddings_json(&job, model)),
    );
    refusal::admitted(&mut response, admitted);
    response
}

/// An SSE answer, spoiled as the mode says.
fn stream_body(mode: &Mode, reply: &Reply<'_>, usage: StreamUsage, gap: Duration) -> MockBody {
    match mode {
        Mode::Garbage => MockBody::stream(
            openai::garbage_frames(reply.usage.completion_tokens + 2),
            gap,
            End::Clean,
        ),
        Mode::HangAfterHeaders => MockBody::stream(Vec::new(), Duration::ZERO, End::Hang),
        Mode::ResetMidStream { after_chunks } => MockBody::stream(
            openai::stream_frames(reply, usage).cut_after(*after_chunks),
            gap,
            End::Abort,
        ),
        Mode::TruncatedStream { after_chunks } => MockBody::stream(
            openai::stream_frames(reply, usage).cut_after(*after_chunks),
            gap,
            End::Clean,
        ),
        Mode::ErrorMidStream { after_chunks, .. } => {
            let mut frames = openai::stream_frames(reply, usage).cut_after(*after_chunks);
            frames.push(Bytes::from_static(
                b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
            ));
            MockBody::stream(frames, gap, End::Clean)
        }
        Mode::StallMidStream { after_chunks } => MockBody::stream(
            openai::stream_frames(reply, usage).cut_after(*after_chunks),
            gap,
            End::Hang,
        ),
        mode @ (Mode::NoDone | Mode::MalformedChunk { .. }) => MockBody::spoiled(
            mode,
            openai::stream_frames(reply, usage).frames,
            gap,
            Vec::new,
            |_| Bytes::new(),
            MockBody::cut_short,
        ),
        _ => MockBody::stream(openai::stream_frames(reply, usage).frames, gap, End::Clean),
    }
}

/// `PUT /mock/mode`.
async fn put_mode(shared: &Shared, body: Incoming) -> Response<MockBody> {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return error_response(&ApiError::too_large()),
        Err(ReadError::Broken) => {
            return error_response(&ApiError::invalid_request("The body could not be read."));
        }
    };
    match serde_json::from_slice::<Mode>(&body) {
        Ok(Mode::Fail { status, .. }) if !(400..=599).contains(&status) => error_response(
            &ApiError::invalid_request(format!("fail status must be 400..=599, not {status}")),
        ),
        Ok(mode) => {
            shared.set_mode(mode);
            let mut response = Response::new(MockBody::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(e) => error_response(&ApiError::invalid_request(format!("Invalid mode: {e}"))),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn respond(
    status: StatusCode,
    content_type: HeaderValue,
    body: MockBody,
) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

pub(super) fn json_response(status: StatusCode, json: impl Into<Bytes>) -> Response<MockBody> {
    respond(status, JSON, MockBody::full(json))
}

pub(super) fn error_response(error: &ApiError) -> Response<MockBody> {
    json_response(error.status, error.to_json())
}

mod responses;

#[cfg(test)]
mod tests;
