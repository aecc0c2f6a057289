//! Completion answers, whole and streamed.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;

use super::{DONE_FRAME, FINGERPRINT, WORDS, to_vec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Chat or legacy text completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Text,
}

impl Kind {
    pub(crate) fn id_prefix(self) -> &'static str {
        match self {
            Kind::Chat => "chatcmpl-",
            Kind::Text => "cmpl-",
        }
    }
}

/// Everything one completion answer is made from.
#[derive(Debug, Clone)]
pub(crate) struct Reply<'a> {
    pub(crate) kind: Kind,
    pub(crate) id: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) usage: Usage,
    /// "stop", or "length" when max_tokens cut the answer short.
    pub(crate) finish_reason: &'static str,
    /// Azure's content-filter annotations: on the answer, and in a stream a
    /// first chunk with `choices: []` and the prompt's filter results, the
    /// results on every chunk, and a chunk with nothing else after the end.
    pub(crate) azure: bool,
    /// Tool calls the answer makes instead of text: name and arguments.
    pub(crate) calls: &'a [(String, String)],
}

/// What Azure's content filter says of a harmless text.
const FILTER_RESULTS: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;

/// `choice` (a JSON object) with Azure's filter results in it.
fn filtered(choice: &mut String) {
    if choice.ends_with('}') {
        choice.pop();
        choice.push_str(r#","content_filter_results":"#);
        choice.push_str(FILTER_RESULTS);
        choice.push('}');
    }
}

/// The id of the answer's i-th tool call.
fn call_id(reply: &Reply<'_>, i: usize) -> String {
    let tail = &reply.id[reply.id.len().saturating_sub(8)..];
    format!("call_{tail}{i:02}")
}

/// The i-th token of the completion text.
pub(crate) fn word(i: u64) -> &'static str {
    WORDS[(i % WORDS.len() as u64) as usize]
}

pub(crate) fn completion_text(tokens: u64) -> String {
    let mut text = String::with_capacity(tokens as usize * 7);
    for i in 0..tokens {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(word(i));
    }
    text
}

pub(crate) fn completion_json(reply: &Reply<'_>) -> Vec<u8> {
    let text = completion_text(reply.usage.completion_tokens);
    let json = match reply.kind {
        Kind::Chat => chat_completion_json(reply, &text),
        Kind::Text => text_completion_json(reply, &text),
    };
    if !reply.azure {
        return json;
    }
    // Azure's annotations, spliced in as Azure puts them.
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    let results: serde_json::Value = serde_json::from_str(FILTER_RESULTS).unwrap_or_default();
    v["prompt_filter_results"] =
        serde_json::json!([{"prompt_index": 0, "content_filter_results": results}]);
    if let Some(choice) = v["choices"].get_mut(0) {
        choice["content_filter_results"] = results;
    }
    serde_json::to_vec(&v).unwrap_or(json)
}

pub(crate) fn chat_completion_json(reply: &Reply<'_>, text: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: [Choice<'a>; 1],
        usage: Usage,
        system_fingerprint: &'static str,
    }
    #[derive(Serialize)]
    struct Choice<'a> {
        index: u32,
        message: AssistantMessage<'a>,
        logprobs: (),
        finish_reason: &'static str,
    }
    #[derive(Serialize)]
    struct AssistantMessage<'a> {
        role: &'static str,
        content: Option<&'a str>,
        refusal: (),
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<Call<'a>>,
    }
    #[derive(Serialize)]
    struct Call<'a> {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        function: Function<'a>,
    }
    #[derive(Serialize)]
    struct Function<'a> {
        name: &'a str,
        arguments: &'a str,
    }
    to_vec(&Completion {
        id: reply.id,
        object: "chat.completion",
        created: reply.created,
        model: reply.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: reply.calls.is_empty().then_some(text),
                refusal: (),
                tool_calls: reply
                    .calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| Call {
                        id: call_id(reply, i),
                        kind: "function",
                        function: Function { name, arguments },
                    })
                    .collect(),
            },
            logprobs: (),
            finish_reason: reply.finish_reason,
        }],
        usage: reply.usage,
        system_fingerprint: FINGERPRINT,
    })
}

pub(crate) fn text_completion_json(reply: &Reply<'_>, text: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: [Choice<'a>; 1],
        usage: Usage,
    }
    #[derive(Serialize)]
    struct Choice<'a> {
        text: &'a str,
        index: u32,
        logprobs: (),
        finish_reason: &'static str,
    }
    to_vec(&Completion {
        id: reply.id,
        object: "text_completion",
        created: reply.created,
        model: reply.model,
        choices: [Choice {
            text,
            index: 0,
            logprobs: (),
            finish_reason: reply.finish_reason,
        }],
        usage: reply.usage,
    })
}

/// Where a streamed answer carries its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamUsage {
    /// Not asked for.
    None,
    /// In a last chunk of its own, with `"choices":[]` (OpenAI).
    OwnChunk,
    /// In the finish chunk (some OpenAI-compatible servers).
    InFinishChunk,
}

/// A stream's SSE frames, each `data: ...\n\n`.
#[derive(Debug)]
pub(crate) struct SseFrames {
    /// The completion chunks, then (when asked) the usage chunk, then `[DONE]`.
    pub(crate) frames: Vec<Bytes>,
    /// How many leading frames are completion chunks (role, tokens, finish).
    pub(crate) chunks: usize,
}

impl SseFrames {
    /// Only the first `n` completion chunks: no usage chunk, no `[DONE]`.
    pub(crate) fn cut_after(mut self, n: u32) -> Vec<Bytes> {
        let keep = self.chunks.min(usize::try_from(n).unwrap_or(usize::MAX));
        self.frames.truncate(keep);
        self.frames
    }
}

