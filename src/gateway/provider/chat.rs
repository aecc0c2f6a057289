//! A client's OpenAI chat request, read in full for a provider whose API
//! is not OpenAI's: what every translation starts from.
//!
//! Parameters the other API has no way to honour are refused by name
//! (`n` above 1, `logprobs: true`, a non-zero penalty, a JSON response
//! format, an unknown parameter), never dropped; the same parameters at
//! their neutral value are accepted. `name` on a message is accepted and
//! not carried (no such field exists there, and it changes no answer).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::Provider;
use crate::gateway::error::ApiError;
use crate::gateway::json;

/// What the translators need of a chat request.
#[derive(Debug, Default)]
pub struct ChatRequest<'a> {
    pub messages: Vec<Message<'a>>,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub stop: Vec<String>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub user: Option<String>,
    pub stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug)]
pub struct Message<'a> {
    pub role: Role,
    pub parts: Vec<Part<'a>>,
    /// An assistant's calls.
    pub tool_calls: Vec<ToolCall<'a>>,
    /// A tool result's call.
    pub tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Debug, PartialEq)]
pub enum Part<'a> {
    Text(Cow<'a, str>),
    /// A `data:` URI or an http(s) URL, as the client gave it.
    Image(Cow<'a, str>),
}

#[derive(Debug)]
pub struct Tool<'a> {
    pub name: Cow<'a, str>,
    pub description: Option<Cow<'a, str>>,
    /// The JSON Schema of the arguments, as written.
    pub parameters: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct ToolCall<'a> {
    pub id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// The arguments as the JSON text OpenAI carries them in.
    pub arguments: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// OpenAI's `required`: some tool must be called.
    Required,
    None,
    Named(String),
}

/// The wire shape, borrowed where the JSON has no escapes.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    messages: Vec<RawMessage<'a>>,
    #[serde(default, borrow)]
    tools: Option<Vec<RawTool<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    max_tokens: Option<f64>,
    #[serde(default)]
    max_completion_tokens: Option<f64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    role: Role,
    #[serde(default, borrow)]
    content: Option<RawContent<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<RawToolCall<'a>>>,
    #[serde(default, borrow)]
    tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawContent<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    #[serde(borrow)]
    Parts(Vec<RawPart<'a>>),
}

#[derive(Deserialize)]
struct RawPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    image_url: Option<RawImage<'a>>,
}

#[derive(Deserialize)]
struct RawImage<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    function: RawFunction<'a>,
}

#[derive(Deserialize)]
struct RawFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: RawCallFunction<'a>,
}

#[derive(Deserialize)]
struct RawCallFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// The top-level parameters and what each may be for a provider that does
/// not speak OpenAI's API.
enum Rule {
    /// Read and translated.
    Carried,
    /// Accepted only at the value that changes nothing.
    NeutralOnly(fn(&serde_json::Value) -> bool),
    /// Accepted and not carried: it only shapes how OpenAI itself stores or
    /// bills a request.
    Ignored,
}

fn rule(key: &str) -> Option<Rule> {
    use serde_json::Value;
    let null = |v: &Value| v.is_null();
    Some(match key {
        "model"
        | "messages"
        | "tools"
        | "tool_choice"
        | "parallel_tool_calls"
        | "stop"
        | "max_tokens"
        | "max_completion_tokens"
        | "temperature"
        | "top_p"
        | "user"
        | "stream"
        | "stream_options" => Rule::Carried,
        "n" => Rule::NeutralOnly(|v| v.is_null() || v.as_f64() == Some(1.0)),
        "logprobs" => Rule::NeutralOnly(|v| v.is_null() || v == &Value::Bool(false)),
        "top_logprobs" => Rule::NeutralOnly(|v| v.is_null() || v.as_f64() == Some(0.0)),
        "presence_penalty" | "frequency_penalty" => {
            Rule::NeutralOnly(|v| v.is_null() || v.as_f64() == Some(0.0))
        }
        "logit_bias" => {
            Rule::NeutralOnly(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()))
        }
        "response_format" => Rule::NeutralOnly(|v| {
            v.is_null() || v.get("type").and_then(Value::as_str) == Some("text")
        }),
        "modalities" => Rule::NeutralOnly(|v| {
            v.is_null() || v.as_array().is_some_and(|a| a.iter().all(|m| m == "text"))
        }),
        "service_tier" => {
            Rule::NeutralOnly(|v| v.is_null() || matches!(v.as_str(), Some("auto" | "default")))
        }
        "seed" | "audio" | "prediction" | "functions" | "function_call" | "reasoning_effort"
        | "web_search_options" | "verbosity" => Rule::NeutralOnly(null),
        "store" => Rule::NeutralOnly(|v| v.is_null() || v == &Value::Bool(false)),
        "metadata" => Rule::Ignored,
        _ => return None,
    })
}

