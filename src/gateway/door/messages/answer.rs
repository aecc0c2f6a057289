//! A Claude deployment's whole answer on the Messages door: passed through
//! as the upstream sent it (its `model` included), read only for usage.

use bytes::Bytes;

use crate::gateway::provider::Invalid;
use crate::gateway::provider::anthropic::answer::AnthropicUsage;
use crate::gateway::provider::chunk::Tokens;
use crate::gateway::sse::Usage;

/// Checked as the chat path checks its answers (one JSON object, by the
/// validating scanner, no tree built) and read for `type` and `usage`.
pub fn native(body: Bytes) -> Result<(Bytes, Option<Usage>), Invalid> {
    let mut kind: Option<&[u8]> = None;
    let mut usage: Option<AnthropicUsage> = None;
    crate::gateway::json::object_members(&body, |key, value| {
        match key {
            b"type" => kind = Some(value),
            b"usage" => {
                usage = Some(
                    serde_json::from_slice(value)
                        .map_err(|_| "a `usage` that is not token counts")?,
                )
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| format!("a body that is not an Anthropic message ({e})"))?;
    if kind != Some(&br#""message""#[..]) {
        let kind = String::from_utf8_lossy(kind.unwrap_or(b"none"));
        return Err(format!("a body of type {kind}, not a message"));
    }
    let usage = usage.map(|u| {
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
