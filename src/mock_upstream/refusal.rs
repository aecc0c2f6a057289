//! OpenAI's refusals as the mock gives them: over its tokens-per-minute
//! limit (429 with the headers clients read), and the failures a
//! [`Mode::Fail`](super::Mode) asks for.

use std::time::{Duration, Instant};

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::MockBody;
use super::handler::error_response;
use super::openai::ApiError;
use super::state::Shared;
use super::window::{self, Admission};

pub(super) const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub(super) const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// The TPM headers of an admitted answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct LimitHeaders {
    limit: u64,
    remaining: u64,
}

impl LimitHeaders {
    pub(super) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(LIMIT_TOKENS, HeaderValue::from(self.limit));
        headers.insert(REMAINING_TOKENS, HeaderValue::from(self.remaining));
    }
}

/// A request the TPM window refused.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusal {
    limit: u64,
    remaining: u64,
    requested: u64,
    retry_after: Duration,
    too_large: bool,
}

/// Counts `tokens` in the TPM window, when the mock has a limit.
pub(super) fn admit(shared: &Shared, tokens: u64) -> Result<Option<LimitHeaders>, Refusal> {
    let Some(mut window) = shared.window() else {
        return Ok(None);
    };
    let limit = window.limit();
    let admission = window.try_admit(tokens, Instant::now());
    drop(window);
    match admission {
        Admission::Admitted { remaining } => Ok(Some(LimitHeaders { limit, remaining })),
        Admission::Limited {
            remaining,
            retry_after,
            too_large,
        } => Err(Refusal {
            limit,
            remaining,
            requested: tokens,
            retry_after,
            too_large,
        }),
    }
}

/// The 429 OpenAI answers when the tokens-per-minute limit is reached.
pub(super) fn rate_limited(model: &str, refusal: Refusal) -> Response<MockBody> {
    let Refusal {
        limit,
        remaining,
        requested,
        retry_after,
        too_large,
    } = refusal;
    // A zero wait (a request that never fits, on an empty window) would
    // invite an immediate retry; Retry-After is at least 1 s anyway.
    let wait = retry_after.max(Duration::from_millis(1));
    let message = if too_large {
        format!(
            "Request too large for {model} in organization org-mock on tokens per min (TPM): Limit {limit}, \
             Requested {requested}. The input or output tokens must be reduced in order to run successfully. \
             Visit https://platform.openai.com/account/rate-limits to learn more."
        )
    } else {
        format!(
            "Rate limit reached for {model} in organization org-mock on tokens per min (TPM): Limit {limit}, \
             Used {}, Requested {requested}. Please try again in {}. Visit \
             https://platform.openai.com/account/rate-limits to learn more.",
            limit - remaining,
            window::openai_duration(wait),
        )
    };
    let error = ApiError {
        kind: "tokens",
        ..ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, Some(&message))
    };
    let mut response = error_response(&error);
    let headers = response.headers_mut();
    set_retry_headers(headers, window::retry_after_secs(wait), wait, true);
    LimitHeaders { limit, remaining }.apply(headers);
    response
}

/// `Retry-After` (whole seconds), `retry-after-ms`, and for a 429
/// `x-ratelimit-reset-tokens`: the three signals clients look at.
fn set_retry_headers(headers: &mut HeaderMap, secs: u64, wait: Duration, rate_limited: bool) {
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert(RETRY_AFTER_MS, HeaderValue::from(window::ceil_millis(wait)));
    if rate_limited && let Ok(reset) = HeaderValue::try_from(window::openai_duration(wait)) {
        headers.insert(RESET_TOKENS, reset);
    }
}

/// `Mode::Fail`'s answer. Statuses that are not errors become 500: a 1xx or
/// a 204 with a body would break the framing, not test the gateway.
/// `Mode::Fail`'s status as answered: an error status, else 500 (a 204
/// with a body would break the framing, not test the gateway).
pub(super) fn fail_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) fn fail_response(
    status: u16,
    retry_after_s: Option<f64>,
    message: Option<&str>,
) -> Response<MockBody> {
    let status = fail_status(status);
    let mut response = error_response(&ApiError::for_status(status, message));
    let wait = retry_after_s.and_then(|s| Duration::try_from_secs_f64(s).ok());
    if let Some(wait) = wait {
        // Rounded up, but a deliberate 0 stays 0.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        set_retry_headers(
            response.headers_mut(),
            secs,
            wait,
            status == StatusCode::TOO_MANY_REQUESTS,
        );
    }
    response
}
