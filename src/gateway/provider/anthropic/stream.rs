//! An Anthropic Messages stream as OpenAI `chat.completion.chunk`s, event
//! by event as it arrives, never buffered beyond one incomplete event:
//!
//! - `message_start` → the role chunk (and the input token counts);
//! - text deltas → content deltas; a `tool_use` block → a tool-call delta
//!   with its own `index` (0, 1, … per call, not the block index), the `id`,
//!   `type` and `name`, then its `input_json_delta`s as argument fragments,
//!   which concatenate to the call's JSON;
//! - `ping`, thinking and signature deltas are dropped;
//! - `message_delta` usage is cumulative: the last value counts;
//! - `message_stop` → one chunk with `finish_reason`, the usage chunk when
//!   the client asked for it, `data: [DONE]`; a clean end after the
//!   `message_delta` with the stop reason does the same;
//! - an event that is not JSON, after the first: left out and counted;
//! - an `error` event → an OpenAI-style error event (the proxy fails over
//!   when nothing has reached the client yet); `overloaded_error` cools the
//!   deployment down like a 429 ([`Translator::rate_limited`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use super::answer::AnthropicUsage;
use crate::gateway::provider::AnswerContext;
use crate::gateway::provider::chunk::{ChunkWriter, Finish, Tokens, error_event};
use crate::gateway::sse::Usage;

/// The most one event may hold before the stream is taken as broken.
const MAX_EVENT: usize = 16 << 20;

/// One event, flat: serde's tagged enums buffer all they read first, which
/// would cost an allocation per field on the hottest path of a translated
/// stream.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: usize,
    #[serde(default, borrow)]
    message: Option<Start<'a>>,
    #[serde(default, borrow)]
    content_block: Option<Part<'a>>,
    #[serde(default, borrow)]
    delta: Option<Part<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default, borrow)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Start<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// A block start, a block delta or a message delta: whichever fields it has.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// What a content block is, by the index Anthropic gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Text,
    /// A tool call, with its OpenAI `index`.
    Call(usize),
    Ignored,
}

#[derive(Debug)]
pub struct Translator {
    pending: Vec<u8>,
    model: String,
    created: u64,
    wants_usage: bool,
    writer: Option<ChunkWriter>,
    blocks: Vec<Block>,
    calls: usize,
    tokens: Tokens,
    finish: Option<Finish>,
    events: u64,
    frames: u64,
    done: bool,
    error: Option<String>,
    /// The error was `overloaded_error` (or a rate limit): the deployment
    /// cools down rather than counts a failure.
    rate_limited: bool,
    invalid: bool,
    skipped: u64,
    last_skipped: Option<String>,
    /// The upstream has ended: what is left is its last event.
    at_end: bool,
}

