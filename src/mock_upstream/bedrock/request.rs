//! What the Bedrock mock checks of a Converse request, as Bedrock does
//! (its `ValidationException`s): messages present, starting with a user
//! turn and alternating, content blocks with exactly one known member,
//! images with a known format and base64 bytes, tool use only with a
//! `toolConfig`, every `toolUse` answered by a `toolResult` in the next
//! turn, inference settings in range, no unknown fields. And what it
//! needs to answer: the tokens, the stop sequences, the tools to call.

use serde_json::{Map, Value};

use crate::mock_upstream::anthropic::request::input_for;

#[derive(Debug, Clone, Default)]
pub(crate) struct Converse {
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stop_sequences: Vec<String>,
    /// The tools this answer calls: name and input.
    pub(crate) calls: Vec<(String, Value)>,
}

type Check<T> = Result<T, String>;

const TOP: [&str; 10] = [
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];

pub(crate) fn parse(body: &[u8]) -> Check<Converse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("Malformed input request: {e}, please reformat your input and try again.")
    })?;
    let obj = v
        .as_object()
        .ok_or("Malformed input request: expected an object")?;
    for key in obj.keys() {
        if !TOP.contains(&key.as_str()) {
            return Err(format!(
                "Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again."
            ));
        }
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(
            "The model returned the following errors: messages: at least one message is required",
        )?;
    let tool_config = obj.get("toolConfig");
    let tools = tool_specs(tool_config)?;
    let mut chars = 0usize;
    if let Some(system) = obj.get("system") {
        for block in system.as_array().ok_or("system must be a list")? {
            chars += block
                .get("text")
                .and_then(Value::as_str)
                .map_or(0, str::len);
        }
    }
    let mut previous_role = "";
    let mut open_calls: Vec<String> = Vec::new();
    let mut last_user_text = String::new();
    let mut after_results = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: must be one of user, assistant"));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if role == previous_role {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        previous_role = role;
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!("messages.{i}.content: must be a non-empty list of content blocks")
            })?;
        let mut calls = Vec::new();
        let mut answered = Vec::new();
        let mut text = String::new();
        for (j, block) in content.iter().enumerate() {
            let block = block
                .as_object()
                .ok_or_else(|| format!("messages.{i}.content.{j}: must be an object"))?;
            if block.len() != 1 {
                return Err(format!(
                    "messages.{i}.content.{j}: a content block must have exactly one member"
                ));
            }
            let (kind, value) = block.iter().next().expect("one member");
            match kind.as_str() {
                "text" => {
                    let t = value.as_str().ok_or_else(|| {
                        format!("messages.{i}.content.{j}.text: must be a string")
                    })?;
                    chars += t.len();
                    text.push_str(t);
                }
                "image" => {
                    image(value).map_err(|e| format!("messages.{i}.content.{j}.image: {e}"))?
                }
                "toolUse" if role == "assistant" => {
                    if tool_config.is_none() {
                        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
                    }
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            format!("messages.{i}.content.{j}.toolUse.toolUseId: required")
                        })?;
                    value.get("name").and_then(Value::as_str).ok_or_else(|| {
                        format!("messages.{i}.content.{j}.toolUse.name: required")
                    })?;
                    if !value.get("input").is_some_and(Value::is_object) {
                        return Err(format!(
                            "messages.{i}.content.{j}.toolUse.input: must be an object"
                        ));
                    }
                    calls.push(id.to_string());
                }
                "toolResult" if role == "user" => {
                    if tool_config.is_none() {
                        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
                    }
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            format!("messages.{i}.content.{j}.toolResult.toolUseId: required")
                        })?;
                    if !open_calls.iter().any(|c| c == id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: the toolResult block's toolUseId {id} matches no toolUse block of the previous turn"
                        ));
                    }
                    let parts =
                        value
                            .get("content")
                            .and_then(Value::as_array)
                            .ok_or_else(|| {
                                format!(
                                    "messages.{i}.content.{j}.toolResult.content: must be a list"
                                )
                            })?;
                    for p in parts {
                        chars += p.get("text").and_then(Value::as_str).map_or(0, str::len);
                    }
                    answered.push(id.to_string());
                }
                other => {
                    return Err(format!(
                        "messages.{i}.content.{j}: {other} is not a content block a {role} message can hold"
                    ));
                }
            }
        }
        if role == "user" {
            let missing: Vec<&String> = open_calls
                .iter()
                .filter(|c| !answered.contains(c))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            after_results = !answered.is_empty();
            last_user_text = text;
            open_calls.clear();
        } else {
            open_calls = calls;
        }
    }
    if previous_role != "user" {
        return Err("A conversation must end with a user message. Try again with a conversation that ends with a user message.".into());
    }
    let (max_tokens, stop_sequences) = inference(obj.get("inferenceConfig"))?;
    let choice = obj.get("toolConfig").and_then(|t| t.get("toolChoice"));
    let calls = if after_results {
        Vec::new()
    } else {
        choose(&tools, choice, &last_user_text)?
    };
    Ok(Converse {
        prompt_tokens: (chars as u64 / 4).max(1),
        max_tokens,
        stop_sequences,
        calls,
    })
}

