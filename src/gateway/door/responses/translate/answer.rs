//! A `chat.completion` as a Responses `response` object.
//!
//! Kept: the text (a `message` item with one `output_text` part; a refusal
//! as a `refusal` part), the tool calls (`function_call` items, `call_id`
//! the chat call's id; a custom tool's call as a `custom_tool_call` with
//! the `input` string, and a namespaced tool's with its `namespace`, when
//! the request's [`Tools`] are given), the finish (`length` → status
//! `incomplete`, reason `max_output_tokens`; `content_filter` → incomplete,
//! `content_filter`), the usage (cached and reasoning tokens included).
//! `model` is the name the client asked for. The response id is `resp_`
//! and the chat id's tail, so the upstream's logs can still be searched.
//!
//! Dropped: reasoning text some servers add (`reasoning_content`): a
//! Responses `reasoning` item would need OpenAI's encrypted content to be
//! sent back, and the client would send it on every later turn; logprobs.
//!
//! A provider that translates its answer to chat (Anthropic, Bedrock)
//! hands over its [`Completion`] instead ([`from_completion`]): the same
//! `response` as from the chat answer it would have written, without
//! writing that answer and reading it back.

use bytes::Bytes;

use super::chat::{Answer, counts};
use super::output::{Call, Counts, Whole};
use super::{Tools, now};
use crate::gateway::provider::chunk::{Completion, Finish};

/// A `chat.completion` body → a Responses `response` body.
pub fn from_chat(chat: &[u8], model: &str) -> Result<Bytes, String> {
    from_chat_with_tools(chat, model, &Tools::default())
}

/// [`from_chat`], giving custom and namespaced tools' calls back in their
/// own shape.
pub fn from_chat_with_tools(chat: &[u8], model: &str, tools: &Tools) -> Result<Bytes, String> {
    let chat: Answer = crate::gateway::json::parse(chat)
        .map_err(|e| format!("the chat answer is not JSON: {e}"))?;
    let choice = chat
        .choices
        .as_deref()
        .and_then(<[_]>::first)
        .ok_or("the chat answer has no choices")?;
    let message = choice
        .message
        .as_ref()
        .ok_or("the chat answer has no message")?;
    let calls = message.tool_calls.iter().flatten().map(|call| {
        let function = call.function.as_ref();
        Call {
            id: call.id.as_deref().unwrap_or(""),
            name: function.and_then(|f| f.name.as_deref()).unwrap_or(""),
            arguments: function.and_then(|f| f.arguments.as_deref()).unwrap_or(""),
        }
    });
    let whole = Whole {
        chat_id: chat.id.as_deref().unwrap_or(""),
        created: chat.created.unwrap_or_else(now),
        finish: choice.finish_reason.as_deref().unwrap_or("stop"),
        text: message.content.as_deref().unwrap_or(""),
        refusal: message.refusal.as_deref().unwrap_or(""),
        calls,
        usage: chat.usage.and_then(counts),
    };
    Ok(Bytes::from(whole.write(model, tools)))
}

/// A provider's translated answer → a Responses `response` body: what
/// [`from_chat_with_tools`] makes of [`Completion::to_json`].
pub fn from_completion(completion: &Completion, model: &str, tools: &Tools) -> Bytes {
    let tokens = &completion.tokens;
    let prompt = tokens.prompt();
    let calls = completion.calls.iter().map(|c| Call {
        id: &c.id,
        name: &c.name,
        arguments: &c.arguments,
    });
    let whole = Whole {
        chat_id: &completion.id,
        created: completion.created,
        finish: match completion.finish {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
        },
        text: completion.text.as_deref().unwrap_or(""),
        refusal: "",
        calls,
        usage: Some(Counts {
            input: prompt,
            output: tokens.output,
            cached: tokens.cache_read.min(prompt),
            reasoning: 0,
        }),
    };
    Bytes::from(whole.write(model, tools))
}
