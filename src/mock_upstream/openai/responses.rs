//! OpenAI's Responses API (`POST /responses`): what the mock reads from a
//! request (the answer is in `response_reply.rs`).
//!
//! The request is read loosely, as OpenAI reads what Codex and the Agents
//! SDK send: input items with or without `type` and `id`, tool outputs,
//! `additional_tools` items, tools of every type (`function`, `custom`,
//! `namespace` with tools inside, hosted ones such as `web_search`, which
//! are accepted and never called), `store`, `include`, `reasoning`,
//! `prompt_cache_key` and whatever else comes along.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, integer, required_model, text_tokens};

/// A Responses request, reduced to what the mock answers from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponsesJob {
    pub(crate) model: String,
    pub(crate) input_tokens: u64,
    pub(crate) max_output_tokens: Option<u64>,
    pub(crate) stream: bool,
    /// `store` (default true): whether the answer is kept for
    /// `GET /responses/{id}` and `previous_response_id`.
    pub(crate) store: bool,
    pub(crate) previous_response_id: Option<String>,
    /// The tool calls the answer makes instead of text.
    pub(crate) calls: Vec<ToolCall>,
    /// Request fields the `response` object repeats.
    pub(crate) echo: Echo,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Echo {
    pub(crate) instructions: Value,
    pub(crate) tools: Value,
    pub(crate) tool_choice: Value,
    pub(crate) parallel_tool_calls: bool,
    pub(crate) reasoning: Value,
    pub(crate) text: Value,
    pub(crate) metadata: Value,
    pub(crate) prompt_cache_key: Value,
    pub(crate) user: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A `function` tool: a `function_call` item with JSON `arguments`.
    Function,
    /// A `custom` (freeform or grammar) tool: a `custom_tool_call` item
    /// with a string `input`.
    Custom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub(crate) kind: CallKind,
    pub(crate) name: String,
    /// The `namespace` tool it was declared in, which Codex expects back.
    pub(crate) namespace: Option<String>,
    /// The arguments (JSON) or the custom tool's input.
    pub(crate) payload: String,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<Input<'a>>,
    #[serde(default)]
    instructions: Option<Value>,
    stream: Option<bool>,
    #[serde(default, deserialize_with = "integer")]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    store: Option<bool>,
    #[serde(borrow)]
    previous_response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    prompt_cache_key: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Items(#[serde(borrow)] Vec<Item<'a>>),
}

/// An input item of any type; what is not read here is ignored.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Text<'a>>,
    /// A tool output: a string or content parts.
    #[serde(borrow)]
    output: Option<Text<'a>>,
    /// A `function_call`'s arguments.
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
    /// A `custom_tool_call`'s input.
    #[serde(borrow)]
    input: Option<Text<'a>>,
    /// An `additional_tools` item's tools (Codex).
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

/// A string or a list of parts, of which only the text counts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text<'a> {
    Plain(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

impl Text<'_> {
    fn chars(&self) -> usize {
        match self {
            Text::Plain(t) => t.chars().count(),
            Text::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(|t| t.chars().count())
                .sum(),
            Text::Other(_) => 0,
        }
    }

    fn string(&self) -> String {
        match self {
            Text::Plain(t) => t.to_string(),
            Text::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(" "),
            Text::Other(_) => String::new(),
        }
    }
}

/// A tool the request declares that the mock can call.
struct Declared<'v> {
    kind: CallKind,
    name: &'v str,
    namespace: Option<&'v str>,
    parameters: Option<&'v Value>,
}

/// Function and custom tools, also inside `namespace` tools.
fn declared<'v>(tools: &'v [Value], namespace: Option<&'v str>, out: &mut Vec<Declared<'v>>) {
    for tool in tools {
        let name = tool.get("name").and_then(Value::as_str);
        match (tool.get("type").and_then(Value::as_str), name) {
            (Some("function"), Some(name)) => out.push(Declared {
                kind: CallKind::Function,
                name,
                namespace,
                parameters: tool.get("parameters"),
            }),
            (Some("custom"), Some(name)) => out.push(Declared {
                kind: CallKind::Custom,
                name,
                namespace,
                parameters: None,
            }),
            (Some("namespace"), Some(name)) => {
                if let Some(inner) = tool.get("tools").and_then(Value::as_array) {
                    declared(inner, Some(name), out);
                }
            }
            _ => {}
        }
    }
}

