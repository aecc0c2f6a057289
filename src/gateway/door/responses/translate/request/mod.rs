//! A stateless OpenAI Responses request as an OpenAI Chat Completions
//! request. `model` is kept as written (the proxy replaces it as for any
//! chat body).
//!
//! Mapped: `instructions` → a system message first; `input` as a string →
//! one user message; `input` items: `message` (and items without `type`
//! but with a `role`, as the Agents SDK writes them) with roles `user`,
//! `assistant`, `system` and `developer` (→ `system`: not every
//! OpenAI-compatible server knows `developer`), content a string or parts
//! `input_text` / `output_text` / `refusal` (text) and `input_image` with
//! an `image_url` (user messages only); `function_call` → the assistant's
//! `tool_calls` (`call_id` as the call's id; consecutive calls, and the
//! assistant text right before them, make one assistant message);
//! `function_call_output` → a `role: "tool"` message (`tool_call_id` =
//! `call_id`; text parts joined, images moved to a user message right after
//! the tool messages, since a tool message holds only text);
//! `custom_tool_call` / `custom_tool_call_output` → the same, the call's
//! arguments being `{"input": "<its input>"}`; `additional_tools` items
//! (Codex's) → their tools added to `tools`.
//! Tools: `function` → a function (`strict` kept); `custom` → a function
//! with one required string parameter `input` (a grammar or format is put
//! in that parameter's description, for the model to follow); `namespace`
//! → its function and custom tools, flattened under their own names (the
//! answer puts the `namespace` back on their calls: see [`super::Tools`]).
//! `tool_choice` (`auto` / `none` / `required`, a function or custom tool
//! by name); `parallel_tool_calls`; `max_output_tokens` → `max_tokens`;
//! `temperature`; `top_p`; `user`; `text.format` (`json_schema`,
//! `json_object`) → `response_format`; `stream` → `stream` with
//! `stream_options.include_usage`.
//!
//! Dropped, having no Chat Completions meaning or none that is safe to
//! send: `reasoning` items (their encrypted content means something only to
//! OpenAI's Responses API) and `reasoning` itself (`reasoning.effort` is not
//! mapped to `reasoning_effort`: Codex sends it on every turn, and OpenAI
//! refuses the parameter for chat models that do not reason — the
//! upstream's default applies); `store`, `include`, `text.verbosity`,
//! `metadata`, `client_metadata`, `truncation`, `service_tier`,
//! `top_logprobs`, `max_tool_calls`, `stream_options`; the `tool_search`
//! tool (deferred tool loading, which a chat upstream cannot do; the tools
//! it would load are not sent); a `previous_response_id` of `null`.
//!
//! Refused by name ([`Untranslatable`]): `previous_response_id`,
//! `conversation`, `background: true` and `prompt` (stored state or
//! templates a chat upstream does not have); hosted tools (`web_search`,
//! `file_search`, `code_interpreter`, `computer_use`, `image_generation`,
//! `mcp`, `local_shell`, …) and calls to them in the input; images by
//! `file_id`, `input_file`, `item_reference`; and item, part and tool types
//! this code does not know (a new one may carry meaning that must not
//! vanish).
//!
//! How: the body is read once into borrowed members ([`read`], lenient as
//! a `Value` was), the messages and tools gathered ([`messages`],
//! [`tools`]), and the chat body written out ([`write`]). Tool parameters
//! and a JSON schema pass on as the client wrote them; so does a number
//! too large for a double inside them, which a `Value` refused.

mod messages;
mod read;
mod tools;
mod write;

use bytes::Bytes;

use super::Tools;
use super::loose::Loose;
use messages::{Content, Message, Translation};
use write::Chat;

pub use crate::gateway::door::Untranslatable;
pub(super) use crate::gateway::door::refuse;

const BRIDGED: &str = "cannot be bridged to a Chat Completions deployment";

/// A stateless Responses request body → a Chat Completions body.
pub fn to_chat(body: &[u8]) -> Result<Bytes, Untranslatable> {
    to_chat_with_tools(body).map(|(chat, _)| chat)
}

/// [`to_chat`], and what the answer needs to know of the request's tools
/// (custom ones, namespaces) to give their calls back in their own shape.
///
/// Read in one pass into borrowed members and written straight out (no
/// `Value` tree, twice over, as before: that cost more than the rest of a
/// bridged request's own work); the checks and refusals come in the order
/// they always did, so the first refusal is the same one.
pub fn to_chat_with_tools(body: &[u8]) -> Result<(Bytes, Tools), Untranslatable> {
    let request = read::request(body)?;
    for (key, member) in [
        ("previous_response_id", &request.previous_response_id),
        ("conversation", &request.conversation),
        ("prompt", &request.prompt),
    ] {
        if member.as_ref().is_some_and(|v| !matches!(v, Loose::Null)) {
            return Err(refuse(format!(
                "`{key}` {BRIDGED}: it keeps no stored state; send the whole conversation in `input`"
            )));
        }
    }
    if request.background.is_some_and(|b| b.get() == "true") {
        return Err(refuse(format!("`background: true` {BRIDGED}")));
    }
    let model = match request.model {
        Some(Loose::Text(m)) => m,
        _ => return Err(refuse("`model` must be a string")),
    };

    let mut t = Translation::default();
    match request.instructions {
        None | Some(Loose::Null) => {}
        Some(Loose::Text(s)) => {
            if !s.is_empty() {
                t.push(Message::new("system", Content::Text(s)));
            }
        }
        // Instructions as input items (what a stored prompt expands to).
        Some(other) => t.items(other)?,
    }
    match request.input {
        None | Some(Loose::Null) => {}
        Some(Loose::Text(s)) => t.push(Message::new("user", Content::Text(s))),
        Some(items @ Loose::List(_)) => t.items(items)?,
        Some(_) => return Err(refuse("`input` must be a string or an array of items")),
    }
    t.flush_images();
    if let Some(tools) = request.tools {
        let Loose::List(tools) = tools else {
            return Err(refuse("`tools` must be an array"));
        };
        for tool in tools {
            t.tool(tool, None)?;
        }
    }

    let has_tools = !t.tools.is_empty();
    // Read (and refused) even without tools: a hosted tool named here is
    // refused all the same.
    let tool_choice = match request.tool_choice {
        Some(choice) => tools::tool_choice(choice)?,
        None => None,
    };
    let parallel_tool_calls = match request.parallel_tool_calls.map(|p| p.get()) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let number = |raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|n| serde_json::from_str::<serde_json::Number>(n.get()).ok())
    };
    // `prompt_cache_key` and `safety_identifier` are left out: the gateway
    // reads the first for its sessions, and the providers behind the bridge
    // (Anthropic, Bedrock, Vertex, older chat servers) refuse both.
    let user = match request.user {
        Some(Loose::Text(u)) => Some(u),
        _ => None,
    };
    let response_format = match request.text {
        Some(Loose::Object(text)) => match text.format {
            Some(format) => tools::response_format(format)?,
            None => None,
        },
        _ => None,
    };
    let chat = Chat {
        model,
        messages: t.messages,
        tool_choice: tool_choice.filter(|_| has_tools),
        parallel_tool_calls: parallel_tool_calls.filter(|_| has_tools),
        tools: t.tools,
        max_tokens: request
            .max_output_tokens
            .and_then(|n| serde_json::from_str::<u64>(n.get()).ok()),
        temperature: number(request.temperature),
        top_p: number(request.top_p),
        user,
        response_format,
        stream: request.stream.is_some_and(|s| s.get() == "true"),
    };
    Ok((Bytes::from(chat.write(body.len())), t.index))
}
