//! An Anthropic Messages request as an OpenAI Chat Completions request.
//!
//! Mapped: `system` (string or text blocks) → a system message first;
//! `role: "system"` entries of `messages` (Claude Code's) → system messages
//! in place; text; images (base64 → a `data:` URL, a URL source as is);
//! `tool_use` → assistant `tool_calls`; `tool_result` → `role: "tool"`
//! messages right after the assistant's turn, before the user's own words
//! (an error result is marked `Error: `; images in a result move to the
//! user message that follows, since a tool message holds only text); text
//! documents → text; `tools` → functions (`strict` kept); `tool_choice`;
//! `disable_parallel_tool_use` → `parallel_tool_calls: false`;
//! `stop_sequences` → `stop`; `max_tokens`, `temperature`, `top_p`;
//! `metadata.user_id` → `user`; `stream` → `stream` with `include_usage`.
//! `output_config.effort` is not mapped to `reasoning_effort`: Claude Code
//! sends it on every turn, and OpenAI refuses the parameter for models
//! that do not reason (gpt-4o, gpt-4.1) — the upstream's default applies.
//!
//! Dropped, having no Chat Completions meaning: `cache_control` (OpenAI
//! caches prefixes by itself), thinking blocks of earlier turns (their
//! signatures mean something only to Claude), `thinking`, `top_k`,
//! `context_management`, `safeguards`, `container`, `mcp_servers`,
//! `service_tier`, `defer_loading` and other tool extras, citations, and
//! Claude Code's `x-anthropic-billing-header` system block (it changes every
//! turn, which would defeat the upstream's prefix cache).
//!
//! Refused by name: server tools (`web_search_*`, `bash_*`, …), PDF and
//! file documents, Files-API images, and block types this code does not
//! know (a new one may carry meaning that must not vanish).

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::turns::{self, ChatMessage, Content, Message};

pub use crate::gateway::door::Untranslatable;
pub(super) use crate::gateway::door::refuse;

/// The fields read; every other one (Claude Code's extras among them) is
/// left behind by serde.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<Message<'a>>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default, borrow)]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, borrow)]
    metadata: Option<Metadata<'a>>,
    #[serde(default, borrow)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<Choice<'a>>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input_schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct Chat<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [Cow<'a, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ChatTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ChatChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct ChatTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChatChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: Named<'a>,
    },
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

/// An Anthropic Messages request body → an OpenAI Chat Completions body.
/// `model` is kept as the client wrote it (the gateway puts in the
/// deployment's model ID later). A streaming request asks for usage too.
pub fn to_chat(body: &[u8]) -> Result<Bytes, Untranslatable> {
    let req: Request = serde_json::from_slice(body)
        .map_err(|e| refuse(format!("the body is not a Messages request: {e}")))?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        let text = turns::system_text(system, "system")?;
        if !text.is_empty() {
            messages.push(ChatMessage::new("system", Content::Text(text)));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        turns::turn(i, &m.role, m.content, &mut messages)?;
    }
    let tools = tools(req.tools.as_deref().unwrap_or_default())?;
    // OpenAI refuses `tool_choice` and `parallel_tool_calls` without tools.
    let (tool_choice, parallel_tool_calls) = match (&req.tool_choice, tools.is_empty()) {
        (Some(c), false) => choice(c)?,
        _ => (None, None),
    };
    let stream = req.stream == Some(true);
    let chat = Chat {
        model: &req.model,
        messages,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.as_deref().unwrap_or_default(),
        temperature: req.temperature,
        top_p: req.top_p,
        user: req.metadata.as_ref().and_then(|m| m.user_id.as_deref()),
        tools,
        tool_choice,
        parallel_tool_calls,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    };
    // Our own types, borrowing valid JSON: serialising them cannot fail.
    Ok(Bytes::from(serde_json::to_vec(&chat).unwrap_or_default()))
}

fn tools<'a>(list: &'a [Tool<'a>]) -> Result<Vec<ChatTool<'a>>, Untranslatable> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            match t.kind.as_deref() {
                None | Some("custom") => {}
                Some(kind) => {
                    return Err(refuse(format!(
                        "`tools[{i}]` is a `{kind}` tool, which runs on Anthropic's servers; an OpenAI-compatible deployment has none"
                    )));
                }
            }
            let name = t
                .name
                .as_deref()
                .ok_or_else(|| refuse(format!("`tools[{i}]` has no name")))?;
            Ok(ChatTool {
                kind: "function",
                function: Function {
                    name,
                    description: t.description.as_deref(),
                    parameters: t.input_schema,
                    strict: t.strict,
                },
            })
        })
        .collect()
}

fn choice<'a>(c: &'a Choice<'a>) -> Result<(Option<ChatChoice<'a>>, Option<bool>), Untranslatable> {
    let single = (c.disable_parallel_tool_use == Some(true)).then_some(false);
    Ok(match &*c.kind {
        "auto" => (Some(ChatChoice::Mode("auto")), single),
        "any" => (Some(ChatChoice::Mode("required")), single),
        "none" => (Some(ChatChoice::Mode("none")), None),
        "tool" => {
            let name = c
                .name
                .as_deref()
                .ok_or_else(|| refuse("`tool_choice` of type `tool` has no name"))?;
            (
                Some(ChatChoice::Named {
                    kind: "function",
                    function: Named { name },
                }),
                single,
            )
        }
        other => {
            return Err(refuse(format!(
                "`tool_choice.type` is `{other}`, which has no OpenAI equivalent"
            )));
        }
    })
}
