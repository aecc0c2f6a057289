//! A chat answer and a chat stream's chunks, as much of them as the bridge
//! reads: strings borrowed where they have no escapes, and a member of an
//! unexpected type read as absent, as when they were read into `Value`s (a
//! server's odd `null` or number must not cost the whole chunk).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::output::Counts;

/// A chat chunk, as much of it as the translation reads; strings borrowed
/// where they have no escapes.
#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    #[serde(default, borrow)]
    pub(super) choices: Option<Vec<Choice<'a>>>,
    #[serde(default, borrow)]
    pub(super) usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct Choice<'a> {
    #[serde(default, borrow)]
    pub(super) delta: Option<Delta<'a>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<CallDelta<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct CallDelta<'a> {
    #[serde(default, deserialize_with = "count")]
    pub(super) index: Option<u64>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize, Default)]
pub(super) struct FunctionDelta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) arguments: Option<Cow<'a, str>>,
}

/// A string member; any other value is read as absent.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    let raw: Option<&'de RawValue> = Deserialize::deserialize(d)?;
    Ok(raw.and_then(|raw| {
        let raw = raw.get();
        serde_json::from_str::<&str>(raw)
            .map(Cow::Borrowed)
            .or_else(|_| serde_json::from_str::<String>(raw).map(Cow::Owned))
            .ok()
    }))
}

/// A whole non-negative number; anything else read as absent.
pub(super) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let raw: Option<&'de RawValue> = Deserialize::deserialize(d)?;
    Ok(raw.and_then(|raw| serde_json::from_str(raw.get()).ok()))
}

/// A `chat.completion`, as much of it as the translation reads; strings
/// borrowed where they have no escapes, a member of an unexpected type read
/// as absent (as when the answer was read into a `Value`).
#[derive(Deserialize)]
pub(super) struct Answer<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "count")]
    pub(super) created: Option<u64>,
    #[serde(default, borrow)]
    pub(super) choices: Option<Vec<AnswerChoice<'a>>>,
    #[serde(default, borrow)]
    pub(super) usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct AnswerChoice<'a> {
    #[serde(default, borrow)]
    pub(super) message: Option<Message<'a>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct Message<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCall<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) function: Option<FunctionDelta<'a>>,
}

/// A chat `usage` object, as much of it as the bridge reads.
#[derive(Deserialize)]
struct Usage<'a> {
    #[serde(default, deserialize_with = "count")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    completion_tokens: Option<u64>,
    #[serde(default, borrow)]
    prompt_tokens_details: Option<&'a RawValue>,
    #[serde(default, borrow)]
    completion_tokens_details: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default, deserialize_with = "count")]
    cached_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    reasoning_tokens: Option<u64>,
}

/// The counts of a chat `usage` (missing ones 0), when it is an object.
/// Read typed; what serde will not read so (a member given twice) is read
/// through a `Value`, as it always was, so the answer is the same.
pub(super) fn counts(usage: &RawValue) -> Option<Counts> {
    let text = usage.get();
    if !text.starts_with('{') {
        return None;
    }
    let typed = || -> Option<Counts> {
        let u: Usage = serde_json::from_str(text).ok()?;
        let details = |raw: Option<&RawValue>| -> Option<Details> {
            match raw {
                Some(d) if d.get().starts_with('{') => serde_json::from_str(d.get()).ok(),
                _ => Some(Details::default()),
            }
        };
        let prompt = details(u.prompt_tokens_details)?;
        let completion = details(u.completion_tokens_details)?;
        let input = u.prompt_tokens.unwrap_or(0);
        Some(Counts {
            input,
            output: u.completion_tokens.unwrap_or(0),
            cached: prompt.cached_tokens.unwrap_or(0).min(input),
            reasoning: completion.reasoning_tokens.unwrap_or(0),
        })
    };
    typed().or_else(|| super::counts(&serde_json::from_str(text).ok()?))
}
