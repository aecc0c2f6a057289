//! The OpenAI Responses door (`POST /v1/responses`, what Codex CLI, the
//! Agents SDK and `@ai-sdk/openai` call): its requests read for routing,
//! passed through to deployments that offer `/responses` (OpenAI's API,
//! Azure's v1 and classic paths), its streams held until their first
//! output item.

pub mod answer;
pub mod by_id;
pub mod hub;
pub mod memory;
pub mod pin;
pub mod stream;
pub mod translate;

use std::borrow::Cow;

use crate::gateway::request::{
    BadRequest, DEFAULT_COMPLETION_ESTIMATE, Inspected, bad, count_of, span_of,
};

/// The members of a Responses body read for routing.
#[derive(Default)]
struct Read<'a> {
    model: Option<&'a [u8]>,
    stream: Option<&'a [u8]>,
    max_output_tokens: Option<&'a [u8]>,
    prompt_cache_key: Option<&'a [u8]>,
    store: Option<&'a [u8]>,
    previous: Option<&'a [u8]>,
    prompt_bytes: u64,
    twice: bool,
}

impl<'a> Read<'a> {
    fn take(&mut self, key: &[u8], value: &'a [u8]) {
        match key {
            b"model" => self.twice |= self.model.replace(value).is_some(),
            b"stream" => self.stream = Some(value),
            b"max_output_tokens" => self.max_output_tokens = Some(value),
            b"prompt_cache_key" => self.prompt_cache_key = Some(value),
            b"store" => self.store = Some(value),
            b"previous_response_id" => self.previous = Some(value),
            b"input" | b"instructions" | b"tools" => self.prompt_bytes += value.len() as u64,
            _ => {}
        }
    }
}

/// The request as chat completions, read as the chat door reads requests,
/// and its tools: one translation, for every deployment reached through
/// the bridge.
pub fn to_chat(
    body: &[u8],
) -> Result<(Inspected, bytes::Bytes, translate::Tools), crate::gateway::error::ApiError> {
    use crate::gateway::error::ApiError;
    use crate::gateway::request::{Endpoint, inspect as inspect_chat};
    let (chat, tools) =
        translate::request::to_chat_with_tools(body).map_err(|e| ApiError::BadRequest {
            message: e.message,
            param: None,
        })?;
    let req = inspect_chat(&chat, Endpoint::ChatCompletions).map_err(|e| ApiError::BadRequest {
        message: e.message,
        param: e.param,
    })?;
    Ok((req, chat, tools))
}

/// What a Responses request says about state kept upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// `store` is not `false`: the upstream keeps the response, and a
    /// follow-up may name it.
    pub stored: bool,
    /// `previous_response_id`: the response this one continues.
    pub previous: Option<String>,
}

/// Reads a Responses body for routing: `model`, `stream`, the estimate
/// (the size of `input`, `instructions` and `tools` at about 4 bytes a
/// token, plus `max_output_tokens`), and `prompt_cache_key` as a session
/// key (Codex sends its thread id there). Skimmed like the Messages door's
/// (a Codex turn resends its whole history); an escaped key sends it to
/// the validating scanner.
pub fn inspect(body: &[u8]) -> Result<Inspected, BadRequest> {
    read(body).map(|(req, _)| req)
}

/// [`inspect`], and what the request says about state kept upstream.
pub fn read(body: &[u8]) -> Result<(Inspected, State), BadRequest> {
    let r = super::read_members(body, Read::take)?;
    if r.twice {
        return Err(bad(
            "'model' is given more than once: the gateway routes on it and cannot tell which one the upstream would use.",
            Some("model"),
        ));
    }
    let raw_model = r
        .model
        .filter(|raw| *raw != b"null")
        .ok_or_else(|| bad("you must provide a model parameter", Some("model")))?;
    let name: Cow<str> = serde_json::from_slice(raw_model)
        .map_err(|_| bad("'model' must be a string", Some("model")))?;
    if name.is_empty() {
        return Err(bad("you must provide a model parameter", Some("model")));
    }
    let prompt = r.prompt_bytes.div_ceil(4);
    let completion = r
        .max_output_tokens
        .and_then(count_of)
        .unwrap_or(DEFAULT_COMPLETION_ESTIMATE);
    let mut req = Inspected::of_door(
        name.into_owned(),
        r.stream == Some(&b"true"[..]),
        prompt,
        completion,
        span_of(body, raw_model),
    );
    req.cache_key = r
        .prompt_cache_key
        .and_then(|raw| serde_json::from_slice::<Cow<str>>(raw).ok())
        .filter(|key| !key.is_empty())
        .map(|key| crate::router::SessionKey::of(&key));
    let state = State {
        stored: r.store != Some(&b"false"[..]),
        previous: r
            .previous
            .and_then(|raw| serde_json::from_slice::<Option<String>>(raw).ok())
            .flatten()
            .filter(|id| !id.is_empty()),
    };
    Ok((req, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_codex_turn_for_routing() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/agents/codex/oneshot.json"
        ))
        .unwrap();
        let body = fixture["body"].as_str().unwrap();
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        let r = inspect(body.as_bytes()).unwrap();
        assert_eq!(r.model, sent["model"].as_str().unwrap());
        assert!(r.stream);
        assert!(r.prompt_estimate > 100);
        assert!(r.cache_key.is_some(), "Codex's thread id keys the session");
        let rewritten = r.rewrite(body.as_bytes(), br#""gpt-up""#);
        let v: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
        assert_eq!(v["model"], "gpt-up");
        assert_eq!(v["input"], sent["input"]);
    }

    #[test]
    fn what_cannot_be_routed_is_refused_by_name() {
        assert_eq!(
            inspect(br#"{"input":"hi"}"#).unwrap_err().param,
            Some("model")
        );
        assert_eq!(
            inspect(br#"{"model":"a","input":"x","mod\u0065l":"b"}"#)
                .unwrap_err()
                .param,
            Some("model")
        );
        assert!(inspect(b"nope").is_err());
        let r = inspect(br#"{"model":"m","input":"hi","max_output_tokens":100}"#).unwrap();
        assert_eq!(r.estimate, r.prompt_estimate + 100);
        assert!(!r.stream);
    }
}
