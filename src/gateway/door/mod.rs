//! The client protocols ("doors") the gateway is reached by.
//!
//! Routing, windows, failover, events and the dashboard never ask which
//! door a request came in by: a door only reads its requests for routing
//! (model, estimate, stream) and says how each deployment is called. The
//! seam is hub and spoke, so three doors and five providers do not make
//! fifteen translators:
//!
//! - a deployment that speaks the door's protocol gets the body passed
//!   through (the model replaced; for Claude on Bedrock and Vertex the
//!   version and betas their APIs want);
//! - any other deployment is reached through chat completions, the hub:
//!   the door translates its request to chat once per request, and the
//!   provider's own chat translation (`provider::*`) does the rest; the
//!   answer comes back the same way, the provider's decoder turning it into
//!   chat chunks and the door's turning those into its own events.
//!
//! | door \ deployment | openai, azure, vertex (non-Claude) | anthropic, vertex (Claude) | bedrock (Claude) | bedrock (other) |
//! |---|---|---|---|---|
//! | chat | pass through | chat → Messages | chat → Converse | chat → Converse |
//! | messages | Messages → chat | pass through | pass through (InvokeModel) | Messages → chat → Converse |

pub mod hub;
pub mod messages;
pub mod responses;
mod untranslatable;

pub use untranslatable::Untranslatable;
pub(crate) use untranslatable::refuse;

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use super::error::ApiError;
use super::request::{Endpoint, Inspected};
use super::upstream::Upstream;
use messages::native::{Betas, Platform};

/// How a deployment's answer is read back for the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The chat door: the provider's answer as chat (passed or translated).
    Chat,
    /// The Messages door to a Claude deployment: passed through.
    Native,
    /// The Messages door through chat: the provider's chat answer
    /// translated to Messages.
    Translated,
    /// The Responses door to a deployment that offers `/responses`:
    /// passed through.
    Responses,
    /// The Responses door through chat: the provider's chat answer
    /// translated to a response.
    Bridged,
}

impl Way {
    /// A whole answer (success status) for the client, and its usage.
    pub fn answer(
        self,
        dialect: super::provider::Dialect,
        body: Bytes,
        cx: &super::provider::AnswerContext,
        tools: Option<&responses::translate::Tools>,
    ) -> Result<(Bytes, Option<super::sse::Usage>), super::provider::Invalid> {
        match self {
            Way::Bridged => {
                let none = responses::translate::Tools::default();
                let tools = tools.unwrap_or(&none);
                // A provider's own answer goes to a response directly, not
                // through chat JSON written only to be read back.
                if let Some(completion) = dialect.completion(&body, cx) {
                    let completion = completion?;
                    let usage = completion.tokens.usage();
                    let body = responses::translate::from_completion(&completion, cx.model, tools);
                    return Ok((body, Some(usage)));
                }
                let (chat, usage) = dialect.answer(body, cx)?;
                let body =
                    responses::translate::answer::from_chat_with_tools(&chat, cx.model, tools)?;
                Ok((body, usage))
            }
            Way::Chat => dialect.answer(body, cx),
            Way::Native => messages::answer::native(body),
            Way::Responses => responses::answer::native(body),
            Way::Translated => {
                let (chat, usage) = dialect.answer(body, cx)?;
                Ok((messages::from_chat(&chat, cx.model)?, usage))
            }
        }
    }
}

/// How one deployment is called for a request.
pub struct Call {
    /// The endpoint the deployment is called at.
    pub endpoint: Endpoint,
    pub body: bytes::Bytes,
    pub way: Way,
    /// What only the Messages door's native calls have (boxed: the chat
    /// path moves this struct, and pays for every byte of it).
    pub extra: Option<Box<Extra>>,
}

/// A native Messages call's own.
pub struct Extra {
    /// Headers of the request's own beyond the deployment's plan
    /// (Anthropic's version and betas).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Betas left out for this deployment (`x-switchboard-dropped-betas`).
    pub dropped: Option<HeaderValue>,
}

impl Call {
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.extra.as_deref().map_or(&[], |e| &e.headers)
    }
}

/// Reads a door's body into `R` member by member (`take`): skimmed (a
/// coding agent resends tens of kilobytes of history every turn), and,
/// when a key has an escape, read afresh by the validating scanner, which
/// decodes keys, so that no spelling of `model` gets past.
pub(crate) fn read_members<'a, R: Default>(
    body: &'a [u8],
    take: fn(&mut R, &[u8], &'a [u8]),
) -> Result<R, super::request::BadRequest> {
    let invalid = |e: &dyn std::fmt::Display| {
        super::request::bad(format!("The request body is not valid JSON: {e}"), None)
    };
    let mut read = R::default();
    let mut escaped = false;
    super::skim::members(body, |k, v| {
        escaped |= k.contains(&b'\\');
        take(&mut read, k, v)
    })
    .map_err(|e| invalid(&e))?;
    if escaped {
        read = R::default();
        super::json::object_members(body, |k, v| {
            take(&mut read, k, v);
            Ok(())
        })
        .map_err(|e| invalid(&e))?;
    }
    Ok(read)
}

