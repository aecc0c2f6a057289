//! An OpenAI `chat.completion.chunk` stream as Responses events, frame by
//! frame as bytes arrive (split anywhere), never buffered beyond one
//! incomplete frame and the text and arguments of the items in progress
//! (the closing events repeat them whole):
//!
//! - nothing is sent before the first content (a non-empty text delta, or
//!   a tool call with its name), so the gateway can fail over invisibly
//!   until then; `response.created` and `response.in_progress` go out with
//!   it, then `response.output_item.added`;
//! - text → a `message` item: `response.output_item.added`,
//!   `response.content_part.added`, `response.output_text.delta`s, and at
//!   its end `response.output_text.done`, `response.content_part.done`,
//!   `response.output_item.done`. A refusal is sent as text;
//! - tool calls → `function_call` items (`call_id` the chat call's id),
//!   opened when their name arrives (the text item before them closes),
//!   with `response.function_call_arguments.delta`s as arguments arrive;
//!   parallel calls by their chat `index`, each its own `output_index`;
//!   closed at the finish with `response.function_call_arguments.done` and
//!   `response.output_item.done`. A custom tool's call (see
//!   [`super::Tools`]) is a `custom_tool_call` item whose `input` is sent
//!   whole at the finish (`response.custom_tool_call_input.delta`, `.done`),
//!   once the arguments `{"input": ...}` can be read;
//! - reasoning deltas are dropped (see `answer` for why);
//! - the end: once a `finish_reason` went by and then the usage chunk or
//!   `[DONE]` (or a clean end of the upstream, [`ChatToResponses::finish`]),
//!   the open items close and `response.completed` (`response.incomplete`
//!   for `length` and `content_filter`) follows with the whole response
//!   and its usage;
//! - an error frame (`{"error": ...}`) ends the translation: nothing more
//!   is sent, and the gateway writes `response.failed`;
//! - frames that are not JSON are skipped and counted.
//!
//! Every event carries `sequence_number`, from 0.

use std::io::Write;

use bytes::Bytes;
use serde_json::{Value, json};

use super::chat::{CallDelta, Chunk};
use super::{Tools, now, response, usage};
use crate::gateway::provider::anthropic::stream::data_of;
use crate::gateway::provider::chunk::push_json;

/// The most one frame may hold before the stream is taken as broken.
const MAX_FRAME: usize = 16 << 20;
/// More parallel calls than any model makes: an index past it is noise.
const MAX_CALLS: usize = 256;

#[derive(Debug)]
struct Text {
    output_index: usize,
    id: String,
    text: String,
}

#[derive(Debug, Default)]
struct Call {
    chat_index: u64,
    output_index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
    custom: bool,
    opened: bool,
}

#[derive(Debug)]
pub struct ChatToResponses {
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no frame end.
    scanned: usize,
    out: Vec<u8>,
    model: String,
    id: String,
    tail: String,
    created: u64,
    tools: Tools,
    seq: u64,
    started: bool,
    /// The finished items, by `output_index` (`None` while open).
    output: Vec<Option<Value>>,
    text: Option<Text>,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<Value>,
    counts: Option<(u64, u64)>,
    final_usage: bool,
    done: bool,
    error: Option<String>,
    frames: u64,
    data_frames: u64,
    skipped: u64,
    invalid: bool,
}

impl ChatToResponses {
    /// `model`: the name the client asked for; `id`: the response id
    /// (`resp_...`), its tail naming the items.
    pub fn new(model: &str, id: &str) -> Self {
        Self {
            pending: Vec::new(),
            scanned: 0,
            out: Vec::new(),
            model: model.to_string(),
            id: id.to_string(),
            tail: super::tail(id).to_string(),
            created: now(),
            tools: Tools::default(),
            seq: 0,
            started: false,
            output: Vec::new(),
            text: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            counts: None,
            final_usage: false,
            done: false,
            error: None,
            frames: 0,
            data_frames: 0,
            skipped: 0,
            invalid: false,
        }
    }

    /// The response's id and the model named as asked, for the events
    /// the gateway adds (see `hub::failed_event`).
    pub fn names(&self) -> (&str, &str) {
        (&self.id, &self.model)
    }

