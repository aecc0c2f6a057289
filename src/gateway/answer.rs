//! Reading what an upstream answered: a whole body within its limits and
//! deadlines, the start of a stream up to its first event worth sending,
//! an error status classified by the deployment's provider.

use super::attempt::Exhausted;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::door::Way;
use super::provider::{AnswerContext, Decoder, Dialect, ErrorVerdict};
use super::proxy::{Attempted, Passed, Tokens};
use super::relay::{ByteStream, Tail};
use super::request::Endpoint;
use super::upstream::Response as UpResponse;
use crate::events::AttemptOutcome;
use crate::router::Verdict;
use tokio::time::Instant;

/// The largest answer read into memory from an upstream (non-streaming).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How much of an upstream's error body is kept for messages.
const MAX_ERROR_BYTES: usize = 64 << 10;

pub(super) fn failed(
    outcome: AttemptOutcome,
    detail: impl Into<String>,
    tokens: Tokens,
) -> Attempted {
    Attempted::Failed {
        outcome,
        verdict: Verdict::Failed,
        detail: detail.into(),
        tokens,
        exhausted: Exhausted::default(),
    }
}

pub(super) fn is_event_stream(response: &UpResponse) -> bool {
    response
        .header(&header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// The innermost error message: the outer ones only say "client error".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A body gathered chunk by chunk. Most come in one chunk: it is kept as
/// it came, and copied only when a second one follows (an allocation and a
/// copy of the whole body less).
#[derive(Default)]
pub(super) struct Gathered {
    first: Option<Bytes>,
    rest: BytesMut,
}

impl Gathered {
    pub(super) fn len(&self) -> usize {
        self.rest.len() + self.first.as_ref().map_or(0, Bytes::len)
    }

    pub(super) fn push(&mut self, chunk: Bytes) {
        match self.first.take() {
            None if self.rest.is_empty() => self.first = Some(chunk),
            Some(first) => {
                self.rest.extend_from_slice(&first);
                self.rest.extend_from_slice(&chunk);
            }
            None => self.rest.extend_from_slice(&chunk),
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.rest.freeze())
    }
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
    let mut gathered = Gathered::default();
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
            Ok(None) => return Ok(gathered.into_bytes()),
            Ok(Some(Err(e))) => {
                return Err((
                    AttemptOutcome::InvalidResponse,
                    format!("broke off its answer: {}", root_cause(&e)),
                ));
            }
            Ok(Some(Ok(chunk))) => {
                started = true;
                if gathered.len() + chunk.len() > limit {
                    return Err((
                        AttemptOutcome::InvalidResponse,
                        format!("sent an answer larger than {limit} bytes"),
                    ));
                }
                gathered.push(chunk);
            }
        }
    }
}

pub(super) async fn read_answer(
    response: UpResponse,
    dialect: Dialect,
    (way, tools): (
        Way,
        Option<&crate::gateway::door::responses::translate::Tools>,
    ),
    cx: &AnswerContext<'_>,
    first_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
    dropped: Option<Box<HeaderValue>>,
) -> Attempted {
    let status = response.status();
    let mut headers = Passed::of(&response);
    headers.dropped_betas = dropped;
    match read_limited(response, MAX_ANSWER_BYTES, first_deadline, deadline).await {
        Err((outcome, detail)) => failed(outcome, detail, Tokens::Estimate),
        Ok(body) => match way.answer(dialect, body, cx, tools) {
            Ok((body, usage)) => Attempted::Answered {
                status,
                headers: headers.translated(dialect),
                body,
                usage,
            },
            // Nothing has reached the client yet, so a broken answer can be retried elsewhere.
            Err(e) => failed(
                AttemptOutcome::InvalidResponse,
                format!("answered {status} with {e}"),
                Tokens::Estimate,
            ),
        },
    }
}

/// How a stream is watched before and after it is committed.
pub(super) struct Watch {
    pub(super) upstream: std::sync::Arc<super::upstream::Upstream>,
    /// By when the first bytes worth sending must come (at the latest
    /// `deadline`).
    pub(super) first_deadline: Instant,
    /// The longest silence allowed between chunks, headers included.
    pub(super) idle: Option<Duration>,
    /// The attempt's deadline.
    pub(super) deadline: Instant,
    /// Betas left out for this deployment, named in the answer's headers.
    pub(super) dropped: Option<Box<HeaderValue>>,
}

