//! One module per upstream protocol, behind one seam. The attempt loop
//! (`proxy.rs`) picks, calls, classifies and fails over without knowing
//! which API a deployment speaks; a provider knows four things:
//!
//! - how to call it: the URL of each endpoint it offers and its headers
//!   ([`Plan`], built once per deployment);
//! - how to turn a client's OpenAI request into its body ([`Dialect::body`]);
//! - how to turn its answer into OpenAI's, whole ([`Dialect::answer`]) and
//!   as a stream ([`Dialect::decoder`]);
//! - what its errors and rate-limit signals mean for routing
//!   ([`Dialect::error`]).
//!
//! The OpenAI dialect passes bodies through with only the model spliced in
//! (and streams through the SSE scanner): translation costs only the
//! providers that need it.

pub mod anthropic;
pub mod bedrock;
pub mod chat;
pub mod chunk;
pub mod limits;
pub mod openai;
pub mod vertex;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use bytes::Bytes;

use super::error::ApiError;
use super::request::{ENDPOINTS, Endpoint, Inspected};
use super::sse::{SseScanner, Usage};
use crate::config::{DeploymentConfig, Provider};

/// The URL of one endpoint, whole (for HTTP/2) and in origin form (the
/// HTTP/1.1 request line). Cloning a `Uri` shares its bytes.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Uri,
    pub path: Uri,
}

impl Target {
    /// `url` as a `Target`; a URL that does not parse (the config checked
    /// it is http(s) with a host) surfaces as a connection error on use.
    pub fn new(url: &str) -> Target {
        let url =
            Uri::try_from(url).unwrap_or_else(|_| Uri::from_static("http://invalid.invalid/"));
        let path = url
            .path_and_query()
            .and_then(|p| Uri::try_from(p.as_str()).ok())
            .unwrap_or_else(|| Uri::from_static("/"));
        Target { url, path }
    }
}

/// How one deployment is called: built once, when it is configured.
#[derive(Debug)]
pub struct Plan {
    /// Per endpoint (see [`slot`]); None when the provider does not offer it.
    targets: [Option<Target>; ENDPOINTS],
    /// Chat completions that stream, for providers with a URL of their own
    /// for them (Bedrock's `converse-stream`); None: the same URL.
    streaming: Option<Target>,
    /// The same for Messages (Bedrock's `invoke-with-response-stream`,
    /// Vertex's `streamRawPredict`).
    streaming_messages: Option<Target>,
    /// Sent with every request: static auth (marked sensitive) and API versions.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub dialect: Dialect,
    /// Auth that changes per request.
    pub auth: Auth,
}

/// Auth worked out per attempt, beyond the plan's static headers.
#[derive(Debug)]
pub enum Auth {
    /// The static headers are all.
    Static,
    /// AWS SigV4 over the body and the time.
    SigV4(Box<bedrock::sign::Signer>),
    /// A Google OAuth access token, cached and refreshed.
    Google(std::sync::Arc<vertex::token::TokenSource>),
}

pub(super) fn slot(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Completions => 1,
        Endpoint::Embeddings => 2,
        Endpoint::Messages => 3,
        Endpoint::CountTokens => 4,
        Endpoint::Responses => 5,
    }
}

impl Plan {
    pub fn new(config: &DeploymentConfig) -> Plan {
        match config.provider {
            Provider::OpenAi | Provider::Azure => openai::plan(config),
            Provider::Anthropic => anthropic::plan(config),
            Provider::Bedrock => bedrock::plan(config),
            Provider::Vertex => vertex::plan(config),
        }
    }

    pub fn target(&self, endpoint: Endpoint) -> Option<&Target> {
        self.targets[slot(endpoint)].as_ref()
    }

    /// The URL a request goes to: streamed chat may have its own.
    pub fn target_for(&self, endpoint: Endpoint, stream: bool) -> Option<&Target> {
        match (endpoint, stream) {
            (Endpoint::ChatCompletions, true) => self.streaming.as_ref(),
            (Endpoint::Messages, true) => self.streaming_messages.as_ref(),
            _ => None,
        }
        .or_else(|| self.target(endpoint))
    }

    /// Whether the deployment's provider has `endpoint` at all.
    pub fn offers(&self, endpoint: Endpoint) -> bool {
        self.target(endpoint).is_some()
    }
}