    /// The request's tools, so that custom and namespaced tools' calls come
    /// back in their own shape.
    pub fn with_tools(mut self, tools: Tools) -> Self {
        self.tools = tools;
        self
    }

    /// Chat SSE bytes in (split anywhere), Responses SSE out when any.
    pub fn feed(&mut self, chat_sse: &[u8]) -> Option<Bytes> {
        if self.ended() {
            return None;
        }
        // Taken out while its frames are read in place.
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chat_sse);
        let mut start = 0;
        // A separator is at most 3 bytes: look again from just before
        // where the last search ended, not from the frame's start.
        let mut from = self.scanned.saturating_sub(3);
        while let Some((end, sep)) = frame_end(&pending[start + from..]) {
            let end = from + end;
            from = 0;
            self.frame(&pending[start..start + end]);
            start += end + sep;
            if self.ended() {
                break;
            }
        }
        pending.drain(..start.min(pending.len()));
        self.pending = pending;
        // What is left was searched to its end (or the stream ended).
        self.scanned = self.pending.len();
        if self.pending.len() > MAX_FRAME {
            self.pending = Vec::new();
            self.error = Some("an upstream stream frame exceeds 16 MiB".to_string());
        }
        self.take()
    }

    /// The upstream ended cleanly: after a finish reason, the response
    /// completes; before one, nothing is sent (the stream was cut, and the
    /// gateway says so).
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.ended() {
            return self.take();
        }
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if !rest.trim_ascii().is_empty() {
            self.frame(&rest);
        }
        if !self.ended() && self.finish.is_some() {
            self.close();
        }
        self.take()
    }

    /// `response.completed` (or `response.incomplete`) has been produced.
    pub fn done(&self) -> bool {
        self.done
    }

    /// (prompt tokens, completion tokens) when the upstream reported them;
    /// the prompt count includes cached tokens.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.counts
    }

    /// Content deltas seen: text pieces and tool-call pieces.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The message of an error frame from the upstream, once one came (or
    /// of a frame too long to be one).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Frames that were not JSON.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The first frame was not JSON: likely not a chat stream at all.
    pub fn invalid(&self) -> bool {
        self.invalid
    }

    fn ended(&self) -> bool {
        self.done || self.error.is_some()
    }

    fn take(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(Bytes::from(std::mem::take(&mut self.out)))
        }
    }

    fn event(&mut self, kind: &str, mut body: Value) {
        if let Some(map) = body.as_object_mut() {
            map.insert("type".into(), Value::String(kind.to_string()));
            map.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq += 1;
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        // Writing a Value cannot fail.
        let _ = serde_json::to_writer(&mut self.out, &body);
        self.out.extend_from_slice(b"\n\n");
    }

    /// An event written straight out: `fields` writes the members after
    /// `type` and `sequence_number` (the token-by-token events, built
    /// without a `Value` each).
    fn event_with(&mut self, kind: &str, fields: impl FnOnce(&mut Vec<u8>)) {
        let out = &mut self.out;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        let _ = write!(out, "\",\"sequence_number\":{},", self.seq);
        fields(out);
        out.extend_from_slice(b"}\n\n");
        self.seq += 1;
    }

    fn frame(&mut self, frame: &[u8]) {
        if self.ended() {
            return;
        }
        let Some(data) = data_of(frame) else {
            return; // a comment, or an `event:` line alone
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            if self.finish.is_some() {
                self.close();
            }
            return;
        }
        self.data_frames += 1;
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            self.skipped += 1;
            self.invalid |= self.data_frames == 1;
            return;
        };
        if let Some(error) = chunk.error.filter(|e| e.get() != "null") {
            let error: Value = serde_json::from_str(error.get()).unwrap_or_default();
            self.error = Some(match error.get("message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => error.to_string(),
            });
            return;
        }
        if let Some(choice) = chunk.choices.into_iter().flatten().next() {
            if let Some(delta) = choice.delta {
                for text in [delta.content, delta.refusal].into_iter().flatten() {
                    if !text.is_empty() {
                        self.frames += 1;
                        self.text(&text);
                    }
                }
                for (i, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                    self.frames += 1;
                    self.call(i, call);
                }
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(f.into_owned());
            }
        }
        if let Some(u) = chunk.usage.filter(|u| u.get().starts_with('{'))
            && let Ok(u) = serde_json::from_str::<Value>(u.get())
            && let Some((value, input, output)) = usage(Some(&u))
        {
            self.usage = Some(value);
            self.counts = Some((input, output));
            self.final_usage = self.finish.is_some();
        }
        if self.final_usage {
            self.close();
        }
    }

    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let mut r = Vec::with_capacity(256);
        response(&mut r, &self.id, &self.model, self.created, None, &[], None);
        for kind in ["response.created", "response.in_progress"] {
            self.event_with(kind, |out| {
                out.extend_from_slice(b"\"response\":");
                out.extend_from_slice(&r);
            });
        }
    }

    fn text(&mut self, delta: &str) {
        if self.text.is_none() {
            self.start();
            let output_index = self.output.len();
            self.output.push(None);
            let id = format!("msg_{}_{output_index}", self.tail);
            self.event(
                "response.output_item.added",
                json!({
                    "output_index": output_index,
                    "item": {"id": id, "type": "message", "status": "in_progress",
                             "role": "assistant", "content": []},
                }),
            );
            self.event(
                "response.content_part.added",
                json!({
                    "item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                }),
            );
            self.text = Some(Text {
                output_index,
                id,
                text: String::new(),
            });
        }
        let Some(text) = self.text.as_mut() else {
            return;
        };
        text.text.push_str(delta);
        let (id, index) = (std::mem::take(&mut text.id), text.output_index);
        self.event_with("response.output_text.delta", |out| {
            out.extend_from_slice(b"\"item_id\":");
            push_json(out, &id);
            let _ = write!(
                out,
                ",\"output_index\":{index},\"content_index\":0,\"delta\":"
            );
            push_json(out, delta);
            out.extend_from_slice(b",\"logprobs\":[]");
        });
        if let Some(text) = self.text.as_mut() {
            text.id = id;
        }
    }

    fn close_text(&mut self) {
        let Some(Text {
            output_index,
            id,
            text,
        }) = self.text.take()
        else {
            return;
        };
        // The text goes out three times and into the response: escaped
        // once, its events written straight out.
        let mut quoted = Vec::with_capacity(text.len() + 2);
        push_json(&mut quoted, &text);
        let mut head = b"\"item_id\":".to_vec();
        push_json(&mut head, &id);
        let _ = write!(
            head,
            ",\"output_index\":{output_index},\"content_index\":0,"
        );
        self.event_with("response.output_text.done", |out| {
            out.extend_from_slice(&head);
            out.extend_from_slice(b"\"text\":");
            out.extend_from_slice(&quoted);
            out.extend_from_slice(b",\"logprobs\":[]");
        });
        let part = [
            &b"{\"type\":\"output_text\",\"text\":"[..],
            &quoted,
            b",\"annotations\":[],\"logprobs\":[]}",
        ]
        .concat();
        self.event_with("response.content_part.done", |out| {
            out.extend_from_slice(&head);
            out.extend_from_slice(b"\"part\":");
            out.extend_from_slice(&part);
        });
        let item = json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]});
        self.event_with("response.output_item.done", |out| {
            let _ = write!(out, "\"output_index\":{output_index},\"item\":");
            let _ = serde_json::to_writer(&mut *out, &item);
        });
        if let Some(slot) = self.output.get_mut(output_index) {
            *slot = Some(item);
        }
    }

    fn call(&mut self, position: usize, delta: CallDelta) {
        let chat_index = delta.index.unwrap_or(position as u64);
        let at = match self.calls.iter().position(|c| c.chat_index == chat_index) {
            Some(at) => at,
            None => {
                if self.calls.len() >= MAX_CALLS {
                    self.skipped += 1;
                    return;
                }
                self.calls.push(Call {
                    chat_index,
                    ..Call::default()
                });
                self.calls.len() - 1
            }
        };
        let function = delta.function.unwrap_or_default();
        let call = &mut self.calls[at];
        if let Some(id) = delta.id
            && call.call_id.is_empty()
        {
            call.call_id = id.into_owned();
        }
        if let Some(name) = function.name
            && call.name.is_empty()
        {
            call.name = name.into_owned();
        }
        let piece = function.arguments.unwrap_or_default();
        call.arguments.push_str(&piece);
        if !call.opened {
            if call.name.is_empty() {
                return;
            }
            self.open_call(at);
        } else if !piece.is_empty() && !call.custom {
            let (id, index) = (std::mem::take(&mut call.id), call.output_index);
            self.event_with("response.function_call_arguments.delta", |out| {
                out.extend_from_slice(b"\"item_id\":");
                push_json(out, &id);
                let _ = write!(out, ",\"output_index\":{index},\"delta\":");
                push_json(out, &piece);
            });
            self.calls[at].id = id;
        }
    }

    fn open_call(&mut self, at: usize) {
        self.close_text();
        self.start();
        let output_index = self.output.len();
        self.output.push(None);
        let tail = self.tail.clone();
        let custom = self.tools.is_custom(&self.calls[at].name);
        let namespace = self
            .tools
            .namespace(&self.calls[at].name)
            .map(str::to_string);
        let call = &mut self.calls[at];
        call.opened = true;
        call.custom = custom;
        call.output_index = output_index;
        if call.call_id.is_empty() {
            call.call_id = format!("call_{tail}_{output_index}");
        }
        call.id = format!(
            "{}_{tail}_{output_index}",
            if custom { "ctc" } else { "fc" }
        );
        let mut item = if custom {
            json!({"id": call.id, "type": "custom_tool_call", "status": "in_progress",
                   "call_id": call.call_id, "name": call.name, "input": ""})
        } else {
            json!({"id": call.id, "type": "function_call", "status": "in_progress",
                   "call_id": call.call_id, "name": call.name, "arguments": ""})
        };
        if let (Some(ns), Some(map)) = (namespace, item.as_object_mut()) {
            map.insert("namespace".into(), Value::String(ns));
        }
        let first = (!custom && !call.arguments.is_empty()).then(
            || json!({"item_id": call.id, "output_index": output_index, "delta": call.arguments}),
        );
        self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        if let Some(first) = first {
            self.event("response.function_call_arguments.delta", first);
        }
    }

    fn close(&mut self) {
        if self.ended() {
            return;
        }
        self.close_text();
        let calls = std::mem::take(&mut self.calls);
        for call in calls.into_iter().filter(|c| c.opened) {
            let item = self
                .tools
                .call_item(&call.id, &call.call_id, &call.name, &call.arguments);
            if call.custom {
                let input = item.get("input").cloned().unwrap_or(Value::Null);
                if input.as_str().is_some_and(|s| !s.is_empty()) {
                    self.event(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": call.id, "output_index": call.output_index,
                               "delta": input}),
                    );
                }
                self.event(
                    "response.custom_tool_call_input.done",
                    json!({"item_id": call.id, "output_index": call.output_index,
                           "input": input}),
                );
            } else {
                self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": call.id, "output_index": call.output_index,
                           "name": call.name, "arguments": call.arguments}),
                );
            }
            self.event(
                "response.output_item.done",
                json!({"output_index": call.output_index, "item": item}),
            );
            if let Some(slot) = self.output.get_mut(call.output_index) {
                *slot = Some(item);
            }
        }
        self.start();
        let output: Vec<Value> = self.output.drain(..).flatten().collect();
        let mut r = Vec::with_capacity(512);
        let incomplete = response(
            &mut r,
            &self.id,
            &self.model,
            self.created,
            self.finish.as_deref(),
            &output,
            self.usage.as_ref(),
        );
        let kind = if incomplete {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event_with(kind, |out| {
            out.extend_from_slice(b"\"response\":");
            out.extend_from_slice(&r);
        });
        self.done = true;
    }
}

/// The end of the first frame in `buf` and the length of its separator
/// (a blank line, `\n\n` or `\r\n\r\n`).
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let i = from + i;
        match buf.get(i + 1) {
            Some(b'\n') => return Some((i, 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i, 3)),
            _ => from = i + 1,
        }
    }
    None
}
