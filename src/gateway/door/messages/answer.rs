//! A Claude deployment's whole answer on the Messages door: passed through
//! as the upstream sent it (its `model` included), read only for usage.

use bytes::Bytes;
use serde::Deserialize;

use crate::gateway::provider::Invalid;
use crate::gateway::provider::anthropic::answer::AnthropicUsage;
use crate::gateway::provider::chunk::Tokens;
use crate::gateway::sse::Usage;

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

pub fn native(body: Bytes) -> Result<(Bytes, Option<Usage>), Invalid> {
    let message: Message = serde_json::from_slice(&body)
        .map_err(|e| format!("a body that is not an Anthropic message ({e})"))?;
    if message.kind != "message" {
        return Err(format!("a body of type `{}`, not a message", message.kind));
    }
    let usage = message.usage.map(|u| {
        let mut tokens = Tokens::default();
        u.apply(&mut tokens);
        tokens.usage()
    });
    Ok((body, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_body_through_and_counts_cached_input() {
        let body = Bytes::from_static(br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-up","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"cache_read_input_tokens":10,"output_tokens":2}}"#);
        let (out, usage) = native(body.clone()).unwrap();
        assert_eq!(out, body);
        let usage = usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (13, 2));
        assert!(native(Bytes::from_static(b"{\"type\":\"error\"}")).is_err());
        assert!(native(Bytes::from_static(b"<html>")).is_err());
    }
}
