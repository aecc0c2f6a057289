//! The Value-based translation this module's typed one replaced, as it
//! was (its module documentation is the live one's): the oracle the tests
//! hold the live one to, output for output, error for error.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::super::Tools;

pub use crate::gateway::door::Untranslatable;
use crate::gateway::door::refuse;

const BRIDGED: &str = "cannot be bridged to a Chat Completions deployment";

/// A stateless Responses request body → a Chat Completions body, and what
/// the answer needs to know of the request's tools.
pub fn to_chat_with_tools(body: &[u8]) -> Result<(Bytes, Tools), Untranslatable> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(request) = request else {
        return Err(refuse("the request body is not a JSON object"));
    };
    for key in ["previous_response_id", "conversation", "prompt"] {
        if request.get(key).is_some_and(|v| !v.is_null()) {
            return Err(refuse(format!(
                "`{key}` {BRIDGED}: it keeps no stored state; send the whole conversation in `input`"
            )));
        }
    }
    if request.get("background") == Some(&Value::Bool(true)) {
        return Err(refuse(format!("`background: true` {BRIDGED}")));
    }
    let model = match request.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => return Err(refuse("`model` must be a string")),
    };

    let mut t = Translation::default();
    match request.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                t.push(json!({"role": "system", "content": s}));
            }
        }
        Some(other) => {
            // Instructions as input items (what a stored prompt expands to).
            t.items(other)?;
        }
    }
    match request.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => t.push(json!({"role": "user", "content": s})),
        Some(items @ Value::Array(_)) => t.items(items)?,
        Some(_) => return Err(refuse("`input` must be a string or an array of items")),
    }
    t.flush_images();
    if let Some(tools) = request.get("tools") {
        let Value::Array(tools) = tools else {
            return Err(refuse("`tools` must be an array"));
        };
        for tool in tools {
            t.tool(tool, None)?;
        }
    }

    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(t.messages));
    let has_tools = !t.tools.is_empty();
    if has_tools {
        chat.insert("tools".into(), Value::Array(t.tools));
        if let Some(choice) = request.get("tool_choice")
            && let Some(choice) = tool_choice(choice)?
        {
            chat.insert("tool_choice".into(), choice);
        }
        if let Some(Value::Bool(p)) = request.get("parallel_tool_calls") {
            chat.insert("parallel_tool_calls".into(), Value::Bool(*p));
        }
    } else if let Some(choice) = request.get("tool_choice") {
        // Validate it all the same: a hosted tool named here is refused.
        tool_choice(choice)?;
    }
    if let Some(n) = request.get("max_output_tokens").filter(|v| v.is_u64()) {
        chat.insert("max_tokens".into(), n.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = request.get(key).filter(|v| v.is_number()) {
            chat.insert(key.into(), v.clone());
        }
    }
    // `prompt_cache_key` and `safety_identifier` are left out: the gateway
    // reads the first for its sessions, and the providers behind the bridge
    // (Anthropic, Bedrock, Vertex, older chat servers) refuse both.
    for key in ["user"] {
        if let Some(v) = request.get(key).filter(|v| v.is_string()) {
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(format) = request.get("text").and_then(|t| t.get("format"))
        && let Some(format) = response_format(format)?
    {
        chat.insert("response_format".into(), format);
    }
    if request.get("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let bytes = serde_json::to_vec(&Value::Object(chat))
        .map_err(|e| refuse(format!("the request could not be written: {e}")))?;
    Ok((Bytes::from(bytes), t.index))
}

#[derive(Default)]
struct Translation {
    messages: Vec<Value>,
    tools: Vec<Value>,
    index: Tools,
    /// Images from tool outputs, for a user message after the tool messages.
    images: Vec<Value>,
}

/// The hosted tools OpenAI runs itself, refused by name.
fn hosted(kind: &str) -> bool {
    kind.starts_with("web_search")
        || kind.starts_with("computer_use")
        || matches!(
            kind,
            "file_search"
                | "code_interpreter"
                | "image_generation"
                | "mcp"
                | "local_shell"
                | "shell"
                | "apply_patch"
                | "computer"
        )
}

impl Translation {
    fn push(&mut self, message: Value) {
        if message.get("role").and_then(Value::as_str) != Some("tool") {
            self.flush_images();
        }
        self.messages.push(message);
    }

    fn flush_images(&mut self) {
        if !self.images.is_empty() {
            let parts = std::mem::take(&mut self.images);
            self.messages
                .push(json!({"role": "user", "content": parts}));
        }
    }

    fn items(&mut self, items: &Value) -> Result<(), Untranslatable> {
        let Value::Array(items) = items else {
            return Err(refuse("`input` must be a string or an array of items"));
        };
        for item in items {
            self.item(item)?;
        }
        Ok(())
    }

    fn item(&mut self, item: &Value) -> Result<(), Untranslatable> {
        let Value::Object(item) = item else {
            return Err(refuse("an `input` item is not an object"));
        };
        let kind = match item.get("type") {
            Some(Value::String(k)) => k.as_str(),
            None if item.contains_key("role") => "message",
            _ => return Err(refuse("an `input` item has no `type`")),
        };
        match kind {
            "message" => self.message(item),
            "function_call" => {
                let name = str_of(item, "name", kind)?;
                let arguments = match item.get("arguments") {
                    Some(Value::String(a)) => a.clone(),
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(other) => other.to_string(),
                };
                self.call(str_of(item, "call_id", kind)?, name, arguments);
                Ok(())
            }
            "custom_tool_call" => {
                let name = str_of(item, "name", kind)?;
                let input = item.get("input").and_then(Value::as_str).unwrap_or("");
                self.call(
                    str_of(item, "call_id", kind)?,
                    name,
                    json!({ "input": input }).to_string(),
                );
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = str_of(item, "call_id", kind)?;
                let content = self.output(item.get("output"), kind)?;
                self.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
                Ok(())
            }
            "reasoning" => Ok(()),
            "additional_tools" => {
                if let Some(Value::Array(tools)) = item.get("tools") {
                    for tool in tools {
                        self.tool(tool, None)?;
                    }
                }
                Ok(())
            }
            other => Err(refuse(format!("input item type `{other}` {BRIDGED}"))),
        }
    }

    /// A call into the assistant message before it, or a new one.
    fn call(&mut self, id: &str, name: &str, arguments: String) {
        let call = json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        self.flush_images();
        if let Some(Value::Object(last)) = self.messages.last_mut()
            && last.get("role").and_then(Value::as_str) == Some("assistant")
        {
            match last.get_mut("tool_calls") {
                Some(Value::Array(calls)) => calls.push(call),
                _ => {
                    last.insert("tool_calls".into(), Value::Array(vec![call]));
                }
            }
            return;
        }
        self.messages.push(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [call],
        }));
    }

    /// A tool output as the tool message's text; its images kept aside.
    fn output(&mut self, output: Option<&Value>, kind: &str) -> Result<String, Untranslatable> {
        match output {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match part_of(part, kind)? {
                        Part::Text(t) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        Part::Image(image) => self.images.push(image),
                    }
                }
                Ok(text)
            }
            Some(_) => Err(refuse(format!(
                "the `output` of a `{kind}` must be a string or parts"
            ))),
        }
    }

    fn message(&mut self, item: &Map<String, Value>) -> Result<(), Untranslatable> {
        let role = match item.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant" | "system")) => r,
            Some("developer") => "system",
            Some(other) => return Err(refuse(format!("message role `{other}` {BRIDGED}"))),
            None => return Err(refuse("a `message` item has no `role`")),
        };
        let content = match item.get("content") {
            None | Some(Value::Null) => Value::String(String::new()),
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => {
                let mut texts: Vec<&str> = Vec::new();
                let mut has_image = false;
                let mut mixed = Vec::new();
                for part in parts {
                    match part_of(part, "message")? {
                        Part::Text(t) => {
                            texts.push(t);
                            mixed.push(json!({"type": "text", "text": t}));
                        }
                        Part::Image(image) => {
                            if role != "user" {
                                return Err(refuse(format!(
                                    "an image in a `{role}` message {BRIDGED}"
                                )));
                            }
                            has_image = true;
                            mixed.push(image);
                        }
                    }
                }
                if !has_image {
                    Value::String(texts.join("\n"))
                } else {
                    Value::Array(mixed)
                }
            }
            Some(_) => return Err(refuse("a message's `content` must be a string or parts")),
        };
        self.push(json!({"role": role, "content": content}));
        Ok(())
    }

    fn tool(&mut self, tool: &Value, namespace: Option<&str>) -> Result<(), Untranslatable> {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => {
                let name = tool_name(tool)?;
                let mut function = Map::new();
                function.insert("name".into(), Value::String(name.to_string()));
                if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
                    function.insert("description".into(), d.clone());
                }
                let parameters = match tool.get("parameters") {
                    Some(p @ Value::Object(_)) => p.clone(),
                    _ => json!({"type": "object", "properties": {}}),
                };
                function.insert("parameters".into(), parameters);
                if let Some(s) = tool.get("strict").filter(|s| s.is_boolean()) {
                    function.insert("strict".into(), s.clone());
                }
                self.index.add(name, false, namespace);
                self.tools
                    .push(json!({"type": "function", "function": function}));
                Ok(())
            }
            "custom" => {
                let name = tool_name(tool)?;
                let mut input = String::from("The tool's whole input, as free text.");
                if let Some(format) = tool
                    .get("format")
                    .filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar"))
                {
                    let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("");
                    let definition = format
                        .get("definition")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    input = format!(
                        "The tool's whole input, as free text following this {syntax} grammar:\n{definition}"
                    );
                }
                let mut function = Map::new();
                function.insert("name".into(), Value::String(name.to_string()));
                if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
                    function.insert("description".into(), d.clone());
                }
                function.insert(
                    "parameters".into(),
                    json!({
                        "type": "object",
                        "properties": {"input": {"type": "string", "description": input}},
                        "required": ["input"],
                        "additionalProperties": false,
                    }),
                );
                self.index.add(name, true, namespace);
                self.tools
                    .push(json!({"type": "function", "function": function}));
                Ok(())
            }
            "namespace" => {
                let ns = tool.get("name").and_then(Value::as_str);
                if let Some(Value::Array(inner)) = tool.get("tools") {
                    for t in inner {
                        self.tool(t, ns)?;
                    }
                }
                Ok(())
            }
            "tool_search" => Ok(()),
            k if hosted(k) => Err(refuse(format!(
                "the hosted tool `{k}` {BRIDGED}: only OpenAI's Responses API runs it"
            ))),
            "" => Err(refuse("a tool has no `type`")),
            other => Err(refuse(format!("tool type `{other}` {BRIDGED}"))),
        }
    }
}

