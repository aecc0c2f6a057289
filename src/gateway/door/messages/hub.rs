//! The Messages door through the chat hub (see `door::hub`): chat chunks
//! become Anthropic's events, and an upstream error Anthropic's error
//! event.

use bytes::Bytes;

use super::stream::error_event;
use super::translate::stream::ChatToMessages;
use crate::gateway::door::hub::{FromChat, Hub, from_chat_counters};
use crate::gateway::provider::Decoder;

pub type ThroughChat = Hub<ChatToMessages>;

/// `chat` decodes the deployment's stream; `model` is the name the client
/// asked for.
pub fn through_chat(chat: Decoder, model: &str) -> ThroughChat {
    let chat_id = crate::gateway::provider::bedrock::answer::new_id();
    let id = format!("msg_{}", chat_id.trim_start_matches("chatcmpl-"));
    Hub::new(chat, ChatToMessages::new(model, &id))
}

impl FromChat for ChatToMessages {
    from_chat_counters!();

    fn failure(&self, message: &str, rate_limited: Option<u16>) -> Bytes {
        let kind = match rate_limited {
            Some(529) => "overloaded_error",
            Some(_) => "rate_limit_error",
            None => "api_error",
        };
        error_event(kind, message)
    }
}
