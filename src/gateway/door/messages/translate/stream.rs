//! An OpenAI `chat.completion.chunk` stream as Anthropic Messages events,
//! frame by frame as bytes arrive, never buffered beyond one incomplete
//! frame (and the arguments of the tool calls in progress):
//!
//! - nothing is sent before the first content (a non-empty text delta, or
//!   a tool call with its name), so the gateway can fail over invisibly
//!   until then; `message_start` goes out with it;
//! - text deltas → a text block's `text_delta`s, copied as the JSON string
//!   the upstream wrote (no unescaping and escaping again);
//! - tool calls → `tool_use` blocks. The first call's block starts when
//!   its name arrives; arguments are held until the call is complete (the
//!   next text, or the finish) and then sent as one `input_json_delta`, so
//!   they always parse as an object (see [`super::tool_input`]) whatever
//!   the model wrote. Parallel calls by `index`: each its own block, in
//!   order, the later ones when the first closes, since Anthropic's blocks
//!   never overlap;
//! - reasoning deltas are dropped (see `answer` for why);
//! - the end: once a `finish_reason` went by and then the usage chunk or
//!   `[DONE]` (or a clean end of the upstream, [`ChatToMessages::finish`]),
//!   the open block closes and `message_delta` (stop reason, usage) and
//!   `message_stop` follow;
//! - an error frame (`{"error": ...}`) ends the translation: nothing more
//!   is sent, and the gateway writes Anthropic's `event: error`;
//! - frames that are not JSON are skipped and counted.

use bytes::Bytes;

use super::ChatUsage;
use chunk::{Choice, Chunk, ToolDelta, data_of, error_message};
use events::Events;

mod chunk;
mod events;

/// The most one frame may hold before the stream is taken as broken.
const MAX_FRAME: usize = 16 << 20;
/// More parallel calls than any model makes: an index past it is noise.
const MAX_CALLS: usize = 256;

/// A tool call being received.
#[derive(Debug, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    /// Its `content_block_start` has been sent.
    started: bool,
}

/// The block open on the client's side.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    /// The calls from `calls[0]` on: the first one started, the rest held.
    Calls,
}

#[derive(Debug)]
pub struct ChatToMessages {
    pending: Vec<u8>,
    out: Events,
    /// `model` and `id` as JSON strings, escaped once.
    model: String,
    id: String,
    /// The id without `msg_`, for the ids of calls the upstream left unnamed.
    id_tail: String,
    started: bool,
    open: Open,
    /// The index of the next content block.
    block: usize,
    /// The calls in progress, by their OpenAI `index` less `call_base`.
    calls: Vec<Call>,
    call_base: usize,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<String>,
    usage: Option<ChatUsage>,
    /// Usage arrived with or after the finish reason: the end is here.
    final_usage: bool,
    done: bool,
    frames: u64,
    data_frames: u64,
    skipped: u64,
    invalid: bool,
    error: Option<String>,
}

impl ChatToMessages {
    /// `model`: the name the client asked for; `id`: the `msg_…` the
    /// gateway made for this answer.
    pub fn new(model: &str, id: &str) -> Self {
        let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        Self {
            pending: Vec::new(),
            out: Events::default(),
            model: json(model),
            id: json(id),
            id_tail: id.strip_prefix("msg_").unwrap_or(id).to_string(),
            started: false,
            open: Open::None,
            block: 0,
            calls: Vec::new(),
            call_base: 0,
            stop_reason: None,
            stop_sequence: None,
            usage: None,
            final_usage: false,
            done: false,
            frames: 0,
            data_frames: 0,
            skipped: 0,
            invalid: false,
            error: None,
        }
    }

