//! The OpenAI wire format: what the mock reads from a request and the JSON
//! and SSE frames it answers with.
//!
//! Requests are parsed into borrowing structs that ignore unknown fields;
//! answers are serialized from borrowing structs or, for stream chunks,
//! spliced from a per-reply template, so no JSON DOM is ever built.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::state::{splitmix64, unit_f64};

/// What OpenAI puts in `system_fingerprint`; any stable value will do.
const FINGERPRINT: &str = "fp_7e1d2c9a4b";

/// The completion text cycles through these, one token per word. They must
/// need no JSON escaping: stream chunks splice them in verbatim.
const WORDS: [&str; 16] = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the",
    "gateway", "routes", "every", "request", "along",
];

/// The stream's last frame.
pub(super) const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// Embeddings have this many dimensions.
const EMBEDDING_DIMS: usize = 8;

// ---------------------------------------------------------------------------
// Errors

/// An OpenAI error answer: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: Cow<'static, str>,
    pub(super) kind: &'static str,
    pub(super) param: Option<&'static str>,
    pub(super) code: Option<&'static str>,
}

impl ApiError {
    pub(super) fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    fn missing(param: &'static str) -> Self {
        ApiError {
            param: Some(param),
            code: Some("missing_required_parameter"),
            ..Self::invalid_request(format!("Missing required parameter: '{param}'."))
        }
    }

    fn invalid_param(param: &'static str, message: String) -> Self {
        ApiError {
            param: Some(param),
            code: Some("invalid_value"),
            ..Self::invalid_request(message)
        }
    }

    /// A body that is not JSON, or JSON of the wrong shape.
    pub(super) fn from_json(e: &serde_json::Error) -> Self {
        if e.is_syntax() || e.is_eof() {
            Self::invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using \
                 your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not \
                 valid JSON.)",
            )
        } else {
            Self::invalid_request(format!("Invalid request body: {e}"))
        }
    }

    pub(super) fn invalid_api_key() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: Some("invalid_api_key"),
            ..Self::invalid_request(
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            )
        }
    }

    /// The `--fail-rate` failure.
    pub(super) fn server_error() -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The server had an error while processing your request.".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The error a provider gives with `status`, as `Mode::Fail` answers.
    pub(super) fn for_status(status: StatusCode, message: Option<&str>) -> Self {
        let (kind, code, default_message) = match status.as_u16() {
            401 => (
                "invalid_request_error",
                Some("invalid_api_key"),
                "Incorrect API key provided.",
            ),
            403 => (
                "permission_error",
                None,
                "You are not allowed to access this resource.",
            ),
            404 => (
                "invalid_request_error",
                Some("model_not_found"),
                "The model does not exist or you do not have access to it.",
            ),
            408 => ("invalid_request_error", None, "Request timed out."),
            429 => (
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests. Please try again later.",
            ),
            503 => (
                "server_error",
                None,
                "The engine is currently overloaded, please try again later.",
            ),
            500..=599 => (
                "server_error",
                None,
                "The server had an error while processing your request.",
            ),
            _ => ("invalid_request_error", None, "Invalid request."),
        };
        let message = message.map_or(Cow::Borrowed(default_message), |m| {
            Cow::Owned(m.to_string())
        });
        ApiError {
            status,
            message,
            kind,
            param: None,
            code,
        }
    }

    pub(super) fn not_found(method: &hyper::Method, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            ..Self::invalid_request(format!("Invalid URL ({method} {path})"))
        }
    }

    pub(super) fn method_not_allowed(method: &hyper::Method, path: &str) -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..Self::invalid_request(format!("Method not allowed ({method} {path})"))
        }
    }

    pub(super) fn too_large() -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_request("The request body is too large.")
        }
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        let body = Body {
            error: Detail {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        to_vec(&body)
    }
}

/// Serializes a value made only of strings, numbers and options, which
/// cannot fail; an empty body is still better than a panic if it ever did.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Requests

/// A chat or text completion request, reduced to what the mock answers from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Generation {
    pub(super) model: String,
    pub(super) prompt_tokens: u64,
    pub(super) max_tokens: Option<u64>,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
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
}

/// A count as OpenAI-compatible servers take it (JSON Schema's `integer`):
/// `8` and `8.0` are 8; `8.5`, `-1` and `"8"` are refused.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
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
struct Message<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
}

/// A message's content: a string or an array of parts (text, images...).
#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CompletionRequest<'a> {
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
struct EmbeddingRequest<'a> {
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
enum Input<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
    Tokens(Vec<u64>),
    TokenLists(Vec<Vec<u64>>),
}