/// The door's name for a request's endpoint, as the dashboard shows it.
pub fn name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Messages | Endpoint::CountTokens => "messages",
        Endpoint::Responses => "responses",
        _ => "chat",
    }
}

/// A request as the client asked it, read for routing.
pub struct Asked {
    pub endpoint: Endpoint,
    pub req: Inspected,
    pub body: Bytes,
    /// The Messages door's own (boxed: the chat path carries a pointer).
    messages: Option<Box<MessagesAsk>>,
    /// The Responses door's own (boxed, as the Messages door's).
    responses: Option<Box<ResponsesAsk>>,
}

struct ResponsesAsk {
    /// What the request says of state kept upstream.
    state: responses::State,
    /// The request as chat completions, for deployments reached through
    /// the bridge, and its tools (to name their calls in the answer).
    chat: OnceLock<Result<(Inspected, Bytes, responses::translate::Tools), ApiError>>,
}

struct MessagesAsk {
    /// `anthropic-version` and `anthropic-beta` as the client sent them.
    headers: HeaderMap,
    /// The request as chat completions, made when the first deployment
    /// that needs it is tried.
    chat: OnceLock<Result<(Inspected, Bytes), ApiError>>,
}

impl Asked {
    pub fn chat(endpoint: Endpoint, req: Inspected, body: Bytes) -> Asked {
        Asked {
            endpoint,
            req,
            body,
            messages: None,
            responses: None,
        }
    }

    pub fn responses(req: Inspected, body: Bytes, state: responses::State) -> Asked {
        Asked {
            endpoint: Endpoint::Responses,
            req,
            body,
            messages: None,
            responses: Some(Box::new(ResponsesAsk {
                state,
                chat: OnceLock::new(),
            })),
        }
    }

    /// What a Responses request says of state kept upstream.
    pub fn responses_state(&self) -> Option<&responses::State> {
        self.responses.as_deref().map(|r| &r.state)
    }