/// Chunks share everything but their choices and usage, so the common part
/// is serialized once and each chunk only splices in its own.
pub(crate) struct ChunkTemplate {
    /// `data: {"id":...,"choices":[`
    head: String,
    /// `,"usage":null` when the client asked for usage (OpenAI then sends a
    /// null usage on every chunk but the last), else nothing.
    null_usage: &'static str,
}

impl ChunkTemplate {
    fn new(reply: &Reply<'_>, include_usage: bool) -> Self {
        let object = match reply.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        let model = serde_json::to_string(reply.model).unwrap_or_else(|_| "\"\"".to_string());
        let mut head = String::with_capacity(160 + model.len());
        let _ = write!(
            head,
            r#"data: {{"id":"{}","object":"{object}","created":{},"model":{model},"#,
            reply.id, reply.created
        );
        if reply.kind == Kind::Chat {
            let _ = write!(head, r#""system_fingerprint":"{FINGERPRINT}","#);
        }
        head.push_str(r#""choices":["#);
        ChunkTemplate {
            head,
            null_usage: if include_usage {
                r#","usage":null"#
            } else {
                ""
            },
        }
    }

    fn frame(&self, choice: &str, usage: &str) -> Bytes {
        let mut frame = String::with_capacity(self.head.len() + choice.len() + usage.len() + 4);
        frame.push_str(&self.head);
        frame.push_str(choice);
        frame.push(']');
        frame.push_str(usage);
        frame.push_str("}\n\n");
        Bytes::from(frame)
    }

    fn chunk(&self, choice: &str) -> Bytes {
        self.frame(choice, self.null_usage)
    }

    fn usage_member(&self, usage: Usage) -> String {
        let usage = String::from_utf8(to_vec(&usage)).unwrap_or_default();
        format!(r#","usage":{usage}"#)
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        self.frame("", &self.usage_member(usage))
    }
}

/// The SSE frames of a streamed answer, as OpenAI sends them: for chat a
/// role chunk first, then one chunk per token, a finish chunk, the usage
/// chunk (`"choices":[]`) only when usage was asked for, and `[DONE]`. With
/// [`StreamUsage::InFinishChunk`] the usage is in the finish chunk instead.
pub(crate) fn stream_frames(reply: &Reply<'_>, usage: StreamUsage) -> SseFrames {
    let template = ChunkTemplate::new(reply, usage != StreamUsage::None);
    let tokens = reply.usage.completion_tokens;
    let mut frames = Vec::with_capacity(tokens as usize + 6);
    let mut choice = String::with_capacity(96);
    if reply.azure {
        frames.push(Bytes::from(format!(
            r#"data: {{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{FILTER_RESULTS}}}]}}"#
        ) + "\n\n"));
    }
    if reply.kind == Kind::Chat {
        frames.push(template.chunk(
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        ));
    }
    for (i, (name, arguments)) in reply.calls.iter().enumerate() {
        // A call's first delta names it; its arguments follow in pieces.
        let start = serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": i, "id": call_id(reply, i), "type": "function", "function": {"name": name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null});
        frames.push(template.chunk(&start.to_string()));
        let chars: Vec<char> = arguments.chars().collect();
        for piece in chars.chunks(chars.len().div_ceil(2).max(1)) {
            let piece: String = piece.iter().collect();
            let delta = serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, "logprobs": null, "finish_reason": null});
            frames.push(template.chunk(&delta.to_string()));
        }
    }
    let tokens = if reply.calls.is_empty() { tokens } else { 0 };
    for i in 0..tokens {
        choice.clear();
        let space = if i > 0 { " " } else { "" };
        let w = word(i);
        let _ = match reply.kind {
            Kind::Chat => write!(
                choice,
                r#"{{"index":0,"delta":{{"content":"{space}{w}"}},"logprobs":null,"finish_reason":null}}"#
            ),
            Kind::Text => write!(
                choice,
                r#"{{"text":"{space}{w}","index":0,"logprobs":null,"finish_reason":null}}"#
            ),
        };
        if reply.azure {
            filtered(&mut choice);
        }
        frames.push(template.chunk(&choice));
    }
    choice.clear();
    let finish = reply.finish_reason;
    let _ = match reply.kind {
        Kind::Chat => write!(
            choice,
            r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}"#
        ),
        Kind::Text => write!(
            choice,
            r#"{{"text":"","index":0,"logprobs":null,"finish_reason":"{finish}"}}"#
        ),
    };
    frames.push(match usage {
        StreamUsage::InFinishChunk => template.frame(&choice, &template.usage_member(reply.usage)),
        _ => template.chunk(&choice),
    });
    if reply.azure && reply.kind == Kind::Chat {
        // The filter's verdict on the last stretch, in a chunk of its own.
        let mut last = String::from(r#"{"index":0,"delta":{},"finish_reason":null}"#);
        filtered(&mut last);
        frames.push(template.chunk(&last));
    }
    let chunks = frames.len();
    if usage == StreamUsage::OwnChunk {
        frames.push(template.usage_chunk(reply.usage));
    }
    frames.push(Bytes::from_static(DONE_FRAME));
    SseFrames { frames, chunks }
}

/// A 200 body that claims to be JSON and is not: what a misconfigured proxy
/// in front of a provider sends.
pub(crate) const GARBAGE_BODY: &[u8] =
    b"<html><head><title>502 Bad Gateway</title></head><body>upstream sent garbage</body></html>\n";

/// SSE frames whose data is not JSON, and no `[DONE]`.
pub(crate) fn garbage_frames(count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(format!("data: {{not json #{i}\n\n")))
        .collect()
}
