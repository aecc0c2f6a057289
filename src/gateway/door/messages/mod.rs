//! The Anthropic Messages door (`POST /v1/messages`, what Claude Code and
//! the anthropic SDKs call): its requests read for routing, the body for
//! Claude deployments (passed through), its streams and errors in
//! Anthropic's shape.

pub mod answer;
pub mod count;
pub mod error;
pub mod hub;
pub mod native;
pub mod stream;
pub mod translate;

use std::borrow::Cow;

use crate::gateway::request::{BadRequest, Inspected, bad, count_of, span_of};

/// Output tokens assumed when `max_tokens` is missing or unreadable (the
/// API requires it; the upstream will say so).
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The members of a Messages body read for routing.
#[derive(Default)]
struct Read<'a> {
    model: Option<&'a [u8]>,
    stream: Option<&'a [u8]>,
    max_tokens: Option<&'a [u8]>,
    prompt_bytes: u64,
    twice: bool,
}

impl<'a> Read<'a> {
    fn take(&mut self, key: &[u8], value: &'a [u8]) {
        match key {
            b"model" => self.twice |= self.model.replace(value).is_some(),
            b"stream" => self.stream = Some(value),
            b"max_tokens" => self.max_tokens = Some(value),
            b"messages" | b"system" | b"tools" => self.prompt_bytes += value.len() as u64,
            _ => {}
        }
    }
}

/// Reads a Messages body for routing: `model`, `stream`, and the estimate
/// (the prompt from the size of `system`, `messages` and `tools`, about 4
/// bytes a token, plus `max_tokens`). Only what cannot be routed is refused;
/// the rest is the upstream's to judge.
///
/// The body is skimmed, not validated (a Claude Code turn is tens of
/// kilobytes resent every time); one with an escaped key is read again by
/// the scanner that decodes keys, so no spelling of `model` gets past.
pub fn inspect(body: &[u8]) -> Result<Inspected, BadRequest> {
    let r = super::read_members(body, Read::take)?;
    let Read {
        model,
        stream,
        max_tokens,
        prompt_bytes,
        twice,
        ..
    } = r;
    if twice {
        return Err(bad(
            "model: given more than once; the gateway routes on it and cannot tell which one the upstream would use",
            Some("model"),
        ));
    }
    let raw_model = model
        .filter(|raw| *raw != b"null")
        .ok_or_else(|| bad("model: Field required", Some("model")))?;
    let name: Cow<str> = serde_json::from_slice(raw_model)
        .map_err(|_| bad("model: Input should be a valid string", Some("model")))?;
    if name.is_empty() {
        return Err(bad("model: Field required", Some("model")));
    }
    let prompt = prompt_bytes.div_ceil(4);
    let completion = max_tokens.and_then(count_of).unwrap_or(DEFAULT_MAX_TOKENS);
    Ok(Inspected::of_door(
        name.into_owned(),
        stream == Some(&b"true"[..]),
        prompt,
        completion,
        span_of(body, raw_model),
    ))
}

/// The request as chat completions, read as the chat door reads requests:
/// one translation, for every deployment reached through the hub.
pub fn to_chat(body: &[u8]) -> Result<(Inspected, bytes::Bytes), crate::gateway::error::ApiError> {
    use crate::gateway::error::ApiError;
    use crate::gateway::request::{Endpoint, inspect as inspect_chat};
    let chat = translate::request::to_chat(body).map_err(|e| ApiError::BadRequest {
        message: e.message,
        param: None,
    })?;
    let req = inspect_chat(&chat, Endpoint::ChatCompletions).map_err(|e| ApiError::BadRequest {
        message: e.message,
        param: e.param,
    })?;
    Ok((req, chat))
}

/// A chat answer as a Messages answer, named as the client asked.
pub fn from_chat(chat: &[u8], model: &str) -> Result<bytes::Bytes, String> {
    translate::answer::from_chat(chat, model).map(|(body, _)| body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_stream_and_an_estimate_from_a_claude_code_body() {
        let body = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hello there, how are you"}],"system":[{"type":"text","text":"be brief"}],"max_tokens":32000,"stream":true,"thinking":{"type":"adaptive"}}"#;
        let r = inspect(body).unwrap();
        assert_eq!(r.model, "claude-sonnet-4-5");
        assert!(r.stream);
        assert!(r.prompt_estimate > 10 && r.prompt_estimate < 40);
        assert_eq!(r.estimate, r.prompt_estimate + 32000);
        let rewritten = r.rewrite(body, br#""claude-x""#);
        assert!(rewritten.starts_with(br#"{"model":"claude-x","messages""#));
    }

    #[test]
    fn what_cannot_be_routed_is_refused_by_name() {
        assert!(inspect(b"[]").unwrap_err().message.contains("JSON"));
        assert_eq!(
            inspect(br#"{"messages":[]}"#).unwrap_err().param,
            Some("model")
        );
        assert_eq!(
            inspect(br#"{"model":7,"messages":[]}"#).unwrap_err().param,
            Some("model")
        );
        assert!(!inspect(br#"{"model":"m","stream":"yes"}"#).unwrap().stream);
        // However `model` is spelled, it is read (and given twice, refused).
        assert_eq!(
            inspect(br#"{"mod\u0065l":"m2","messages":[]}"#)
                .unwrap()
                .model,
            "m2"
        );
        assert_eq!(
            inspect(br#"{"model":"a","x":[1],"mod\u0065l":"b"}"#)
                .unwrap_err()
                .param,
            Some("model")
        );
        assert_eq!(
            inspect(br#"{"model":"m"}"#).unwrap().estimate,
            DEFAULT_MAX_TOKENS
        );
    }
}
