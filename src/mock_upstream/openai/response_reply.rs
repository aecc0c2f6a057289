//! OpenAI's Responses API: the `response` object and the `response.*` SSE
//! events the mock answers with, and the responses it keeps.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Serialize;
use serde_json::Value;

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

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            input_tokens_details: Cached {
                cached_tokens: self.cached_tokens,
            },
            output_tokens: self.output_tokens,
            output_tokens_details: Reasoning {
                reasoning_tokens: 0,
            },
            total_tokens: self.input_tokens + self.output_tokens,
        }
    }

    fn status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// The output items, done (`text` the message's, when it has one).
    fn output<'s>(&'s self, message_id: &'s str, text: &'s str) -> Vec<Item<'s>> {
        if self.job.calls.is_empty() {
            return vec![Item::Message(self.message(message_id, text, true))];
        }
        (0..self.job.calls.len())
            .map(|i| Item::Call(self.call_item(i, true)))
            .collect()
    }

    fn message<'s>(&'s self, id: &'s str, text: &'s str, done: bool) -> Message<'s> {
        Message {
            id,
            kind: "message",
            status: if done { self.status() } else { "in_progress" },
            role: "assistant",
            content: if done {
                vec![OutputText::of(text)]
            } else {
                Vec::new()
            },
        }
    }

    /// The i-th call's item, done or just begun.
    fn call_item(&self, i: usize, done: bool) -> Call<'_> {
        let call = &self.job.calls[i];
        let tail = self.tail();
        let payload = if done { call.payload.as_str() } else { "" };
        let (prefix, kind) = match call.kind {
            CallKind::Function => ("fc", "function_call"),
            CallKind::Custom => ("ctc", "custom_tool_call"),
        };
        Call {
            id: format!("{prefix}_{tail}{i:02}"),
            kind,
            status: if done { "completed" } else { "in_progress" },
            arguments: (call.kind == CallKind::Function).then_some(payload),
            call_id: format!("call_{tail}{i:02}"),
            input: (call.kind == CallKind::Custom).then_some(payload),
            name: &call.name,
            namespace: call.namespace.as_deref(),
        }
    }

    /// The `response` object: in progress (no output, no usage) or final.
    fn object<'s>(&'s self, status: &'s str, output: Vec<Item<'s>>) -> Object<'s> {
        let e = &self.job.echo;
        let done = status != "in_progress" && status != "failed";
        Object {
            id: self.id,
            object: "response",
            created_at: self.created_at,
            status,
            background: false,
            error: None,
            incomplete_details: (done && self.incomplete).then_some(Incomplete {
                reason: "max_output_tokens",
            }),
            instructions: &e.instructions,
            max_output_tokens: self.job.max_output_tokens,
            model: self.model,
            output,
            parallel_tool_calls: e.parallel_tool_calls,
            previous_response_id: self.job.previous_response_id.as_deref(),
            prompt_cache_key: &e.prompt_cache_key,
            reasoning: &e.reasoning,
            service_tier: "default",
            store: self.job.store,
            temperature: 1.0,
            text: &e.text,
            tool_choice: &e.tool_choice,
            tools: &e.tools,
            top_p: 1.0,
            truncation: "disabled",
            usage: done.then(|| self.usage()),
            user: &e.user,
            metadata: &e.metadata,
        }
    }
}

// The answer's shapes, serialized straight from borrowed parts: the mock
// answers as fast as the chat mock does its own, so that a benchmark of
// the gateway's Responses door measures the gateway, not the mock.

