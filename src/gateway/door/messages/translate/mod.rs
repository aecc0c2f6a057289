//! The Messages door in front of an upstream that speaks only OpenAI Chat
//! Completions (`openai`, `azure`, Vertex's OpenAI-compatible endpoint):
//! the request into a chat body ([`request::to_chat`]), the answer back
//! into a `message` ([`answer::from_chat`]), the stream back into Messages
//! events ([`stream::ChatToMessages`]).
//!
//! Where the hub is: Chat Completions. The gateway already speaks it to
//! every upstream, and each provider module translates from it; so a door
//! translates to Chat Completions once, rather than once per provider. A
//! Claude upstream is never reached through here: Messages to a Claude
//! deployment passes through untouched. Everything here is pure (bytes in,
//! bytes out), so the proxy's attempt loop stays ignorant of the door.
//!
//! What each direction keeps and loses is written at the top of its file.

pub mod answer;
pub mod request;
pub mod stream;
mod turns;

pub use answer::from_chat;
pub use request::{Untranslatable, to_chat};
pub use stream::ChatToMessages;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Token counts as an OpenAI-compatible server reports them.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl ChatUsage {
    fn cached(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            // A server that reports more cached than prompt tokens is wrong;
            // never let the subtraction below go negative.
            .min(self.prompt_tokens)
    }

    /// Anthropic counts cache reads apart from `input_tokens`; OpenAI's
    /// `prompt_tokens` includes them.
    fn input(&self) -> u64 {
        self.prompt_tokens - self.cached()
    }
}

/// Anthropic's `stop_reason` for OpenAI's `finish_reason`. `matched` is the
/// stop string vLLM reports in the choice's `stop_reason`: with it a `stop`
/// is known to be a stop sequence (OpenAI itself does not say). An answer
/// with tool calls is `tool_use` even where the server said `stop` (Ollama
/// and some others do): agents run the tools only on `tool_use`.
fn stop_reason(finish: &str, matched: Option<&str>, calls: bool) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "content_filter" => "refusal",
        "tool_calls" | "function_call" => "tool_use",
        _ if calls => "tool_use",
        "stop" if matched.is_some() => "stop_sequence",
        // stop, eos, and anything newer.
        _ => "end_turn",
    }
}

/// A tool call's arguments as the `input` object Anthropic requires.
/// Empty arguments (a tool without parameters) are `{}`; arguments that are
/// not a JSON object (a model that wrote broken JSON) are kept whole as
/// `{"_raw": "<the text>"}` rather than lost: the client's schema check
/// then tells the model what went wrong, and the text stays in the history.
fn tool_input(arguments: &str) -> Cow<'_, RawValue> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Cow::Owned(raw("{}".to_string()));
    }
    if trimmed.starts_with('{')
        && let Ok(object) = serde_json::from_str::<&RawValue>(trimmed)
    {
        return Cow::Borrowed(object);
    }
    let mut wrapped = String::with_capacity(arguments.len() + 12);
    wrapped.push_str("{\"_raw\":");
    // Writing a str as JSON cannot fail.
    wrapped.push_str(&serde_json::to_string(arguments).unwrap_or_default());
    wrapped.push('}');
    Cow::Owned(raw(wrapped))
}

/// JSON text this module has just written as a raw value.
fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).expect("written as valid JSON")
}

/// The message id for a chat completion's id: Anthropic's clients expect
/// `msg_`; the rest keeps the upstream's id findable in its logs.
fn message_id(chat_id: &str) -> String {
    let rest = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    if rest.is_empty() {
        "msg_switchboard".to_string()
    } else {
        format!("msg_{rest}")
    }
}

/// An id for a tool call the upstream gave none: unique per message, as
/// a later `tool_result` must name exactly one call.
fn call_id(message_id: &str, index: usize) -> String {
    let tail = message_id.strip_prefix("msg_").unwrap_or(message_id);
    format!("toolu_{tail}_{index}")
}

#[cfg(test)]
mod tests;
