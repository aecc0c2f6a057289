//! An OpenAI `chat.completion` as an Anthropic `message`.
//!
//! - `content` (a string, or text parts from servers that send a list) and
//!   `refusal` → a text block; `tool_calls` → `tool_use` blocks, the id
//!   kept, the arguments parsed (see [`super::tool_input`] for arguments
//!   that are not a JSON object);
//! - `reasoning_content` / `reasoning` (vLLM, DeepSeek) is dropped: a
//!   `thinking` block needs Claude's signature, and an unsigned one would
//!   be refused by a Claude deployment the conversation fails over to;
//!   the translated path drops thinking from history anyway;
//! - `finish_reason` → `stop_reason` (`stop_sequence` with the matched
//!   string when vLLM reports it in the choice's `stop_reason`);
//! - usage: `input_tokens` = prompt − cached, `cache_read_input_tokens` =
//!   cached, as Anthropic counts.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ChatUsage;

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default, borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<ChatMessage<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    /// vLLM's: the stop string (or token id) that ended the answer.
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    /// A string, or (Mistral, some others) a list of parts: read raw.
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<Call<'a>>>,
}

#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<CallFunction<'a>>,
}

#[derive(Deserialize)]
struct CallFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: Cow<'a, RawValue>,
    },
}

#[derive(Serialize)]
pub(super) struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl From<&ChatUsage> for Usage {
    fn from(u: &ChatUsage) -> Self {
        Usage {
            input_tokens: u.input(),
            output_tokens: u.completion_tokens,
            // OpenAI-compatible servers cache by themselves and never bill a write.
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: u.cached(),
        }
    }
}

/// An OpenAI `chat.completion` JSON → an Anthropic `message` JSON, named
/// `model` (the name the client asked for). Also returns (prompt tokens,
/// completion tokens) when the upstream reported usage: the prompt count
/// includes cached tokens, as the gateway's windows count them on every
/// door (the message itself splits them the way Anthropic does).
pub fn from_chat(chat: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), String> {
    let completion: Completion = serde_json::from_slice(chat)
        .map_err(|e| format!("an answer that is not a chat completion ({e})"))?;
    if let Some(error) = completion.error {
        return Err(format!(
            "the upstream answered with an error: {}",
            error.message.as_deref().unwrap_or("(no message)")
        ));
    }
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err("a chat completion without choices".into());
    };
    let id = super::message_id(completion.id.as_deref().unwrap_or_default());
    let mut content = Vec::new();
    let mut finish = choice.finish_reason.unwrap_or(Cow::Borrowed("stop"));
    let mut calls = 0;
    if let Some(message) = choice.message {
        if let Some(text) = message.content.map(text_of).filter(|t| !t.is_empty()) {
            content.push(Block::Text { text });
        }
        if let Some(refusal) = message.refusal.filter(|t| !t.is_empty()) {
            content.push(Block::Text { text: refusal });
            finish = Cow::Borrowed("content_filter");
        }
        for (j, call) in message.tool_calls.into_iter().flatten().enumerate() {
            let (name, arguments) = call
                .function
                .map_or((None, None), |f| (f.name, f.arguments));
            calls += 1;
            content.push(Block::ToolUse {
                id: call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| Cow::Owned(super::call_id(&id, j))),
                name: name.unwrap_or_default(),
                input: input(arguments),
            });
        }
    }
    let matched = choice.stop_reason.and_then(matched_stop);
    let stop_reason = super::stop_reason(&finish, matched.as_deref(), calls > 0);
    let usage = completion.usage;
    let message = Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason,
        stop_sequence: matched.filter(|_| stop_reason == "stop_sequence"),
        usage: usage.as_ref().map(Usage::from).unwrap_or(Usage {
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        }),
    };
    // Our own types: serialising them cannot fail.
    let body = serde_json::to_vec(&message).unwrap_or_default();
    Ok((
        Bytes::from(body),
        usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    ))
}

/// The input object for a call's arguments, borrowed where the arguments
/// needed no unescaping.
fn input(arguments: Option<Cow<'_, str>>) -> Cow<'_, RawValue> {
    match arguments {
        Some(Cow::Borrowed(text)) => super::tool_input(text),
        Some(Cow::Owned(text)) => Cow::Owned(super::tool_input(&text).into_owned()),
        None => super::tool_input(""),
    }
}

/// A message's text: the string, or the text parts of a list joined.
fn text_of(content: &RawValue) -> Cow<'_, str> {
    let raw = content.get();
    if raw.starts_with('"') {
        return serde_json::from_str(raw).unwrap_or_default();
    }
    match serde_json::from_str::<Vec<TextPart>>(raw) {
        Ok(parts) => parts
            .into_iter()
            .filter(|p| p.kind.as_deref().is_none_or(|k| k == "text"))
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
            .concat()
            .into(),
        Err(_) => Cow::Borrowed(""),
    }
}

/// The stop string vLLM says ended the answer; a token id is no sequence.
fn matched_stop(reason: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(reason.get()).ok()
}