#[derive(Serialize)]
struct Object<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    background: bool,
    error: Option<ErrorBody<'a>>,
    incomplete_details: Option<Incomplete>,
    instructions: &'a Value,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: Vec<Item<'a>>,
    parallel_tool_calls: bool,
    previous_response_id: Option<&'a str>,
    prompt_cache_key: &'a Value,
    reasoning: &'a Value,
    service_tier: &'static str,
    store: bool,
    temperature: f64,
    text: &'a Value,
    tool_choice: &'a Value,
    tools: &'a Value,
    top_p: f64,
    truncation: &'static str,
    usage: Option<Usage>,
    user: &'a Value,
    metadata: &'a Value,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'static str,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: Cached,
    output_tokens: u64,
    output_tokens_details: Reasoning,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Cached {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct Reasoning {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Message(Message<'a>),
    Call(Call<'a>),
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    role: &'static str,
    content: Vec<OutputText<'a>>,
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
    logprobs: [(); 0],
}

impl<'a> OutputText<'a> {
    fn of(text: &'a str) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

#[derive(Serialize)]
struct Call<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    call_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

/// The non-streamed answer: the final `response` object.
pub(crate) fn response_json(reply: &ResponseReply<'_>) -> Vec<u8> {
    let (id, text) = (reply.message_id(), reply.text());
    let object = reply.object(reply.status(), reply.output(&id, &text));
    serde_json::to_vec(&object).unwrap_or_default()
}

/// One SSE event: `event: TYPE` and its data, which carries `type` and
/// `sequence_number` before `fields`' own members.
fn event(kind: &str, seq: usize, fields: &impl Serialize) -> Bytes {
    let mut frame = Vec::with_capacity(256);
    let _ = write!(
        frame,
        "event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq}"
    );
    let at = frame.len();
    let _ = serde_json::to_writer(&mut frame, fields);
    // `fields` is an object: its opening brace becomes the comma after
    // `sequence_number`, or goes when it is empty.
    if frame.get(at + 1) == Some(&b'}') {
        frame.truncate(at);
        frame.push(b'}');
    } else {
        frame[at] = b',';
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a Object<'a>,
}

#[derive(Serialize)]
struct WithItem<'a, T: Serialize> {
    output_index: usize,
    item: &'a T,
}

#[derive(Serialize)]
struct Part<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: OutputText<'a>,
}

#[derive(Serialize)]
struct TextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct CallDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct CallDone<'a> {
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The SSE events of a streamed answer, as OpenAI sends them:
/// `response.created`, `response.in_progress`, per output item its
/// `output_item.added`, the content part and text deltas (or the call's
/// argument / input deltas), their `.done`s and `output_item.done`, then
/// `response.completed` (`response.incomplete` when `max_output_tokens` cut
/// it). No `[DONE]`: the Responses API has none.
pub(crate) fn response_events(reply: &ResponseReply<'_>) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(reply.output_tokens as usize + 10);
    let pending = reply.object("in_progress", Vec::new());
    for kind in ["response.created", "response.in_progress"] {
        let frame = event(kind, frames.len(), &WithResponse { response: &pending });
        frames.push(frame);
    }
    let (id, text) = (reply.message_id(), reply.text());
    if reply.job.calls.is_empty() {
        let begun = reply.message(&id, &text, false);
        let frame = event(
            "response.output_item.added",
            frames.len(),
            &WithItem {
                output_index: 0,
                item: &begun,
            },
        );
        frames.push(frame);
        let part = |text| Part {
            item_id: &id,
            output_index: 0,
            content_index: 0,
            part: OutputText::of(text),
        };
        let frame = event("response.content_part.added", frames.len(), &part(""));
        frames.push(frame);
        // The words need no escaping, so the deltas are spliced.
        let mut frame = String::with_capacity(200);
        for i in 0..reply.output_tokens {
            frame.clear();
            let space = if i > 0 { " " } else { "" };
            let _ = std::fmt::Write::write_fmt(
                &mut frame,
                format_args!(
                    "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"{id}\",\"output_index\":0,\"content_index\":0,\"delta\":\"{space}{}\",\"logprobs\":[]}}\n\n",
                    frames.len(),
                    word(i)
                ),
            );
            frames.push(Bytes::from(frame.clone()));
        }
        let done = TextDone {
            item_id: &id,
            output_index: 0,
            content_index: 0,
            text: &text,
            logprobs: [],
        };
        let frame = event("response.output_text.done", frames.len(), &done);
        frames.push(frame);
        let frame = event("response.content_part.done", frames.len(), &part(&text));
        frames.push(frame);
        let item = reply.message(&id, &text, true);
        let frame = event(
            "response.output_item.done",
            frames.len(),
            &WithItem {
                output_index: 0,
                item: &item,
            },
        );
        frames.push(frame);
    } else {
        for (i, call) in reply.job.calls.iter().enumerate() {
            let begun = reply.call_item(i, false);
            let frame = event(
                "response.output_item.added",
                frames.len(),
                &WithItem {
                    output_index: i,
                    item: &begun,
                },
            );
            frames.push(frame);
            let (delta, finished) = match call.kind {
                CallKind::Function => (
                    "response.function_call_arguments.delta",
                    "response.function_call_arguments.done",
                ),
                CallKind::Custom => (
                    "response.custom_tool_call_input.delta",
                    "response.custom_tool_call_input.done",
                ),
            };
            let chars: Vec<char> = call.payload.chars().collect();
            for piece in chars.chunks(chars.len().div_ceil(2).max(1)) {
                let piece: String = piece.iter().collect();
                let fields = CallDelta {
                    item_id: &begun.id,
                    output_index: i,
                    delta: &piece,
                };
                let frame = event(delta, frames.len(), &fields);
                frames.push(frame);
            }
            let function = call.kind == CallKind::Function;
            let fields = CallDone {
                item_id: &begun.id,
                output_index: i,
                arguments: function.then_some(call.payload.as_str()),
                input: (!function).then_some(call.payload.as_str()),
                name: function.then_some(call.name.as_str()),
            };
            let frame = event(finished, frames.len(), &fields);
            frames.push(frame);
            let item = reply.call_item(i, true);
            let frame = event(
                "response.output_item.done",
                frames.len(),
                &WithItem {
                    output_index: i,
                    item: &item,
                },
            );
            frames.push(frame);
        }
    }
    let last = if reply.incomplete {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let done = reply.object(reply.status(), reply.output(&id, &text));
    let frame = event(last, frames.len(), &WithResponse { response: &done });
    frames.push(frame);
    frames
}

/// `response.failed` as event `seq`: the stream's end when the model
/// fails mid-answer. `code` defaults to `server_error`.
pub(crate) fn failed_event(reply: &ResponseReply<'_>, seq: usize, code: Option<&str>) -> Bytes {
    let mut response = reply.object("failed", Vec::new());
    response.error = Some(ErrorBody {
        code: code.unwrap_or("server_error"),
        message: "The server had an error while processing your request. Sorry about that!",
    });
    event(
        "response.failed",
        seq,
        &WithResponse {
            response: &response,
        },
    )
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
