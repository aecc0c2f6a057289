//! A deployment reached through the bridge, streaming on the Responses
//! door: its provider's decoder turns its stream into chat chunks, and
//! [`ChatToResponses`] turns those into Responses events; to the relay the
//! two are one decoder.

use bytes::Bytes;

use super::translate::Tools;
use super::translate::stream::ChatToResponses;
use crate::gateway::provider::Decoder;
use crate::gateway::provider::chunk::push_json;
use crate::gateway::sse::Usage;

pub struct Bridged {
    chat: Decoder,
    responses: ChatToResponses,
    id: String,
    model: String,
    /// The failure event has gone out (once).
    told: bool,
}

impl Bridged {
    pub fn new(chat: Decoder, model: &str, tools: Tools) -> Self {
        let chat_id = crate::gateway::provider::bedrock::answer::new_id();
        let id = format!("resp_{}", chat_id.trim_start_matches("chatcmpl-"));
        Bridged {
            chat,
            responses: ChatToResponses::new(model, &id).with_tools(tools),
            id,
            model: model.to_string(),
            told: false,
        }
    }

    /// The gateway's `response.failed`, ending a stream it breaks off.
    pub fn failed_event(&self, message: &str, code: &str) -> Bytes {
        let mut out =
            b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":"
                .to_vec();
        push_json(&mut out, &self.id);
        out.extend_from_slice(b",\"object\":\"response\",\"status\":\"failed\",\"model\":");
        push_json(&mut out, &self.model);
        out.extend_from_slice(b",\"output\":[],\"error\":{\"code\":");
        push_json(&mut out, code);
        out.extend_from_slice(b",\"message\":");
        push_json(&mut out, message);
        out.extend_from_slice(b"}}}\n\n");
        Bytes::from(out)
    }

    fn through(&mut self, chat: Option<Bytes>) -> Option<Bytes> {
        let out = chat.and_then(|c| self.responses.feed(&c));
        if self.told || !self.saw_error() {
            return out;
        }
        // An upstream error ends the translation: the failure goes out
        // after what came before it.
        self.told = true;
        let message = self
            .error()
            .unwrap_or("the upstream sent an error")
            .to_string();
        let mut all = out.map(|b| b.to_vec()).unwrap_or_default();
        all.extend_from_slice(&self.failed_event(&message, "server_error"));
        Some(Bytes::from(all))
    }

    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chat = self.chat.feed(chunk);
        self.through(chat)
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        let chat = self.chat.finish();
        let mut out = self.through(chat).map(|b| b.to_vec()).unwrap_or_default();
        if let Some(last) = self.responses.finish() {
            out.extend_from_slice(&last);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    pub fn abandon(&mut self) -> Option<Bytes> {
        let chat = self.chat.abandon();
        chat.and_then(|c| self.responses.feed(&c))
    }

    pub fn skipped(&self) -> u64 {
        self.chat.skipped() + self.responses.skipped()
    }

    pub fn last_skipped(&self) -> Option<&str> {
        self.chat.last_skipped()
    }

    pub fn error(&self) -> Option<&str> {
        self.chat.error_message().or(self.responses.error())
    }

    pub fn saw_error(&self) -> bool {
        self.chat.saw_error() || self.responses.error().is_some()
    }

    pub fn invalid(&self) -> bool {
        self.chat.saw_invalid() || self.responses.invalid()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.chat.usage().or_else(|| {
            self.responses.usage().map(|(p, c)| Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: p + c,
            })
        })
    }

    pub fn done(&self) -> bool {
        self.responses.done()
    }

    pub fn frames(&self) -> u64 {
        self.responses.frames()
    }

    pub fn rate_limited(&self) -> Option<u16> {
        self.chat.rate_limited()
    }
}
