//! A deployment reached through the chat hub on a door that speaks another
//! protocol: its provider's decoder turns its stream into chat chunks
//! (passed through for OpenAI-compatible upstreams), and the door's
//! translator turns those into the door's events. To the relay the two
//! count, time and fail as one decoder.

use bytes::Bytes;

use crate::gateway::provider::Decoder;
use crate::gateway::sse::Usage;

/// What a door's stream translator from chat chunks offers the hub.
pub trait FromChat {
    fn feed(&mut self, chat_sse: &[u8]) -> Option<Bytes>;
    /// Whatever the end of the chat stream completes.
    fn finish(&mut self) -> Option<Bytes>;
    /// The door's last event has been produced.
    fn done(&self) -> bool;
    /// (prompt tokens, completion tokens) when the upstream reported them.
    fn usage(&self) -> Option<(u64, u64)>;
    /// Content deltas seen.
    fn frames(&self) -> u64;
    /// The message of an error frame from the upstream, once one came.
    fn error(&self) -> Option<&str>;
    /// Frames that were not JSON.
    fn skipped(&self) -> u64;
    /// The first frame was not JSON: likely not a chat stream at all.
    fn invalid(&self) -> bool;
    /// The door's event that ends a stream the upstream broke off with an
    /// error (`rate_limited`: the upstream's status when it was a 429 or
    /// 529).
    fn failure(&self, message: &str, rate_limited: Option<u16>) -> Bytes;
}

pub struct Hub<T> {
    chat: Decoder,
    pub(in crate::gateway) door: T,
    /// The failure event has gone out (once).
    told: bool,
}

impl<T: FromChat> Hub<T> {
    pub fn new(chat: Decoder, door: T) -> Self {
        Hub {
            chat,
            door,
            told: false,
        }
    }

    fn through(&mut self, chat: Option<Bytes>) -> Option<Bytes> {
        let out = chat.and_then(|c| self.door.feed(&c));
        if self.told || !self.saw_error() {
            return out;
        }
        // An upstream error ends the translation: the door's failure goes
        // out after what came before it.
        self.told = true;
        let message = self
            .error()
            .unwrap_or("the upstream sent an error")
            .to_string();
        let mut all = out.map(|b| b.to_vec()).unwrap_or_default();
        all.extend_from_slice(&self.door.failure(&message, self.chat.rate_limited()));
        Some(Bytes::from(all))
    }

    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chat = self.chat.feed(chunk);
        self.through(chat)
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        let chat = self.chat.finish();
        let mut out = self.through(chat).map(|b| b.to_vec()).unwrap_or_default();
        if let Some(last) = self.door.finish() {
            out.extend_from_slice(&last);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    pub fn abandon(&mut self) -> Option<Bytes> {
        let chat = self.chat.abandon();
        chat.and_then(|c| self.door.feed(&c))
    }

    pub fn skipped(&self) -> u64 {
        self.chat.skipped() + self.door.skipped()
    }

    pub fn last_skipped(&self) -> Option<&str> {
        self.chat.last_skipped()
    }

    pub fn error(&self) -> Option<&str> {
        self.chat.error_message().or(self.door.error())
    }

    pub fn saw_error(&self) -> bool {
        self.chat.saw_error() || self.door.error().is_some()
    }

    pub fn invalid(&self) -> bool {
        self.chat.saw_invalid() || self.door.invalid()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.chat.usage().or_else(|| {
            self.door.usage().map(|(p, c)| Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: p + c,
            })
        })
    }

    pub fn done(&self) -> bool {
        self.door.done()
    }

    pub fn frames(&self) -> u64 {
        self.door.frames()
    }

    pub fn rate_limited(&self) -> Option<u16> {
        self.chat.rate_limited()
    }
}

/// Forwards [`FromChat`]'s counters to a translator's own methods of the
/// same names.
macro_rules! from_chat_counters {
    () => {
        fn feed(&mut self, chat_sse: &[u8]) -> Option<bytes::Bytes> {
            Self::feed(self, chat_sse)
        }
        fn finish(&mut self) -> Option<bytes::Bytes> {
            Self::finish(self)
        }
        fn done(&self) -> bool {
            Self::done(self)
        }
        fn usage(&self) -> Option<(u64, u64)> {
            Self::usage(self)
        }
        fn frames(&self) -> u64 {
            Self::frames(self)
        }
        fn error(&self) -> Option<&str> {
            Self::error(self)
        }
        fn skipped(&self) -> u64 {
            Self::skipped(self)
        }
        fn invalid(&self) -> bool {
            Self::invalid(self)
        }
    };
}
pub(in crate::gateway) use from_chat_counters;
