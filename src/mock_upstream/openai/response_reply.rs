//! OpenAI's Responses API: the `response` object and the `response.*` SSE
//! events the mock answers with, and the responses it keeps.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, CallKind, ResponsesJob, word};

/// Everything one `response` is made from.
#[derive(Debug, Clone)]
pub(crate) struct ResponseReply<'a> {
    pub(crate) id: &'a str,
    pub(crate) created_at: u64,
    pub(crate) model: &'a str,
    pub(crate) job: &'a ResponsesJob,
    pub(crate) input_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) output_tokens: u64,
    /// `max_output_tokens` cut the text short: status `incomplete`.
    pub(crate) incomplete: bool,
}

impl ResponseReply<'_> {
    fn tail(&self) -> &str {
        &self.id[self.id.len().saturating_sub(12)..]
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.tail())
    }

    fn text(&self) -> String {
        super::completion_text(self.output_tokens)
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        })
    }

    fn status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// The output items, done.
    fn output(&self) -> Vec<Value> {
        if self.job.calls.is_empty() {
            return vec![json!({
                "id": self.message_id(),
                "type": "message",
                "status": self.status(),
                "role": "assistant",
                "content": [{"type": "output_text", "text": self.text(), "annotations": [], "logprobs": []}],
            })];
        }
        (0..self.job.calls.len())
            .map(|i| self.call_item(i, true))
            .collect()
    }

    /// The i-th call's item, done or just begun.
    fn call_item(&self, i: usize, done: bool) -> Value {
        let call = &self.job.calls[i];
        let tail = self.tail();
        let call_id = format!("call_{tail}{i:02}");
        let status = if done { "completed" } else { "in_progress" };
        let payload = if done { call.payload.as_str() } else { "" };
        let mut item = match call.kind {
            CallKind::Function => json!({
                "id": format!("fc_{tail}{i:02}"),
                "type": "function_call",
                "status": status,
                "arguments": payload,
                "call_id": call_id,
                "name": call.name,
            }),
            CallKind::Custom => json!({
                "id": format!("ctc_{tail}{i:02}"),
                "type": "custom_tool_call",
                "status": status,
                "call_id": call_id,
                "input": payload,
                "name": call.name,
            }),
        };
        if let Some(ns) = &call.namespace {
            item["namespace"] = json!(ns);
        }
        item
    }

    /// The `response` object: in progress (no output, no usage) or final.
    fn object(&self, done: bool) -> Value {
        let e = &self.job.echo;
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": if done { self.status() } else { "in_progress" },
            "background": false,
            "error": null,
            "incomplete_details": if done && self.incomplete {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
            "instructions": e.instructions,
            "max_output_tokens": self.job.max_output_tokens,
            "model": self.model,
            "output": if done { self.output() } else { Vec::new() },
            "parallel_tool_calls": e.parallel_tool_calls,
            "previous_response_id": self.job.previous_response_id,
            "prompt_cache_key": e.prompt_cache_key,
            "reasoning": e.reasoning,
            "service_tier": "default",
            "store": self.job.store,
            "temperature": 1.0,
            "text": e.text,
            "tool_choice": e.tool_choice,
            "tools": e.tools,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": if done { self.usage() } else { Value::Null },
            "user": e.user,
            "metadata": e.metadata,
        })
    }
}

/// The non-streamed answer: the final `response` object.
pub(crate) fn response_json(reply: &ResponseReply<'_>) -> Vec<u8> {
    serde_json::to_vec(&reply.object(true)).unwrap_or_default()
}