/// The input a custom tool is called with: for Codex's code-mode `exec`
/// tool a script that runs `echo mock`, for any other the word "Paris"
/// (what the mocks put in every string argument).
fn custom_input(name: &str) -> String {
    if name == "exec" {
        r#"text(await tools.exec_command({cmd: "echo mock"}));"#.to_string()
    } else {
        "Paris".to_string()
    }
}

pub(crate) fn parse_responses(body: &[u8]) -> Result<ResponsesJob, ApiError> {
    let req: Request<'_> = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = required_model(req.model)?;
    let input = req.input.ok_or_else(|| ApiError::missing("input"))?;
    let instructions_chars = req
        .instructions
        .as_ref()
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count());
    let (input_chars, items, last_user, after_tool) = match &input {
        Input::Text(text) => (text.chars().count(), 1, text.to_string(), false),
        Input::Items(items) => {
            let chars: usize = items
                .iter()
                .map(|i| {
                    i.content.as_ref().map_or(0, Text::chars)
                        + i.output.as_ref().map_or(0, Text::chars)
                        + i.input.as_ref().map_or(0, Text::chars)
                        + i.arguments.as_ref().map_or(0, |a| a.chars().count())
                })
                .sum();
            let last_user = items
                .iter()
                .rev()
                .find(|i| {
                    i.role.as_deref() == Some("user")
                        && matches!(i.kind.as_deref(), None | Some("message"))
                })
                .and_then(|i| i.content.as_ref())
                .map(Text::string)
                .unwrap_or_default();
            let after_tool = items
                .last()
                .and_then(|i| i.kind.as_deref())
                .is_some_and(|k| {
                    matches!(
                        k,
                        "function_call_output" | "custom_tool_call_output" | "tool_search_output"
                    )
                });
            (chars, items.len(), last_user, after_tool)
        }
    };
    let mut tools = Vec::new();
    declared(req.tools.as_deref().unwrap_or_default(), None, &mut tools);
    if let Input::Items(items) = &input {
        for item in items {
            if let Some(extra) = &item.tools {
                declared(extra, None, &mut tools);
            }
        }
    }
    let calls = if after_tool {
        Vec::new()
    } else {
        choose_calls(
            &tools,
            req.tool_choice.as_ref(),
            req.parallel_tool_calls,
            &last_user,
        )
    };
    Ok(ResponsesJob {
        model,
        input_tokens: text_tokens(input_chars + instructions_chars) + 3 * items as u64,
        max_output_tokens: req.max_output_tokens,
        stream: req.stream.unwrap_or(false),
        store: req.store.unwrap_or(true),
        previous_response_id: req.previous_response_id.map(Cow::into_owned),
        calls,
        echo: Echo {
            instructions: req.instructions.unwrap_or(Value::Null),
            tools: Value::Array(req.tools.unwrap_or_default()),
            tool_choice: req.tool_choice.unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            reasoning: req
                .reasoning
                .unwrap_or_else(|| json!({"effort": null, "summary": null})),
            text: req
                .text
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
            metadata: req.metadata.unwrap_or_else(|| json!({})),
            prompt_cache_key: req.prompt_cache_key.unwrap_or(Value::Null),
            user: req.user.unwrap_or(Value::Null),
        },
    })
}

/// As for chat: the tool `tool_choice` names, the first (and second,
/// unless parallel calls are off) for `required`, none for `none`, and for
/// `auto` those whose name the last user text contains.
fn choose_calls(
    tools: &[Declared<'_>],
    choice: Option<&Value>,
    parallel: Option<bool>,
    last_user: &str,
) -> Vec<ToolCall> {
    let most = if parallel == Some(false) { 1 } else { 2 };
    let named = choice
        .and_then(|c| c.get("name").or_else(|| c.pointer("/function/name")))
        .and_then(Value::as_str);
    let picked: Vec<&Declared<'_>> = match (choice.and_then(Value::as_str), named) {
        (_, Some(name)) => tools.iter().filter(|t| t.name == name).take(1).collect(),
        (Some("required"), _) => tools.iter().take(most).collect(),
        (Some("none"), _) => Vec::new(),
        _ => tools
            .iter()
            .filter(|t| last_user.contains(t.name))
            .take(most)
            .collect(),
    };
    picked
        .into_iter()
        .map(|t| ToolCall {
            kind: t.kind,
            name: t.name.to_string(),
            namespace: t.namespace.map(str::to_string),
            payload: match t.kind {
                CallKind::Function => crate::mock_upstream::anthropic::request::input_for(
                    t.parameters.unwrap_or(&Value::Null),
                )
                .to_string(),
                CallKind::Custom => custom_input(t.name),
            },
        })
        .collect()
}
