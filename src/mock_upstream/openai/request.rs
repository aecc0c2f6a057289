//! What the mock reads from an OpenAI request.

use std::borrow::Cow;

use serde::Deserialize;

use super::ApiError;

/// A chat or text completion request, reduced to what the mock answers from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    pub(crate) model: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// Tools to call instead of answering in text: name and arguments (JSON).
    pub(crate) calls: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub(crate) struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    messages: Option<Vec<Message<'a>>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(default, deserialize_with = "integer")]
    max_tokens: Option<u64>,
    #[serde(default, deserialize_with = "integer")]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    tool_choice: Option<serde_json::Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct ToolDef {
    function: FunctionDef,
}

#[derive(Deserialize)]
pub(crate) struct FunctionDef {
    name: String,
    #[serde(default)]
    parameters: Option<serde_json::Value>,
}

/// A count as OpenAI-compatible servers take it (JSON Schema's `integer`):
/// `8` and `8.0` are 8; `8.5`, `-1` and `"8"` are refused.
pub(crate) fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 => Ok(Some(v as u64)),
        _ => Err(D::Error::custom(format!(
            "invalid type: expected a non-negative integer, got {n}"
        ))),
    }
}

#[derive(Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Content<'a>>,
}

/// A message's content: a string or an array of parts (text, images...).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
pub(crate) struct Part<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct CompletionRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prompt: Option<Input<'a>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(default, deserialize_with = "integer")]
    max_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct EmbeddingRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<Input<'a>>,
    #[serde(borrow)]
    encoding_format: Option<Cow<'a, str>>,
}

/// A completion prompt or an embedding input: text or tokens, one or many.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Input<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
    Tokens(Vec<u64>),
    TokenLists(Vec<Vec<u64>>),
}

/// One embedding input: its token count and a hash that picks its vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EmbeddingInput {
    pub(crate) tokens: u64,
    pub(crate) seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EmbeddingJob {
    pub(crate) model: String,
    pub(crate) inputs: Vec<EmbeddingInput>,
    pub(crate) base64: bool,
}

impl EmbeddingJob {
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.inputs.iter().map(|i| i.tokens).sum()
    }
}

