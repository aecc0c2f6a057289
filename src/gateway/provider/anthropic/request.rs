//! An OpenAI chat request as an Anthropic Messages request.
//!
//! - system and developer messages become `system`;
//! - user text and images (a `data:` URI as base64, a URL as a URL source:
//!   the gateway downloads nothing), assistant text and tool calls
//!   (`tool_use`, with the arguments parsed), tool results (`tool_result`;
//!   consecutive ones, and anything else of the same role in a row, grouped
//!   into one turn, as the API wants turns to alternate);
//! - `tools` → `input_schema`; `tool_choice` auto / required → any / none /
//!   a named tool; `parallel_tool_calls: false` → `disable_parallel_tool_use`;
//! - `stop` → `stop_sequences`, `max_completion_tokens` or `max_tokens` →
//!   `max_tokens` ([`DEFAULT_MAX_TOKENS`] when neither is given, since the API
//!   requires it), `temperature`, `top_p`, `user` → `metadata.user_id`.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Provider;
use crate::gateway::error::ApiError;
use crate::gateway::provider::chat::{self, ChatRequest, Part, Role, ToolChoice};

/// `max_tokens` when the client set none: Anthropic requires one, and this
/// is what every current Claude model can produce.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Serialize)]
pub struct MessagesRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// Vertex AI carries the API version in the body, not in a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<&'static str>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Choice<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: ImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<Block<'a>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct ToolDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a RawValue,
}

#[derive(Serialize)]
struct Choice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

fn bad(message: String, param: &str) -> ApiError {
    ApiError::Unsupported {
        message,
        param: param.to_string(),
    }
}

/// The body for `POST /v1/messages`.
pub fn translate(body: &[u8], model_id: &str) -> Result<Bytes, ApiError> {
    let req = chat::parse(body, Provider::Anthropic)?;
    let out = build(&req, Some(model_id), None)?;
    // Our own types: serialising them cannot fail.
    Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
}

/// The body for Vertex AI's `:rawPredict` / `:streamRawPredict`: the
/// version in the body, the model only in the URL.
pub fn translate_for_vertex(body: &[u8]) -> Result<Bytes, ApiError> {
    let req = chat::parse(body, Provider::Vertex)?;
    let out = build(
        &req,
        None,
        Some(crate::gateway::provider::vertex::ANTHROPIC_VERSION),
    )?;
    Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
}

/// The Messages request for `req`; `model` None for Vertex, which names the
/// model in the URL.
pub fn build<'a>(
    req: &'a ChatRequest<'_>,
    model: Option<&'a str>,
    anthropic_version: Option<&'static str>,
) -> Result<MessagesRequest<'a>, ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                for p in &m.parts {
                    match p {
                        Part::Text(t) if !t.is_empty() => system.push(Block::Text { text: t }),
                        Part::Text(_) => {}
                        Part::Image(_) => {
                            return Err(bad(
                                format!(
                                    "messages[{i}] has an image in a system message, which Anthropic cannot take"
                                ),
                                &format!("messages[{i}].content"),
                            ));
                        }
                    }
                }
                continue;
            }
            Role::User => ("user", user_blocks(i, &m.parts)?),
            Role::Assistant => {
                let mut blocks = text_blocks(&m.parts);
                for (j, call) in m.tool_calls.iter().enumerate() {
                    let input = chat::tool_input(call, i, j, "Anthropic")?;
                    blocks.push(Block::ToolUse {
                        id: &call.id,
                        name: &call.name,
                        input,
                    });
                }
                if blocks.is_empty() {
                    continue; // an empty assistant turn says nothing; the API refuses it
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                (
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id: id,
                        content: text_blocks(&m.parts),
                    }],
                )
            }
            Role::Function => unreachable!("refused by chat::parse"),
        };
        match turns.last_mut() {
            // Turns alternate: consecutive tool results (and what follows
            // them from the same side) are one turn, results first.
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    let has_tools = !req.tools.is_empty();
    let tools = req
        .tools
        .iter()
        .map(|t| ToolDef {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: t.parameters.unwrap_or_else(|| chat::empty_schema()),
        })
        .collect();
    let single = req.parallel_tool_calls == Some(false);
    let tool_choice = match (&req.tool_choice, has_tools) {
        (_, false) => None,
        (Some(ToolChoice::None), true) => Some(Choice {
            kind: "none",
            name: None,
            disable_parallel_tool_use: false,
        }),
        (Some(ToolChoice::Required), true) => Some(Choice {
            kind: "any",
            name: None,
            disable_parallel_tool_use: single,
        }),
        (Some(ToolChoice::Named(name)), true) => Some(Choice {
            kind: "tool",
            name: Some(name),
            disable_parallel_tool_use: single,
        }),
        (Some(ToolChoice::Auto), true) => Some(Choice {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: single,
        }),
        (None, true) if single => Some(Choice {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: true,
        }),
        (None, true) => None,
    };
    Ok(MessagesRequest {
        model,
        anthropic_version,
        max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system,
        messages: turns,
        tools,
        tool_choice,
        stop_sequences: req.stop.iter().map(String::as_str).collect(),
        temperature: req.temperature,
        top_p: req.top_p,
        metadata: req.user.as_deref().map(|user_id| Metadata { user_id }),
        stream: req.stream,
    })
}

