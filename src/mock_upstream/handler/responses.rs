//! OpenAI's Responses API: `POST /responses`, and `GET` / `DELETE`
//! `/responses/{id}` (with `/input_items` and `/cancel`) for the responses
//! kept (those not created with `store: false`).

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};

use super::{EVENT_STREAM, JSON, error_response, json_response, respond};
use crate::mock_upstream::Mode;
use crate::mock_upstream::body::{End, MockBody};
use crate::mock_upstream::limits::Need;
use crate::mock_upstream::openai::{self, ApiError, ResponseReply};
use crate::mock_upstream::refusal::{self, rate_limited};
use crate::mock_upstream::state::Shared;

/// `POST /responses`.
pub(super) fn create(shared: &Shared, mode: &Mode, body: &[u8]) -> Response<MockBody> {
    let job = match openai::parse_responses(body) {
        Ok(job) => job,
        Err(e) => return error_response(&e),
    };
    if let Some(previous) = &job.previous_response_id
        && shared.responses.get(previous).is_none()
    {
        return error_response(&openai::previous_not_found(previous));
    }
    if shared.draw_failure() {
        return error_response(&ApiError::server_error());
    }
    let configured = u64::from(shared.opts.tokens);
    let output_tokens = job
        .max_output_tokens
        .map_or(configured, |max| max.min(configured));
    let model = shared.opts.model.as_deref().unwrap_or(&job.model);
    let need = Need::new(job.input_tokens, output_tokens, job.max_output_tokens);
    let admitted = match shared.limits.admit(need) {
        Ok(admitted) => admitted,
        Err(refused) => return rate_limited(model, &refused),
    };
    shared.count_tokens(job.input_tokens, output_tokens);
    let id = shared.completion_id("resp_");
    let reply = ResponseReply {
        id: &id,
        created_at: openai::unix_now(),
        model,
        job: &job,
        input_tokens: job.input_tokens,
        cached_tokens: shared.opts.cache_read_tokens.min(job.input_tokens),
        output_tokens,
        incomplete: job.calls.is_empty() && output_tokens < configured,
    };
    let json = openai::response_json(&reply);
    if job.store {
        shared.responses.put(&id, Bytes::from(json.clone()));
    }
    let mut response = if job.stream {
        let gap = Duration::from_millis(shared.opts.chunk_delay_ms);
        respond(StatusCode::OK, EVENT_STREAM, stream_body(mode, &reply, gap))
    } else {
        respond(StatusCode::OK, JSON, MockBody::answer(mode, json))
    };
    refusal::admitted(&mut response, admitted);
    response
}

/// The events, spoiled as the mode says; the provider's error event is
/// `response.failed`.
fn stream_body(mode: &Mode, reply: &ResponseReply<'_>, gap: Duration) -> MockBody {
    let frames = openai::response_events(reply);
    let seq = match mode {
        Mode::ErrorMidStream { after_chunks, .. } => frames
            .len()
            .min(usize::try_from(*after_chunks).unwrap_or(usize::MAX)),
        _ => 0,
    };
    match mode {
        Mode::Garbage => MockBody::stream(
            openai::garbage_frames(reply.output_tokens + 2),
            gap,
            End::Clean,
        ),
        _ => MockBody::spoiled(
            mode,
            frames,
            gap,
            Vec::new,
            |code| openai::failed_event(reply, seq, code),
            MockBody::cut_short,
        ),
    }
}

/// `GET` / `DELETE /responses/{id}`, `GET .../input_items`,
/// `POST .../cancel`.
pub(super) fn by_id(shared: &Shared, method: &Method, path: &str) -> Response<MockBody> {
    let rest = path
        .rsplit_once("/responses/")
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('/');
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(stored) = shared.responses.get(id) else {
        if id.is_empty() || !matches!(action, "" | "input_items" | "cancel") {
            return error_response(&ApiError::not_found(method, path));
        }
        return error_response(&openai::response_not_found(id));
    };
    match (method, action) {
        (&Method::GET, "") => json_response(StatusCode::OK, stored),
        (&Method::DELETE, "") => {
            shared.responses.remove(id);
            json_response(
                StatusCode::OK,
                serde_json::to_vec(
                    &serde_json::json!({"id": id, "object": "response.deleted", "deleted": true}),
                )
                .unwrap_or_default(),
            )
        }
        // The mock keeps no input items.
        (&Method::GET, "input_items") => json_response(
            StatusCode::OK,
            &br#"{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}"#[..],
        ),
        (&Method::POST, "cancel") => error_response(&ApiError::invalid_request(
            "Only responses created with background=true can be cancelled.",
        )),
        _ => error_response(&ApiError::method_not_allowed(method, path)),
    }
}
