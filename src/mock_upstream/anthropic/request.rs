//! What the Anthropic mock checks in a Messages request, as the real API
//! checks it: the required fields, no extra ones, roles, block types, the
//! pairing of `tool_use` and `tool_result` across turns, the ranges of the
//! sampling parameters, the tool choice.

use serde_json::{Map, Value};

use super::ErrorBody;
use super::fields::permitted;
pub(crate) use super::fields::{BEDROCK_BETAS, Call, Flavor};

/// What the mock answers from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Messages {
    pub(crate) model: String,
    pub(crate) max_tokens: u64,
    pub(crate) stream: bool,
    pub(crate) prompt_tokens: u64,
    pub(crate) stop_sequences: Vec<String>,
    /// The tools to call in the answer, with their input.
    pub(crate) calls: Vec<(String, Value)>,
    /// The last user turn carried tool results.
    pub(crate) after_tool_results: bool,
}

fn invalid(message: impl Into<String>) -> ErrorBody {
    ErrorBody::invalid_request(message.into())
}

/// Characters / 4, as a token estimate of what the model reads.
fn tokens_of(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// Checks a Messages request as Anthropic's API does.
pub(crate) fn parse(body: &[u8], flavor: Flavor) -> Result<Messages, ErrorBody> {
    parse_for(body, flavor, Call::Create)
}

/// Checks a count_tokens body (or, for Bedrock, the InvokeModel body to
/// count) and estimates its input tokens: every character of the system
/// prompt, the messages and the tools, four to a token. Deterministic:
/// the same body always counts the same.
pub(crate) fn count(body: &[u8], flavor: Flavor) -> Result<u64, ErrorBody> {
    parse_for(body, flavor, Call::Count)?;
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    let mut chars = 0;
    for field in ["system", "messages", "tools"] {
        chars += value.get(field).map_or(0, text_chars);
    }
    Ok(tokens_of(chars))
}

/// The characters of every string in `v`, keys of objects included.
fn text_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(text_chars).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + text_chars(v)).sum(),
        _ => 1,
    }
}