fn image(v: &Value) -> Check<()> {
    let format = v.get("format").and_then(Value::as_str).unwrap_or_default();
    if !["png", "jpeg", "gif", "webp"].contains(&format) {
        return Err(format!(
            "format '{format}' is not one of png, jpeg, gif, webp"
        ));
    }
    let bytes = v
        .pointer("/source/bytes")
        .and_then(Value::as_str)
        .ok_or("source.bytes is required")?;
    let ok = !bytes.is_empty()
        && bytes
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !ok {
        return Err("source.bytes must be base64".into());
    }
    Ok(())
}

fn inference(v: Option<&Value>) -> Check<(Option<u64>, Vec<String>)> {
    let Some(v) = v else {
        return Ok((None, Vec::new()));
    };
    let obj = v.as_object().ok_or("inferenceConfig must be an object")?;
    for key in obj.keys() {
        if !["maxTokens", "temperature", "topP", "stopSequences"].contains(&key.as_str()) {
            return Err(format!(
                "Malformed input request: inferenceConfig: extraneous key [{key}] is not permitted"
            ));
        }
    }
    let max_tokens = match obj.get("maxTokens") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .filter(|n| *n >= 1)
                .ok_or("inferenceConfig.maxTokens: must be at least 1")?,
        ),
    };
    for (key, high) in [("temperature", 1.0), ("topP", 1.0)] {
        if let Some(x) = obj.get(key) {
            let x = x
                .as_f64()
                .ok_or_else(|| format!("inferenceConfig.{key}: must be a number"))?;
            if !(0.0..=high).contains(&x) {
                return Err(format!(
                    "inferenceConfig.{key}: must be between 0 and {high}"
                ));
            }
        }
    }
    let stops = obj
        .get("stopSequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((max_tokens, stops))
}

fn tool_specs(config: Option<&Value>) -> Check<Vec<(String, Value)>> {
    let Some(config) = config else {
        return Ok(Vec::new());
    };
    let tools = config
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or("toolConfig.tools: at least one tool is required")?;
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let spec = t
            .get("toolSpec")
            .ok_or_else(|| format!("toolConfig.tools.{i}: toolSpec is required"))?;
        let name = spec
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("toolConfig.tools.{i}.toolSpec.name: required"))?;
        let schema = spec
            .pointer("/inputSchema/json")
            .filter(|s| s.is_object())
            .ok_or_else(|| {
                format!(
                    "toolConfig.tools.{i}.toolSpec.inputSchema.json: must be a JSON schema object"
                )
            })?;
        out.push((name.to_string(), schema.clone()));
    }
    Ok(out)
}

/// `auto`: the tools the last user text names; `any`: the first two (as
/// Claude calls them, in parallel); `tool`: that one.
fn choose(
    tools: &[(String, Value)],
    choice: Option<&Value>,
    text: &str,
) -> Check<Vec<(String, Value)>> {
    let empty = Map::new();
    let choice = choice.and_then(Value::as_object).unwrap_or(&empty);
    let picked: Vec<&(String, Value)> = if choice.contains_key("any") {
        tools.iter().take(2).collect()
    } else if let Some(t) = choice.get("tool") {
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        let found: Vec<_> = tools.iter().filter(|(n, _)| n == name).collect();
        if found.is_empty() {
            return Err(format!(
                "toolConfig.toolChoice.tool.name: {name} is not one of the tools"
            ));
        }
        found
    } else {
        tools
            .iter()
            .filter(|(n, _)| text.contains(n.as_str()))
            .take(2)
            .collect()
    };
    Ok(picked
        .into_iter()
        .map(|(n, s)| (n.clone(), input_for(s)))
        .collect())
}
