//! The Anthropic side of a stream as written: `event: <type>\ndata: <json>\n\n`
//! into one buffer, handed out whole events at a time. Written by hand,
//! byte strings and escaped values, since a serde tree per delta would be
//! most of a translated stream's cost.

use bytes::{BufMut, Bytes, BytesMut};

use super::super::ChatUsage;

#[derive(Debug, Default)]
pub(super) struct Events {
    out: BytesMut,
    /// A text delta's event up to its text: the same for the whole block.
    text_prefix: Vec<u8>,
}

impl Events {
    /// The events written since the last take, if any; the buffer's memory
    /// is reused once the caller has sent (dropped) them.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// `id` and `model` already JSON strings. OpenAI reports usage only at
    /// the end: known here only from servers that report it on every chunk.
    pub fn message_start(&mut self, id: &str, model: &str, usage: Option<&ChatUsage>) {
        self.event("message_start");
        self.push(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        self.push(id.as_bytes());
        self.push(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        self.push(model.as_bytes());
        self.push(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        self.usage(usage, false);
        self.push(b"}}\n\n");
    }

    pub fn text_start(&mut self, index: usize) {
        self.event("content_block_start");
        self.push(b"{\"type\":\"content_block_start\",\"index\":");
        self.number(index);
        self.push(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        self.text_prefix.clear();
        self.text_prefix.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        self.text_prefix
            .extend_from_slice(index.to_string().as_bytes());
        self.text_prefix
            .extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
    }

    /// `text`: a JSON string as the upstream wrote it, escapes and all.
    pub fn text_delta(&mut self, text: &[u8]) {
        self.out.extend_from_slice(&self.text_prefix);
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"}}\n\n");
    }

    pub fn tool_start(&mut self, index: usize, id: &str, name: &str) {
        self.event("content_block_start");
        self.push(b"{\"type\":\"content_block_start\",\"index\":");
        self.number(index);
        self.push(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        self.string(id);
        self.push(b",\"name\":");
        self.string(name);
        self.push(b",\"input\":{}}}\n\n");
    }

    /// A tool's whole input, as one `input_json_delta`.
    pub fn tool_input(&mut self, index: usize, json: &str) {
        self.event("content_block_delta");
        self.push(b"{\"type\":\"content_block_delta\",\"index\":");
        self.number(index);
        self.push(b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
        self.string(json);
        self.push(b"}}\n\n");
    }

    pub fn stop(&mut self, index: usize) {
        self.event("content_block_stop");
        self.push(b"{\"type\":\"content_block_stop\",\"index\":");
        self.number(index);
        self.push(b"}\n\n");
    }

    /// `message_delta` with the stop reason and usage, then `message_stop`.
    pub fn message_end(
        &mut self,
        stop_reason: &str,
        stop_sequence: Option<&str>,
        usage: Option<&ChatUsage>,
    ) {
        self.event("message_delta");
        self.push(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
        self.string(stop_reason);
        self.push(b",\"stop_sequence\":");
        match stop_sequence {
            Some(s) => self.string(s),
            None => self.push(b"null"),
        }
        self.push(b"},\"usage\":");
        self.usage(usage, true);
        self.push(b"}\n\n");
        self.event("message_stop");
        self.push(b"{\"type\":\"message_stop\"}\n\n");
    }

    /// Usage as Anthropic counts it: cache reads apart from input.
    fn usage(&mut self, usage: Option<&ChatUsage>, at_end: bool) {
        let Some(u) = usage else {
            return self.push(if at_end {
                b"{\"output_tokens\":0}"
            } else {
                b"{\"input_tokens\":0,\"output_tokens\":0}"
            });
        };
        self.push(b"{\"input_tokens\":");
        self.number(u.input());
        self.push(b",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
        self.number(u.cached());
        self.push(b",\"output_tokens\":");
        self.number(if at_end { u.completion_tokens } else { 0 });
        self.push(b"}");
    }

    fn event(&mut self, kind: &str) {
        self.push(b"event: ");
        self.push(kind.as_bytes());
        self.push(b"\ndata: ");
    }

    fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn number(&mut self, n: impl std::fmt::Display) {
        use std::fmt::Write;
        // Writing to memory cannot fail.
        let _ = write!(self.out, "{n}");
    }

    fn string(&mut self, s: &str) {
        // Writing to memory cannot fail.
        let _ = serde_json::to_writer((&mut self.out).writer(), s);
    }
}