fn parse_for(body: &[u8], flavor: Flavor, call: Call) -> Result<Messages, ErrorBody> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("Invalid JSON in request body: {e}")))?;
    let Value::Object(req) = value else {
        return Err(invalid("The request body must be a JSON object."));
    };
    for key in req.keys() {
        if !permitted(key, flavor, call) {
            return Err(invalid(match (flavor, key.as_str()) {
                (Flavor::Bedrock, _) => format!(
                    "Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try again."
                ),
                (Flavor::Vertex, "model") => {
                    "model: Extra inputs are not permitted (the model is in the URL)".into()
                }
                _ => format!("{key}: Extra inputs are not permitted"),
            }));
        }
    }
    let model = match (req.get("model"), flavor) {
        (Some(Value::String(m)), _) if !m.is_empty() => m.clone(),
        (None, Flavor::Anthropic) => return Err(invalid("model: Field required")),
        (None, Flavor::Vertex) if call == Call::Count => {
            return Err(invalid("model: Field required"));
        }
        (None, Flavor::Vertex) => "claude-vertex".to_string(),
        (None, Flavor::Bedrock) => "claude-bedrock".to_string(),
        _ => return Err(invalid("model: Input should be a valid string")),
    };
    let version = req.get("anthropic_version").and_then(Value::as_str);
    match (flavor, version) {
        (Flavor::Anthropic, _) => {}
        // A count names the model and may leave the version out.
        (Flavor::Vertex, None) if call == Call::Count => {}
        (Flavor::Vertex, Some(v)) if platform_version(v, "vertex-2023-10-16") => {}
        (Flavor::Vertex, _) => {
            return Err(invalid(
                "anthropic_version: must be \"vertex-2023-10-16\" on Vertex AI",
            ));
        }
        (Flavor::Bedrock, None) => {
            return Err(invalid(
                "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.",
            ));
        }
        (Flavor::Bedrock, Some(v)) if platform_version(v, "bedrock-2023-05-31") => {}
        (Flavor::Bedrock, Some(_)) => {
            return Err(invalid(
                "anthropic_version: invalid value; must be \"bedrock-2023-05-31\"",
            ));
        }
    }
    if let Some(betas) = req.get("anthropic_beta") {
        let list = betas
            .as_array()
            .ok_or_else(|| invalid("anthropic_beta: expected type: JSONArray"))?;
        if list
            .iter()
            .any(|b| !b.as_str().is_some_and(|b| BEDROCK_BETAS.contains(&b)))
        {
            return Err(invalid("invalid beta flag"));
        }
    }
    let max_tokens = match req.get("max_tokens") {
        None if call == Call::Count && flavor != Flavor::Bedrock => 1,
        None => return Err(invalid("max_tokens: Field required")),
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
        })?,
    };
    for (name, max) in [("temperature", 1.0), ("top_p", 1.0)] {
        if let Some(v) = req.get(name) {
            let n = v
                .as_f64()
                .ok_or_else(|| invalid(format!("{name}: Input should be a valid number")))?;
            if !(0.0..=max).contains(&n) {
                return Err(invalid(format!("{name}: range: 0..{max}")));
            }
        }
    }
    let stop_sequences = match req.get("stop_sequences") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid("stop_sequences: Input should be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("stop_sequences: Input should be a valid list")),
    };
    let mut chars = match req.get("system") {
        None => 0,
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(blocks)) => {
            let mut n = 0;
            for (i, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(format!("system.{i}.type: Input should be 'text'")));
                }
                n += text_of(b, &format!("system.{i}"))?.chars().count();
            }
            n
        }
        Some(_) => return Err(invalid("system: Input should be a valid string or list")),
    };
    let tools = tools(&req)?;
    let choice = tool_choice(&req, &tools)?;
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(invalid("messages: Field required"));
    };
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut previous_calls: Vec<String> = Vec::new();
    let mut last_user_text = String::new();
    let mut after_tool_results = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role == "system" {
            // Claude Code's mid-conversation system entry: read, and no turn
            // of its own (tool results still answer the turn before it).
            chars += m.get("content").map_or(0, text_chars);
            continue;
        }
        if !matches!(role, "user" | "assistant") {
            return Err(invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let blocks = blocks(m, i)?;
        let mut calls = Vec::new();
        let mut results = Vec::new();
        let mut text = String::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match b.get("type").and_then(Value::as_str).unwrap_or_default() {
                "text" => {
                    let t = text_of(b, &at)?;
                    chars += t.chars().count();
                    text.push_str(t);
                }
                "image" => check_image(b, &at)?,
                "document" | "search_result" if role == "user" => chars += text_chars(b),
                "tool_use" if role == "assistant" => {
                    let id = b
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("{at}.id: Field required")))?;
                    b.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("{at}.name: Field required")))?;
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Err(invalid(format!(
                            "{at}.input: Input should be a valid dictionary"
                        )));
                    }
                    calls.push(id.to_string());
                }
                "tool_result" if role == "user" => {
                    if !text.is_empty() {
                        return Err(invalid(format!(
                            "messages.{i}: `tool_result` blocks must come before any other content in a user message"
                        )));
                    }
                    let id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("{at}.tool_use_id: Field required")))?;
                    if !previous_calls.iter().any(|c| c == id) {
                        return Err(invalid(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        )));
                    }
                    chars += b
                        .get("content")
                        .map_or(0, |c| c.to_string().chars().count());
                    results.push(id.to_string());
                }
                "thinking" | "redacted_thinking" if role == "assistant" => {}
                other => {
                    return Err(invalid(format!(
                        "{at}.type: `{other}` is not a valid block type in a {role} message"
                    )));
                }
            }
        }
        let missing: Vec<&String> = previous_calls
            .iter()
            .filter(|c| !results.contains(c))
            .collect();
        if !missing.is_empty() {
            let ids: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(invalid(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                ids.join(", ")
            )));
        }
        previous_calls = calls;
        if role == "user" {
            after_tool_results = !results.is_empty();
            last_user_text = text;
        }
    }
    if !previous_calls.is_empty() {
        return Err(invalid(format!(
            "messages: the conversation ends with `tool_use` ids without results: {}",
            previous_calls.join(", ")
        )));
    }
    let calls = if after_tool_results {
        Vec::new()
    } else {
        choose(&tools, &choice, &last_user_text)
    };
    Ok(Messages {
        model,
        max_tokens,
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
        prompt_tokens: tokens_of(chars),
        stop_sequences,
        calls,
        after_tool_results,
    })
}

/// The platform's own version, or a dated API version (`2026-10-21`):
/// the anthropic SDK 2.x sends its API version in the body to Bedrock and
/// Vertex alike, and both platforms take it.
fn platform_version(v: &str, platform: &str) -> bool {
    v == platform
        || (v.len() == 10
            && v.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            }))
}

fn text_of<'a>(b: &'a Value, at: &str) -> Result<&'a str, ErrorBody> {
    match b.get("text").and_then(Value::as_str) {
        Some("") => Err(invalid(format!(
            "{at}: text content blocks must be non-empty"
        ))),
        Some(t) => Ok(t),
        None => Err(invalid(format!("{at}.text: Field required"))),
    }
}

/// A message's content as blocks: a plain string is one text block.
fn blocks(m: &Value, i: usize) -> Result<Vec<Value>, ErrorBody> {
    match m.get("content") {
        Some(Value::String(s)) if s.is_empty() => Err(invalid(format!(
            "messages.{i}: all messages must have non-empty content"
        ))),
        Some(Value::String(s)) => Ok(vec![serde_json::json!({"type": "text", "text": s})]),
        Some(Value::Array(a)) if a.is_empty() => Err(invalid(format!(
            "messages.{i}: all messages must have non-empty content"
        ))),
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(invalid(format!("messages.{i}.content: Field required"))),
    }
}

