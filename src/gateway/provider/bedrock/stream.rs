//! A ConverseStream answer as OpenAI `chat.completion.chunk`s. The answer
//! comes in AWS's binary event-stream framing (length-prefixed messages,
//! CRC-checked by `aws-smithy-eventstream`); each message is translated as
//! it completes, never buffered beyond one incomplete frame:
//!
//! - `messageStart` → the role chunk;
//! - `contentBlockStart` with a `toolUse` → a tool-call delta with its own
//!   `index` (0, 1, … per call), its id and name; `contentBlockDelta` text
//!   → content, `toolUse.input` → argument fragments; reasoning dropped;
//! - `messageStop` → the finish reason; `metadata` (which comes after it)
//!   → the usage, then the finish chunk, the usage chunk when asked for,
//!   and `data: [DONE]`;
//! - a frame whose payload is not JSON, after the first: left out and
//!   counted (a frame that fails its CRC ends the stream: nothing after it
//!   can be trusted);
//! - an exception message (`throttlingException`, `modelStreamErrorException`,
//!   …) → an OpenAI-style error event; before anything reached the client
//!   the proxy fails over instead ([`Translator::throttled`] says whether
//!   it was a rate limit).

use std::borrow::Cow;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::answer::BedrockUsage;
use crate::gateway::provider::AnswerContext;
use crate::gateway::provider::chunk::{ChunkWriter, Finish, Tokens, error_event};
use crate::gateway::sse::Usage;

/// The largest frame AWS sends is 16 MiB; anything claiming more is broken.
const MAX_FRAME: usize = 16 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(default)]
    content_block_index: usize,
    #[serde(default, borrow)]
    start: Option<Start<'a>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<BedrockUsage>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(default, borrow)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default, borrow)]
    input: Option<Cow<'a, str>>,
}

#[derive(Debug)]
pub struct Translator {
    buffer: BytesMut,
    frames_decoder: MessageFrameDecoder,
    id: String,
    model: String,
    created: u64,
    wants_usage: bool,
    writer: Option<ChunkWriter>,
    /// Per content block index: its tool call's OpenAI index.
    calls_of: Vec<Option<usize>>,
    calls: usize,
    tokens: Tokens,
    finish: Option<Finish>,
    messages: u64,
    frames: u64,
    done: bool,
    error: Option<String>,
    throttled: bool,
    invalid: bool,
    skipped: u64,
    last_skipped: Option<String>,
}

impl Translator {
    pub fn new(cx: &AnswerContext) -> Translator {
        Translator {
            buffer: BytesMut::new(),
            frames_decoder: MessageFrameDecoder::new(),
            id: super::answer::new_id(),
            model: cx.model.to_string(),
            created: cx.created,
            wants_usage: cx.wants_usage,
            writer: None,
            calls_of: Vec::new(),
            calls: 0,
            tokens: Tokens::default(),
            finish: None,
            messages: 0,
            frames: 0,
            done: false,
            error: None,
            throttled: false,
            invalid: false,
            skipped: 0,
            last_skipped: None,
        }
    }

