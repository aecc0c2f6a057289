//! An OpenAI chat request as a Bedrock Converse request (the same body for
//! `converse` and `converse-stream`; the URL says which).
//!
//! - system and developer messages → `system` text blocks;
//! - user text and images (a `data:` URI as `bytes`; Converse takes no
//!   image URLs, so one is refused by name), assistant text and tool calls
//!   (`toolUse`, the arguments parsed), tool results (`toolResult`; like
//!   Anthropic, consecutive turns of one side grouped into one);
//! - `tools` → `toolConfig.tools[].toolSpec` with `inputSchema.json`;
//!   `tool_choice` auto / required / a named tool → `auto` / `any` / `tool`;
//!   `none` → no tools offered (refused when the conversation already holds
//!   tool calls, which Converse then needs the tools for);
//! - `max_tokens`, `temperature`, `top_p`, `stop` → `inferenceConfig`
//!   (left out when absent: Converse does not require `maxTokens`, and each
//!   model has its own ceiling); `user` → `requestMetadata.user`.
//!
//! `parallel_tool_calls: false` is refused: Converse has no way to ask for
//! one call per turn.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Provider;
use crate::gateway::error::ApiError;
use crate::gateway::provider::anthropic::request::DEFAULT_MAX_TOKENS;
use crate::gateway::provider::chat::{self, ChatRequest, Part, Role, ToolChoice};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Converse<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "Inference::is_empty")]
    inference_config: Inference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_metadata: Option<Metadata<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Inference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
}

impl Inference<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A content block: exactly one member, named for its kind.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    Image(Image<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'a str,
    source: ImageBytes<'a>,
}

#[derive(Serialize)]
struct ImageBytes<'a> {
    /// Base64, as the JSON protocol carries blobs.
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Choice<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry<'a> {
    tool_spec: ToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Schema<'a>,
}

#[derive(Serialize)]
struct Schema<'a> {
    json: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Choice<'a> {
    Auto(Empty),
    Any(Empty),
    Tool(Named<'a>),
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user: &'a str,
}

fn unsupported(message: String, param: &str) -> ApiError {
    ApiError::Unsupported {
        message,
        param: param.to_string(),
    }
}

/// The body for `POST {api_base}/model/{model_id}/converse[-stream]`.
pub fn translate(body: &[u8], model_id: &str) -> Result<Bytes, ApiError> {
    let req = chat::parse(body, Provider::Bedrock)?;
    let mut out = build(&req)?;
    // A model ID or inference profile of Claude (`us.anthropic.claude-…`).
    if out.inference_config.max_tokens.is_none() && model_id.contains("anthropic.claude") {
        out.inference_config.max_tokens = Some(DEFAULT_MAX_TOKENS);
    }
    Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
}

fn build<'a>(req: &'a ChatRequest<'_>) -> Result<Converse<'a>, ApiError> {
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        return Err(unsupported(
            "`parallel_tool_calls` = false: bedrock deployments cannot honour it (Converse has no way to ask for one call per turn)".into(),
            "parallel_tool_calls",
        ));
    }
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                for (j, p) in m.parts.iter().enumerate() {
                    match p {
                        Part::Text(t) if !t.is_empty() => system.push(Block::Text(t)),
                        Part::Text(_) => {}
                        Part::Image(_) => {
                            let param = format!("messages[{i}].content[{j}]");
                            return Err(unsupported(
                                format!(
                                    "`{param}` is an image in a system message, which Bedrock cannot take"
                                ),
                                &param,
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
                    let input = chat::tool_input(call, i, j, "Bedrock")?;
                    has_tool_blocks = true;
                    blocks.push(Block::ToolUse(ToolUse {
                        tool_use_id: &call.id,
                        name: &call.name,
                        input,
                    }));
                }
                if blocks.is_empty() {
                    continue;
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                has_tool_blocks = true;
                let mut content = text_blocks(&m.parts);
                if content.is_empty() {
                    // Converse refuses a result without content.
                    content.push(Block::Text(""));
                }
                (
                    "user",
                    vec![Block::ToolResult(ToolResult {
                        tool_use_id: m.tool_call_id.as_deref().unwrap_or_default(),
                        content,
                    })],
                )
            }
            Role::Function => unreachable!("refused by chat::parse"),
        };
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    let tool_config = tools(req, has_tool_blocks)?;
    Ok(Converse {
        messages: turns,
        system,
        inference_config: Inference {
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: req.stop.iter().map(String::as_str).collect(),
        },
        tool_config,
        request_metadata: req.user.as_deref().map(|user| Metadata { user }),
    })
}

fn tools<'a>(
    req: &'a ChatRequest<'_>,
    has_tool_blocks: bool,
) -> Result<Option<ToolConfig<'a>>, ApiError> {
    if req.tools.is_empty() {
        return Ok(None);
    }
    let tool_choice = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => Some(Choice::Auto(Empty {})),
        Some(ToolChoice::Required) => Some(Choice::Any(Empty {})),
        Some(ToolChoice::Named(name)) => Some(Choice::Tool(Named { name })),
        Some(ToolChoice::None) if has_tool_blocks => {
            return Err(unsupported(
                "`tool_choice` = \"none\" with tool calls in the conversation: bedrock deployments cannot honour it (Converse needs the tools offered then, and cannot forbid calling them)".into(),
                "tool_choice",
            ));
        }
        // Not offering the tools is what "none" asks for.
        Some(ToolChoice::None) => return Ok(None),
    };
    Ok(Some(ToolConfig {
        tools: req
            .tools
            .iter()
            .map(|t| ToolEntry {
                tool_spec: ToolSpec {
                    name: &t.name,
                    description: t.description.as_deref(),
                    input_schema: Schema {
                        json: t.parameters.unwrap_or_else(|| chat::empty_schema()),
                    },
                },
            })
            .collect(),
        tool_choice,
    }))
}

