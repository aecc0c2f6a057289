//! The chat request written out as bytes. Members go in the order a
//! `Value` map kept them (sorted by name), strings escaped by serde_json,
//! so a request with nothing passed on verbatim is written to the byte as
//! the `Value`s wrote it; what passes on (tool parameters, a JSON schema)
//! is the client's own JSON text.

use std::borrow::Cow;

use serde_json::Number;

use super::messages::{Call, ChatPart, Content, Message};
use super::tools::{ChatChoice, ChatFormat, ChatTool};
use crate::gateway::provider::chunk::push_json;

/// The chat request, as it will be written.
pub(super) struct Chat<'a> {
    pub model: Cow<'a, str>,
    pub messages: Vec<Message<'a>>,
    pub tools: Vec<ChatTool<'a>>,
    pub tool_choice: Option<ChatChoice<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<Number>,
    pub top_p: Option<Number>,
    pub user: Option<Cow<'a, str>>,
    pub response_format: Option<ChatFormat<'a>>,
    pub stream: bool,
}

/// Writes a number as a `Value` holding it did.
fn number(out: &mut Vec<u8>, n: &Number) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, n);
}

impl Chat<'_> {
    pub(super) fn write(&self, size_hint: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_hint + 256);
        out.push(b'{');
        if let Some(n) = self.max_tokens {
            out.extend_from_slice(b"\"max_tokens\":");
            number(&mut out, &Number::from(n));
            out.push(b',');
        }
        out.extend_from_slice(b"\"messages\":[");
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            message(&mut out, m);
        }
        out.extend_from_slice(b"],\"model\":");
        push_json(&mut out, &self.model);
        if let Some(p) = self.parallel_tool_calls {
            out.extend_from_slice(b",\"parallel_tool_calls\":");
            out.extend_from_slice(if p { b"true" } else { b"false" });
        }
        if let Some(f) = &self.response_format {
            out.extend_from_slice(b",\"response_format\":");
            response_format(&mut out, f);
        }
        if self.stream {
            out.extend_from_slice(b",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
        }
        if let Some(t) = &self.temperature {
            out.extend_from_slice(b",\"temperature\":");
            number(&mut out, t);
        }
        if let Some(c) = &self.tool_choice {
            out.extend_from_slice(b",\"tool_choice\":");
            match c {
                ChatChoice::Mode(m) => push_json(&mut out, m),
                ChatChoice::Named(name) => {
                    out.extend_from_slice(b"{\"function\":{\"name\":");
                    push_json(&mut out, name);
                    out.extend_from_slice(b"},\"type\":\"function\"}");
                }
            }
        }
        if !self.tools.is_empty() {
            out.extend_from_slice(b",\"tools\":[");
            for (i, t) in self.tools.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                tool(&mut out, t);
            }
            out.push(b']');
        }
        if let Some(t) = &self.top_p {
            out.extend_from_slice(b",\"top_p\":");
            number(&mut out, t);
        }
        if let Some(u) = &self.user {
            out.extend_from_slice(b",\"user\":");
            push_json(&mut out, u);
        }
        out.push(b'}');
        out
    }
}

fn message(out: &mut Vec<u8>, m: &Message) {
    out.extend_from_slice(b"{\"content\":");
    match &m.content {
        Content::Null => out.extend_from_slice(b"null"),
        Content::Text(t) => push_json(out, t),
        Content::Parts(parts) => {
            out.push(b'[');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                part(out, p);
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"role\":\"");
    out.extend_from_slice(m.role.as_bytes());
    out.push(b'"');
    if let Some(id) = &m.tool_call_id {
        out.extend_from_slice(b",\"tool_call_id\":");
        push_json(out, id);
    }
    if !m.calls.is_empty() {
        out.extend_from_slice(b",\"tool_calls\":[");
        for (i, c) in m.calls.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            call(out, c);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn part(out: &mut Vec<u8>, p: &ChatPart) {
    match p {
        ChatPart::Text(t) => {
            out.extend_from_slice(b"{\"text\":");
            push_json(out, t);
            out.extend_from_slice(b",\"type\":\"text\"}");
        }
        ChatPart::Image { url, detail } => {
            out.extend_from_slice(b"{\"image_url\":{");
            if let Some(d) = detail {
                out.extend_from_slice(b"\"detail\":");
                push_json(out, d);
                out.push(b',');
            }
            out.extend_from_slice(b"\"url\":");
            push_json(out, url);
            out.extend_from_slice(b"},\"type\":\"image_url\"}");
        }
    }
}

fn call(out: &mut Vec<u8>, c: &Call) {
    out.extend_from_slice(b"{\"function\":{\"arguments\":");
    push_json(out, &c.arguments);
    out.extend_from_slice(b",\"name\":");
    push_json(out, &c.name);
    out.extend_from_slice(b"},\"id\":");
    push_json(out, &c.id);
    out.extend_from_slice(b",\"type\":\"function\"}");
}

fn tool(out: &mut Vec<u8>, t: &ChatTool) {
    let (name, description) = match t {
        ChatTool::Function {
            name, description, ..
        }
        | ChatTool::Custom {
            name, description, ..
        } => (name, description),
    };
    out.extend_from_slice(b"{\"function\":{");
    if let Some(d) = description {
        out.extend_from_slice(b"\"description\":");
        push_json(out, d);
        out.push(b',');
    }
    out.extend_from_slice(b"\"name\":");
    push_json(out, name);
    out.extend_from_slice(b",\"parameters\":");
    match t {
        ChatTool::Function {
            parameters, strict, ..
        } => {
            match parameters {
                Some(p) => out.extend_from_slice(p.get().as_bytes()),
                None => out.extend_from_slice(b"{\"properties\":{},\"type\":\"object\"}"),
            }
            if let Some(s) = strict {
                out.extend_from_slice(if *s {
                    b",\"strict\":true"
                } else {
                    b",\"strict\":false"
                });
            }
        }
        ChatTool::Custom { input, .. } => {
            out.extend_from_slice(
                b"{\"additionalProperties\":false,\"properties\":{\"input\":{\"description\":",
            );
            push_json(out, input);
            out.extend_from_slice(
                b",\"type\":\"string\"}},\"required\":[\"input\"],\"type\":\"object\"}",
            );
        }
    }
    out.extend_from_slice(b"},\"type\":\"function\"}");
}

fn response_format(out: &mut Vec<u8>, f: &ChatFormat) {
    match f {
        ChatFormat::JsonObject => out.extend_from_slice(b"{\"type\":\"json_object\"}"),
        ChatFormat::JsonSchema(members) => {
            out.extend_from_slice(b"{\"json_schema\":{");
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json(out, key);
                out.push(b':');
                out.extend_from_slice(value.get().as_bytes());
            }
            out.extend_from_slice(b"},\"type\":\"json_schema\"}");
        }
    }
}
