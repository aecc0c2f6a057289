//! The Responses door in front of an upstream that speaks only OpenAI Chat
//! Completions (an `openai` or `azure` deployment with
//! `responses = "bridged"`, or one that answered `/responses` with 404 or
//! 405; through the chat hub, Anthropic, Bedrock and Vertex too): the
//! request into a chat body ([`request::to_chat`]), the answer back into a
//! `response` object ([`answer::from_chat`]), the stream back into
//! Responses events ([`stream::ChatToResponses`]).
//!
//! Only a stateless request can be bridged: a chat upstream keeps nothing,
//! so `previous_response_id` (and `conversation`, `background`, stored
//! `item_reference`s) are refused by name, as are the hosted tools, which
//! only OpenAI's Responses API runs. Everything here is pure (bytes in,
//! bytes out). What each direction keeps and loses is written at the top
//! of its file.
//!
//! Custom tools (Codex's `exec`, with a Lark grammar) become function
//! tools with one string parameter `input`; a call to one comes back as a
//! `custom_tool_call` with that string as its `input` when the caller
//! passes the request's [`Tools`] (from [`request::to_chat_with_tools`]),
//! as a `function_call` otherwise. A tool flattened out of a `namespace`
//! comes back with that `namespace` on its call, as Codex expects.
//!
//! No `serde_json::Value` on the whole-answer path: the request is read
//! into borrowed members and the chat body written out; the `response` is
//! written out too, from the chat answer or, for Anthropic and Bedrock,
//! from the provider's own reading of its answer ([`from_completion`]), not
//! from chat JSON written to be read back. `reference` keeps the `Value`
//! versions as the tests' oracle.

pub mod answer;
mod chat;
mod loose;
mod output;
pub mod request;
pub mod stream;

pub use answer::{from_chat, from_chat_with_tools, from_completion};
pub use request::{Untranslatable, to_chat, to_chat_with_tools};
pub use stream::ChatToResponses;

use std::collections::HashMap;

use serde_json::{Value, json};

/// What the request said about its tools that the chat answer cannot:
/// which names are custom tools, and which came from a namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tools {
    by_name: HashMap<String, ToolKind>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ToolKind {
    custom: bool,
    namespace: Option<String>,
}

impl Tools {
    fn add(&mut self, name: &str, custom: bool, namespace: Option<&str>) {
        self.by_name.insert(
            name.to_string(),
            ToolKind {
                custom,
                namespace: namespace.map(str::to_string),
            },
        );
    }

    /// Is `name` a custom (free-text input) tool?
    pub fn is_custom(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|k| k.custom)
    }

    /// The namespace `name` was flattened out of, if any.
    pub fn namespace(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).and_then(|k| k.namespace.as_deref())
    }

    /// The output item for a finished call: a `custom_tool_call` whose
    /// `input` is the `input` string of the arguments (the whole arguments
    /// when the model wrote something else), or a `function_call`.
    fn call_item(&self, id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
        let mut item = if self.is_custom(name) {
            json!({
                "type": "custom_tool_call",
                "id": id,
                "status": "completed",
                "call_id": call_id,
                "name": name,
                "input": custom_input(arguments),
            })
        } else {
            json!({
                "type": "function_call",
                "id": id,
                "status": "completed",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            })
        };
        if let (Some(ns), Some(map)) = (self.namespace(name), item.as_object_mut()) {
            map.insert("namespace".into(), Value::String(ns.to_string()));
        }
        item
    }
}

/// The string a custom tool's call carries: `input` of `{"input": "..."}`.
fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => match map.get("input") {
            Some(Value::String(s)) => s.clone(),
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    }
}

/// The Responses `usage` for a chat `usage` object (missing counts are 0).
fn usage(chat: Option<&Value>) -> Option<(Value, u64, u64)> {
    let c = counts(chat?)?;
    Some((
        json!({
            "input_tokens": c.input,
            "input_tokens_details": {"cached_tokens": c.cached},
            "output_tokens": c.output,
            "output_tokens_details": {"reasoning_tokens": c.reasoning},
            "total_tokens": c.input + c.output,
        }),
        c.input,
        c.output,
    ))
}

/// The counts of a chat `usage` object read as a `Value`.
fn counts(chat: &Value) -> Option<output::Counts> {
    let u = chat.as_object()?;
    let input = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let output = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(input);
    let reasoning = u
        .get("completion_tokens_details")
        .and_then(|d| d.get("reasoning_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(output::Counts {
        input,
        output,
        cached,
        reasoning,
    })
}

/// The tail of a response id, for the ids of its items.
fn tail(response_id: &str) -> &str {
    response_id.strip_prefix("resp_").unwrap_or(response_id)
}

/// A `response` object with `output` and `usage` as `Value`s (a stream's,
/// which keeps its items as it goes), written out as [`output`] writes a
/// whole answer's. Returns whether it is incomplete.
fn response(
    out: &mut Vec<u8>,
    id: &str,
    model: &str,
    created: u64,
    finish: Option<&str>,
    items: &[Value],
    usage: Option<&Value>,
) -> bool {
    let id = output::Id {
        prefix: "",
        tail: id,
        index: None,
    };
    output::head(out, id, model, created, finish);
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, items);
    output::tail_of(out, finish, |out| {
        let _ = serde_json::to_writer(&mut *out, &usage);
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod written {
    use super::*;

    #[test]
    fn the_response_written_out_is_the_one_a_value_made() {
        let output = [json!({"type": "message", "id": "msg_1", "content": []})];
        let usage = json!({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5});
        let mut out = Vec::new();
        assert!(response(
            &mut out,
            "resp_\"1",
            "m",
            7,
            Some("length"),
            &output,
            Some(&usage)
        ));
        let expected = json!({
            "id": "resp_\"1", "object": "response", "created_at": 7, "status": "incomplete",
            "error": null, "incomplete_details": {"reason": "max_output_tokens"},
            "instructions": null, "metadata": {}, "model": "m", "output": output,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage,
        });
        assert_eq!(out, serde_json::to_vec(&expected).unwrap());
        let mut out = Vec::new();
        assert!(!response(&mut out, "r", "m", 7, None, &[], None));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["usage"].is_null()),
            (Some("in_progress"), true)
        );
    }
}
