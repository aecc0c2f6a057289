//! Writing OpenAI's shapes for translated answers: the `chat.completion`
//! object and the `chat.completion.chunk` frames of a stream, so every
//! translating provider produces exactly the same JSON.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::gateway::sse::Usage;

/// Token counts in OpenAI's terms. `prompt_tokens` includes cached input
/// (written to or read from the provider's cache); reads are also given as
/// `prompt_tokens_details.cached_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub cache_write: u64,
    pub cache_read: u64,
    pub output: u64,
}

impl Tokens {
    pub fn prompt(&self) -> u64 {
        self.input + self.cache_write + self.cache_read
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt(),
            completion_tokens: self.output,
            total_tokens: self.prompt() + self.output,
        }
    }

    fn json(&self) -> UsageJson {
        UsageJson {
            prompt_tokens: self.prompt(),
            completion_tokens: self.output,
            total_tokens: self.prompt() + self.output,
            prompt_tokens_details: Details {
                cached_tokens: self.cache_read,
            },
        }
    }
}

#[derive(Serialize)]
struct UsageJson {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: Details,
}

#[derive(Serialize)]
struct Details {
    cached_tokens: u64,
}

/// OpenAI's `finish_reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

/// One tool call of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// A whole answer, as translated from the provider's.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub id: std::borrow::Cow<'a, str>,
    pub created: u64,
    /// The model the client asked for.
    pub model: &'a str,
    /// Borrowed from the answer when it was one block of text.
    pub text: Option<std::borrow::Cow<'a, str>>,
    pub calls: Vec<Call>,
    pub finish: Finish,
    pub tokens: Tokens,
}

#[derive(Serialize)]
struct CompletionJson<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceJson<'a>; 1],
    usage: UsageJson,
}

#[derive(Serialize)]
struct ChoiceJson<'a> {
    index: u32,
    message: MessageJson<'a>,
    logprobs: Option<()>,
    finish_reason: Finish,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<CallJson<'a>>,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct CallJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl Completion<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let body = CompletionJson {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices: [ChoiceJson {
                index: 0,
                message: MessageJson {
                    role: "assistant",
                    content: self.text.as_deref(),
                    tool_calls: self
                        .calls
                        .iter()
                        .map(|c| CallJson {
                            id: &c.id,
                            kind: "function",
                            function: FunctionJson {
                                name: &c.name,
                                arguments: &c.arguments,
                            },
                        })
                        .collect(),
                    refusal: None,
                },
                logprobs: None,
                finish_reason: self.finish,
            }],
            usage: self.tokens.json(),
        };
        // Our own types: serialising them cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Writes the frames of one stream; every chunk has the same `id`,
/// `created` and `model`.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`
    head: Vec<u8>,
}

const CHOICE_OPEN: &[u8] = br#"[{"index":0,"delta":"#;
const CHOICE_CLOSE: &[u8] = b",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

