//! A Claude deployment's stream on the Messages door, passed through.
//!
//! Anthropic and Vertex stream Anthropic's server-sent events; Bedrock's
//! InvokeModelWithResponseStream wraps the same events in AWS's binary
//! event-stream framing (`{"bytes": base64}` chunks), which are written
//! back out as the events they carry, so a client sees the same bytes
//! whichever platform served it.
//!
//! Until the first `content_block_start`, the opening events
//! (`message_start`, `ping`) are held back: a deployment that fails before
//! its first content is replaced without the client seeing anything. After
//! it, events go out as they come; the stream ends with the upstream's own
//! `error` event, or with one of the gateway's (in Anthropic's shape) when
//! it breaks off.

use std::borrow::Cow;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::gateway::provider::anthropic::answer::AnthropicUsage;
use crate::gateway::provider::anthropic::stream::data_of;
use crate::gateway::provider::chunk::{Tokens, push_json};
use crate::gateway::sse::{Usage, event_name, frame_end, preview};

/// The most one event may hold before the stream is taken as broken.
const MAX_EVENT: usize = 16 << 20;

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    message: Option<Start>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default, borrow)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Start {
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// Bedrock's chunk payload.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    bytes: Cow<'a, str>,
}

#[derive(Debug)]
enum Framing {
    Sse,
    EventStream(Box<MessageFrameDecoder>),
}

#[derive(Debug)]
pub struct MessagesStream {
    framing: Framing,
    pending: BytesMut,
    /// Events held until the first content block.
    held: Vec<u8>,
    started: bool,
    tokens: Tokens,
    events: u64,
    frames: u64,
    done: bool,
    error: Option<String>,
    /// The error was an overload (529) or a rate limit (429).
    rate_limited: Option<u16>,
    invalid: bool,
    skipped: u64,
    last_skipped: Option<String>,
}

/// Anthropic's error event, as the gateway ends a broken stream with it.
pub fn error_event(kind: &str, message: &str) -> Bytes {
    let mut out = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":".to_vec();
    push_json(&mut out, kind);
    out.extend_from_slice(b",\"message\":");
    push_json(&mut out, message);
    out.extend_from_slice(b"}}\n\n");
    Bytes::from(out)
}

impl MessagesStream {
    /// Anthropic's and Vertex's server-sent events.
    pub fn sse() -> Self {
        Self::with(Framing::Sse)
    }

    /// Bedrock's InvokeModelWithResponseStream.
    pub fn bedrock() -> Self {
        Self::with(Framing::EventStream(Box::default()))
    }