/// Why an attempt that streamed nothing worth sending yet is failed over.
fn stream_refused(decoder: &Decoder, first: Option<&Bytes>) -> Option<Attempted> {
    if decoder.saw_invalid() || decoder.skipped() > 0 {
        let what = decoder.last_skipped().unwrap_or_default();
        return Some(failed(
            AttemptOutcome::InvalidResponse,
            format!("streamed an event that is not JSON: {what}"),
            Tokens::Estimate,
        ));
    }
    if !decoder.saw_error() {
        return None;
    }
    let text = match (decoder.error_message(), first) {
        (Some(m), _) => m.to_string(),
        (None, Some(first)) => String::from_utf8_lossy(first).trim().to_string(),
        (None, None) => "an error event".to_string(),
    };
    Some(match decoder.rate_limited() {
        Some(status) => Attempted::Failed {
            outcome: AttemptOutcome::Status { status },
            verdict: Verdict::RateLimited(None),
            detail: format!("streamed a rate limit: {text}"),
            tokens: Tokens::NOTHING,
            exhausted: Exhausted::default(),
        },
        None => failed(
            AttemptOutcome::InvalidResponse,
            format!("streamed an error: {text}"),
            Tokens::NOTHING,
        ),
    })
}

/// Reads a stream up to its first bytes worth sending: until then,
/// failing over is invisible to the client. Silence counts from the
/// headers: an upstream that sends them and then nothing for the idle
/// limit is failed over long before the first-byte timeout.
pub(super) async fn start_stream(
    response: UpResponse,
    mut decoder: Decoder,
    mut watch: Watch,
) -> Attempted {
    let status = response.status();
    let mut headers = Passed::of(&response);
    headers.dropped_betas = watch.dropped.take();
    if decoder.translates() {
        headers.content_type = Some(HeaderValue::from_static("text/event-stream"));
    }
    let mut body: ByteStream = Box::pin(http_body_util::BodyDataStream::new(response.into_body()));
    let first_deadline = watch.first_deadline;
    let mut silent_until = watch.idle.map(|idle| Instant::now() + idle);
    loop {
        let until = silent_until.map_or(first_deadline, |s| s.min(first_deadline));
        let chunk = match tokio::time::timeout_at(until, body.next()).await {
            Err(_) => {
                let detail = match (silent_until, watch.idle) {
                    (Some(s), Some(idle)) if s < first_deadline => format!(
                        "sent nothing for {:.1}s before its first event (stream_idle_timeout_s)",
                        idle.as_secs_f64()
                    ),
                    _ => "sent headers but no data in time".to_string(),
                };
                return failed(AttemptOutcome::Timeout, detail, Tokens::Estimate);
            }
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                return failed(
                    AttemptOutcome::InvalidResponse,
                    format!("broke off before its first event: {}", root_cause(&e)),
                    Tokens::Estimate,
                );
            }
            Ok(None) => {
                let first = decoder.finish();
                if let Some(refused) = stream_refused(&decoder, first.as_ref()) {
                    return refused;
                }
                return match first {
                    // A stream with nothing in it but its end.
                    Some(first) => Attempted::Streaming {
                        status,
                        headers,
                        first,
                        rest: tail(body, watch),
                        decoder,
                    },
                    None => failed(
                        AttemptOutcome::InvalidResponse,
                        "ended the stream before any data",
                        Tokens::Estimate,
                    ),
                };
            }
        };
        if let Some(idle) = watch.idle {
            silent_until = Some(Instant::now() + idle);
        }
        let first = decoder.feed(chunk);
        if let Some(refused) = stream_refused(&decoder, first.as_ref()) {
            return refused;
        }
        if let Some(first) = first {
            if decoder.done() {
                body = super::relay::end_in_hand(body).await;
            }
            return Attempted::Streaming {
                status,
                headers,
                first,
                rest: tail(body, watch),
                decoder,
            };
        }
    }
}

fn tail(body: ByteStream, watch: Watch) -> Tail {
    Tail {
        body,
        upstream: watch.upstream,
        idle: watch.idle,
        deadline: watch.deadline,
    }
}

pub(super) async fn upstream_error(
    response: UpResponse,
    dialect: Dialect,
    endpoint: Endpoint,
    first_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Attempted {
    let status = response.status();
    let upstream_headers = response.headers().clone();
    let headers = Passed::of(&response);
    let body = read_limited(response, MAX_ERROR_BYTES, first_deadline, deadline)
        .await
        .unwrap_or_default();
    let code = status.as_u16();
    match dialect.error(endpoint, status, &upstream_headers, &body) {
        ErrorVerdict::NotOffered => Attempted::NotOffered {
            status,
            headers,
            body,
        },
        // The caller's mistake: pass it back as the upstream said it.
        ErrorVerdict::Client { body } => Attempted::Answered {
            status,
            headers: headers.translated(dialect),
            body,
            usage: None,
        },
        ErrorVerdict::RateLimited { hint, message } => Attempted::Failed {
            outcome: AttemptOutcome::Status { status: code },
            verdict: Verdict::RateLimited(hint),
            detail: format!("answered {code}: {message}"),
            tokens: Tokens::NOTHING,
            exhausted: Exhausted::of(&upstream_headers, std::time::SystemTime::now()),
        },
        ErrorVerdict::Failed { message } => Attempted::Failed {
            outcome: AttemptOutcome::Status { status: code },
            verdict: Verdict::Failed,
            detail: format!("answered {code}: {message}"),
            tokens: Tokens::NOTHING,
            exhausted: Exhausted::default(),
        },
    }
}