fn unsupported(provider: Provider, param: &str, why: &str) -> ApiError {
    ApiError::Unsupported {
        message: format!("`{param}` {why}: {provider} deployments cannot honour it"),
        param: param.to_string(),
    }
}

/// A schema for a tool that gives none: no arguments.
pub fn empty_schema() -> &'static RawValue {
    static EMPTY: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
        RawValue::from_string(r#"{"type":"object","properties":{}}"#.into()).expect("valid JSON")
    });
    &EMPTY
}

/// A tool call's arguments as the JSON object Anthropic's and Bedrock's
/// APIs take as its input (none: an empty object); `who` names the API in
/// the 400 when they are not one.
pub fn tool_input<'a>(
    call: &'a ToolCall<'_>,
    i: usize,
    j: usize,
    who: &str,
) -> Result<&'a RawValue, ApiError> {
    let arguments = if call.arguments.trim().is_empty() {
        "{}"
    } else {
        &call.arguments
    };
    serde_json::from_str(arguments)
        .ok()
        .filter(|v: &&RawValue| v.get().trim_start().starts_with('{'))
        .ok_or_else(|| {
            let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
            ApiError::BadRequest {
                message: format!("`{param}` must be a JSON object, as {who} takes tool input"),
                param: None,
            }
        })
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest {
        message,
        param: None,
    }
}

/// Reads `body` for a deployment of `provider`; refuses what it cannot honour.
pub fn parse(body: &[u8], provider: Provider) -> Result<ChatRequest<'_>, ApiError> {
    let mut refused = None;
    json::object_members(body, |key, value| {
        if refused.is_some() {
            return Ok(());
        }
        let key = String::from_utf8_lossy(key);
        match rule(&key) {
            Some(Rule::Carried | Rule::Ignored) => {}
            Some(Rule::NeutralOnly(neutral)) => {
                let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
                if !neutral(&v) {
                    refused = Some(unsupported(provider, &key, &format!("= {}", compact(&v))));
                }
            }
            None => {
                refused = Some(unsupported(
                    provider,
                    &key,
                    "is not an OpenAI chat parameter this gateway translates",
                ))
            }
        }
        Ok(())
    })
    .map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    if let Some(e) = refused {
        return Err(e);
    }
    let raw: RawRequest =
        json::parse(body).map_err(|e| bad(format!("the body is not a chat request: {e}")))?;
    let count = |name: &str, v: Option<f64>| -> Result<Option<u64>, ApiError> {
        match v {
            None => Ok(None),
            Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Ok(Some(n as u64)),
            Some(n) => Err(bad(format!(
                "`{name}` must be a positive whole number (got {n})"
            ))),
        }
    };
    let max_tokens = count("max_completion_tokens", raw.max_completion_tokens)?
        .or(count("max_tokens", raw.max_tokens)?);
    let tool_choice = raw.tool_choice.map(tool_choice).transpose()?.flatten();
    let mut tools = Vec::new();
    for (i, t) in raw.tools.unwrap_or_default().into_iter().enumerate() {
        if t.kind != "function" {
            return Err(unsupported(
                provider,
                &format!("tools[{i}].type"),
                &format!("= \"{}\"", t.kind),
            ));
        }
        tools.push(Tool {
            name: t.function.name,
            description: t.function.description,
            parameters: t.function.parameters,
        });
    }
    let mut messages = Vec::with_capacity(raw.messages.len());
    for (i, m) in raw.messages.into_iter().enumerate() {
        messages.push(message(i, m, provider)?);
    }
    Ok(ChatRequest {
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: raw.parallel_tool_calls,
        stop: match raw.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
        max_tokens,
        temperature: raw.temperature,
        top_p: raw.top_p,
        user: raw.user,
        stream: raw.stream.unwrap_or(false),
    })
}