fn text_blocks<'a>(parts: &'a [Part<'_>]) -> Vec<Block<'a>> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if !t.is_empty() => Some(Block::Text(t)),
            _ => None,
        })
        .collect()
}

fn user_blocks<'a>(i: usize, parts: &'a [Part<'_>]) -> Result<Vec<Block<'a>>, ApiError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match p {
            Part::Text(t) if !t.is_empty() => blocks.push(Block::Text(t)),
            Part::Text(_) => {}
            Part::Image(url) => {
                let param = format!("messages[{i}].content[{j}].image_url.url");
                let image = image(url).ok_or_else(|| {
                    let why = if url.starts_with("data:") {
                        "must be a base64 data: URI of a png, jpeg, gif or webp image, the formats Bedrock takes"
                    } else {
                        "must be a base64 data: URI: Bedrock takes no image URLs (and the gateway downloads nothing)"
                    };
                    unsupported(format!("`{param}` {why}"), &param)
                })?;
                blocks.push(Block::Image(image));
            }
        }
    }
    Ok(blocks)
}

/// `data:image/png;base64,…` → format `png` and the base64 bytes.
fn image(url: &str) -> Option<Image<'_>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some(Image {
        format,
        source: ImageBytes { bytes: data },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn translated(body: Value) -> Value {
        let out = translate(body.to_string().as_bytes(), "meta.llama3-70b-instruct-v1:0").unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn refused(body: Value) -> String {
        match translate(body.to_string().as_bytes(), "meta.llama3-70b-instruct-v1:0") {
            Err(ApiError::Unsupported { param, .. }) => param,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_conversation_with_tools_becomes_converse() {
        let out = translated(json!({
            "model": "m", "user": "u-1", "stop": ["END"], "temperature": 0.2, "top_p": 0.9,
            "max_tokens": 100, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                      {"type": "function", "function": {"name": "time"}}],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": [{"type": "text", "text": "weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"},
                {"role": "user", "content": "thanks"}
            ]
        }));
        assert_eq!(
            out["system"],
            json!([{"text": "be brief"}, {"text": "and kind"}])
        );
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
        );
        assert_eq!(out["requestMetadata"], json!({"user": "u-1"}));
        let m = &out["messages"];
        assert_eq!(m.as_array().unwrap().len(), 3, "{m}");
        assert_eq!(
            m[0]["content"][1],
            json!({"image": {"format": "png", "source": {"bytes": "iVBO"}}})
        );
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(
            m[1]["content"][0]["toolUse"],
            json!({"toolUseId": "c1", "name": "weather", "input": {"city": "Paris"}})
        );
        assert_eq!(m[1]["content"][1]["toolUse"]["input"], json!({}));
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"][0]["toolResult"],
            json!({"toolUseId": "c1", "content": [{"text": "sunny"}]})
        );
        assert_eq!(m[2]["content"][1]["toolResult"]["toolUseId"], "c2");
        assert_eq!(m[2]["content"][2], json!({"text": "thanks"}));
        let tools = &out["toolConfig"];
        assert_eq!(tools["toolChoice"], json!({"any": {}}));
        assert_eq!(
            tools["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            tools["tools"][1]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn plain_requests_carry_nothing_extra() {
        let out =
            translated(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            out,
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
        );
        let named = translated(
            json!({"model": "m", "tool_choice": {"type": "function", "function": {"name": "f"}},
            "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(
            named["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        let none = translated(json!({"model": "m", "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [{"role": "user", "content": "hi"}]}));
        assert!(none.get("toolConfig").is_none(), "{none}");
        let claude = |id: &str| {
            let out = translate(
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
                id,
            )
            .unwrap();
            serde_json::from_slice::<Value>(&out).unwrap()["inferenceConfig"]["maxTokens"].clone()
        };
        assert_eq!(claude("anthropic.claude-sonnet-4-5-20250929-v1:0"), 4096);
        assert_eq!(claude("us.anthropic.claude-sonnet-4-5-20250929-v1:0"), 4096);
        assert!(
            claude("amazon.nova-pro-v1:0").is_null(),
            "other models: their own default"
        );
    }

    #[test]
    fn what_converse_cannot_honour_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            refused(json!({"model": "m", "messages": user, "n": 2})),
            "n"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "messages": user, "parallel_tool_calls": false,
                "tools": [{"type": "function", "function": {"name": "f"}}]})
            ),
            "parallel_tool_calls"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
            ),
            "messages[0].content[0].image_url.url"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}],
                "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "x"}]})
            ),
            "tool_choice"
        );
    }
}
