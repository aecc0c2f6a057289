//! A whole Responses answer: passed through as the upstream sent it, read
//! for its usage; one whose `status` is `failed` is a failed attempt (the
//! next deployment is tried), not a 200 with nothing in it.

use bytes::Bytes;
use serde::Deserialize;

use crate::gateway::provider::Invalid;
use crate::gateway::request::count_of;
use crate::gateway::sse::Usage;

/// The Responses API's token counts.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct ResponsesUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl ResponsesUsage {
    /// The counts of a `usage` object the answer's scan has checked:
    /// skimmed, not deserialized (its `*_details` objects cost serde more
    /// than the rest of the answer's reading).
    fn read(usage: &[u8]) -> Option<ResponsesUsage> {
        let mut u = ResponsesUsage::default();
        let mut counts = true;
        crate::gateway::skim::members(usage, |key, value| {
            let slot = match key {
                b"input_tokens" => &mut u.input_tokens,
                b"output_tokens" => &mut u.output_tokens,
                b"total_tokens" => &mut u.total_tokens,
                _ => return,
            };
            match count_of(value) {
                Some(n) => *slot = n,
                None => counts = false,
            }
        })
        .ok()?;
        counts.then_some(u)
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.total_tokens,
        }
    }
}

pub fn native(body: Bytes) -> Result<(Bytes, Option<Usage>), Invalid> {
    let mut status: Option<&[u8]> = None;
    let mut usage: Option<ResponsesUsage> = None;
    let mut error: Option<&[u8]> = None;
    crate::gateway::json::object_members(&body, |key, value| {
        match key {
            b"status" => status = Some(value),
            b"error" => error = Some(value),
            b"usage" if value != b"null" => {
                usage =
                    Some(ResponsesUsage::read(value).ok_or("a `usage` that is not token counts")?)
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| format!("a body that is not a response ({e})"))?;
    if status == Some(&br#""failed""#[..]) {
        let why = error.map(String::from_utf8_lossy).unwrap_or_default();
        return Err(format!("a failed response ({why})"));
    }
    Ok((body, usage.map(|u| u.usage())))
}

/// The `id` of a whole answer already read by [`native`] (or made by the
/// bridge): skimmed, not validated again, for the response-id memory,
/// which needs nothing else of a body that may be long. Ids are plain
/// ASCII; one with escapes is decoded.
pub fn id_of(body: &[u8]) -> Option<String> {
    let raw = crate::gateway::skim::member(body, b"id")?;
    match raw {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
            std::str::from_utf8(inner).ok().map(str::to_owned)
        }
        _ => serde_json::from_slice(raw).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_passes_through_and_a_failed_one_is_a_failed_attempt() {
        let ok = Bytes::from_static(br#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":12,"output_tokens":5,"total_tokens":17}}"#);
        let (body, usage) = native(ok.clone()).unwrap();
        assert_eq!(body, ok);
        assert_eq!(usage.unwrap().total(), 17);
        let failed = Bytes::from_static(br#"{"id":"resp_2","status":"failed","error":{"code":"server_error","message":"boom"},"usage":null}"#);
        assert!(native(failed).unwrap_err().contains("boom"));
        assert!(native(Bytes::from_static(b"[1]")).is_err());
        let bad = Bytes::from_static(br#"{"status":"completed","usage":{"input_tokens":"many"}}"#);
        assert!(native(bad).is_err());
        assert_eq!(id_of(&ok).unwrap(), "resp_1");
        assert_eq!(id_of(br#"{"id":"a\u0062"}"#).unwrap(), "ab");
        assert_eq!(id_of(br#"{"id":7}"#), None);
    }
}