/// One embedding input: its token count and a hash that picks its vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct EmbeddingInput {
    pub(super) tokens: u64,
    seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct EmbeddingJob {
    pub(super) model: String,
    pub(super) inputs: Vec<EmbeddingInput>,
    pub(super) base64: bool,
}

impl EmbeddingJob {
    pub(super) fn prompt_tokens(&self) -> u64 {
        self.inputs.iter().map(|i| i.tokens).sum()
    }
}

/// The token estimate for text: one token per 4 characters, rounded up.
/// Deterministic and close enough to tiktoken for English.
fn text_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Chat prompts are estimated as ceil(total characters of the message
/// contents / 4) + 3 per message: the 3 stand for the role and the
/// separators the chat template adds around every message.
fn chat_prompt_tokens(messages: &[Message<'_>]) -> u64 {
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

fn required_model(model: Option<Cow<'_, str>>) -> Result<String, ApiError> {
    match model {
        Some(m) if !m.is_empty() => Ok(m.into_owned()),
        _ => Err(ApiError::invalid_request(
            "you must provide a model parameter",
        )),
    }
}

fn include_usage(options: Option<&StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

pub(super) fn parse_chat(body: &[u8]) -> Result<Generation, ApiError> {
    let req: ChatRequest<'_> = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = required_model(req.model)?;
    let messages = req.messages.ok_or_else(|| ApiError::missing("messages"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "[] is too short - 'messages'".to_string(),
        ));
    }
    Ok(Generation {
        model,
        prompt_tokens: chat_prompt_tokens(&messages),
        // The newer name wins when a client sends both.
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stream: req.stream.unwrap_or(false),
        include_usage: include_usage(req.stream_options.as_ref()),
    })
}

pub(super) fn parse_completion(body: &[u8]) -> Result<Generation, ApiError> {
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
    })
}

pub(super) fn parse_embeddings(body: &[u8]) -> Result<EmbeddingJob, ApiError> {
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

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn fnv1a_words(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// Answers

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Usage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
}

impl Usage {
    pub(super) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Chat or legacy text completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Chat,
    Text,
}

impl Kind {
    pub(super) fn id_prefix(self) -> &'static str {
        match self {
            Kind::Chat => "chatcmpl-",
            Kind::Text => "cmpl-",
        }
    }
}

/// Everything one completion answer is made from.
#[derive(Debug, Clone)]
pub(super) struct Reply<'a> {
    pub(super) kind: Kind,
    pub(super) id: &'a str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) usage: Usage,
    /// "stop", or "length" when max_tokens cut the answer short.
    pub(super) finish_reason: &'static str,
}

/// The i-th token of the completion text.
fn word(i: u64) -> &'static str {
    WORDS[(i % WORDS.len() as u64) as usize]
}

fn completion_text(tokens: u64) -> String {
    let mut text = String::with_capacity(tokens as usize * 7);
    for i in 0..tokens {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(word(i));
    }
    text
}

pub(super) fn completion_json(reply: &Reply<'_>) -> Vec<u8> {
    let text = completion_text(reply.usage.completion_tokens);
    match reply.kind {
        Kind::Chat => chat_completion_json(reply, &text),
        Kind::Text => text_completion_json(reply, &text),
    }
}

fn chat_completion_json(reply: &Reply<'_>, text: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: [Choice<'a>; 1],
        usage: Usage,
        system_fingerprint: &'static str,
    }
    #[derive(Serialize)]
    struct Choice<'a> {
        index: u32,
        message: AssistantMessage<'a>,
        logprobs: (),
        finish_reason: &'static str,
    }
    #[derive(Serialize)]
    struct AssistantMessage<'a> {
        role: &'static str,
        content: &'a str,
        refusal: (),
    }
    to_vec(&Completion {
        id: reply.id,
        object: "chat.completion",
        created: reply.created,
        model: reply.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: text,
                refusal: (),
            },
            logprobs: (),
            finish_reason: reply.finish_reason,
        }],
        usage: reply.usage,
        system_fingerprint: FINGERPRINT,
    })
}

fn text_completion_json(reply: &Reply<'_>, text: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: [Choice<'a>; 1],
        usage: Usage,
    }
    #[derive(Serialize)]
    struct Choice<'a> {
        text: &'a str,
        index: u32,
        logprobs: (),
        finish_reason: &'static str,
    }
    to_vec(&Completion {
        id: reply.id,
        object: "text_completion",
        created: reply.created,
        model: reply.model,
        choices: [Choice {
            text,
            index: 0,
            logprobs: (),
            finish_reason: reply.finish_reason,
        }],
        usage: reply.usage,
    })
}

