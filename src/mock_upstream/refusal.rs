//! OpenAI's refusals as the mock gives them: over one of its limits (429
//! with the headers clients read), and the failures a
//! [`Mode::Fail`](super::Mode) asks for; and the limits' headers on the
//! answers it admits.
//!
//! OpenAI (and Azure) report two limits in headers, tokens and requests:
//! `x-ratelimit-{limit,remaining,reset}-{tokens,requests}`. The mock's
//! input and output limits have no OpenAI headers; their 429s say which
//! limit in the error's `type` and message, and when in `retry-after`.

use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::MockBody;
use super::handler::error_response;
use super::limits::{Admitted, Dim, Gauge, Gauges, Refused};
use super::openai::ApiError;
use super::window;

pub(super) const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub(super) const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");

/// An admitted answer: the limits' headers, and the output reservation
/// held until its body ends.
pub(super) fn admitted(response: &mut Response<MockBody>, admitted: Admitted) {
    set_gauges(response.headers_mut(), &admitted.gauges);
    response.body_mut().hold_settle(admitted.settle);
}

/// `x-ratelimit-*` for tokens and requests, when the mock has those limits.
/// On a 429 the tokens keep their real remaining (what OpenAI sends) while
/// the requests that ran out say 0; each reset is the time until the
/// request would fit, or until the window is whole again.
fn set_gauges(headers: &mut HeaderMap, gauges: &Gauges) {
    let mut set = |gauge: Option<Gauge>, names: [HeaderName; 3]| {
        let Some(g) = gauge else { return };
        let [limit, remaining, reset] = names;
        headers.insert(limit, HeaderValue::from(g.limit));
        headers.insert(remaining, HeaderValue::from(g.remaining));
        if let Ok(v) = HeaderValue::try_from(window::openai_duration(g.reset)) {
            headers.insert(reset, v);
        }
    };
    set(
        gauges.tokens,
        [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS],
    );
    set(
        gauges.requests,
        [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
    );
}

/// The 429 OpenAI answers when a limit is reached.
pub(super) fn rate_limited(model: &str, refused: &Refused) -> Response<MockBody> {
    let wait = refused.retry_after;
    let (kind, message) = message(model, refused);
    let error = ApiError {
        kind,
        ..ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, Some(&message))
    };
    let mut response = error_response(&error);
    let headers = response.headers_mut();
    set_retry_headers(headers, window::retry_after_secs(wait), wait, false);
    set_gauges(headers, &refused.gauges);
    response
}

/// The error's `type` and message, in OpenAI's words for the limit that
/// refused (the mock's own for the ones OpenAI does not have).
fn message(model: &str, refused: &Refused) -> (&'static str, String) {
    let retry = window::openai_duration(refused.retry_after);
    let visit = "Visit https://platform.openai.com/account/rate-limits to learn more.";
    let g = &refused.gauges;
    let (kind, what, gauge, requested) = match refused.dim {
        Dim::Tokens => (
            "tokens",
            "tokens per min (TPM)",
            g.tokens,
            refused.need.tokens,
        ),
        Dim::Requests => ("requests", "requests per min (RPM)", g.requests, 1),
        Dim::Input => (
            "input_tokens",
            "input tokens per min (ITPM)",
            g.input,
            refused.need.input,
        ),
        Dim::Output => (
            "output_tokens",
            "output tokens per min (OTPM)",
            g.output,
            refused.need.output_reserved,
        ),
        Dim::InFlight => {
            let max = refused.max_in_flight.unwrap_or_default();
            return (
                "requests",
                format!(
                    "Rate limit reached for {model} in organization org-mock on concurrent requests: \
                     Limit {max}. Please try again in {retry}. {visit}"
                ),
            );
        }
    };
    let (limit, remaining) = gauge.map_or((0, 0), |g| (g.limit, g.remaining));
    if let (Dim::Requests, Some((per, slice))) = (refused.dim, refused.slice) {
        return (
            kind,
            format!(
                "Rate limit reached for {model} in organization org-mock on requests per {slice}s: \
                 Limit {per} (of {limit} per min), Requested 1. Please try again in {retry}. {visit}"
            ),
        );
    }
    let message = if refused.too_large {
        format!(
            "Request too large for {model} in organization org-mock on {what}: Limit {limit}, \
             Requested {requested}. The input or output tokens must be reduced in order to run successfully. {visit}"
        )
    } else {
        format!(
            "Rate limit reached for {model} in organization org-mock on {what}: Limit {limit}, \
             Used {}, Requested {requested}. Please try again in {retry}. {visit}",
            limit - remaining,
        )
    };
    (kind, message)
}

/// `Retry-After` (whole seconds), `retry-after-ms`, and with `reset_tokens`
/// `x-ratelimit-reset-tokens`: the three signals clients look at (a
/// limit's own 429 sets its reset headers from its gauges instead).
fn set_retry_headers(headers: &mut HeaderMap, secs: u64, wait: Duration, reset_tokens: bool) {
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert(RETRY_AFTER_MS, HeaderValue::from(window::ceil_millis(wait)));
    if reset_tokens && let Ok(reset) = HeaderValue::try_from(window::openai_duration(wait)) {
        headers.insert(RESET_TOKENS, reset);
    }
}

/// `Mode::Fail`'s status as answered: an error status, else 500 (a 204
/// with a body would break the framing, not test the gateway).
pub(super) fn fail_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `Mode::Fail`'s answer.
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