fn check_image(b: &Value, at: &str) -> Result<(), ErrorBody> {
    let source = b
        .get("source")
        .ok_or_else(|| invalid(format!("{at}.source: Field required")))?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&media) {
                return Err(invalid(format!(
                    "{at}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                )));
            }
            source
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{at}.source.data: Field required")))?;
        }
        Some("url") => {
            let url = source
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(invalid(format!("{at}.source.url: must be an http(s) URL")));
            }
        }
        _ => {
            return Err(invalid(format!(
                "{at}.source.type: Input should be 'base64' or 'url'"
            )));
        }
    }
    Ok(())
}

/// The tools, each with its input schema.
fn tools(req: &Map<String, Value>) -> Result<Vec<(String, Value)>, ErrorBody> {
    let Some(list) = req.get("tools") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("tools: Input should be a valid list"))?;
    let mut tools = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind != "custom")
        {
            // A server tool (`web_search_20250305`, `bash_20250124`, ...):
            // Anthropic runs it, the mock never calls it.
            continue;
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("tools.{i}.name: Field required")))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(format!(
                "tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )));
        }
        let schema = t
            .get("input_schema")
            .ok_or_else(|| invalid(format!("tools.{i}.input_schema: Field required")))?;
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(format!(
                "tools.{i}.input_schema.type: Input should be 'object'"
            )));
        }
        for key in t.as_object().into_iter().flat_map(|o| o.keys()) {
            if ![
                "name",
                "description",
                "input_schema",
                "cache_control",
                "type",
                "defer_loading",
                "strict",
                "input_examples",
                "eager_input_streaming",
                "allowed_callers",
            ]
            .contains(&key.as_str())
            {
                return Err(invalid(format!(
                    "tools.{i}.{key}: Extra inputs are not permitted"
                )));
            }
        }
        tools.push((name.to_string(), schema.clone()));
    }
    Ok(tools)
}

#[derive(Debug)]
struct Choice {
    kind: String,
    name: Option<String>,
    parallel: bool,
}

fn tool_choice(req: &Map<String, Value>, tools: &[(String, Value)]) -> Result<Choice, ErrorBody> {
    let Some(c) = req.get("tool_choice") else {
        return Ok(Choice {
            kind: "auto".into(),
            name: None,
            parallel: true,
        });
    };
    if tools.is_empty() {
        return Err(invalid(
            "tool_choice: may only be specified while providing tools",
        ));
    }
    let kind = c
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !["auto", "any", "tool", "none"].contains(&kind.as_str()) {
        return Err(invalid(
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
        ));
    }
    let name = c.get("name").and_then(Value::as_str).map(String::from);
    if kind == "tool"
        && !name
            .as_ref()
            .is_some_and(|n| tools.iter().any(|(t, _)| t == n))
    {
        return Err(invalid("tool_choice.name: must name one of the tools"));
    }
    let disabled = c
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if kind == "none" && c.get("disable_parallel_tool_use").is_some() {
        return Err(invalid(
            "tool_choice.disable_parallel_tool_use: Extra inputs are not permitted",
        ));
    }
    Ok(Choice {
        kind,
        name,
        parallel: !disabled,
    })
}

/// Which tools the answer calls: the named one, the first (and second,
/// when parallel calls are allowed) for `any`, for `auto` those the last
/// user turn names.
fn choose(tools: &[(String, Value)], choice: &Choice, user_text: &str) -> Vec<(String, Value)> {
    let picked: Vec<&(String, Value)> = match choice.kind.as_str() {
        "tool" => tools
            .iter()
            .filter(|(n, _)| Some(n) == choice.name.as_ref())
            .collect(),
        "any" => tools
            .iter()
            .take(if choice.parallel { 2 } else { 1 })
            .collect(),
        "auto" => {
            let named: Vec<_> = tools
                .iter()
                .filter(|(n, _)| user_text.contains(n.as_str()))
                .collect();
            named
                .into_iter()
                .take(if choice.parallel { 2 } else { 1 })
                .collect()
        }
        _ => Vec::new(),
    };
    picked
        .into_iter()
        .map(|(name, schema)| (name.clone(), input_for(schema)))
        .collect()
}

/// An input that fits the schema's properties: strings, numbers, flags.
pub(crate) fn input_for(schema: &Value) -> Value {
    let mut input = Map::new();
    for (key, prop) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = match prop.get("type").and_then(Value::as_str) {
            Some("number" | "integer") => Value::from(1),
            Some("boolean") => Value::Bool(true),
            Some("array") => Value::Array(Vec::new()),
            Some("object") => Value::Object(Map::new()),
            _ => Value::String("Paris".into()),
        };
        input.insert(key.clone(), v);
    }
    Value::Object(input)
}
