//! The Value-based translation this module's typed one replaced, as it
//! was (its module documentation is the live one's): the oracle the tests
//! hold the live one to, output for output, error for error.

use bytes::Bytes;
use serde_json::{Value, json};

use super::super::chat::Answer;
use super::super::{Tools, now, response};

/// A `chat.completion` body → a Responses `response` body, giving custom
/// and namespaced tools' calls back in their own shape.
pub fn from_chat_with_tools(chat: &[u8], model: &str, tools: &Tools) -> Result<Bytes, String> {
    let chat: Answer =
        serde_json::from_slice(chat).map_err(|e| format!("the chat answer is not JSON: {e}"))?;
    let chat_id = chat.id.as_deref().unwrap_or("");
    let rest = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    let id = if rest.is_empty() {
        "resp_switchboard".to_string()
    } else {
        format!("resp_{rest}")
    };
    let tail = super::super::tail(&id).to_string();
    let created = chat.created.unwrap_or_else(now);
    let choice = chat
        .choices
        .into_iter()
        .flatten()
        .next()
        .ok_or("the chat answer has no choices")?;
    let message = choice.message.ok_or("the chat answer has no message")?;
    let finish = choice.finish_reason.as_deref().unwrap_or("stop");

    let mut output = Vec::new();
    let text = message.content.as_deref().unwrap_or("");
    let refusal = message.refusal.as_deref().unwrap_or("");
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}));
    }
    if !refusal.is_empty() {
        parts.push(json!({"type": "refusal", "refusal": refusal}));
    }
    if !parts.is_empty() {
        output.push(json!({
            "type": "message",
            "id": format!("msg_{tail}"),
            "status": "completed",
            "role": "assistant",
            "content": parts,
        }));
    }
    for (i, call) in message.tool_calls.into_iter().flatten().enumerate() {
        let function = call.function.unwrap_or_default();
        let name = function.name.as_deref().unwrap_or("");
        let arguments = function.arguments.as_deref().unwrap_or("");
        let call_id = match call.id {
            Some(c) if !c.is_empty() => c.into_owned(),
            _ => format!("call_{tail}_{i}"),
        };
        output.push(tools.call_item(&format!("fc_{tail}_{i}"), &call_id, name, arguments));
    }
    let usage = chat
        .usage
        .filter(|u| u.get().starts_with('{'))
        .and_then(|u| serde_json::from_str::<Value>(u.get()).ok());
    let usage = usage
        .and_then(|u| super::super::usage(Some(&u)))
        .map(|(u, _, _)| u);
    let mut body = Vec::with_capacity(512);
    response(
        &mut body,
        &id,
        model,
        created,
        Some(finish),
        &output,
        usage.as_ref(),
    );
    Ok(Bytes::from(body))
}
