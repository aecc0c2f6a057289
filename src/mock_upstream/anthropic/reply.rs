//! The Anthropic mock's answers: a message, whole or as the event stream
//! Anthropic sends (`message_start`, `ping`, per block a start, deltas and
//! a stop, `message_delta` with the stop reason and cumulative usage,
//! `message_stop`).

use bytes::Bytes;
use serde_json::{Value, json};

use super::request::Messages;
use crate::mock_upstream::openai::WORDS;

/// Everything one answer is made from.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    id: String,
    model: String,
    /// The text, word by word.
    words: Vec<&'static str>,
    calls: Vec<(String, String, Value)>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    cache_read: u64,
}

impl Reply {
    pub(crate) fn new(
        req: &Messages,
        model: &str,
        configured: u64,
        cache_read: u64,
        id: String,
    ) -> Reply {
        let budget = req.max_tokens.min(configured);
        let mut stop_reason = if budget < configured {
            "max_tokens"
        } else {
            "end_turn"
        };
        let mut stop_sequence = None;
        let mut words: Vec<&'static str> = if req.calls.is_empty() {
            (0..budget)
                .map(|i| WORDS[(i % WORDS.len() as u64) as usize])
                .collect()
        } else {
            // A model about to call tools says so first.
            vec!["Let", "me", "check."]
        };
        // A stop sequence that is one of the words ends the text before it.
        if let Some(at) = words
            .iter()
            .position(|w| req.stop_sequences.iter().any(|s| s == w))
        {
            stop_sequence = Some(words[at].to_string());
            words.truncate(at);
            stop_reason = "stop_sequence";
        }
        let calls: Vec<(String, String, Value)> = req
            .calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| {
                (
                    format!("toolu_{}{i:02}", &id[id.len().saturating_sub(8)..]),
                    name.clone(),
                    input.clone(),
                )
            })
            .collect();
        if !calls.is_empty() && stop_sequence.is_none() {
            stop_reason = "tool_use";
        }
        let output_tokens = (words.len() as u64
            + calls
                .iter()
                .map(|c| c.2.to_string().len() as u64 / 4 + 2)
                .sum::<u64>())
        .max(1);
        Reply {
            id,
            model: model.to_string(),
            words,
            calls,
            stop_reason,
            stop_sequence,
            input_tokens: req.prompt_tokens,
            output_tokens,
            cache_read,
        }
    }

    fn text(&self) -> String {
        self.words.join(" ")
    }

    fn usage(&self) -> Value {
        json!({"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": self.cache_read, "output_tokens": self.output_tokens})
    }

    pub(crate) fn json(&self) -> Vec<u8> {
        let mut content = Vec::new();
        if !self.words.is_empty() {
            content.push(json!({"type": "text", "text": self.text()}));
        }
        for (id, name, input) in &self.calls {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
        json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": content,
               "stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence, "usage": self.usage()})
        .to_string()
        .into_bytes()
    }

    /// The stream, one event per frame.
    pub(crate) fn stream_frames(&self) -> Vec<Bytes> {
        self.events().into_iter().map(event).collect()
    }

    /// The stream's events, in order.
    pub(crate) fn events(&self) -> Vec<Value> {
        let mut events = Vec::with_capacity(self.words.len() + self.calls.len() * 4 + 8);
        let mut usage = self.usage();
        usage["output_tokens"] = json!(1);
        events.push(json!({"type": "message_start", "message": {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage}}));
        events.push(json!({"type": "ping"}));
        let mut index = 0;
        if !self.words.is_empty() {
            events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
            for (i, w) in self.words.iter().enumerate() {
                let piece = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}));
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
            index += 1;
        }
        for (id, name, input) in &self.calls {
            events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
            // The input's JSON in a few pieces, cut anywhere, as the API does.
            let text = input.to_string();
            let chars: Vec<char> = text.chars().collect();
            let step = chars.len().div_ceil(3).max(1);
            events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}));
            for piece in chars.chunks(step) {
                let piece: String = piece.iter().collect();
                events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}));
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
            index += 1;
        }
        events.push(json!({"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
            "usage": {"output_tokens": self.output_tokens}}));
        events.push(json!({"type": "message_stop"}));
        events
    }
}

/// `event: <type>\ndata: <json>\n\n`
fn event(data: Value) -> Bytes {
    let kind = data["type"].as_str().unwrap_or("message").to_string();
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// An `error` event, as Anthropic sends one in the middle of a stream.
pub(crate) fn error_event(kind: &str, message: &str) -> Bytes {
    event(json!({"type": "error", "error": {"type": kind, "message": message}}))
}