/// Text parts as text blocks; empty ones left out (the API refuses them).
fn text_blocks<'a>(parts: &'a [Part<'_>]) -> Vec<Block<'a>> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if !t.is_empty() => Some(Block::Text { text: t }),
            _ => None,
        })
        .collect()
}

fn user_blocks<'a>(i: usize, parts: &'a [Part<'_>]) -> Result<Vec<Block<'a>>, ApiError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match p {
            Part::Text(t) if !t.is_empty() => blocks.push(Block::Text { text: t }),
            Part::Text(_) => {}
            Part::Image(url) => blocks.push(Block::Image {
                source: image_source(url).ok_or_else(|| {
                    let param = format!("messages[{i}].content[{j}].image_url.url");
                    bad(
                        format!("`{param}` must be a base64 data: URI or an http(s) URL"),
                        &param,
                    )
                })?,
            }),
        }
    }
    Ok(blocks)
}

/// `data:image/png;base64,…` as base64, `https://…` as a URL source.
fn image_source(url: &str) -> Option<ImageSource<'_>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        return Some(ImageSource::Base64 { media_type, data });
    }
    (url.starts_with("https://") || url.starts_with("http://")).then_some(ImageSource::Url { url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn translated(body: Value) -> Value {
        let out = translate(body.to_string().as_bytes(), "claude-x").unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_conversation_with_tools_becomes_alternating_turns() {
        let out = translated(json!({
            "model": "m", "user": "u-1", "stop": ["END"], "temperature": 0.2, "top_p": 0.9,
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                      {"type": "function", "function": {"name": "time"}}],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"role": "user", "content": "thanks"}
            ]
        }));
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "be brief"}, {"type": "text", "text": "use tools"}])
        );
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            out["tools"][1]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        let turns = out["messages"].as_array().unwrap();
        assert_eq!(turns.len(), 3, "{turns:?}");
        assert_eq!(
            turns[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
        );
        assert_eq!(
            turns[0]["content"][2]["source"],
            json!({"type": "url", "url": "https://x.test/cat.png"})
        );
        assert_eq!(turns[1]["role"], "assistant");
        assert_eq!(
            turns[1]["content"][1],
            json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}})
        );
        assert_eq!(turns[1]["content"][2]["input"], json!({}));
        // Both results and the user's next words in one turn, results first.
        assert_eq!(turns[2]["role"], "user");
        assert_eq!(
            turns[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "sunny"}]})
        );
        assert_eq!(turns[2]["content"][1]["tool_use_id"], "call_2");
        assert_eq!(
            turns[2]["content"][2],
            json!({"type": "text", "text": "thanks"})
        );
        assert!(out.get("stream").is_none());
    }

    #[test]
    fn tool_choices_and_limits_map_one_to_one() {
        let with = |choice: Value| {
            translated(
                json!({"model": "m", "max_tokens": 9, "stream": true, "tool_choice": choice,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "messages": [{"role": "user", "content": "x"}]}),
            )
        };
        assert_eq!(with(json!("auto"))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(with(json!("none"))["tool_choice"], json!({"type": "none"}));
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "f"}}))["tool_choice"],
            json!({"type": "tool", "name": "f"})
        );
        assert_eq!(with(json!("auto"))["max_tokens"], 9);
        assert_eq!(with(json!("auto"))["stream"], true);
    }

    #[test]
    fn arguments_that_are_not_an_object_and_odd_images_are_named() {
        let body = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]});
        let e = translate(body.to_string().as_bytes(), "x").unwrap_err();
        assert!(
            e.to_string()
                .contains("messages[0].tool_calls[0].function.arguments"),
            "{e}"
        );
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]});
        match translate(body.to_string().as_bytes(), "x").unwrap_err() {
            ApiError::Unsupported { param, .. } => {
                assert_eq!(param, "messages[0].content[0].image_url.url")
            }
            other => panic!("{other:?}"),
        }
    }
}