/// An auth or version header; a key that cannot be a header value (the
/// config refuses those) leaves the request without it.
pub(crate) fn header(
    name: &'static str,
    value: &str,
    secret: bool,
) -> Option<(HeaderName, HeaderValue)> {
    let mut value = HeaderValue::from_str(value).ok()?;
    // Keeps a key out of Debug output and HTTP/2 header compression tables.
    value.set_sensitive(secret);
    Some((HeaderName::from_static(name), value))
}

/// The wire format of bodies, answers and streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's own (and Azure's): bodies pass through.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Bedrock's Converse API, its streams in AWS's event-stream framing.
    Bedrock,
    /// Claude on Vertex AI: Anthropic's format, the version in the body.
    VertexClaude,
}

/// What a translated answer needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct AnswerContext<'a> {
    /// The model name the client asked for: answers carry it, not the upstream's ID.
    pub model: &'a str,
    /// Unix seconds, for `created`.
    pub created: u64,
    /// The client asked for the usage chunk of a stream.
    pub wants_usage: bool,
    /// A passed-through answer's `model` to put in place of the
    /// upstream's: a fallback model's answer, named as asked.
    pub rename: Option<&'a str>,
}

/// What an upstream's error answer means for the request.
#[derive(Debug)]
pub enum ErrorVerdict {
    /// The client's mistake: this status and body (in OpenAI's error shape)
    /// go back to it; not retried elsewhere.
    Client { body: Bytes },
    /// This deployment does not offer the endpoint: try another.
    NotOffered,
    /// Rate limited: cool down for the hint when there is one, try another.
    RateLimited {
        hint: Option<Duration>,
        message: String,
    },
    /// The deployment failed (its key, its model, an outage): try another.
    Failed { message: String },
}

impl ErrorVerdict {
    /// The client's mistake as the upstream put it, in OpenAI's error shape.
    pub fn client(message: &str, kind: &str, code: Option<&str>) -> ErrorVerdict {
        let body = serde_json::json!({"error": {
            "message": message,
            "type": kind,
            "param": null,
            "code": code,
        }});
        ErrorVerdict::Client {
            body: Bytes::from(body.to_string()),
        }
    }
}

/// Why an answer with a success status cannot be used.
pub type Invalid = String;

impl Dialect {
    /// The body for the upstream, or why this deployment cannot take the
    /// request (a parameter its API cannot honour: the client hears it when
    /// no other deployment can).
    pub fn body(
        &self,
        req: &Inspected,
        body: &Bytes,
        model_json: &Bytes,
        model_id: &str,
    ) -> Result<Bytes, ApiError> {
        match self {
            Dialect::OpenAi => Ok(req.rewrite(body, model_json)),
            Dialect::Anthropic => anthropic::request::translate(body, model_id),
            Dialect::Bedrock => bedrock::request::translate(body, model_id),
            Dialect::VertexClaude => anthropic::request::translate_for_vertex(body),
        }
    }

    /// A whole answer (success status) in OpenAI's shape, and its usage.
    pub fn answer(
        &self,
        body: Bytes,
        cx: &AnswerContext,
    ) -> Result<(Bytes, Option<Usage>), Invalid> {
        match self {
            Dialect::OpenAi => openai::answer(body),
            Dialect::Anthropic | Dialect::VertexClaude => anthropic::answer::translate(&body, cx),
            Dialect::Bedrock => bedrock::answer::translate(&body, cx),
        }
    }

    /// A whole answer read but not yet written as chat, for a door that
    /// writes its own shape from it; None when the answer is chat already
    /// (an OpenAI deployment's, passed through).
    pub fn completion<'a>(
        &self,
        body: &'a [u8],
        cx: &AnswerContext<'a>,
    ) -> Option<Result<chunk::Completion<'a>, Invalid>> {
        match self {
            Dialect::OpenAi => None,
            Dialect::Anthropic | Dialect::VertexClaude => {
                Some(anthropic::answer::completion(body, cx))
            }
            Dialect::Bedrock => Some(bedrock::answer::completion(body, cx)),
        }
    }

    /// What turns the upstream's stream into OpenAI's, frame by frame.
    pub fn decoder(&self, req: &Inspected, cx: &AnswerContext) -> Decoder {
        match self {
            Dialect::OpenAi => Decoder::Pass(
                SseScanner::new(req.adds_usage()).renaming(cx.rename.map(std::sync::Arc::from)),
            ),
            Dialect::Anthropic | Dialect::VertexClaude => {
                Decoder::Anthropic(Box::new(anthropic::stream::Translator::new(cx)))
            }
            Dialect::Bedrock => Decoder::Bedrock(Box::new(bedrock::stream::Translator::new(cx))),
        }
    }

    /// What an error status means.
    pub fn error(
        &self,
        endpoint: Endpoint,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ErrorVerdict {
        match self {
            Dialect::OpenAi => openai::error(endpoint, status, headers, body),
            Dialect::Anthropic => anthropic::error(status, headers, body),
            Dialect::Bedrock => bedrock::error(status, headers, body),
            Dialect::VertexClaude => vertex::error(status, headers, body),
        }
    }
}