fn tool_name(tool: &Value) -> Result<&str, Untranslatable> {
    tool.get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("a tool has no `name`"))
}

fn str_of<'a>(
    item: &'a Map<String, Value>,
    key: &str,
    kind: &str,
) -> Result<&'a str, Untranslatable> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(format!("a `{kind}` item has no `{key}`")))
}

enum Part<'a> {
    Text(&'a str),
    /// A chat `image_url` part.
    Image(Value),
}

fn part_of<'a>(part: &'a Value, whose: &str) -> Result<Part<'a>, Untranslatable> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" => Ok(Part::Text(
            part.get("text").and_then(Value::as_str).unwrap_or(""),
        )),
        "refusal" => Ok(Part::Text(
            part.get("refusal").and_then(Value::as_str).unwrap_or(""),
        )),
        "input_image" => {
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(refuse(format!(
                    "an `input_image` by `file_id` {BRIDGED}: send it as `image_url`"
                )));
            };
            let mut image = json!({"url": url});
            if let Some(d) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = d.clone();
            }
            Ok(Part::Image(
                json!({"type": "image_url", "image_url": image}),
            ))
        }
        "" => Err(refuse(format!(
            "a content part of a `{whose}` has no `type`"
        ))),
        other => Err(refuse(format!("content part type `{other}` {BRIDGED}"))),
    }
}

fn tool_choice(choice: &Value) -> Result<Option<Value>, Untranslatable> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(Some(choice.clone()))
        }
        Value::Null => Ok(None),
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "function" | "custom" => {
                    let name = map
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| refuse("`tool_choice` names no tool"))?;
                    Ok(Some(
                        json!({"type": "function", "function": {"name": name}}),
                    ))
                }
                k if hosted(k) => Err(refuse(format!(
                    "the hosted tool `{k}` in `tool_choice` {BRIDGED}"
                ))),
                other => Err(refuse(format!("`tool_choice` of type `{other}` {BRIDGED}"))),
            }
        }
        other => Err(refuse(format!("`tool_choice` {other} {BRIDGED}"))),
    }
}

fn response_format(format: &Value) -> Result<Option<Value>, Untranslatable> {
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(refuse(format!("`text.format` of type `{other}` {BRIDGED}"))),
    }
}
