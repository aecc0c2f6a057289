//! The Responses door through the bridge (see `door::hub`): chat chunks
//! become Responses events, and an upstream error `response.failed`.

use bytes::Bytes;

use super::translate::Tools;
use super::translate::stream::ChatToResponses;
use crate::gateway::door::hub::{FromChat, Hub, from_chat_counters};
use crate::gateway::provider::Decoder;
use crate::gateway::provider::chunk::push_json;

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
        failed_event(id, model, message, code)
    }
}

/// `response.failed` for response `id` of `model`.
fn failed_event(id: &str, model: &str, message: &str, code: &str) -> Bytes {
    let mut out =
        b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":"
            .to_vec();
    push_json(&mut out, id);
    out.extend_from_slice(b",\"object\":\"response\",\"status\":\"failed\",\"model\":");
    push_json(&mut out, model);
    out.extend_from_slice(b",\"output\":[],\"error\":{\"code\":");
    push_json(&mut out, code);
    out.extend_from_slice(b",\"message\":");
    push_json(&mut out, message);
    out.extend_from_slice(b"}}}\n\n");
    Bytes::from(out)
}

impl FromChat for ChatToResponses {
    from_chat_counters!();

    fn failure(&self, message: &str, _rate_limited: Option<u16>) -> Bytes {
        let (id, model) = self.names();
        failed_event(id, model, message, "server_error")
    }
}