/// A stream on its way to the client: passed through, or translated.
pub enum Decoder {
    Pass(SseScanner),
    Anthropic(Box<anthropic::stream::Translator>),
    Bedrock(Box<bedrock::stream::Translator>),
    /// A Claude deployment's stream on the Messages door, passed through.
    Messages(Box<crate::gateway::door::messages::stream::MessagesStream>),
    /// Any other deployment's stream on the Messages door: its chat
    /// chunks translated to Anthropic's events.
    ThroughChat(Box<crate::gateway::door::messages::hub::ThroughChat>),
    /// A Responses stream, passed through.
    Responses(Box<crate::gateway::door::responses::stream::ResponsesStream>),
    /// Any other deployment's stream on the Responses door: its chat
    /// chunks translated to Responses events.
    Bridged(Box<crate::gateway::door::responses::hub::Bridged>),
}

impl Decoder {
    /// Takes the next chunk from upstream; returns what to send on, if anything.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            Decoder::Pass(s) => s.feed(chunk),
            Decoder::Anthropic(t) => t.feed(&chunk),
            Decoder::Bedrock(t) => t.feed(&chunk),
            Decoder::Messages(m) => m.feed(&chunk),
            Decoder::ThroughChat(t) => t.feed(chunk),
            Decoder::Responses(r) => r.feed(chunk),
            Decoder::Bridged(b) => b.feed(chunk),
        }
    }

    /// What is left when the upstream ends cleanly; an answer that had
    /// finished (a finish reason went by) is closed with `[DONE]` here
    /// when the upstream left its terminal event out.
    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            Decoder::Pass(s) => s.finish(),
            Decoder::Anthropic(t) => t.finish(),
            Decoder::Bedrock(t) => t.finish(),
            Decoder::Messages(m) => m.finish(),
            Decoder::ThroughChat(t) => t.finish(),
            Decoder::Responses(r) => r.finish(),
            Decoder::Bridged(b) => b.finish(),
        }
    }

    /// The upstream broke off: whole frames still buffered, never a
    /// clean end of the gateway's making.
    pub fn abandon(&mut self) -> Option<Bytes> {
        match self {
            Decoder::Pass(s) => s.abandon(),
            Decoder::Anthropic(t) => t.abandon(),
            Decoder::Bedrock(t) => t.abandon(),
            Decoder::Messages(m) => m.abandon(),
            Decoder::ThroughChat(t) => t.abandon(),
            Decoder::Responses(r) => r.abandon(),
            Decoder::Bridged(b) => b.abandon(),
        }
    }

    /// Frames left out because they were not JSON (the first excepted,
    /// which makes the stream [`Decoder::saw_invalid`]).
    pub fn skipped(&self) -> u64 {
        match self {
            Decoder::Pass(s) => s.skipped,
            Decoder::Anthropic(t) => t.skipped(),
            Decoder::Bedrock(t) => t.skipped(),
            Decoder::Messages(m) => m.skipped(),
            Decoder::ThroughChat(t) => t.skipped(),
            Decoder::Responses(r) => r.skipped(),
            Decoder::Bridged(b) => b.skipped(),
        }
    }

    /// What the last frame left out looked like (escaped, cut short).
    pub fn last_skipped(&self) -> Option<&str> {
        match self {
            Decoder::Pass(s) => s.last_skipped.as_deref(),
            Decoder::Anthropic(t) => t.last_skipped(),
            Decoder::Bedrock(t) => t.last_skipped(),
            Decoder::Messages(m) => m.last_skipped(),
            Decoder::ThroughChat(t) => t.last_skipped(),
            Decoder::Responses(r) => r.last_skipped(),
            Decoder::Bridged(b) => b.last_skipped(),
        }
    }

    /// The upstream's error message, when it sent one and it was read.
    pub fn error_message(&self) -> Option<&str> {
        match self {
            Decoder::Pass(_) => None,
            Decoder::Anthropic(t) => t.error(),
            Decoder::Bedrock(t) => t.error(),
            Decoder::Messages(m) => m.error(),
            Decoder::ThroughChat(t) => t.error(),
            Decoder::Responses(r) => r.error(),
            Decoder::Bridged(b) => b.error(),
        }
    }

    /// The usage the upstream reported, in OpenAI's terms.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Decoder::Pass(s) => s.usage,
            Decoder::Anthropic(t) => t.usage(),
            Decoder::Bedrock(t) => t.usage(),
            Decoder::Messages(m) => m.usage(),
            Decoder::ThroughChat(t) => t.usage(),
            Decoder::Responses(r) => r.usage(),
            Decoder::Bridged(b) => b.usage(),
        }
    }

    /// The upstream finished cleanly.
    pub fn done(&self) -> bool {
        match self {
            Decoder::Pass(s) => s.done,
            Decoder::Anthropic(t) => t.done(),
            Decoder::Bedrock(t) => t.done(),
            Decoder::Messages(m) => m.done(),
            Decoder::ThroughChat(t) => t.done(),
            Decoder::Responses(r) => r.done(),
            Decoder::Bridged(b) => b.done(),
        }
    }

    /// Content frames seen (each about one token), for an estimate.
    pub fn frames(&self) -> u64 {
        match self {
            Decoder::Pass(s) => s.frames,
            Decoder::Anthropic(t) => t.frames(),
            Decoder::Bedrock(t) => t.frames(),
            Decoder::Messages(m) => m.frames(),
            Decoder::ThroughChat(t) => t.frames(),
            Decoder::Responses(r) => r.frames(),
            Decoder::Bridged(b) => b.frames(),
        }
    }

    /// The upstream sent an error event.
    pub fn saw_error(&self) -> bool {
        match self {
            Decoder::Pass(s) => s.saw_error,
            Decoder::Anthropic(t) => t.error().is_some(),
            Decoder::Bedrock(t) => t.error().is_some(),
            Decoder::Messages(m) => m.error().is_some(),
            Decoder::ThroughChat(t) => t.saw_error(),
            Decoder::Responses(r) => r.error().is_some(),
            Decoder::Bridged(b) => b.saw_error(),
        }
    }

    /// The first event was not what the API sends.
    pub fn saw_invalid(&self) -> bool {
        match self {
            Decoder::Pass(s) => s.saw_invalid,
            Decoder::Anthropic(t) => t.invalid(),
            Decoder::Bedrock(t) => t.invalid(),
            Decoder::Messages(m) => m.invalid(),
            Decoder::ThroughChat(t) => t.invalid(),
            Decoder::Responses(r) => r.invalid(),
            Decoder::Bridged(b) => b.invalid(),
        }
    }

    /// The upstream's error said it is throttled (Bedrock's
    /// `throttlingException`, Anthropic's `overloaded_error` in the
    /// stream): a rate limit, not a failure. The status it stands for, for
    /// the attempt's record.
    pub fn rate_limited(&self) -> Option<u16> {
        match self {
            Decoder::Bedrock(t) if t.throttled() => Some(429),
            Decoder::Anthropic(t) if t.rate_limited() => Some(529),
            Decoder::Messages(m) => m.rate_limited(),
            Decoder::ThroughChat(t) => t.rate_limited(),
            Decoder::Responses(r) => r.rate_limited(),
            Decoder::Bridged(b) => b.rate_limited(),
            _ => None,
        }
    }

    /// Whether the gateway writes the stream itself (so it is
    /// `text/event-stream`, whatever the upstream's content type).
    pub fn translates(&self) -> bool {
        !matches!(self, Decoder::Pass(_))
    }

    /// The event that ends a stream the gateway breaks off, in the door's
    /// protocol: never a clean finish.
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        match self {
            Decoder::Messages(_) | Decoder::ThroughChat(_) => {
                crate::gateway::door::messages::stream::error_event("api_error", message)
            }
            Decoder::Responses(r) => r.failed_event(message, code),
            Decoder::Bridged(b) => b.failed_event(message, code),
            _ => {
                let mut out = Vec::new();
                chunk::error_event(&mut out, message, code);
                Bytes::from(out)
            }
        }
    }
}