    /// The id the gateway gave this answer (Converse gives none).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn usage(&self) -> Option<Usage> {
        self.writer.as_ref().map(|_| self.tokens.usage())
    }

    pub fn done(&self) -> bool {
        self.done
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The stream ended with a `throttlingException`: a rate limit.
    pub fn throttled(&self) -> bool {
        self.throttled
    }

    pub fn invalid(&self) -> bool {
        self.invalid
    }

    /// Events skipped because their payload was not JSON (after the first).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// What the last skipped event looked like, for the log.
    pub fn last_skipped(&self) -> Option<&str> {
        self.last_skipped.as_deref()
    }

    /// The upstream broke off: a half-received frame is dropped, and the
    /// stream is never closed as finished.
    pub fn abandon(&mut self) -> Option<Bytes> {
        self.buffer.clear();
        None
    }

    /// Takes the next bytes of the upstream's stream; returns the OpenAI
    /// frames they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        if self.done || self.error.is_some() {
            return None;
        }
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            match self.frames_decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    self.message(&message, &mut out);
                    if self.done || self.error.is_some() {
                        self.buffer.clear();
                        break;
                    }
                }
                Ok(DecodedFrame::Incomplete) => {
                    if self.buffer.len() > MAX_FRAME {
                        self.fail(
                            "the upstream sent a frame larger than 16 MiB".into(),
                            "stream_event_too_large",
                            &mut out,
                        );
                    }
                    break;
                }
                Err(e) => {
                    // A bad length or CRC: nothing after it can be trusted.
                    self.invalid = self.messages == 0;
                    self.fail(
                        format!("the upstream's event stream is corrupt ({e})"),
                        "stream_invalid",
                        &mut out,
                    );
                    self.buffer.clear();
                    break;
                }
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The end of the upstream's stream. Bedrock sends `metadata` after
    /// `messageStop`; a stream that stops between them still finishes.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.done || self.error.is_some() {
            return None;
        }
        let mut out = Vec::new();
        if self.finish.is_some() && self.writer.is_some() {
            self.close(&mut out);
        } else if !self.buffer.is_empty() {
            self.fail(
                "the upstream's event stream ended inside a frame".into(),
                "stream_invalid",
                &mut out,
            );
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn message(&mut self, message: &Message, out: &mut Vec<u8>) {
        self.messages += 1;
        // Borrowed: two headers are read per frame, on every streamed token.
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| match h.value() {
                    HeaderValue::String(s) => Some(s.as_str()),
                    _ => None,
                })
        };
        let kind = header(":message-type").unwrap_or_default();
        let payload = message.payload();
        if kind == "exception" || kind == "error" {
            let name = header(":exception-type")
                .or_else(|| header(":error-code"))
                .unwrap_or("exception");
            let text = serde_json::from_slice::<Event>(payload)
                .ok()
                .and_then(|e| e.message.map(Cow::into_owned))
                .or_else(|| header(":error-message").map(String::from))
                .unwrap_or_else(|| name.to_string());
            self.throttled = name == "throttlingException";
            self.fail(format!("{name}: {text}"), name, out);
            return;
        }
        let Some(event_type) = header(":event-type") else {
            self.invalid = self.messages == 1;
            self.fail(
                "the upstream sent an event without an :event-type".into(),
                "stream_invalid",
                out,
            );
            return;
        };
        let event: Event = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(_) if self.messages == 1 => {
                self.invalid = true;
                self.fail(
                    format!("the upstream's {event_type} event is not JSON"),
                    "stream_invalid",
                    out,
                );
                return;
            }
            // A good frame around a bad payload: the framing still holds,
            // so the event is left out (and counted) and the stream goes on.
            Err(_) => {
                self.skipped += 1;
                self.last_skipped = Some(format!(
                    "{event_type}: {}",
                    crate::gateway::sse::preview(payload)
                ));
                return;
            }
        };
        if self.writer.is_none() && event_type != "messageStart" {
            self.invalid = self.messages == 1;
            self.fail(
                "the upstream's stream did not start with messageStart".into(),
                "stream_invalid",
                out,
            );
            return;
        }
        match event_type {
            "messageStart" if self.writer.is_some() => self.fail(
                "the upstream started a second message in one stream".into(),
                "stream_invalid",
                out,
            ),
            "messageStart" => {
                let writer = ChunkWriter::new(&self.id, self.created, &self.model);
                writer.role(out);
                self.writer = Some(writer);
            }
            "contentBlockStart" => {
                if let Some(tool) = event.start.and_then(|s| s.tool_use) {
                    let call = self.calls;
                    self.calls += 1;
                    self.frames += 1;
                    let i = event.content_block_index;
                    if self.calls_of.len() <= i {
                        self.calls_of.resize(i + 1, None);
                    }
                    self.calls_of[i] = Some(call);
                    self.writer()
                        .call_start(out, call, &tool.tool_use_id, &tool.name);
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = event.delta else { return };
                let call = self
                    .calls_of
                    .get(event.content_block_index)
                    .copied()
                    .flatten();
                if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                    self.frames += 1;
                    self.writer().text(out, text);
                } else if let (Some(call), Some(input)) =
                    (call, delta.tool_use.and_then(|t| t.input))
                    && !input.is_empty()
                {
                    self.frames += 1;
                    self.writer().call_arguments(out, call, &input);
                }
            }
            "messageStop" => {
                self.finish = Some(super::finish(event.stop_reason.as_deref()));
            }
            "metadata" => {
                if let Some(usage) = event.usage {
                    self.tokens = usage.tokens();
                }
                if self.finish.is_some() {
                    self.close(out);
                }
            }
            // contentBlockStop, and event types newer than this code.
            _ => {}
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let tokens = self.wants_usage.then_some(&self.tokens);
        self.writer().close(out, self.finish, tokens);
        self.done = true;
    }

    fn writer(&self) -> &ChunkWriter {
        self.writer
            .as_ref()
            .expect("checked: the message has started")
    }

    fn fail(&mut self, message: String, code: &str, out: &mut Vec<u8>) {
        error_event(out, &message, code);
        self.error = Some(message);
    }
}

/// Writes one event-stream message as ConverseStream sends it: for the
/// mock upstream, tests and benchmarks.
pub fn frame(event_type: &str, payload: &[u8]) -> Bytes {
    frame_with(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An exception message (`throttlingException`, …).
pub fn exception_frame(exception_type: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message }).to_string();
    frame_with(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

fn frame_with(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    use aws_smithy_types::event_stream::Header;
    let headers = headers
        .iter()
        .map(|(n, v)| Header::new(n.to_string(), HeaderValue::String(v.to_string().into())))
        .collect();
    let message = Message::new_from_parts(headers, Bytes::copy_from_slice(payload));
    let mut out = Vec::new();
    // Our own headers and a payload under 16 MiB: writing cannot fail.
    let _ = aws_smithy_eventstream::frame::write_message_to(&message, &mut out);
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