/// Where a streamed answer carries its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamUsage {
    /// Not asked for.
    None,
    /// In a last chunk of its own, with `"choices":[]` (OpenAI).
    OwnChunk,
    /// In the finish chunk (some OpenAI-compatible servers).
    InFinishChunk,
}

/// A stream's SSE frames, each `data: ...\n\n`.
#[derive(Debug)]
pub(super) struct SseFrames {
    /// The completion chunks, then (when asked) the usage chunk, then `[DONE]`.
    pub(super) frames: Vec<Bytes>,
    /// How many leading frames are completion chunks (role, tokens, finish).
    pub(super) chunks: usize,
}

impl SseFrames {
    /// Only the first `n` completion chunks: no usage chunk, no `[DONE]`.
    pub(super) fn cut_after(mut self, n: u32) -> Vec<Bytes> {
        let keep = self.chunks.min(usize::try_from(n).unwrap_or(usize::MAX));
        self.frames.truncate(keep);
        self.frames
    }
}

/// Chunks share everything but their choices and usage, so the common part
/// is serialized once and each chunk only splices in its own.
struct ChunkTemplate {
    /// `data: {"id":...,"choices":[`
    head: String,
    /// `,"usage":null` when the client asked for usage (OpenAI then sends a
    /// null usage on every chunk but the last), else nothing.
    null_usage: &'static str,
}

