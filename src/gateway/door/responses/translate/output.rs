//! A whole answer's `response` object, written straight out as bytes.
//!
//! Why not `Value`s: a whole answer is written once, and building a map of
//! owned strings per item only to serialise it cost more than reading the
//! upstream's answer did (callgrind: about a quarter of a bridged request).
//! Members go out in the order a `Value` map keeps them (sorted by name),
//! strings escaped by serde_json, so the bytes are the ones the `Value`s
//! made; `reference` holds the two to each other.

use super::Tools;
use crate::gateway::provider::chunk::push_json;

/// The token counts of a Responses `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub input: u64,
    pub output: u64,
    /// Input read from the upstream's cache (at most `input`).
    pub cached: u64,
    pub reasoning: u64,
}

impl Counts {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"input_tokens\":");
        push_u64(out, self.input);
        out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
        push_u64(out, self.cached);
        out.extend_from_slice(b"},\"output_tokens\":");
        push_u64(out, self.output);
        out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
        push_u64(out, self.reasoning);
        out.extend_from_slice(b"},\"total_tokens\":");
        // As `json!` added them (the counts are an upstream's, not ours).
        push_u64(out, self.input + self.output);
        out.push(b'}');
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// An id made of a prefix, the response id's tail and an item's index
/// (`fc_<tail>_<i>`), written as a JSON string without being put together
/// in a `String` first (when the tail needs no escapes, as it nearly
/// always does).
#[derive(Debug, Clone, Copy)]
pub(super) struct Id<'a> {
    pub prefix: &'static str,
    pub tail: &'a str,
    pub index: Option<usize>,
}

impl Id<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let plain = self
            .tail
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if !plain {
            let mut s = format!("{}{}", self.prefix, self.tail);
            if let Some(i) = self.index {
                s.push('_');
                s.push_str(&i.to_string());
            }
            push_json(out, &s);
            return;
        }
        out.push(b'"');
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(self.tail.as_bytes());
        if let Some(i) = self.index {
            out.push(b'_');
            push_u64(out, i as u64);
        }
        out.push(b'"');
    }
}

/// The assistant's `message` item: an `output_text` part for the text and
/// a `refusal` part for the refusal, each when not empty; nothing when
/// both are.
pub(super) fn message(out: &mut Vec<u8>, id: Id, text: &str, refusal: &str) -> bool {
    if text.is_empty() && refusal.is_empty() {
        return false;
    }
    out.extend_from_slice(b"{\"content\":[");
    if !text.is_empty() {
        out.extend_from_slice(b"{\"annotations\":[],\"logprobs\":[],\"text\":");
        push_json(out, text);
        out.extend_from_slice(b",\"type\":\"output_text\"}");
    }
    if !refusal.is_empty() {
        if !text.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"refusal\":");
        push_json(out, refusal);
        out.extend_from_slice(b",\"type\":\"refusal\"}");
    }
    out.extend_from_slice(b"],\"id\":");
    id.write(out);
    out.extend_from_slice(
        b",\"role\":\"assistant\",\"status\":\"completed\",\"type\":\"message\"}",
    );
    true
}

/// A call's `call_id`: the upstream's, or one made from the response's.
#[derive(Debug, Clone, Copy)]
pub(super) enum CallId<'a> {
    Given(&'a str),
    Made(Id<'a>),
}

impl CallId<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            CallId::Given(s) => push_json(out, s),
            CallId::Made(id) => id.write(out),
        }
    }
}

impl Tools {
    /// [`Tools::call_item`], written out.
    pub(super) fn write_call(
        &self,
        out: &mut Vec<u8>,
        id: Id,
        call_id: CallId,
        name: &str,
        arguments: &str,
    ) {
        let namespace = |out: &mut Vec<u8>| {
            if let Some(ns) = self.namespace(name) {
                out.extend_from_slice(b",\"namespace\":");
                push_json(out, ns);
            }
        };
        if self.is_custom(name) {
            out.extend_from_slice(b"{\"call_id\":");
            call_id.write(out);
            out.extend_from_slice(b",\"id\":");
            id.write(out);
            out.extend_from_slice(b",\"input\":");
            push_json(out, &super::custom_input(arguments));
            out.extend_from_slice(b",\"name\":");
            push_json(out, name);
            namespace(out);
            out.extend_from_slice(b",\"status\":\"completed\",\"type\":\"custom_tool_call\"}");
        } else {
            out.extend_from_slice(b"{\"arguments\":");
            push_json(out, arguments);
            out.extend_from_slice(b",\"call_id\":");
            call_id.write(out);
            out.extend_from_slice(b",\"id\":");
            id.write(out);
            out.extend_from_slice(b",\"name\":");
            push_json(out, name);
            namespace(out);
            out.extend_from_slice(b",\"status\":\"completed\",\"type\":\"function_call\"}");
        }
    }
}

