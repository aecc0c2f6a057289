//! One attempt: a deployment called for a request, its answer read up to
//! what decides the attempt (a whole answer, a stream's first event, an
//! error, a timeout), and what that means for the request.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;

use super::Gateway;
use super::answer::{
    Watch, failed, is_event_stream, read_answer, root_cause, start_stream, upstream_error,
};
use super::door::messages::stream::MessagesStream;
use super::door::{self, Asked, Way};
use super::error::ApiError;
use super::flight::Flight;
use super::provider::{AnswerContext, Decoder};
use super::proxy::Passed;
use super::relay::Tail;
use super::sse::Usage;
use super::upstream::{Sent, Upstream};
use crate::events::AttemptOutcome;
use crate::router::Verdict;

/// `at + d`, or a year from `at` when the sum would overflow (a timeout of
/// 1e19 seconds passes validation and means "never").
pub(super) fn far(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

pub(super) use super::provider::limits::Exhausted;

/// What to count against the deployment's window for an attempt.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tokens {
    /// The upstream's report (or nothing for a request it refused).
    Actual(crate::router::Spent),
    /// Keep the estimate: the upstream may have spent tokens we cannot see.
    Estimate,
}

impl Tokens {
    /// Nothing spent: the upstream refused the request.
    pub(super) const NOTHING: Tokens = Tokens::Actual(crate::router::Spent {
        input: 0,
        output: 0,
    });
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
        rest: Tail,
        decoder: Decoder,
    },
    /// The deployment's API cannot take this request (a parameter it cannot
    /// honour); nothing was sent. The client hears it if no other can.
    Refused(ApiError),
    /// The deployment does not offer the endpoint: try another; if none
    /// offers it, this answer goes back to the client.
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
        /// The limits the provider said ran out (Anthropic's headers).
        exhausted: Exhausted,
    },
}

/// What a client may learn about a failed attempt: the kind, not the upstream's words.
pub(super) fn outcome_summary(outcome: &AttemptOutcome) -> String {
    match outcome {
        AttemptOutcome::Status { status } => format!("answered {status}"),
        AttemptOutcome::Timeout => "timed out".into(),
        AttemptOutcome::Connect => "could not be reached".into(),
        AttemptOutcome::Auth => "could not authenticate".into(),
        AttemptOutcome::InvalidResponse => "sent an invalid answer".into(),
        AttemptOutcome::NotOffered { status } => format!("does not offer this endpoint ({status})"),
        AttemptOutcome::Ok { .. } | AttemptOutcome::Cancelled => "did not answer".into(),
    }
}