    /// Takes the next bytes of the upstream's stream; returns the whole
    /// events they complete, `None` while there is nothing worth sending.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        // Most chunks hold whole frames: translate them in place.
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
            self.frame(&data[at..at + len]);
            at += len;
        }
        if !self.ended() {
            self.pending.extend_from_slice(&data[at..]);
        }
        if self.pending.len() > MAX_FRAME {
            self.error = Some("the upstream sent an event larger than 16 MiB".into());
            self.pending = Vec::new();
        }
        self.take()
    }

    /// The upstream ended cleanly: a last frame without its blank line
    /// counts; an answer whose finish reason went by is closed. Otherwise
    /// `None`, and the gateway ends the stream with an error event.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.frame(&rest);
        }
        if !self.ended() && self.stop_reason.is_some() {
            self.close();
        }
        self.take()
    }

    /// `message_stop` has been produced.
    pub fn done(&self) -> bool {
        self.done
    }

    /// (prompt tokens, completion tokens) when the upstream reported them;
    /// the prompt count includes cached tokens, as the windows count it.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    /// Content deltas seen: text pieces and tool-call pieces.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The message of an error frame from the upstream, once one came (or
    /// of a frame too long to be one: the stream is broken either way).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Frames that were not JSON.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The first frame was not JSON: likely not a chat stream at all.
    pub fn invalid(&self) -> bool {
        self.invalid
    }

    fn ended(&self) -> bool {
        self.done || self.error.is_some()
    }

    fn take(&mut self) -> Option<Bytes> {
        self.out.take()
    }

    fn frame(&mut self, frame: &[u8]) {
        if self.ended() {
            return;
        }
        let Some(data) = data_of(frame) else {
            return; // a comment, or an `event:` line alone
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            if self.stop_reason.is_some() {
                self.close();
            }
            return;
        }
        self.data_frames += 1;
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            self.skipped += 1;
            self.invalid |= self.data_frames == 1;
            return;
        };
        if let Some(error) = chunk.error {
            self.error = Some(error_message(error));
            return;
        }
        if let Some(choice) = chunk.choices {
            self.choice(choice);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            self.final_usage = self.stop_reason.is_some();
        }
        if self.final_usage {
            self.close();
        }
    }

    fn choice(&mut self, choice: Choice) {
        if let Some(delta) = choice.delta {
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                // Only a non-empty JSON string is text; `""` is the role chunk's.
                if text.get().starts_with('"') && text.get().len() > 2 {
                    self.text(text.get().as_bytes());
                }
            }
            for call in delta.tool_calls.into_iter().flatten() {
                self.call(call);
            }
        }
        if let Some(finish) = choice.finish_reason.filter(|f| !f.is_empty()) {
            let matched = choice
                .stop_reason
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
            let calls = self.has_calls();
            let reason = super::stop_reason(&finish, matched.as_deref(), calls);
            self.stop_reason = Some(reason);
            self.stop_sequence = matched.filter(|_| reason == "stop_sequence");
        }
    }

    /// Whether this answer has tool calls (sent or held).
    fn has_calls(&self) -> bool {
        self.call_base > 0 || !self.calls.is_empty()
    }

    fn text(&mut self, json: &[u8]) {
        self.frames += 1;
        if self.open != Open::Text {
            self.close_block();
            self.start();
            self.out.text_start(self.block);
            self.open = Open::Text;
        }
        self.out.text_delta(json);
    }

    fn call(&mut self, delta: ToolDelta) {
        self.frames += 1;
        let Some(slot) = self.slot(&delta) else {
            return;
        };
        if self.open == Open::Text {
            self.close_block();
        }
        let call = &mut self.calls[slot];
        if let Some(id) = delta.id.filter(|id| !id.is_empty())
            && call.id.is_empty()
        {
            call.id = id.into_owned();
        }
        if let Some(f) = delta.function {
            if let Some(name) = f.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = f.arguments {
                call.arguments.push_str(&arguments);
            }
        }
        self.open = Open::Calls;
        // The first call opens its block as soon as it is named: the first
        // content, which ends the gateway's failover window.
        if slot == 0 && !self.calls[0].started && !self.calls[0].name.is_empty() {
            self.start_call(0);
        }
    }

    /// Where a tool delta goes in `calls`. Servers that leave out `index`
    /// mean the call in progress, or a new one when the id is new.
    fn slot(&mut self, delta: &ToolDelta) -> Option<usize> {
        let index = match delta.index {
            Some(i) => i,
            None => {
                let last = (self.call_base + self.calls.len()).saturating_sub(1);
                let new_id = delta
                    .id
                    .as_deref()
                    .filter(|id| !id.is_empty())
                    .is_some_and(|id| {
                        self.calls
                            .last()
                            .is_none_or(|c| !c.id.is_empty() && c.id != id)
                    });
                if new_id || self.calls.is_empty() {
                    self.call_base + self.calls.len()
                } else {
                    last
                }
            }
        };
        // A piece of a call already sent cannot be added any more; an
        // absurd index is noise. Both are counted as skipped.
        let Some(slot) = index.checked_sub(self.call_base).filter(|&s| s < MAX_CALLS) else {
            self.skipped += 1;
            return None;
        };
        if self.calls.len() <= slot {
            self.calls.resize_with(slot + 1, Call::default);
        }
        Some(slot)
    }

    fn start_call(&mut self, slot: usize) {
        self.start();
        let call = &mut self.calls[slot];
        call.started = true;
        if call.id.is_empty() {
            call.id = super::call_id(&self.id_tail, self.call_base + slot);
        }
        self.out.tool_start(self.block, &call.id, &call.name);
    }

    /// Closes the open block: the text block, or every call held, each
    /// started, given its arguments and stopped in turn.
    fn close_block(&mut self) {
        match self.open {
            Open::None => return,
            Open::Text => self.stop_block(),
            Open::Calls => {
                for slot in 0..self.calls.len() {
                    let call = &self.calls[slot];
                    if call.name.is_empty() && call.arguments.is_empty() {
                        continue; // an index the server skipped
                    }
                    if !call.started {
                        self.start_call(slot);
                    }
                    let input = super::tool_input(&self.calls[slot].arguments);
                    self.out.tool_input(self.block, input.get());
                    self.stop_block();
                }
                self.call_base += self.calls.len();
                self.calls.clear();
            }
        }
        self.open = Open::None;
    }

    fn stop_block(&mut self) {
        self.out.stop(self.block);
        self.block += 1;
    }

    /// `message_start`, once, before the first block.
    fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.out
                .message_start(&self.id, &self.model, self.usage.as_ref());
        }
    }

    /// The end: the open block closed, `message_delta`, `message_stop`.
    fn close(&mut self) {
        self.close_block();
        self.start();
        let reason = self.stop_reason.unwrap_or("end_turn");
        self.out
            .message_end(reason, self.stop_sequence.as_deref(), self.usage.as_ref());
        self.done = true;
    }
}