/// The token estimate for text: one token per 4 characters, rounded up.
/// Deterministic and close enough to tiktoken for English.
pub(crate) fn text_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Chat prompts are estimated as ceil(total characters of the message
/// contents / 4) + 3 per message: the 3 stand for the role and the
/// separators the chat template adds around every message.
pub(crate) fn chat_prompt_tokens(messages: &[Message<'_>]) -> u64 {
    let chars: usize = messages
        .iter()
        .map(|m| match &m.content {
            None => 0,
            Some(Content::Text(text)) => text.chars().count(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(|t| t.chars().count())
                .sum(),
        })
        .sum();
    text_tokens(chars) + 3 * messages.len() as u64
}

pub(crate) fn required_model(model: Option<Cow<'_, str>>) -> Result<String, ApiError> {
    match model {
        Some(m) if !m.is_empty() => Ok(m.into_owned()),
        _ => Err(ApiError::invalid_request(
            "you must provide a model parameter",
        )),
    }
}

pub(crate) fn include_usage(options: Option<&StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

pub(crate) fn parse_chat(body: &[u8]) -> Result<Generation, ApiError> {
    let req: ChatRequest<'_> = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = required_model(req.model)?;
    let messages = req.messages.ok_or_else(|| ApiError::missing("messages"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "[] is too short - 'messages'".to_string(),
        ));
    }
    let calls = match &req.tools {
        Some(tools) if !tools.is_empty() => {
            choose_calls(tools, &req.tool_choice, req.parallel_tool_calls, &messages)
        }
        _ => Vec::new(),
    };
    Ok(Generation {
        model,
        prompt_tokens: chat_prompt_tokens(&messages),
        // The newer name wins when a client sends both.
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stream: req.stream.unwrap_or(false),
        include_usage: include_usage(req.stream_options.as_ref()),
        calls,
    })
}

/// The calls the mock answers with: the named function, the first (and
/// second, unless parallel calls are off) for `required`, for `auto` those
/// the last user message names; none after tool results.
fn choose_calls(
    tools: &[ToolDef],
    choice: &Option<serde_json::Value>,
    parallel: Option<bool>,
    messages: &[Message<'_>],
) -> Vec<(String, String)> {
    if messages.last().and_then(|m| m.role.as_deref()) == Some("tool") {
        return Vec::new();
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role.as_deref() == Some("user"))
        .map(message_text)
        .unwrap_or_default();
    let most = if parallel == Some(false) { 1 } else { 2 };
    let named = choice
        .as_ref()
        .and_then(|c| c.pointer("/function/name"))
        .and_then(|n| n.as_str());
    let picked: Vec<&ToolDef> = match (choice.as_ref().and_then(|c| c.as_str()), named) {
        (_, Some(name)) => tools.iter().filter(|t| t.function.name == name).collect(),
        (Some("required"), _) => tools.iter().take(most).collect(),
        (Some("none"), _) => Vec::new(),
        _ => tools
            .iter()
            .filter(|t| last_user.contains(t.function.name.as_str()))
            .take(most)
            .collect(),
    };
    picked
        .into_iter()
        .map(|t| {
            let schema = t.function.parameters.clone().unwrap_or_default();
            (
                t.function.name.clone(),
                crate::mock_upstream::anthropic::request::input_for(&schema).to_string(),
            )
        })
        .collect()
}

fn message_text(m: &Message<'_>) -> String {
    match &m.content {
        Some(Content::Text(t)) => t.to_string(),
        Some(Content::Parts(parts)) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        None => String::new(),
    }
}

pub(crate) fn parse_completion(body: &[u8]) -> Result<Generation, ApiError> {
    let req: CompletionRequest<'_> =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = required_model(req.model)?;
    let prompt_tokens = match &req.prompt {
        None => 0,
        Some(Input::Text(text)) => text_tokens(text.chars().count()),
        Some(Input::Texts(texts)) => text_tokens(texts.iter().map(|t| t.chars().count()).sum()),
        Some(Input::Tokens(tokens)) => tokens.len() as u64,
        Some(Input::TokenLists(lists)) => lists.iter().map(|l| l.len() as u64).sum(),
    };
    Ok(Generation {
        model,
        prompt_tokens,
        max_tokens: req.max_tokens,
        stream: req.stream.unwrap_or(false),
        include_usage: include_usage(req.stream_options.as_ref()),
        calls: Vec::new(),
    })
}

pub(crate) fn parse_embeddings(body: &[u8]) -> Result<EmbeddingJob, ApiError> {
    let req: EmbeddingRequest<'_> =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = required_model(req.model)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("Invalid value: '{other}'. Supported values are: 'float' and 'base64'."),
            ));
        }
    };
    let input = req.input.ok_or_else(|| ApiError::missing("input"))?;
    let text = |t: &str| EmbeddingInput {
        tokens: text_tokens(t.chars().count()),
        seed: fnv1a(t.as_bytes()),
    };
    let tokens = |l: &[u64]| EmbeddingInput {
        tokens: l.len() as u64,
        seed: fnv1a_words(l),
    };
    let inputs: Vec<EmbeddingInput> = match &input {
        Input::Text(t) => vec![text(t)],
        Input::Texts(ts) => ts.iter().map(|t| text(t)).collect(),
        Input::Tokens(l) => vec![tokens(l)],
        Input::TokenLists(ls) => ls.iter().map(|l| tokens(l)).collect(),
    };
    if inputs.is_empty() || inputs.iter().any(|i| i.tokens == 0) {
        return Err(ApiError::invalid_param(
            "input",
            "'$.input' is invalid. Please check the API reference.".into(),
        ));
    }
    Ok(EmbeddingJob {
        model,
        inputs,
        base64,
    })
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn fnv1a_words(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