/// One SSE event: `event: TYPE` and its data, which carries `type` and
/// `sequence_number`.
fn event(kind: &str, seq: usize, fields: Value) -> Bytes {
    let mut data = json!({"type": kind, "sequence_number": seq});
    if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
        data.extend(fields);
    }
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The SSE events of a streamed answer, as OpenAI sends them:
/// `response.created`, `response.in_progress`, per output item its
/// `output_item.added`, the content part and text deltas (or the call's
/// argument / input deltas), their `.done`s and `output_item.done`, then
/// `response.completed` (`response.incomplete` when `max_output_tokens` cut
/// it). No `[DONE]`: the Responses API has none.
pub(crate) fn response_events(reply: &ResponseReply<'_>) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(reply.output_tokens as usize + 10);
    let pending = reply.object(false);
    frames.push(event(
        "response.created",
        frames.len(),
        json!({"response": pending}),
    ));
    frames.push(event(
        "response.in_progress",
        frames.len(),
        json!({"response": pending}),
    ));
    let done = reply.output();
    if reply.job.calls.is_empty() {
        let id = reply.message_id();
        let mut begun = done[0].clone();
        begun["status"] = json!("in_progress");
        begun["content"] = json!([]);
        frames.push(event(
            "response.output_item.added",
            frames.len(),
            json!({"output_index": 0, "item": begun}),
        ));
        frames.push(event(
            "response.content_part.added",
            frames.len(),
            json!({"item_id": id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
        ));
        // The words need no escaping, so the deltas are spliced.
        let mut frame = String::with_capacity(200);
        for i in 0..reply.output_tokens {
            frame.clear();
            let space = if i > 0 { " " } else { "" };
            let _ = write!(
                frame,
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"{id}\",\"output_index\":0,\"content_index\":0,\"delta\":\"{space}{}\",\"logprobs\":[]}}\n\n",
                frames.len(),
                word(i)
            );
            frames.push(Bytes::from(frame.clone()));
        }
        let text = reply.text();
        frames.push(event(
            "response.output_text.done",
            frames.len(),
            json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        ));
        frames.push(event(
            "response.content_part.done",
            frames.len(),
            json!({"item_id": id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
        ));
        frames.push(event(
            "response.output_item.done",
            frames.len(),
            json!({"output_index": 0, "item": done[0]}),
        ));
    } else {
        for (i, call) in reply.job.calls.iter().enumerate() {
            let begun = reply.call_item(i, false);
            let id = begun["id"].clone();
            frames.push(event(
                "response.output_item.added",
                frames.len(),
                json!({"output_index": i, "item": begun}),
            ));
            let (delta, finished, key) = match call.kind {
                CallKind::Function => (
                    "response.function_call_arguments.delta",
                    "response.function_call_arguments.done",
                    "arguments",
                ),
                CallKind::Custom => (
                    "response.custom_tool_call_input.delta",
                    "response.custom_tool_call_input.done",
                    "input",
                ),
            };
            let chars: Vec<char> = call.payload.chars().collect();
            for piece in chars.chunks(chars.len().div_ceil(2).max(1)) {
                let piece: String = piece.iter().collect();
                frames.push(event(
                    delta,
                    frames.len(),
                    json!({"item_id": id, "output_index": i, "delta": piece}),
                ));
            }
            let mut fields = json!({"item_id": id, "output_index": i, key: call.payload});
            if call.kind == CallKind::Function {
                fields["name"] = json!(call.name);
            }
            frames.push(event(finished, frames.len(), fields));
            frames.push(event(
                "response.output_item.done",
                frames.len(),
                json!({"output_index": i, "item": done[i]}),
            ));
        }
    }
    let last = if reply.incomplete {
        "response.incomplete"
    } else {
        "response.completed"
    };
    frames.push(event(
        last,
        frames.len(),
        json!({"response": reply.object(true)}),
    ));
    frames
}

/// `response.failed` as event `seq`: the stream's end when the model
/// fails mid-answer. `code` defaults to `server_error`.
pub(crate) fn failed_event(reply: &ResponseReply<'_>, seq: usize, code: Option<&str>) -> Bytes {
    let mut response = reply.object(false);
    response["status"] = json!("failed");
    response["error"] = json!({
        "code": code.unwrap_or("server_error"),
        "message": "The server had an error while processing your request. Sorry about that!",
    });
    event("response.failed", seq, json!({"response": response}))
}

/// Responses kept for `GET /responses/{id}` and `previous_response_id`
/// (those not created with `store: false`): the newest few, in memory.
#[derive(Default)]
pub(crate) struct ResponseStore {
    inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    order: VecDeque<String>,
    by_id: HashMap<String, Bytes>,
}

impl ResponseStore {
    /// How many responses are kept; older ones are forgotten.
    pub(crate) const CAPACITY: usize = 1024;

    pub(crate) fn put(&self, id: &str, json: Bytes) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.by_id.insert(id.to_string(), json).is_none() {
            s.order.push_back(id.to_string());
        }
        while s.order.len() > Self::CAPACITY {
            if let Some(old) = s.order.pop_front() {
                s.by_id.remove(&old);
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Bytes> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.by_id.get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let found = s.by_id.remove(id).is_some();
        if found {
            s.order.retain(|o| o != id);
        }
        found
    }
}

/// OpenAI's answer for a response id it does not have.
pub(crate) fn response_not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid_request(format!("Response with id '{id}' not found."))
    }
}

/// OpenAI's answer for a `previous_response_id` it does not have.
pub(crate) fn previous_not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        param: Some("previous_response_id"),
        code: Some("previous_response_not_found"),
        ..ApiError::invalid_request(format!("Previous response with id '{id}' not found."))
    }
}
