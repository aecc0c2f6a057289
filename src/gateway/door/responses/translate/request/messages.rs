//! `input` items into chat messages: text and images, calls gathered into
//! the assistant message before them, outputs as tool messages with their
//! images moved to a user message after them (see the module's top for
//! the whole mapping).

use std::borrow::Cow;

use super::super::Tools;
use super::super::loose::{Loose, Obj, text};
use super::read::{Item, Items, Part, Parts};
use super::tools::ChatTool;
use super::{BRIDGED, Untranslatable, refuse};

/// A chat message, as it will be written.
#[derive(Debug)]
pub(super) struct Message<'a> {
    pub role: &'static str,
    pub content: Content<'a>,
    /// A tool message's call.
    pub tool_call_id: Option<Cow<'a, str>>,
    /// An assistant message's calls.
    pub calls: Vec<Call<'a>>,
}

#[derive(Debug)]
pub(super) enum Content<'a> {
    Null,
    Text(Cow<'a, str>),
    Parts(Vec<ChatPart<'a>>),
}

#[derive(Debug)]
pub(super) enum ChatPart<'a> {
    Text(Cow<'a, str>),
    Image {
        url: Cow<'a, str>,
        detail: Option<Cow<'a, str>>,
    },
}

#[derive(Debug)]
pub(super) struct Call<'a> {
    pub id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

impl<'a> Message<'a> {
    pub(super) fn new(role: &'static str, content: Content<'a>) -> Message<'a> {
        Message {
            role,
            content,
            tool_call_id: None,
            calls: Vec::new(),
        }
    }
}

#[derive(Default)]
pub(super) struct Translation<'a> {
    pub messages: Vec<Message<'a>>,
    pub tools: Vec<ChatTool<'a>>,
    pub index: Tools,
    /// Images from tool outputs, for a user message after the tool messages.
    images: Vec<ChatPart<'a>>,
}

impl<'a> Translation<'a> {
    pub(super) fn push(&mut self, message: Message<'a>) {
        if message.role != "tool" {
            self.flush_images();
        }
        self.messages.push(message);
    }

    pub(super) fn flush_images(&mut self) {
        if !self.images.is_empty() {
            let parts = std::mem::take(&mut self.images);
            self.messages
                .push(Message::new("user", Content::Parts(parts)));
        }
    }

    /// `input` items (or `instructions` given as items).
    pub(super) fn items(&mut self, items: Items<'a>) -> Result<(), Untranslatable> {
        let Loose::List(items) = items else {
            return Err(refuse("`input` must be a string or an array of items"));
        };
        for item in items {
            self.item(item)?;
        }
        Ok(())
    }

    fn item(&mut self, item: Obj<'a, Item<'a>>) -> Result<(), Untranslatable> {
        let Loose::Object(mut item) = item else {
            return Err(refuse("an `input` item is not an object"));
        };
        let kind = match item.kind.take() {
            Some(Loose::Text(k)) => k,
            None if item.role.is_some() => Cow::Borrowed("message"),
            _ => return Err(refuse("an `input` item has no `type`")),
        };
        let kind = &*kind;
        match kind {
            "message" => self.message(item),
            "function_call" => {
                let name = owned(item.name, "name", kind)?;
                let arguments = match item.arguments {
                    None => Cow::Borrowed("{}"),
                    Some(raw) => match raw.get() {
                        "null" => Cow::Borrowed("{}"),
                        a if a.starts_with('"') => serde_json::from_str::<Cow<str>>(a)
                            .map(|s| Cow::Owned(s.into_owned()))
                            .unwrap_or_default(),
                        // Written as a `Value` writes it (compact, keys sorted).
                        a => Cow::Owned(
                            serde_json::from_str::<serde_json::Value>(a)
                                .map(|v| v.to_string())
                                .unwrap_or_else(|_| a.to_string()),
                        ),
                    },
                };
                self.call(owned(item.call_id, "call_id", kind)?, name, arguments);
                Ok(())
            }
            "custom_tool_call" => {
                let name = owned(item.name, "name", kind)?;
                let mut arguments = b"{\"input\":".to_vec();
                crate::gateway::provider::chunk::push_json(
                    &mut arguments,
                    text(&item.input).unwrap_or(""),
                );
                arguments.push(b'}');
                // Written from a str: UTF-8.
                let arguments = String::from_utf8(arguments).unwrap_or_default();
                self.call(
                    owned(item.call_id, "call_id", kind)?,
                    name,
                    Cow::Owned(arguments),
                );
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = owned(item.call_id, "call_id", kind)?;
                let content = self.output(item.output, kind)?;
                self.push(Message {
                    tool_call_id: Some(call_id),
                    ..Message::new("tool", Content::Text(content))
                });
                Ok(())
            }
            "reasoning" => Ok(()),
            "additional_tools" => {
                if let Some(Loose::List(tools)) = item.tools {
                    for tool in tools {
                        self.tool(tool, None)?;
                    }
                }
                Ok(())
            }
            other => Err(refuse(format!("input item type `{other}` {BRIDGED}"))),
        }
    }