/// One call of a whole answer: its upstream id (empty when it had none),
/// name and arguments.
pub(super) struct Call<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub arguments: &'a str,
}

/// A whole answer, as much of it as a `response` carries, however it was
/// read (a chat answer, or a provider's own before it became one).
pub(super) struct Whole<'a, I> {
    /// The upstream's answer id (`chatcmpl-` and the rest, or any other).
    pub chat_id: &'a str,
    pub created: u64,
    pub finish: &'a str,
    pub text: &'a str,
    pub refusal: &'a str,
    pub calls: I,
    pub usage: Option<Counts>,
}

impl<'a, I: Iterator<Item = Call<'a>>> Whole<'a, I> {
    /// The `response` object for the client, `model` the name it asked
    /// for; the response id `resp_` and the chat id's tail.
    pub(super) fn write(self, model: &str, tools: &Tools) -> Vec<u8> {
        let rest = self
            .chat_id
            .strip_prefix("chatcmpl-")
            .unwrap_or(self.chat_id);
        let tail = if rest.is_empty() { "switchboard" } else { rest };
        let id = Id {
            prefix: "resp_",
            tail,
            index: None,
        };
        let mut out = Vec::with_capacity(
            512 + self.text.len() + self.refusal.len() + model.len() + 2 * tail.len(),
        );
        head(&mut out, id, model, self.created, Some(self.finish));
        out.push(b'[');
        let mut first = !message(
            &mut out,
            Id {
                prefix: "msg_",
                tail,
                index: None,
            },
            self.text,
            self.refusal,
        );
        for (i, call) in self.calls.enumerate() {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let call_id = if call.id.is_empty() {
                CallId::Made(Id {
                    prefix: "call_",
                    tail,
                    index: Some(i),
                })
            } else {
                CallId::Given(call.id)
            };
            let id = Id {
                prefix: "fc_",
                tail,
                index: Some(i),
            };
            tools.write_call(&mut out, id, call_id, call.name, call.arguments);
        }
        out.push(b']');
        tail_of(&mut out, Some(self.finish), |out| match &self.usage {
            Some(u) => u.write(out),
            None => out.extend_from_slice(b"null"),
        });
        out
    }
}

/// `status` and `incomplete_details` from the chat finish reason
/// (`length` → incomplete, `max_output_tokens`; `content_filter` →
/// incomplete, `content_filter`; none yet → in progress).
fn status(finish: Option<&str>) -> (&'static str, &'static str) {
    match finish {
        None => ("in_progress", "null"),
        Some("length") => ("incomplete", r#"{"reason":"max_output_tokens"}"#),
        Some("content_filter") => ("incomplete", r#"{"reason":"content_filter"}"#),
        Some(_) => ("completed", "null"),
    }
}

/// A `response` object's members before `output`'s value.
pub(super) fn head(out: &mut Vec<u8>, id: Id, model: &str, created: u64, finish: Option<&str>) {
    out.extend_from_slice(b"{\"created_at\":");
    push_u64(out, created);
    out.extend_from_slice(b",\"error\":null,\"id\":");
    id.write(out);
    out.extend_from_slice(b",\"incomplete_details\":");
    out.extend_from_slice(status(finish).1.as_bytes());
    out.extend_from_slice(b",\"instructions\":null,\"metadata\":{},\"model\":");
    push_json(out, model);
    out.extend_from_slice(b",\"object\":\"response\",\"output\":");
}

/// A `response` object's members after `output`'s value, `usage` writing
/// that one's. Returns whether the response is incomplete.
pub(super) fn tail_of(
    out: &mut Vec<u8>,
    finish: Option<&str>,
    usage: impl FnOnce(&mut Vec<u8>),
) -> bool {
    let status = status(finish).0;
    out.extend_from_slice(b",\"parallel_tool_calls\":true,\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"tool_choice\":\"auto\",\"tools\":[],\"usage\":");
    usage(out);
    out.push(b'}');
    status == "incomplete"
}