impl ChunkTemplate {
    fn new(reply: &Reply<'_>, include_usage: bool) -> Self {
        let object = match reply.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        let model = serde_json::to_string(reply.model).unwrap_or_else(|_| "\"\"".to_string());
        let mut head = String::with_capacity(160 + model.len());
        let _ = write!(
            head,
            r#"data: {{"id":"{}","object":"{object}","created":{},"model":{model},"#,
            reply.id, reply.created
        );
        if reply.kind == Kind::Chat {
            let _ = write!(head, r#""system_fingerprint":"{FINGERPRINT}","#);
        }
        head.push_str(r#""choices":["#);
        ChunkTemplate {
            head,
            null_usage: if include_usage {
                r#","usage":null"#
            } else {
                ""
            },
        }
    }

    fn frame(&self, choice: &str, usage: &str) -> Bytes {
        let mut frame = String::with_capacity(self.head.len() + choice.len() + usage.len() + 4);
        frame.push_str(&self.head);
        frame.push_str(choice);
        frame.push(']');
        frame.push_str(usage);
        frame.push_str("}\n\n");
        Bytes::from(frame)
    }

    fn chunk(&self, choice: &str) -> Bytes {
        self.frame(choice, self.null_usage)
    }

    fn usage_member(&self, usage: Usage) -> String {
        let usage = String::from_utf8(to_vec(&usage)).unwrap_or_default();
        format!(r#","usage":{usage}"#)
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        self.frame("", &self.usage_member(usage))
    }
}

/// The SSE frames of a streamed answer, as OpenAI sends them: for chat a
/// role chunk first, then one chunk per token, a finish chunk, the usage
/// chunk (`"choices":[]`) only when usage was asked for, and `[DONE]`. With
/// [`StreamUsage::InFinishChunk`] the usage is in the finish chunk instead.
pub(super) fn stream_frames(reply: &Reply<'_>, usage: StreamUsage) -> SseFrames {
    let template = ChunkTemplate::new(reply, usage != StreamUsage::None);
    let tokens = reply.usage.completion_tokens;
    let mut frames = Vec::with_capacity(tokens as usize + 4);
    let mut choice = String::with_capacity(96);
    if reply.kind == Kind::Chat {
        frames.push(template.chunk(
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        ));
    }
    for i in 0..tokens {
        choice.clear();
        let space = if i > 0 { " " } else { "" };
        let w = word(i);
        let _ = match reply.kind {
            Kind::Chat => write!(
                choice,
                r#"{{"index":0,"delta":{{"content":"{space}{w}"}},"logprobs":null,"finish_reason":null}}"#
            ),
            Kind::Text => write!(
                choice,
                r#"{{"text":"{space}{w}","index":0,"logprobs":null,"finish_reason":null}}"#
            ),
        };
        frames.push(template.chunk(&choice));
    }
    choice.clear();
    let finish = reply.finish_reason;
    let _ = match reply.kind {
        Kind::Chat => write!(
            choice,
            r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}"#
        ),
        Kind::Text => write!(
            choice,
            r#"{{"text":"","index":0,"logprobs":null,"finish_reason":"{finish}"}}"#
        ),
    };
    frames.push(match usage {
        StreamUsage::InFinishChunk => template.frame(&choice, &template.usage_member(reply.usage)),
        _ => template.chunk(&choice),
    });
    let chunks = frames.len();
    if usage == StreamUsage::OwnChunk {
        frames.push(template.usage_chunk(reply.usage));
    }
    frames.push(Bytes::from_static(DONE_FRAME));
    SseFrames { frames, chunks }
}

/// A 200 body that claims to be JSON and is not: what a misconfigured proxy
/// in front of a provider sends.
pub(super) const GARBAGE_BODY: &[u8] =
    b"<html><head><title>502 Bad Gateway</title></head><body>upstream sent garbage</body></html>\n";

/// SSE frames whose data is not JSON, and no `[DONE]`.
pub(super) fn garbage_frames(count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(format!("data: {{not json #{i}\n\n")))
        .collect()
}

pub(super) fn embeddings_json(job: &EmbeddingJob, model: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Item>,
        model: &'a str,
        usage: EmbeddingUsage,
    }
    #[derive(Serialize)]
    struct Item {
        object: &'static str,
        index: usize,
        embedding: Vector,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Vector {
        Floats([f32; EMBEDDING_DIMS]),
        Base64(String),
    }
    #[derive(Serialize)]
    struct EmbeddingUsage {
        prompt_tokens: u64,
        total_tokens: u64,
    }
    let data = job
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embedding(input.seed);
            let embedding = if job.base64 {
                Vector::Base64(base64_f32(&vector))
            } else {
                Vector::Floats(vector)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens = job.prompt_tokens();
    to_vec(&List {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

/// A unit vector picked by `seed`: the same input always embeds the same.
fn embedding(seed: u64) -> [f32; EMBEDDING_DIMS] {
    let mut v = [0f32; EMBEDDING_DIMS];
    for (i, x) in v.iter_mut().enumerate() {
        *x = (unit_f64(splitmix64(seed, i as u64)) * 2.0 - 1.0) as f32;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// `encoding_format: "base64"`: the little-endian f32s, base64-encoded.
fn base64_f32(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Models `GET /v1/models` lists when no `--model` is set; the mock answers
/// any model name, these are only what it advertises.
const DEFAULT_MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];

pub(super) fn models_json(configured: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    let names: Vec<&str> = match configured {
        Some(name) => vec![name],
        None => DEFAULT_MODELS.to_vec(),
    };
    let data = names
        .into_iter()
        .map(|id| Model {
            id,
            object: "model",
            created: 1_715_367_049,
            owned_by: "mock-upstream",
        })
        .collect();
    to_vec(&List {
        object: "list",
        data,
    })
}

/// Seconds since the Unix epoch, for `created`.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn reply(kind: Kind, tokens: u64, model: &str) -> Reply<'_> {
        Reply {
            kind,
            id: "chatcmpl-test",
            created: 1_700_000_000,
            model,
            usage: Usage::new(10, tokens),
            finish_reason: "stop",
        }
    }

    fn frame_json(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let data = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn words_need_no_escaping() {
        for w in WORDS {
            assert_eq!(serde_json::to_string(w).unwrap(), format!("\"{w}\""));
        }
    }

    #[test]
    fn chat_prompt_tokens_follow_the_documented_rule() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "12345"},
            {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": null, "tool_calls": []},
        ]});
        let g = parse_chat(body.to_string().as_bytes()).unwrap();
        // 8 characters -> 2 tokens, plus 3 per message.
        assert_eq!(g.prompt_tokens, 2 + 9);
        assert_eq!(g.model, "m");
        assert!(!g.stream);
    }

    #[test]
    fn characters_not_bytes_are_counted() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "héhé"}]});
        assert_eq!(
            parse_chat(body.to_string().as_bytes())
                .unwrap()
                .prompt_tokens,
            1 + 3
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "max_completion_tokens": 4});
        assert_eq!(
            parse_chat(body.to_string().as_bytes()).unwrap().max_tokens,
            Some(4)
        );
    }

    #[test]
    fn bad_requests_are_invalid_request_errors() {
        let cases: [&[u8]; 6] = [
            b"{not json",
            b"",
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
            br#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","messages":[],"max_tokens":-1}"#,
        ];
        for body in cases {
            let e = parse_chat(body).unwrap_err();
            assert_eq!(
                e.status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(e.kind, "invalid_request_error");
        }
        let e = parse_chat(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.message, "you must provide a model parameter");
    }

    #[test]
    fn error_bodies_have_openai_shape() {
        let v: Value =
            serde_json::from_slice(&ApiError::invalid_request("nope").to_json()).unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": null}})
        );
        let v: Value = serde_json::from_slice(
            &ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, None).to_json(),
        )
        .unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn completion_prompts_count_text_and_tokens() {
        let g = parse_completion(br#"{"model":"m","prompt":["abcd","efgh1"]}"#).unwrap();
        assert_eq!(g.prompt_tokens, 3);
        let g = parse_completion(br#"{"model":"m","prompt":[1,2,3],"stream":true,"stream_options":{"include_usage":true}}"#)
            .unwrap();
        assert_eq!(
            (g.prompt_tokens, g.stream, g.include_usage),
            (3, true, true)
        );
    }

    #[test]
    fn chat_completion_has_openai_shape() {
        let v: Value =
            serde_json::from_slice(&completion_json(&reply(Kind::Chat, 3, "gpt-4o"))).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "The quick brown", "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                "system_fingerprint": FINGERPRINT,
            })
        );
    }

    #[test]
    fn stream_chunks_carry_null_usage_only_when_usage_is_asked() {
        let model = "we\"ird";
        let with = stream_frames(&reply(Kind::Chat, 2, model), StreamUsage::OwnChunk);
        assert_eq!(with.chunks, 4);
        assert_eq!(with.frames.len(), 6);
        for frame in &with.frames[..4] {
            let v = frame_json(frame);
            assert_eq!(v["usage"], Value::Null);
            assert!(v.as_object().unwrap().contains_key("usage"));
            assert_eq!(v["model"], model);
        }
        let usage = frame_json(&with.frames[4]);
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 12);
        assert_eq!(&with.frames[5][..], DONE_FRAME);

        let without = stream_frames(&reply(Kind::Chat, 2, model), StreamUsage::None);
        assert_eq!(without.frames.len(), 5);
        assert!(
            !frame_json(&without.frames[1])
                .as_object()
                .unwrap()
                .contains_key("usage")
        );
    }

    #[test]
    fn usage_can_ride_in_the_finish_chunk() {
        let s = stream_frames(&reply(Kind::Chat, 2, "m"), StreamUsage::InFinishChunk);
        assert_eq!((s.chunks, s.frames.len()), (4, 5));
        let finish = frame_json(&s.frames[3]);
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["usage"]["total_tokens"], 12);
        assert_eq!(frame_json(&s.frames[2])["usage"], Value::Null);
        assert_eq!(&s.frames[4][..], DONE_FRAME);
    }

    #[test]
    fn counts_are_integers_as_json_schema_has_them() {
        let chat = |extra: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
            parse_chat(body.as_bytes()).map(|g| g.max_tokens)
        };
        assert_eq!(chat(r#","max_tokens":8.0"#).unwrap(), Some(8));
        assert_eq!(chat(r#","max_completion_tokens":1e1"#).unwrap(), Some(10));
        assert_eq!(chat(r#","max_tokens":null"#).unwrap(), None);
        for bad in [
            r#","max_tokens":8.5"#,
            r#","max_tokens":-1"#,
            r#","max_tokens":"8""#,
        ] {
            assert_eq!(
                chat(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn text_streams_have_no_role_chunk() {
        let s = stream_frames(&reply(Kind::Text, 2, "m"), StreamUsage::None);
        let texts: Vec<Value> = s.frames[..s.chunks]
            .iter()
            .map(|f| frame_json(f)["choices"][0]["text"].clone())
            .collect();
        assert_eq!(texts, [json!("The"), json!(" quick"), json!("")]);
        assert_eq!(frame_json(&s.frames[0])["object"], "text_completion");
    }

    #[test]
    fn cutting_a_stream_drops_usage_and_done() {
        let s = stream_frames(&reply(Kind::Chat, 5, "m"), StreamUsage::OwnChunk);
        assert_eq!(
            stream_frames(&reply(Kind::Chat, 5, "m"), StreamUsage::OwnChunk)
                .cut_after(2)
                .len(),
            2
        );
        assert_eq!(s.cut_after(100).len(), 7);
    }

    #[test]
    fn embeddings_are_unit_vectors_per_input() {
        let job = parse_embeddings(br#"{"model":"e","input":["hello world","hello world","x"]}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&embeddings_json(&job, "e")).unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[0]["embedding"], data[1]["embedding"]);
        assert_ne!(data[0]["embedding"], data[2]["embedding"]);
        let norm: f64 = data[2]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 3 + 3 + 1, "total_tokens": 7})
        );
        assert!(parse_embeddings(br#"{"model":"e","input":[]}"#).is_err());
        assert!(parse_embeddings(br#"{"model":"e"}"#).is_err());
        assert!(parse_embeddings(br#"{"model":"e","input":"x","encoding_format":"hex"}"#).is_err());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }
}
