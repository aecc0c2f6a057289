//! The members of a Responses request the translation reads, in one pass
//! over the body (see [`super::super::loose`]): every member of a type the
//! translation may refuse is read as what it turned out to be, and what
//! passes on unchanged (tool parameters, a JSON schema, numbers) as the
//! raw JSON text it was.

use serde::de::{IgnoredAny, MapAccess};
use serde_json::value::RawValue;

use super::super::loose::{FromMap, Key, Loose, Obj, Str};
use super::{Untranslatable, refuse};

/// `input` or `instructions`: text or items.
pub(super) type Items<'a> = Loose<'a, Obj<'a, Item<'a>>>;
/// A message's `content` or a tool output's `output`: text or parts.
pub(super) type Parts<'a> = Loose<'a, Obj<'a, Part<'a>>>;
/// `tools`, a namespace's `tools`, an `additional_tools` item's `tools`.
pub(super) type Tools<'a> = Loose<'a, Obj<'a, Tool<'a>>>;

/// Reads each listed key into its field (`Some`, even when `null`): the
/// last one when a key comes twice, as a `Value` map keeps it. Other keys
/// are skipped unread.
macro_rules! members {
    ($name:ident { $($key:literal => $field:ident),* $(,)? }) => {
        impl<'a> FromMap<'a> for $name<'a> {
            fn from_map<A: MapAccess<'a>>(mut map: A) -> Result<Self, A::Error> {
                let mut read = Self::default();
                while let Some(Key(key)) = map.next_key()? {
                    match &*key {
                        $($key => read.$field = Some(map.next_value()?),)*
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(read)
            }
        }
    };
}

#[derive(Debug, Default)]
pub(super) struct Request<'a> {
    pub model: Option<Str<'a>>,
    pub instructions: Option<Items<'a>>,
    pub input: Option<Items<'a>>,
    pub tools: Option<Tools<'a>>,
    pub tool_choice: Option<&'a RawValue>,
    pub parallel_tool_calls: Option<&'a RawValue>,
    pub max_output_tokens: Option<&'a RawValue>,
    pub temperature: Option<&'a RawValue>,
    pub top_p: Option<&'a RawValue>,
    pub user: Option<Str<'a>>,
    pub text: Option<Obj<'a, TextOptions<'a>>>,
    pub stream: Option<&'a RawValue>,
    pub background: Option<&'a RawValue>,
    pub previous_response_id: Option<Str<'a>>,
    pub conversation: Option<Str<'a>>,
    pub prompt: Option<Str<'a>>,
}

members!(Request {
    "model" => model,
    "instructions" => instructions,
    "input" => input,
    "tools" => tools,
    "tool_choice" => tool_choice,
    "parallel_tool_calls" => parallel_tool_calls,
    "max_output_tokens" => max_output_tokens,
    "temperature" => temperature,
    "top_p" => top_p,
    "user" => user,
    "text" => text,
    "stream" => stream,
    "background" => background,
    "previous_response_id" => previous_response_id,
    "conversation" => conversation,
    "prompt" => prompt,
});

/// An `input` item, whatever its type: the members any type reads.
#[derive(Debug, Default)]
pub(super) struct Item<'a> {
    pub kind: Option<Str<'a>>,
    pub role: Option<Str<'a>>,
    pub content: Option<Parts<'a>>,
    pub name: Option<Str<'a>>,
    pub call_id: Option<Str<'a>>,
    pub arguments: Option<&'a RawValue>,
    pub input: Option<Str<'a>>,
    pub output: Option<Parts<'a>>,
    pub tools: Option<Tools<'a>>,
}

members!(Item {
    "type" => kind,
    "role" => role,
    "content" => content,
    "name" => name,
    "call_id" => call_id,
    "arguments" => arguments,
    "input" => input,
    "output" => output,
    "tools" => tools,
});

/// A content part of a message or a tool output.
#[derive(Debug, Default)]
pub(super) struct Part<'a> {
    pub kind: Option<Str<'a>>,
    pub text: Option<Str<'a>>,
    pub refusal: Option<Str<'a>>,
    pub image_url: Option<Str<'a>>,
    pub detail: Option<Str<'a>>,
}

members!(Part {
    "type" => kind,
    "text" => text,
    "refusal" => refusal,
    "image_url" => image_url,
    "detail" => detail,
});

#[derive(Debug, Default)]
pub(super) struct Tool<'a> {
    pub kind: Option<Str<'a>>,
    pub name: Option<Str<'a>>,
    pub description: Option<Str<'a>>,
    pub parameters: Option<&'a RawValue>,
    pub strict: Option<&'a RawValue>,
    pub format: Option<Obj<'a, Grammar<'a>>>,
    pub tools: Option<Tools<'a>>,
}

members!(Tool {
    "type" => kind,
    "name" => name,
    "description" => description,
    "parameters" => parameters,
    "strict" => strict,
    "format" => format,
    "tools" => tools,
});

/// A custom tool's `format`.
#[derive(Debug, Default)]
pub(super) struct Grammar<'a> {
    pub kind: Option<Str<'a>>,
    pub syntax: Option<Str<'a>>,
    pub definition: Option<Str<'a>>,
}

members!(Grammar {
    "type" => kind,
    "syntax" => syntax,
    "definition" => definition,
});

/// `text`: only its `format` is read.
#[derive(Debug, Default)]
pub(super) struct TextOptions<'a> {
    pub format: Option<Obj<'a, Format<'a>>>,
}

members!(TextOptions { "format" => format });

/// `text.format`; a JSON schema's members pass on as they are.
#[derive(Debug, Default)]
pub(super) struct Format<'a> {
    pub kind: Option<Str<'a>>,
    pub name: Option<&'a RawValue>,
    pub description: Option<&'a RawValue>,
    pub schema: Option<&'a RawValue>,
    pub strict: Option<&'a RawValue>,
}

members!(Format {
    "type" => kind,
    "name" => name,
    "description" => description,
    "schema" => schema,
    "strict" => strict,
});

/// `tool_choice` when it is an object.
#[derive(Debug, Default)]
pub(super) struct Choice<'a> {
    pub kind: Option<Str<'a>>,
    pub name: Option<Str<'a>>,
}

members!(Choice {
    "type" => kind,
    "name" => name,
});

/// The request body read, or why not, in the words a `Value` parse gave
/// (which it is asked for again: the error path can afford it, and the
/// client sees the same message).
pub(super) fn request(body: &[u8]) -> Result<Request<'_>, Untranslatable> {
    // A `str` first: serde_json then checks no string's UTF-8 again.
    let read = std::str::from_utf8(body)
        .ok()
        .and_then(|s| serde_json::from_str::<Obj<Request>>(s).ok());
    match read {
        Some(Loose::Object(request)) => Ok(request),
        Some(_) => Err(refuse("the request body is not a JSON object")),
        None => Err(match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => refuse(format!("the request body is not valid JSON: {e}")),
            Ok(_) => refuse("the request body could not be read"),
        }),
    }
}
