//! An Anthropic message as an OpenAI `chat.completion`: text joined,
//! `tool_use` blocks as `tool_calls` (the input as JSON text), thinking
//! left out, `stop_reason` mapped, usage with cache writes and reads in
//! `prompt_tokens` and the reads in `prompt_tokens_details.cached_tokens`.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::gateway::provider::chunk::{Call, Completion, Tokens, push_text};
use crate::gateway::provider::{AnswerContext, Invalid};
use crate::gateway::sse::Usage;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    content: Vec<Block<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// A content block, flat: serde's tagged enums buffer what they read, and
/// a raw value cannot pass through that buffer. Thinking, redacted
/// thinking and block types newer than this code are left out.
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

/// Token counts as Anthropic reports them; each may come alone in a stream.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes in the counts this report has: stream reports are cumulative,
    /// so the latest of each is the total.
    pub fn apply(&self, tokens: &mut Tokens) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut tokens.input, self.input_tokens);
        set(&mut tokens.output, self.output_tokens);
        set(&mut tokens.cache_write, self.cache_creation_input_tokens);
        set(&mut tokens.cache_read, self.cache_read_input_tokens);
    }
}

pub fn translate(body: &[u8], cx: &AnswerContext) -> Result<(Bytes, Option<Usage>), Invalid> {
    let completion = completion(body, cx)?;
    Ok((
        Bytes::from(completion.to_json()),
        Some(completion.tokens.usage()),
    ))
}

/// The answer read, before it is written as chat: a door that writes its
/// own shape (the Responses bridge) starts here, not from the chat JSON.
pub fn completion<'a>(body: &'a [u8], cx: &AnswerContext<'a>) -> Result<Completion<'a>, Invalid> {
    let message: Message = crate::gateway::json::parse(body)
        .map_err(|e| format!("an answer that is not an Anthropic message ({e})"))?;
    if message.kind != "message" {
        return Err(format!(
            "an answer of type `{}`, not a message",
            message.kind
        ));
    }
    let mut text = None;
    let mut calls = Vec::new();
    for block in message.content {
        match &*block.kind {
            "text" => push_text(&mut text, block.text.unwrap_or_default()),
            "tool_use" => calls.push(Call {
                id: block.id.map(Cow::into_owned).unwrap_or_default(),
                name: block.name.map(Cow::into_owned).unwrap_or_default(),
                arguments: block.input.map_or("{}", |i| i.get()).to_string(),
            }),
            _ => {}
        }
    }
    if text.is_none() && calls.is_empty() {
        text = Some(Cow::Borrowed(""));
    }
    let mut tokens = Tokens::default();
    message.usage.apply(&mut tokens);
    Ok(Completion {
        id: message.id,
        created: cx.created,
        model: cx.model,
        text,
        calls,
        finish: super::finish(message.stop_reason.as_deref()),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn cx() -> AnswerContext<'static> {
        AnswerContext {
            rename: None,
            model: "gpt-4o",
            created: 1_700_000_000,
            wants_usage: false,
        }
    }

    #[test]
    fn text_tool_calls_finish_and_usage_are_carried() {
        let body = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Let me "}, {"type": "text", "text": "check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 20, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5}});
        let (out, usage) = translate(body.to_string().as_bytes(), &cx()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "msg_01");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o", "the name the client asked for");
        assert_eq!(v["created"], 1_700_000_000);
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(choice["message"]["tool_calls"][0]["type"], "function");
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 18);
        assert_eq!(v["usage"]["completion_tokens"], 20);
        assert_eq!(v["usage"]["total_tokens"], 38);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        assert_eq!(usage.unwrap().total(), 38);
    }

    #[test]
    fn only_tool_calls_leave_content_null_and_garbage_is_invalid() {
        let body = r#"{"id":"m","type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
        let (out, _) = translate(body.as_bytes(), &cx()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert!(translate(b"{\"nope\":1}", &cx()).is_err());
        assert!(translate(br#"{"id":"e","type":"error","content":[]}"#, &cx()).is_err());
    }
}
