//! A Converse answer as an OpenAI `chat.completion`: text joined, `toolUse`
//! blocks as `tool_calls` (the input as JSON text), reasoning left out,
//! `stopReason` mapped, usage with cache reads and writes. Converse gives
//! an answer no id: the gateway makes one.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::gateway::provider::chunk::{Call, Completion, Tokens, push_text};
use crate::gateway::provider::{AnswerContext, Invalid};
use crate::gateway::sse::Usage;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    #[serde(borrow)]
    output: Output<'a>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: BedrockUsage,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow)]
    message: Message<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Vec<Block<'a>>,
}

/// One content block: the member it has says its kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolUse<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

/// Token counts as Bedrock reports them (whole answers and a stream's
/// `metadata` event alike).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

impl BedrockUsage {
    pub fn tokens(&self) -> Tokens {
        Tokens {
            input: self.input_tokens,
            cache_write: self.cache_write_input_tokens,
            cache_read: self.cache_read_input_tokens,
            output: self.output_tokens,
        }
    }
}

/// An id for an answer that came without one.
pub fn new_id() -> String {
    use rand::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_os_rng());
    }
    let n: u128 = RNG.with_borrow_mut(|r| r.random());
    format!("chatcmpl-{:024x}", n >> 32)
}

pub fn translate(body: &[u8], cx: &AnswerContext) -> Result<(Bytes, Option<Usage>), Invalid> {
    let completion = completion(body, cx)?;
    Ok((
        Bytes::from(completion.to_json()),
        Some(completion.tokens.usage()),
    ))
}

/// The answer read, before it is written as chat (see the Anthropic
/// one's).
pub fn completion<'a>(body: &'a [u8], cx: &AnswerContext<'a>) -> Result<Completion<'a>, Invalid> {
    let answer: Answer = crate::gateway::json::parse(body)
        .map_err(|e| format!("an answer that is not a Converse answer ({e})"))?;
    let mut text = None;
    let mut calls = Vec::new();
    for block in answer.output.message.content {
        if let Some(t) = block.text {
            push_text(&mut text, t);
        } else if let Some(call) = block.tool_use {
            calls.push(Call {
                id: call.tool_use_id.into_owned(),
                name: call.name.into_owned(),
                arguments: call.input.map_or("{}", |i| i.get()).to_string(),
            });
        }
    }
    if text.is_none() && calls.is_empty() {
        text = Some(Cow::Borrowed(""));
    }
    Ok(Completion {
        id: Cow::Owned(new_id()),
        created: cx.created,
        model: cx.model,
        text,
        calls,
        finish: super::finish(answer.stop_reason.as_deref()),
        tokens: answer.usage.tokens(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn cx() -> AnswerContext<'static> {
        AnswerContext {
            rename: None,
            model: "claude",
            created: 1_700_000_000,
            wants_usage: false,
        }
    }

    #[test]
    fn text_tool_calls_finish_and_usage_are_carried() {
        let body = json!({"output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
                {"text": "Let me "}, {"text": "check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 38, "cacheReadInputTokens": 5, "cacheWriteInputTokens": 3},
            "metrics": {"latencyMs": 120}});
        let (out, usage) = translate(body.to_string().as_bytes(), &cx()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["model"], "claude");
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 18);
        assert_eq!(v["usage"]["completion_tokens"], 20);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        assert_eq!(usage.unwrap().total(), 38);
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(translate(b"{\"message\":\"x\"}", &cx()).is_err());
        assert!(translate(b"not json", &cx()).is_err());
    }
}