fn compact(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn tool_choice(raw: &RawValue) -> Result<Option<ToolChoice>, ApiError> {
    #[derive(Deserialize)]
    struct Named {
        function: NamedFunction,
    }
    #[derive(Deserialize)]
    struct NamedFunction {
        name: String,
    }
    let v = raw.get().trim();
    Ok(Some(match v {
        "null" => return Ok(None),
        r#""auto""# => ToolChoice::Auto,
        r#""required""# => ToolChoice::Required,
        r#""none""# => ToolChoice::None,
        _ => match serde_json::from_str::<Named>(v) {
            Ok(n) => ToolChoice::Named(n.function.name),
            Err(_) => {
                return Err(bad(format!(
                    "`tool_choice` must be \"auto\", \"required\", \"none\" or {{\"type\": \"function\", \"function\": {{\"name\": …}}}} (got {})",
                    v.chars().take(60).collect::<String>()
                )));
            }
        },
    }))
}

fn message<'a>(i: usize, m: RawMessage<'a>, provider: Provider) -> Result<Message<'a>, ApiError> {
    if m.role == Role::Function {
        return Err(unsupported(
            provider,
            &format!("messages[{i}].role"),
            "= \"function\" (the legacy form of tool results; send role \"tool\")",
        ));
    }
    let mut parts = Vec::new();
    match m.content {
        None => {}
        Some(RawContent::Text(t)) => parts.push(Part::Text(t)),
        Some(RawContent::Parts(list)) => {
            for (j, p) in list.into_iter().enumerate() {
                let at = || format!("messages[{i}].content[{j}]");
                match &*p.kind {
                    "text" => parts.push(Part::Text(
                        p.text
                            .ok_or_else(|| bad(format!("{} has no `text`", at())))?,
                    )),
                    "refusal" => parts.push(Part::Text(p.refusal.unwrap_or_default())),
                    "image_url" if matches!(m.role, Role::User) => {
                        let image = p
                            .image_url
                            .ok_or_else(|| bad(format!("{} has no `image_url`", at())))?;
                        parts.push(Part::Image(image.url));
                    }
                    other => {
                        return Err(unsupported(
                            provider,
                            &format!("{}.type", at()),
                            &format!("= \"{other}\" in a {:?} message", m.role).to_lowercase(),
                        ));
                    }
                }
            }
        }
    }
    let tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments.unwrap_or(Cow::Borrowed("{}")),
        })
        .collect();
    if m.role == Role::Tool && m.tool_call_id.is_none() {
        return Err(bad(format!(
            "messages[{i}] is a tool result without `tool_call_id`"
        )));
    }
    Ok(Message {
        role: m.role,
        parts,
        tool_calls,
        tool_call_id: m.tool_call_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (String, String) {
        match parse(body.as_bytes(), Provider::Anthropic) {
            Err(ApiError::Unsupported { message, param }) => (param, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    const BASE: &str = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name_and_neutral_values_pass() {
        for (extra, param) in [
            (r#""n":2"#, "n"),
            (r#""logprobs":true"#, "logprobs"),
            (r#""presence_penalty":0.5"#, "presence_penalty"),
            (r#""frequency_penalty":-1"#, "frequency_penalty"),
            (
                r#""response_format":{"type":"json_object"}"#,
                "response_format",
            ),
            (r#""seed":7"#, "seed"),
            (r#""logit_bias":{"50256":-100}"#, "logit_bias"),
            (r#""best_of":3"#, "best_of"),
        ] {
            let (p, message) = refused(&format!("{{{BASE},{extra}}}"));
            assert_eq!(p, param);
            assert!(message.contains("anthropic"), "{message}");
        }
        for neutral in [
            r#""n":1"#,
            r#""n":1.0"#,
            r#""logprobs":false"#,
            r#""presence_penalty":0"#,
            r#""frequency_penalty":0.0"#,
            r#""response_format":{"type":"text"}"#,
            r#""seed":null"#,
            r#""store":false"#,
            r#""metadata":{"a":"b"}"#,
            r#""stream_options":{"include_usage":true}"#,
        ] {
            let body = format!("{{{BASE},{neutral}}}");
            assert!(
                parse(body.as_bytes(), Provider::Anthropic).is_ok(),
                "{neutral}"
            );
        }
    }

    #[test]
    fn messages_parts_tools_and_choices_are_read() {
        let body = r#"{"model":"m","max_tokens":8.0,"max_completion_tokens":20,"stop":"END","user":"u1",
            "tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false,
            "messages":[{"role":"system","content":"be brief"},
              {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"sunny"}]}"#;
        let r = parse(body.as_bytes(), Provider::Anthropic).unwrap();
        assert_eq!(r.max_tokens, Some(20));
        assert_eq!(r.stop, vec!["END"]);
        assert_eq!(r.tool_choice, Some(ToolChoice::Named("get_weather".into())));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.tools[0].parameters.unwrap().get(), r#"{"type":"object"}"#);
        assert_eq!(
            r.messages[1].parts[1],
            Part::Image("https://x/cat.png".into())
        );
        assert_eq!(r.messages[2].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_1"));
    }

    #[test]
    fn parts_a_provider_cannot_take_are_named() {
        let (param, _) = refused(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
        );
        assert_eq!(param, "messages[0].content[0].type");
        let (param, _) =
            refused(r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#);
        assert_eq!(param, "messages[0].role");
    }
}