/// Keeps the deployment's key out of what an upstream said about a failure
/// (it goes to the log and the events) and out of error bodies passed back
/// to the client, who must never see the provider's key.
pub(super) fn scrubbed(attempted: Attempted, up: &Upstream) -> Attempted {
    match attempted {
        Attempted::Failed {
            outcome,
            verdict,
            detail,
            tokens,
            exhausted,
        } => Attempted::Failed {
            outcome,
            verdict,
            detail: up.scrub(detail),
            tokens,
            exhausted,
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

/// The server's timeouts, which a deployment's own override.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerTimeouts {
    first_byte: Duration,
    stream_idle: Option<Duration>,
}

impl ServerTimeouts {
    pub(super) fn of(settings: &super::Settings) -> Self {
        Self {
            first_byte: settings.first_byte_timeout,
            stream_idle: settings.stream_idle_timeout,
        }
    }
}

pub(super) async fn attempt(
    gw: &Gateway,
    flight: &Flight,
    up: &std::sync::Arc<Upstream>,
    asked: &Asked,
    deadline: tokio::time::Instant,
    server: ServerTimeouts,
) -> Attempted {
    let dialect = up.plan.dialect;
    let started = Instant::now();
    let mut call = match asked.call(up, gw.at(started)) {
        Ok(c) => c,
        Err(e) => return Attempted::Refused(e),
    };
    let req = &asked.req;
    let own = up.config.timeouts;
    let first_byte = own.first_byte.unwrap_or(server.first_byte);
    // The deployment's own request timeout bounds its attempt, inside the
    // request's: when it runs out, the next deployment still has the rest.
    let deadline = match own.request {
        Some(limit) => deadline.min(tokio::time::Instant::from_std(far(started, limit))),
        None => deadline,
    };
    let first_deadline = tokio::time::Instant::from_std(far(started, first_byte)).min(deadline);
    let sent = tokio::time::timeout_at(
        first_deadline,
        up.request(
            gw.client(),
            call.endpoint,
            req.stream,
            std::mem::take(&mut call.body),
            call.headers(),
        ),
    )
    .await;
    let response = match sent {
        Err(_) => {
            let waited = first_deadline.into_std().saturating_duration_since(started);
            return failed(
                AttemptOutcome::Timeout,
                format!("did not answer within {:.1}s", waited.as_secs_f64()),
                Tokens::Estimate,
            );
        }
        Ok(Err(Sent::Auth(why))) => {
            // The operator must hear why without turning debug logs on.
            tracing::warn!(deployment = %up.name, "cannot authenticate: {why}");
            return failed(AttemptOutcome::Auth, why, Tokens::NOTHING);
        }
        Ok(Err(Sent::Http(e))) if e.is_connect() => {
            return failed(
                AttemptOutcome::Connect,
                format!("could not connect: {}", root_cause(&e)),
                Tokens::NOTHING,
            );
        }
        Ok(Err(Sent::Http(e))) => {
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
        let answer =
            upstream_error(response, dialect, call.endpoint, first_deadline, deadline).await;
        return match answer {
            // Bedrock or Vertex refusing a beta flag our allowlist let
            // through (the platforms add flags, and sometimes drop them):
            // this deployment's limit, not the request's fault, so the
            // others are asked; when none can, the client hears this one.
            Attempted::Answered {
                status,
                headers,
                body,
                ..
            } if call.way == Way::Native
                && status == StatusCode::BAD_REQUEST
                && memchr::memmem::find(&body, b"invalid beta flag").is_some() =>
            {
                Attempted::NotOffered {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        };
    }
    let cx = AnswerContext {
        model: flight.answer_model(),
        rename: flight.renames_answer().then(|| &*flight.origin().name),
        // Only translated answers carry a time of ours; passed-through ones have their own.
        created: if dialect == super::provider::Dialect::OpenAi {
            0
        } else {
            crate::events::unix_ms() / 1000
        },
        wants_usage: asked.chat_req(call.way).wants_usage,
    };
    let dropped = call.extra.and_then(|e| e.dropped.map(Box::new));
    // A request the gateway could not tell was a stream (`"stream": "yes"`)
    // is relayed as one when a lenient upstream answers with one.
    if req.stream || is_event_stream(&response) {
        let watch = Watch {
            upstream: up.clone(),
            first_deadline,
            idle: own.stream_idle.or(server.stream_idle),
            deadline,
            dropped,
        };
        let decoder = match call.way {
            Way::Native if dialect == super::provider::Dialect::Bedrock => {
                Decoder::Messages(Box::new(MessagesStream::bedrock()))
            }
            Way::Native => Decoder::Messages(Box::new(MessagesStream::sse())),
            Way::Translated => Decoder::ThroughChat(Box::new(door::messages::hub::through_chat(
                dialect.decoder(asked.chat_req(Way::Translated), &cx),
                cx.model,
            ))),
            Way::Chat => dialect.decoder(req, &cx),
            Way::Responses => Decoder::Responses(Box::default()),
            Way::Bridged => Decoder::Bridged(Box::new(door::responses::hub::bridged(
                dialect.decoder(asked.chat_req(Way::Bridged), &cx),
                cx.model,
                asked.bridged_tools().cloned().unwrap_or_default(),
            ))),
        };
        start_stream(response, decoder, watch).await
    } else {
        let tools = match call.way {
            Way::Bridged => asked.bridged_tools(),
            _ => None,
        };
        read_answer(
            response,
            dialect,
            (call.way, tools),
            &cx,
            first_deadline,
            deadline,
            dropped,
        )
        .await
    }
}