    /// A call into the assistant message before it, or a new one.
    fn call(&mut self, id: Cow<'a, str>, name: Cow<'a, str>, arguments: Cow<'a, str>) {
        let call = Call {
            id,
            name,
            arguments,
        };
        self.flush_images();
        if let Some(last) = self.messages.last_mut()
            && last.role == "assistant"
        {
            last.calls.push(call);
            return;
        }
        self.messages.push(Message {
            calls: vec![call],
            ..Message::new("assistant", Content::Null)
        });
    }

    /// A tool output as the tool message's text; its images kept aside.
    fn output(
        &mut self,
        output: Option<Parts<'a>>,
        kind: &str,
    ) -> Result<Cow<'a, str>, Untranslatable> {
        match output {
            None | Some(Loose::Null) => Ok(Cow::Borrowed("")),
            Some(Loose::Text(s)) => Ok(s),
            Some(Loose::List(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match part_of(part, kind)? {
                        ChatPart::Text(t) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(&t);
                        }
                        image => self.images.push(image),
                    }
                }
                Ok(Cow::Owned(text))
            }
            Some(_) => Err(refuse(format!(
                "the `output` of a `{kind}` must be a string or parts"
            ))),
        }
    }

    fn message(&mut self, item: Item<'a>) -> Result<(), Untranslatable> {
        let role = match text(&item.role) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system" | "developer") => "system",
            Some(other) => return Err(refuse(format!("message role `{other}` {BRIDGED}"))),
            None => return Err(refuse("a `message` item has no `role`")),
        };
        let content = match item.content {
            None | Some(Loose::Null) => Content::Text(Cow::Borrowed("")),
            Some(Loose::Text(s)) => Content::Text(s),
            Some(Loose::List(parts)) => {
                let mut mixed = Vec::with_capacity(parts.len());
                let mut has_image = false;
                for part in parts {
                    let part = part_of(part, "message")?;
                    if let ChatPart::Image { .. } = part {
                        if role != "user" {
                            return Err(refuse(format!(
                                "an image in a `{role}` message {BRIDGED}"
                            )));
                        }
                        has_image = true;
                    }
                    mixed.push(part);
                }
                if has_image {
                    Content::Parts(mixed)
                } else {
                    Content::Text(joined(mixed))
                }
            }
            Some(_) => return Err(refuse("a message's `content` must be a string or parts")),
        };
        self.push(Message::new(role, content));
        Ok(())
    }
}

/// Text parts joined by newlines (one part borrowed as it was).
fn joined(parts: Vec<ChatPart<'_>>) -> Cow<'_, str> {
    let mut texts = parts.into_iter().filter_map(|p| match p {
        ChatPart::Text(t) => Some(t),
        ChatPart::Image { .. } => None,
    });
    let Some(first) = texts.next() else {
        return Cow::Borrowed("");
    };
    let mut rest = texts.peekable();
    if rest.peek().is_none() {
        return first;
    }
    let mut text = first.into_owned();
    for t in rest {
        text.push('\n');
        text.push_str(&t);
    }
    Cow::Owned(text)
}

/// A string member an item cannot do without.
fn owned<'a>(
    member: Option<Loose<'a>>,
    key: &str,
    kind: &str,
) -> Result<Cow<'a, str>, Untranslatable> {
    match member {
        Some(Loose::Text(s)) => Ok(s),
        _ => Err(refuse(format!("a `{kind}` item has no `{key}`"))),
    }
}

/// A content part as a chat part (text, or an `image_url`).
fn part_of<'a>(part: Obj<'a, Part<'a>>, whose: &str) -> Result<ChatPart<'a>, Untranslatable> {
    let Loose::Object(part) = part else {
        return Err(refuse(format!(
            "a content part of a `{whose}` has no `type`"
        )));
    };
    let text_of = |member: Option<Loose<'a>>| match member {
        Some(Loose::Text(t)) => t,
        _ => Cow::Borrowed(""),
    };
    match text(&part.kind).unwrap_or("") {
        "input_text" | "output_text" | "text" => Ok(ChatPart::Text(text_of(part.text))),
        "refusal" => Ok(ChatPart::Text(text_of(part.refusal))),
        "input_image" => {
            let Some(Loose::Text(url)) = part.image_url else {
                return Err(refuse(format!(
                    "an `input_image` by `file_id` {BRIDGED}: send it as `image_url`"
                )));
            };
            let detail = match part.detail {
                Some(Loose::Text(d)) => Some(d),
                _ => None,
            };
            Ok(ChatPart::Image { url, detail })
        }
        "" => Err(refuse(format!(
            "a content part of a `{whose}` has no `type`"
        ))),
        other => Err(refuse(format!("content part type `{other}` {BRIDGED}"))),
    }
}
