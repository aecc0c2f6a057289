//! `mock-upstream --provider anthropic`: Anthropic's Messages API, as
//! faithful as the official SDK and Claude Code need: `POST /v1/messages`
//! (any query string, `?beta=true` included) with `x-api-key` or a Bearer
//! key and `anthropic-version`, the API's checks (see [`request`]; Claude
//! Code's extra fields accepted), messages with text and tool use, SSE
//! streams of `message_start` … `message_stop`, its error shapes,
//! `retry-after` and `anthropic-ratelimit-*` headers, 529
//! `overloaded_error`, and an error event mid-stream on demand. `POST
//! /v1/messages/count_tokens` answers `{"input_tokens": N}`, an estimate
//! from the body (see [`request::count`]). `anthropic-beta` is accepted
//! and ignored; the stats keep the last request's headers for tests.

mod fields;
mod limits;
pub(crate) mod reply;
pub(crate) mod request;

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::Mode;
use super::body::MockBody;
use super::limits::Need;
use super::state::Shared;
pub(crate) use limits::rate_limited;
pub(crate) use request::Flavor;

/// An Anthropic error answer: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorBody {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ErrorBody {
    pub(crate) fn invalid_request(message: String) -> ErrorBody {
        ErrorBody {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message,
        }
    }

    /// The error Anthropic gives with `status`.
    pub(crate) fn for_status(status: StatusCode, message: Option<&str>) -> ErrorBody {
        let (kind, default) = match status.as_u16() {
            400 => ("invalid_request_error", "Invalid request."),
            401 => ("authentication_error", "invalid x-api-key"),
            403 => (
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            404 => (
                "not_found_error",
                "The requested resource could not be found.",
            ),
            413 => (
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            ),
            429 => (
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
            ),
            529 => ("overloaded_error", "Overloaded"),
            _ => ("api_error", "Internal server error"),
        };
        ErrorBody {
            status,
            kind,
            message: message.unwrap_or(default).to_string(),
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        json!({"type": "error", "error": {"type": self.kind, "message": self.message}})
            .to_string()
            .into_bytes()
    }

    pub(crate) fn response(&self) -> Response<MockBody> {
        let mut r = Response::new(MockBody::full(self.to_json()));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

const VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Answers one Messages request, after the mock's connection faults.
pub(crate) fn answer(
    shared: &Shared,
    mode: &Mode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<MockBody> {
    if let Err(refused) = admitted(shared, mode, headers) {
        return *refused;
    }
    messages(shared, mode, body, Flavor::Anthropic)
}

/// `POST /v1/messages/count_tokens`: the same headers and faults as a
/// message, then `{"input_tokens": N}`. Counting is free: nothing enters
/// the TPM window.
pub(crate) fn count_tokens(
    shared: &Shared,
    mode: &Mode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<MockBody> {
    if let Err(refused) = admitted(shared, mode, headers) {
        return *refused;
    }
    counted(body, Flavor::Anthropic)
}

/// A count_tokens answer of Anthropic's (and Vertex's) shape.
pub(crate) fn counted(body: &Bytes, flavor: Flavor) -> Response<MockBody> {
    match request::count(body, flavor) {
        Ok(n) => {
            let mut r = Response::new(MockBody::full(json!({ "input_tokens": n }).to_string()));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => e.response(),
    }
}

/// The version header, the key and a forced failure, as Anthropic checks
/// them before it reads a body.
fn admitted(
    shared: &Shared,
    mode: &Mode,
    headers: &HeaderMap,
) -> Result<(), Box<Response<MockBody>>> {
    if !headers.contains_key(VERSION_HEADER) {
        return Err(Box::new(
            ErrorBody::invalid_request("anthropic-version: header is required".into()).response(),
        ));
    }
    // `x-api-key`, or (as the SDK sends it since 2026) `Authorization: Bearer`.
    if let Some(key) = shared.opts.api_key.as_deref() {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = text(&hyper::header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
        if text(&API_KEY) != Some(key) && bearer != Some(key) {
            return Err(Box::new(
                ErrorBody::for_status(StatusCode::UNAUTHORIZED, None).response(),
            ));
        }
    }
    if let Mode::Fail {
        status,
        retry_after_s,
        message,
    } = mode
    {
        return Err(Box::new(fail(*status, *retry_after_s, message.as_deref())));
    }
    Ok(())
}

/// Answers a Messages body whose caller is authorized: Anthropic's own,
/// or Vertex AI's rawPredict (the version in the body, no model).
pub(crate) fn messages(
    shared: &Shared,
    mode: &Mode,
    body: &Bytes,
    flavor: Flavor,
) -> Response<MockBody> {
    let req = match request::parse(body, flavor) {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    if shared.draw_failure() {
        return ErrorBody::for_status(StatusCode::INTERNAL_SERVER_ERROR, None).response();
    }
    let model = shared
        .opts
        .model
        .clone()
        .unwrap_or_else(|| req.model.clone());
    let reply = reply::Reply::new(
        &req,
        &model,
        u64::from(shared.opts.tokens),
        shared.opts.cache_read_tokens,
        shared.completion_id("msg_"),
    );
    let need = Need::new(
        reply.input_tokens,
        reply.output_tokens,
        Some(req.max_tokens),
    );
    let admitted = match shared.limits.admit(need) {
        Ok(admitted) => admitted,
        Err(refused) => return rate_limited(&refused),
    };
    shared.count_tokens(reply.input_tokens, reply.output_tokens);
    let gap = Duration::from_millis(shared.opts.chunk_delay_ms);
    let mut response = if req.stream {
        let body = MockBody::spoiled(
            mode,
            reply.stream_frames(),
            gap,
            || garbage(reply.output_tokens + 2),
            |_| reply::error_event("overloaded_error", "Overloaded"),
            MockBody::cut_short,
        );
        let mut r = Response::new(body);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        r
    } else {
        let body = MockBody::answer(mode, reply.json());
        let mut r = Response::new(body);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    limits::admitted(&mut response, admitted);
    response
}

fn garbage(count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            Bytes::from(format!(
                "event: content_block_delta\ndata: {{not json #{i}\n\n"
            ))
        })
        .collect()
}

/// `Mode::Fail` in Anthropic's words.
fn fail(status: u16, retry_after_s: Option<f64>, message: Option<&str>) -> Response<MockBody> {
    let status = super::refusal::fail_status(status);
    let mut r = ErrorBody::for_status(status, message).response();
    if let Some(wait) = retry_after_s.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        if status == StatusCode::TOO_MANY_REQUESTS {
            limits::failed(r.headers_mut(), wait);
        }
    }
    r
}

#[cfg(test)]
mod tests;
