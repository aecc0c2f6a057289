//! A deployment reached through the chat hub, streaming on the Messages
//! door: its provider's decoder turns its stream into chat chunks (passed
//! through for OpenAI-compatible upstreams), and [`ChatToMessages`] turns
//! those into Anthropic's events. The two count, time and fail as one
//! decoder to the relay.

use bytes::Bytes;

use super::stream::error_event;
use super::translate::stream::ChatToMessages;
use crate::gateway::provider::Decoder;
use crate::gateway::sse::Usage;

pub struct ThroughChat {
    chat: Decoder,
    messages: ChatToMessages,
    /// The error event has gone out (once).
    told: bool,
}

impl ThroughChat {
    pub fn new(chat: Decoder, model: &str) -> Self {
        let chat_id = crate::gateway::provider::bedrock::answer::new_id();
        let id = format!("msg_{}", chat_id.trim_start_matches("chatcmpl-"));
        ThroughChat {
            chat,
            messages: ChatToMessages::new(model, &id),
            told: false,
        }
    }

    fn through(&mut self, chat: Option<Bytes>) -> Option<Bytes> {
        let out = chat.and_then(|c| self.messages.feed(&c));
        self.tell(out)
    }

    /// An upstream error ends the translation: Anthropic's error event
    /// goes out after what came before it.
    fn tell(&mut self, out: Option<Bytes>) -> Option<Bytes> {
        if self.told || !self.saw_error() {
            return out;
        }
        self.told = true;
        let kind = match self.chat.rate_limited() {
            Some(529) => "overloaded_error",
            Some(_) => "rate_limit_error",
            None => "api_error",
        };
        let message = self
            .error()
            .unwrap_or("the upstream sent an error")
            .to_string();
        let mut all = out.map(|b| b.to_vec()).unwrap_or_default();
        all.extend_from_slice(&error_event(kind, &message));
        Some(Bytes::from(all))
    }

    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chat = self.chat.feed(chunk);
        self.through(chat)
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        let chat = self.chat.finish();
        let mut out = self.through(chat).map(|b| b.to_vec()).unwrap_or_default();
        if let Some(last) = self.messages.finish() {
            out.extend_from_slice(&last);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    pub fn abandon(&mut self) -> Option<Bytes> {
        let chat = self.chat.abandon();
        chat.and_then(|c| self.messages.feed(&c))
    }

    pub fn skipped(&self) -> u64 {
        self.chat.skipped() + self.messages.skipped()
    }

    pub fn last_skipped(&self) -> Option<&str> {
        self.chat.last_skipped()
    }

    pub fn error(&self) -> Option<&str> {
        self.chat.error_message().or(self.messages.error())
    }

    pub fn saw_error(&self) -> bool {
        self.chat.saw_error() || self.messages.error().is_some()
    }

    pub fn invalid(&self) -> bool {
        self.chat.saw_invalid() || self.messages.invalid()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.chat.usage().or_else(|| {
            self.messages.usage().map(|(p, c)| Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: p + c,
            })
        })
    }

    pub fn done(&self) -> bool {
        self.messages.done()
    }

    pub fn frames(&self) -> u64 {
        self.messages.frames()
    }

    pub fn rate_limited(&self) -> Option<u16> {
        self.chat.rate_limited()
    }
}
