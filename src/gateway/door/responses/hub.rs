//! The Responses door through the bridge (see `door::hub`): chat chunks
//! become Responses events, and an upstream error `response.failed`.

use bytes::Bytes;

use super::translate::Tools;
use super::translate::stream::ChatToResponses;
use crate::gateway::door::hub::{FromChat, Hub, from_chat_counters};
use crate::gateway::provider::Decoder;

pub type Bridged = Hub<ChatToResponses>;

/// `chat` decodes the deployment's stream; `model` is the name the client
/// asked for; `tools` the request's, so that calls come back in their
/// own shape.
pub fn bridged(chat: Decoder, model: &str, tools: Tools) -> Bridged {
    let chat_id = crate::gateway::provider::bedrock::answer::new_id();
    let id = format!("resp_{}", chat_id.trim_start_matches("chatcmpl-"));
    Hub::new(chat, ChatToResponses::new(model, &id).with_tools(tools))
}

impl Bridged {
    /// The gateway's `response.failed`, ending a stream it breaks off.
    pub fn failed_event(&self, message: &str, code: &str) -> Bytes {
        let (id, model) = self.door.names();
        super::stream::failed_event(None, id, model, message, code)
    }
}

impl FromChat for ChatToResponses {
    from_chat_counters!();

    fn failure(&self, message: &str, _rate_limited: Option<u16>) -> Bytes {
        let (id, model) = self.names();
        super::stream::failed_event(None, id, model, message, "server_error")
    }
}
