//! The OpenAI side of a stream as read: a frame's data, the chunk in it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::ChatUsage;

/// One chunk, flat, strings borrowed from the frame: the hot path of a
/// translated stream allocates only for escaped tool-call pieces.
#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    #[serde(default, borrow, deserialize_with = "first_choice")]
    pub choices: Option<Choice<'a>>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct Choice<'a> {
    #[serde(default, borrow)]
    pub delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    /// vLLM's: the stop string (or token id) that ended the answer.
    #[serde(default, borrow)]
    pub stop_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct Delta<'a> {
    #[serde(default, borrow)]
    pub content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub refusal: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolDelta<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ToolDelta<'a> {
    #[serde(default)]
    pub index: Option<usize>,
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

/// The first choice only (the gateway never asks for `n` > 1), without a
/// vector per chunk.
fn first_choice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Choice<'de>>, D::Error> {
    pub(super) struct First;
    impl<'de> serde::de::Visitor<'de> for First {
        type Value = Option<Choice<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of choices")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_option(First)
}

/// An error frame's message: `{"error": {"message": ...}}` or a bare string.
pub(super) fn error_message(error: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: Option<String>,
    }
    let raw = error.get();
    serde_json::from_str::<String>(raw)
        .ok()
        .or_else(|| {
            serde_json::from_str::<Detail>(raw)
                .ok()
                .and_then(|d| d.message)
        })
        .unwrap_or_else(|| {
            format!(
                "the upstream sent an error: {}",
                crate::gateway::sse::preview(raw.as_bytes())
            )
        })
}

/// A frame's data: its `data:` lines joined by newlines (the same reading
/// as Anthropic's streams get).
pub(super) use crate::gateway::provider::anthropic::stream::data_of;