impl ChunkWriter {
    pub fn new(id: &str, created: u64, model: &str) -> ChunkWriter {
        let mut head = b"data: {\"id\":".to_vec();
        push_json(&mut head, id);
        head.extend_from_slice(br#","object":"chat.completion.chunk","created":"#);
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(br#","model":"#);
        push_json(&mut head, model);
        head.extend_from_slice(br#","choices":"#);
        ChunkWriter { head }
    }

    fn delta(&self, out: &mut Vec<u8>, delta: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(CHOICE_OPEN);
        delta(out);
        out.extend_from_slice(CHOICE_CLOSE);
    }

    /// The first chunk: the role, and an empty content as OpenAI sends it.
    pub fn role(&self, out: &mut Vec<u8>) {
        self.delta(out, |o| {
            o.extend_from_slice(br#"{"role":"assistant","content":""}"#)
        });
    }

    pub fn text(&self, out: &mut Vec<u8>, text: &str) {
        self.delta(out, |o| {
            o.extend_from_slice(br#"{"content":"#);
            push_json(o, text);
            o.push(b'}');
        });
    }

    /// The first delta of a tool call: its index, id, type and name.
    pub fn call_start(&self, out: &mut Vec<u8>, index: usize, id: &str, name: &str) {
        self.delta(out, |o| {
            o.extend_from_slice(br#"{"tool_calls":[{"index":"#);
            o.extend_from_slice(index.to_string().as_bytes());
            o.extend_from_slice(br#","id":"#);
            push_json(o, id);
            o.extend_from_slice(br#","type":"function","function":{"name":"#);
            push_json(o, name);
            o.extend_from_slice(br#","arguments":""}}]}"#);
        });
    }

    /// A fragment of a tool call's arguments.
    pub fn call_arguments(&self, out: &mut Vec<u8>, index: usize, fragment: &str) {
        self.delta(out, |o| {
            o.extend_from_slice(br#"{"tool_calls":[{"index":"#);
            o.extend_from_slice(index.to_string().as_bytes());
            o.extend_from_slice(br#","function":{"arguments":"#);
            push_json(o, fragment);
            o.extend_from_slice(b"}}]}");
        });
    }

    /// The one chunk with a `finish_reason`.
    pub fn finish(&self, out: &mut Vec<u8>, finish: Finish) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(CHOICE_OPEN);
        out.extend_from_slice(br#"{},"logprobs":null,"finish_reason":"#);
        out.extend_from_slice(match finish {
            Finish::Stop => br#""stop""#.as_slice(),
            Finish::Length => br#""length""#,
            Finish::ToolCalls => br#""tool_calls""#,
            Finish::ContentFilter => br#""content_filter""#,
        });
        out.extend_from_slice(b"}]}\n\n");
    }

    /// The usage chunk (`choices: []`), for a client that asked for it.
    pub fn usage(&self, out: &mut Vec<u8>, tokens: &Tokens) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"[],\"usage\":");
        // Our own type: serialising it cannot fail.
        let _ = serde_json::to_writer(&mut *out, &tokens.json());
        out.extend_from_slice(b"}\n\n");
    }

    pub fn done(out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// A translated stream's end: the finish chunk (stop when the upstream
    /// named no reason), the usage chunk when the client asked for it
    /// (`tokens`), and `[DONE]`.
    pub fn close(&self, out: &mut Vec<u8>, finish: Option<Finish>, tokens: Option<&Tokens>) {
        self.finish(out, finish.unwrap_or(Finish::Stop));
        if let Some(tokens) = tokens {
            self.usage(out, tokens);
        }
        Self::done(out);
    }
}

/// Appends a text block to an answer's text (a single block stays
/// borrowed).
pub fn push_text<'a>(
    text: &mut Option<std::borrow::Cow<'a, str>>,
    block: std::borrow::Cow<'a, str>,
) {
    match text {
        None => *text = Some(block),
        Some(t) => t.to_mut().push_str(&block),
    }
}

/// `s` as a JSON string literal.
/// An OpenAI-style error event, as a translated stream ends with one.
pub fn error_event(out: &mut Vec<u8>, message: &str, code: &str) {
    out.extend_from_slice(b"data: {\"error\":{\"message\":");
    push_json(out, message);
    out.extend_from_slice(b",\"type\":\"upstream_error\",\"param\":null,\"code\":");
    push_json(out, code);
    out.extend_from_slice(b"}}\n\n");
}

pub fn push_json(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Parses JSON text into a raw value, for tool arguments carried as text.
pub fn raw_json(text: &str) -> Option<Box<RawValue>> {
    RawValue::from_string(text.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_have_openais_shape() {
        let w = ChunkWriter::new("msg_1", 7, "gpt-4o");
        let mut out = Vec::new();
        w.role(&mut out);
        w.text(&mut out, "hé \"x\"");
        w.call_start(&mut out, 0, "toolu_1", "get_weather");
        w.call_arguments(&mut out, 0, "{\"city\":");
        w.finish(&mut out, Finish::ToolCalls);
        w.usage(
            &mut out,
            &Tokens {
                input: 5,
                cache_write: 1,
                cache_read: 2,
                output: 3,
            },
        );
        ChunkWriter::done(&mut out);
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|f| *f != "[DONE]")
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(frames.len(), 6);
        for f in &frames {
            assert_eq!(
                (f["id"].as_str(), f["model"].as_str(), f["object"].as_str()),
                (Some("msg_1"), Some("gpt-4o"), Some("chat.completion.chunk"))
            );
        }
        assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(frames[1]["choices"][0]["delta"]["content"], "hé \"x\"");
        assert_eq!(
            frames[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(
            frames[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":"
        );
        assert_eq!(frames[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(frames[5]["choices"], serde_json::json!([]));
        assert_eq!(frames[5]["usage"]["prompt_tokens"], 8);
        assert_eq!(
            frames[5]["usage"]["prompt_tokens_details"]["cached_tokens"],
            2
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
