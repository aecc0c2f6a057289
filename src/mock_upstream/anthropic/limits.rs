//! The mock's limits in Anthropic's words: `anthropic-ratelimit-*` headers
//! on every answer, and the 429 `rate_limit_error` with `retry-after`.
//!
//! One header family per limit the mock has, each `-limit`, `-remaining`
//! and `-reset` (an RFC 3339 time, rounded up to the second):
//! `requests` (`--rpm-limit`; remaining takes the slice in),
//! `input-tokens` and `output-tokens` (`--input-tpm-limit`,
//! `--output-tpm-limit`), and `tokens` for the mock's combined window
//! (`--tpm-limit`). On a 429 each limit that ran out says `remaining: 0`
//! and resets when the request would fit it; the others say what is
//! really left, so that a client (the gateway) holds back only the
//! dimension that ran out.

use std::time::{Duration, SystemTime};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::ErrorBody;
use crate::mock_upstream::body::MockBody;
use crate::mock_upstream::dates::rfc3339_ceil;
use crate::mock_upstream::limits::{Admitted, Dim, Gauge, Gauges, Refused};
use crate::mock_upstream::window;

const DOCS: &str = "For details, refer to: https://docs.claude.com/en/api/rate-limits. \
                    You can see the response headers for current usage. \
                    Please reduce the prompt length or the maximum tokens requested, or try again later.";

/// An admitted answer: the limits' headers, and the output reservation
/// held until its body ends.
pub(crate) fn admitted(response: &mut Response<MockBody>, admitted: Admitted) {
    set_gauges(response.headers_mut(), &admitted.gauges);
    response.body_mut().hold_settle(admitted.settle);
}

fn set_gauges(headers: &mut HeaderMap, gauges: &Gauges) {
    let now = SystemTime::now();
    for (kind, gauge) in [
        ("requests", gauges.requests),
        ("tokens", gauges.tokens),
        ("input-tokens", gauges.input),
        ("output-tokens", gauges.output),
    ] {
        if let Some(g) = gauge {
            set(headers, kind, g, now);
        }
    }
}

fn set(headers: &mut HeaderMap, kind: &str, g: Gauge, now: SystemTime) {
    let remaining = if g.refused { 0 } else { g.remaining };
    for (part, value) in [
        ("limit", g.limit.to_string()),
        ("remaining", remaining.to_string()),
        ("reset", rfc3339_ceil(now + g.reset)),
    ] {
        let name = HeaderName::try_from(format!("anthropic-ratelimit-{kind}-{part}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
}

/// The 429 Anthropic answers over a limit: `retry-after` in whole seconds
/// (at least 1) and the limits' headers, those that ran out at 0.
pub(crate) fn rate_limited(refused: &Refused) -> Response<MockBody> {
    let mut r =
        ErrorBody::for_status(StatusCode::TOO_MANY_REQUESTS, Some(&message(refused))).response();
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::RETRY_AFTER,
        HeaderValue::from(window::retry_after_secs(refused.retry_after)),
    );
    set_gauges(headers, &refused.gauges);
    r
}

fn message(refused: &Refused) -> String {
    let limit = |g: Option<Gauge>| g.map_or(0, |g| g.limit);
    let g = &refused.gauges;
    match refused.dim {
        // What the mock said before it had other limits.
        Dim::Tokens => {
            "This request would exceed the rate limit for your organization of input tokens per minute."
                .to_string()
        }
        Dim::Requests => format!(
            "This request would exceed your organization's rate limit of {} requests per minute. {DOCS}",
            limit(g.requests)
        ),
        Dim::Input => format!(
            "This request would exceed your organization's rate limit of {} input tokens per minute. {DOCS}",
            limit(g.input)
        ),
        Dim::Output => format!(
            "This request would exceed your organization's rate limit of {} output tokens per minute. {DOCS}",
            limit(g.output)
        ),
        Dim::InFlight => format!(
            "This request would exceed your organization's limit of {} concurrent requests. Please try again later.",
            refused.max_in_flight.unwrap_or_default()
        ),
    }
}

/// `Mode::Fail`'s 429 headers, as before the mock had its own limits: the
/// tokens used up until `wait` is over, requests left.
pub(super) fn failed(headers: &mut HeaderMap, wait: Duration) {
    let reset = rfc3339_ceil(SystemTime::now() + wait);
    for (name, value) in [
        ("anthropic-ratelimit-tokens-limit", "0".to_string()),
        ("anthropic-ratelimit-tokens-remaining", "0".into()),
        ("anthropic-ratelimit-tokens-reset", reset.clone()),
        ("anthropic-ratelimit-requests-limit", "1000".into()),
        ("anthropic-ratelimit-requests-remaining", "999".into()),
        ("anthropic-ratelimit-requests-reset", reset),
    ] {
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
}