    /// A Responses request as chat completions (made once).
    fn bridged(&self) -> Result<&(Inspected, Bytes, responses::translate::Tools), ApiError> {
        let Some(r) = &self.responses else {
            return Err(ApiError::Internal("not a Responses request".into()));
        };
        r.chat
            .get_or_init(|| responses::to_chat(&self.body))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The tools of a bridged Responses request, to name their calls.
    pub fn bridged_tools(&self) -> Option<&responses::translate::Tools> {
        self.bridged().ok().map(|(_, _, tools)| tools)
    }

    pub fn messages(req: Inspected, body: Bytes, client: &HeaderMap) -> Asked {
        let mut headers = HeaderMap::new();
        for name in ["anthropic-version", "anthropic-beta"] {
            if let Some(v) = client.get(name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        Asked {
            endpoint: Endpoint::Messages,
            req,
            body,
            messages: Some(Box::new(MessagesAsk {
                headers,
                chat: OnceLock::new(),
            })),
            responses: None,
        }
    }

    /// The request as chat completions (for a deployment reached through
    /// the hub), and how it was read.
    fn as_chat(&self) -> Result<&(Inspected, Bytes), ApiError> {
        let Some(m) = &self.messages else {
            return Err(ApiError::Internal("not a Messages request".into()));
        };
        m.chat
            .get_or_init(|| messages::to_chat(&self.body))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// How the request read for decoding a chat answer: the client's own,
    /// or its chat translation's.
    pub fn chat_req(&self, way: Way) -> &Inspected {
        if way == Way::Translated
            && let Ok((req, _)) = self.as_chat()
        {
            return req;
        }
        if way == Way::Bridged
            && let Ok((req, _, _)) = self.bridged()
        {
            return req;
        }
        &self.req
    }

    /// How `up` is called for this request, or why its API cannot take it;
    /// a `max_tokens` beyond the deployment's `max_output_tokens` capped.
    pub fn call(&self, up: &Upstream, now: std::time::Duration) -> Result<Call, ApiError> {
        let mut call = self.call_uncapped(up, now)?;
        if let Some(cap) = up.config.max_output_tokens {
            call.body = cap_output(call.body, cap);
        }
        Ok(call)
    }

    fn call_uncapped(&self, up: &Upstream, now: std::time::Duration) -> Result<Call, ApiError> {
        let dialect = up.plan.dialect;
        let Some(m) = &self.messages else {
            if self.endpoint == Endpoint::Responses {
                // Natively where it is offered (and has not answered 404);
                // through chat everywhere else.
                if !up.plan.offers(Endpoint::Responses)
                    || up.config.responses_bridged
                    || up.known_not_to_offer(Endpoint::Responses, now)
                {
                    return self.bridge_call(up);
                }
                return Ok(Call {
                    endpoint: Endpoint::Responses,
                    body: self.req.rewrite(&self.body, &up.model_json),
                    way: Way::Responses,
                    extra: None,
                });
            }
            return Ok(Call {
                endpoint: self.endpoint,
                body: dialect.body(&self.req, &self.body, &up.model_json, &up.config.model_id)?,
                way: Way::Chat,
                extra: None,
            });
        };
        self.messages_call(m, up)
    }

    /// A Responses request through chat (out of line, as the Messages
    /// door's): stateless requests only, since no chat upstream keeps a
    /// conversation.
    #[inline(never)]
    fn bridge_call(&self, up: &Upstream) -> Result<Call, ApiError> {
        if self.responses_state().is_some_and(|s| s.previous.is_some()) {
            return Err(ApiError::Unsupported {
                message: format!(
                    "previous_response_id: a stored conversation cannot be continued through `{}`, which is reached through chat completions (no Responses API of its own)",
                    up.name
                ),
                param: "previous_response_id".into(),
            });
        }
        let (req, body, _) = self.bridged()?;
        Ok(Call {
            endpoint: Endpoint::ChatCompletions,
            body: up
                .plan
                .dialect
                .body(req, body, &up.model_json, &up.config.model_id)?,
            way: Way::Bridged,
            extra: None,
        })
    }

    /// Out of line: the chat path's attempt stays as small as it was.
    #[inline(never)]
    fn messages_call(&self, m: &MessagesAsk, up: &Upstream) -> Result<Call, ApiError> {
        let dialect = up.plan.dialect;
        if up.plan.offers(Endpoint::Messages) {
            let platform = Platform::of(dialect);
            let betas = Betas::filter(m.headers.get("anthropic-beta"), platform);
            if !betas.dropped.is_empty() {
                tracing::debug!(deployment = %up.name, dropped = ?betas.dropped, "betas the platform does not take left out");
            }
            return Ok(Call {
                endpoint: Endpoint::Messages,
                body: messages::native::body(
                    platform,
                    &self.req,
                    &self.body,
                    &up.model_json,
                    &betas,
                ),
                way: Way::Native,
                extra: Some(Box::new(Extra {
                    headers: messages::native::headers(platform, &m.headers, &betas),
                    dropped: betas.dropped_header(),
                })),
            });
        }
        let (req, body) = self.as_chat()?;
        Ok(Call {
            endpoint: Endpoint::ChatCompletions,
            body: dialect.body(req, body, &up.model_json, &up.config.model_id)?,
            way: Way::Translated,
            extra: None,
        })
    }
}

/// `body` with its output-token counts (`max_tokens`,
/// `max_completion_tokens`, Converse's `maxTokens` inside
/// `inferenceConfig` aside) no larger than `cap`.
fn cap_output(body: Bytes, cap: u64) -> Bytes {
    let mut over: Vec<(usize, usize)> = Vec::new();
    let start = body.as_ptr() as usize;
    let _ = super::json::object_members(&body, |key, value| {
        if matches!(key, b"max_tokens" | b"max_completion_tokens")
            && super::request::count_of(value).is_some_and(|n| n > cap)
        {
            let at = value.as_ptr() as usize - start;
            over.push((at, at + value.len()));
        }
        Ok(())
    });
    if over.is_empty() {
        return body;
    }
    let cap = cap.to_string();
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (from, to) in over {
        out.extend_from_slice(&body[at..from]);
        out.extend_from_slice(cap.as_bytes());
        at = to;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tokens_over_the_cap_are_capped_and_nothing_else_changes() {
        let body = Bytes::from_static(
            br#"{"model":"m","max_tokens":32000,"messages":[{"max_tokens":99999}]}"#,
        );
        assert_eq!(
            cap_output(body, 16384),
            &br#"{"model":"m","max_tokens":16384,"messages":[{"max_tokens":99999}]}"#[..]
        );
        let small = Bytes::from_static(br#"{"max_completion_tokens":100}"#);
        assert_eq!(cap_output(small.clone(), 16384), small);
    }
}