impl Translator {
    pub fn new(cx: &AnswerContext) -> Translator {
        Translator {
            pending: Vec::new(),
            model: cx.model.to_string(),
            created: cx.created,
            wants_usage: cx.wants_usage,
            writer: None,
            blocks: Vec::new(),
            calls: 0,
            tokens: Tokens::default(),
            finish: None,
            events: 0,
            frames: 0,
            done: false,
            error: None,
            rate_limited: false,
            invalid: false,
            skipped: 0,
            last_skipped: None,
            at_end: false,
        }
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

    pub fn invalid(&self) -> bool {
        self.invalid
    }

    /// The stream ended with `overloaded_error`: a rate limit, not a failure.
    pub fn rate_limited(&self) -> bool {
        self.rate_limited
    }

    /// Takes the next bytes of the upstream's stream; returns the OpenAI
    /// frames they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        let mut out = Vec::new();
        // Most chunks hold whole events: translate them in place.
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut at = 0;
        while let Some(len) = crate::gateway::sse::frame_end(&data[at..]) {
            self.event(&data[at..at + len], &mut out);
            at += len;
        }
        self.pending.extend_from_slice(&data[at..]);
        if self.pending.len() > MAX_EVENT && !self.done {
            self.fail(
                "the upstream sent an event larger than 16 MiB".into(),
                "stream_event_too_large",
                &mut out,
            );
            self.pending.clear();
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The clean end of the stream: a last event without its blank line
    /// counts. A stream that ends after its `message_delta` gave the stop
    /// reason, without `message_stop`, has its whole answer: it finishes as
    /// if `message_stop` had come (finish chunk, usage, `[DONE]`).
    pub fn finish(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.at_end = true;
            self.event(&rest, &mut out);
        }
        if !self.done && self.error.is_none() && self.finish.is_some() && self.writer.is_some() {
            self.close(&mut out);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The upstream broke off: a half-received event is dropped, and the
    /// stream is never closed as finished.
    pub fn abandon(&mut self) -> Option<Bytes> {
        self.pending.clear();
        None
    }

    /// Events skipped because they were not JSON (after the first).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// What the last skipped event looked like, for the log.
    pub fn last_skipped(&self) -> Option<&str> {
        self.last_skipped.as_deref()
    }

    fn event(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let Some(data) = data_of(frame) else {
            return; // a comment or an `event:` line alone
        };
        if self.done || self.error.is_some() {
            return; // the stream has ended, cleanly or not
        }
        self.events += 1;
        let event: Event = match serde_json::from_slice(&data) {
            Ok(e) => e,
            Err(_) if self.events == 1 => {
                self.invalid = true;
                self.fail(
                    "the upstream streamed an event that is not JSON".into(),
                    "stream_invalid",
                    out,
                );
                return;
            }
            // One bad event in a good stream: left out (and counted), the
            // rest of the answer still goes to the client. At the end it is
            // the cut-off half of an event, not one to count.
            Err(_) => {
                if !self.at_end {
                    self.skipped += 1;
                    self.last_skipped = Some(crate::gateway::sse::preview(&data));
                }
                return;
            }
        };
        let kind = &*event.kind;
        if self.writer.is_none() && !matches!(kind, "message_start" | "error" | "ping") {
            // Everything else belongs to a message that has started.
            self.invalid = self.events == 1;
            self.fail(
                "the upstream's stream did not start with message_start".into(),
                "stream_invalid",
                out,
            );
            return;
        }
        match kind {
            "message_start" if self.writer.is_some() => {
                // One message per stream: a second start would change the id mid-stream.
                self.fail(
                    "the upstream started a second message in one stream".into(),
                    "stream_invalid",
                    out,
                );
            }
            "message_start" => {
                let Some(message) = event.message else {
                    self.invalid = self.events == 1;
                    self.fail(
                        "the upstream's message_start has no message".into(),
                        "stream_invalid",
                        out,
                    );
                    return;
                };
                message.usage.apply(&mut self.tokens);
                let writer = ChunkWriter::new(&message.id, self.created, &self.model);
                writer.role(out);
                self.writer = Some(writer);
            }
            "content_block_start" => {
                let index = event.index;
                let part = event.content_block;
                let block = match part.as_ref().and_then(|p| p.kind.as_deref()) {
                    Some("text") => {
                        let text = part
                            .as_ref()
                            .and_then(|p| p.text.as_deref())
                            .unwrap_or_default();
                        if !text.is_empty() {
                            self.frames += 1;
                            self.writer().text(out, text);
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let p = part.as_ref().expect("has a kind");
                        let call = self.calls;
                        self.calls += 1;
                        self.frames += 1;
                        self.writer().call_start(
                            out,
                            call,
                            p.id.as_deref().unwrap_or_default(),
                            p.name.as_deref().unwrap_or_default(),
                        );
                        Block::Call(call)
                    }
                    _ => Block::Ignored,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Ignored);
                }
                self.blocks[index] = block;
            }
            "content_block_delta" => {
                let block = self
                    .blocks
                    .get(event.index)
                    .copied()
                    .unwrap_or(Block::Ignored);
                let Some(delta) = event.delta else { return };
                match (block, delta.kind.as_deref()) {
                    (Block::Text, Some("text_delta")) => {
                        if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                            self.frames += 1;
                            self.writer().text(out, text);
                        }
                    }
                    (Block::Call(call), Some("input_json_delta")) => {
                        if let Some(json) = delta.partial_json.as_deref().filter(|t| !t.is_empty())
                        {
                            self.frames += 1;
                            self.writer().call_arguments(out, call, json);
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    usage.apply(&mut self.tokens);
                }
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.finish = Some(super::finish(Some(&reason)));
                }
            }
            "message_stop" => self.close(out),
            "error" => {
                let error = event.error;
                let kind = error
                    .as_ref()
                    .and_then(|e| e.kind.as_deref())
                    .unwrap_or("error");
                let message = error
                    .as_ref()
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or(kind);
                self.rate_limited = super::is_rate_limit(kind);
                self.fail(format!("{kind}: {message}"), kind, out);
            }
            // content_block_stop, ping, and event types newer than this code.
            _ => {}
        }
    }

    /// The finish chunk, the usage chunk when asked for, and `[DONE]`.
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

    /// An OpenAI-style error event; the stream ends with it.
    fn fail(&mut self, message: String, code: &str, out: &mut Vec<u8>) {
        error_event(out, &message, code);
        self.error = Some(message);
    }
}

/// The event's data: its `data:` lines joined by newlines. Lines found
/// with `memchr` (a byte-at-a-time split was most of a pass-through
/// stream's reading).
pub(crate) fn data_of(frame: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut start = 0;
    let mut lines = std::iter::from_fn(|| {
        while start < frame.len() {
            let end = memchr::memchr(b'\n', &frame[start..]).map_or(frame.len(), |i| start + i);
            let line = &frame[start..end];
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(rest) = line.strip_prefix(b"data:") {
                return Some(rest.strip_prefix(b" ").unwrap_or(rest));
            }
        }
        None
    });
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for line in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}

#[cfg(test)]
mod tests;