    fn with(framing: Framing) -> Self {
        MessagesStream {
            framing,
            pending: BytesMut::new(),
            held: Vec::new(),
            started: false,
            tokens: Tokens::default(),
            events: 0,
            frames: 0,
            done: false,
            error: None,
            rate_limited: None,
            invalid: false,
            skipped: 0,
            last_skipped: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        (self.tokens != Tokens::default()).then(|| self.tokens.usage())
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
    pub fn rate_limited(&self) -> Option<u16> {
        self.rate_limited
    }
    pub fn invalid(&self) -> bool {
        self.invalid
    }
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
    pub fn last_skipped(&self) -> Option<&str> {
        self.last_skipped.as_deref()
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        if self.error.is_some() {
            return None;
        }
        let mut out = Vec::new();
        match &self.framing {
            Framing::Sse => {
                // The common case, a chunk of whole events: no copy to a buffer.
                if self.pending.is_empty() {
                    let rest = self.sse_frames(chunk, &mut out);
                    self.pending.extend_from_slice(rest);
                } else {
                    self.pending.extend_from_slice(chunk);
                    let pending = std::mem::take(&mut self.pending);
                    let rest = self.sse_frames(&pending, &mut out);
                    self.pending.extend_from_slice(rest);
                }
                if self.pending.len() > MAX_EVENT {
                    self.fail("the upstream sent an event larger than 16 MiB", &mut out);
                }
            }
            Framing::EventStream(_) => {
                self.pending.extend_from_slice(chunk);
                self.aws_frames(&mut out);
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The upstream ended: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        if matches!(self.framing, Framing::Sse) && self.error.is_none() {
            let last = std::mem::take(&mut self.pending);
            if !last.trim_ascii().is_empty() {
                let mut frame = last.to_vec();
                frame.extend_from_slice(b"\n\n");
                self.event(&frame, &mut out);
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// What is left when the upstream broke off: nothing whole.
    pub fn abandon(&mut self) -> Option<Bytes> {
        None
    }

    /// Handles the whole frames at the start of `data`; returns the rest.
    fn sse_frames<'d>(&mut self, mut data: &'d [u8], out: &mut Vec<u8>) -> &'d [u8] {
        while let Some(end) = frame_end(data) {
            let (frame, rest) = data.split_at(end);
            data = rest;
            self.event(frame, out);
            if self.error.is_some() {
                return &[];
            }
        }
        data
    }

    fn aws_frames(&mut self, out: &mut Vec<u8>) {
        loop {
            let Framing::EventStream(decoder) = &mut self.framing else {
                return;
            };
            match decoder.decode_frame(&mut self.pending) {
                Ok(DecodedFrame::Complete(message)) => {
                    self.aws_message(&message, out);
                    if self.error.is_some() {
                        return;
                    }
                }
                Ok(DecodedFrame::Incomplete) => {
                    if self.pending.len() > MAX_EVENT {
                        self.fail("the upstream sent a frame larger than 16 MiB", out);
                    }
                    return;
                }
                Err(e) => {
                    self.invalid = self.events == 0;
                    self.fail(
                        &format!("the upstream's event stream is corrupt ({e})"),
                        out,
                    );
                    return;
                }
            }
        }
    }

    fn aws_message(&mut self, message: &Message, out: &mut Vec<u8>) {
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
        let payload = message.payload();
        if matches!(header(":message-type"), Some("exception" | "error")) {
            let name = header(":exception-type")
                .or_else(|| header(":error-code"))
                .unwrap_or("exception");
            let text = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| name.to_string());
            let (kind, limited) = match name {
                "throttlingException" => ("rate_limit_error", Some(429)),
                "serviceUnavailableException" => ("overloaded_error", Some(529)),
                _ => ("api_error", None),
            };
            self.events += 1;
            self.rate_limited = limited;
            let message = format!("{name}: {text}");
            out.extend_from_slice(&error_event(kind, &message));
            self.error = Some(message);
            return;
        }
        let event = serde_json::from_slice::<Chunk>(payload)
            .ok()
            .and_then(|c| aws_smithy_types::base64::decode(c.bytes.as_ref()).ok());
        let Some(json) = event else {
            if self.events == 0 {
                self.invalid = true;
                self.fail("the upstream's first chunk is not a Bedrock chunk", out);
            } else {
                self.skip(payload);
            }
            return;
        };
        let kind = serde_json::from_slice::<Event>(&json)
            .ok()
            .map(|e| e.kind.into_owned());
        let mut frame = Vec::with_capacity(json.len() + 32);
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(kind.as_deref().unwrap_or("unknown").as_bytes());
        frame.extend_from_slice(b"\ndata: ");
        // Bedrock adds its invocation metrics to the last event: the client
        // gets Anthropic's event, as from the other platforms.
        if kind.as_deref() == Some("message_stop") {
            frame.extend_from_slice(br#"{"type":"message_stop"}"#);
        } else {
            frame.extend_from_slice(&json);
        }
        frame.extend_from_slice(b"\n\n");
        self.event(&frame, out);
    }

    /// One whole event: read, held, or sent on as it is.
    fn event(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let Some(data) = data_of(frame) else {
            // A comment or a bare `event:` line: nothing to read, passed on.
            self.send(frame, out);
            return;
        };
        // The hot events (a token each) carry nothing the gateway reads:
        // named by their `event:` line, they pass on a glance, unparsed.
        if self.events > 0
            && let Some(name) = event_name(frame)
            && matches!(
                name,
                b"content_block_delta" | b"content_block_start" | b"content_block_stop" | b"ping"
            )
            && data.first() == Some(&b'{')
            && data.last() == Some(&b'}')
        {
            self.events += 1;
            match name {
                b"content_block_delta" => self.frames += 1,
                b"content_block_start" if !self.started => {
                    self.started = true;
                    out.append(&mut self.held);
                }
                _ => {}
            }
            self.send(frame, out);
            return;
        }
        let event: Event = match serde_json::from_slice(&data) {
            Ok(e) => e,
            Err(_) if self.events == 0 => {
                self.invalid = true;
                self.fail("the upstream's first event is not JSON", out);
                return;
            }
            Err(_) => {
                self.skip(&data);
                self.send(frame, out);
                return;
            }
        };
        self.events += 1;
        match event.kind.as_ref() {
            "message_start" => {
                if let Some(m) = &event.message {
                    m.usage.apply(&mut self.tokens);
                }
            }
            "content_block_start" if !self.started => {
                self.started = true;
                out.append(&mut self.held);
            }
            "content_block_delta" => self.frames += 1,
            "message_delta" => {
                if let Some(u) = &event.usage {
                    u.apply(&mut self.tokens);
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let detail = event.error.as_ref();
                let kind = detail
                    .and_then(|e| e.kind.as_deref())
                    .unwrap_or("api_error");
                self.rate_limited = match kind {
                    "overloaded_error" => Some(529),
                    "rate_limit_error" => Some(429),
                    _ => None,
                };
                let message = detail
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or(kind)
                    .to_string();
                self.error = Some(format!("{kind}: {message}"));
            }
            _ => {}
        }
        self.send(frame, out);
    }

    /// Handed on as is: what the client gets is the upstream's own bytes.
    fn send(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        if self.started || self.error.is_some() {
            out.extend_from_slice(frame);
        } else {
            self.held.extend_from_slice(frame);
        }
    }

    fn skip(&mut self, payload: &[u8]) {
        self.skipped += 1;
        self.last_skipped = Some(preview(payload));
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&error_event("api_error", message));
        self.error = Some(message.to_string());
    }
}

#[cfg(test)]
mod tests;
