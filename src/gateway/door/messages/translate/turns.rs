//! Anthropic messages as chat messages: the content blocks of each turn,
//! one by one (see `request` for what is mapped, dropped and refused).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::request::{Untranslatable, refuse};

#[derive(Deserialize)]
pub(super) struct Message<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// A string or a list of blocks: read raw, then as one or the other
    /// (an untagged enum would buffer the whole content first).
    #[serde(borrow)]
    pub content: &'a RawValue,
}

/// A content block, flat: whichever fields its type has.
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    /// Read as a [`Source`] only in the blocks that have one: other
    /// blocks (`search_result`) give the name another meaning.
    #[serde(default, borrow)]
    source: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default, borrow)]
    title: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Source<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Serialize)]
pub(super) struct ChatMessage<'a> {
    role: &'static str,
    /// Always written: `null` beside an assistant's tool calls.
    content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
}

impl<'a> ChatMessage<'a> {
    pub fn new(role: &'static str, content: Content<'a>) -> Self {
        Self {
            role,
            content: Some(content),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Part<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Serialize)]
pub(super) struct ImageUrl<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct ChatCall<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: CallFunction<'a>,
}

#[derive(Serialize)]
struct CallFunction<'a> {
    name: Cow<'a, str>,
    /// The input object as JSON text, as the client wrote it.
    arguments: &'a str,
}

/// One Anthropic message as the chat messages it becomes.
pub(super) fn turn<'a>(
    i: usize,
    role: &str,
    content: &'a RawValue,
    out: &mut Vec<ChatMessage<'a>>,
) -> Result<(), Untranslatable> {
    let at = format!("messages[{i}]");
    match role {
        "system" => {
            let text = system_text(content, &format!("{at}.content"))?;
            out.push(ChatMessage::new("system", Content::Text(text)));
        }
        "assistant" => assistant(&format!("{at}.content"), content, out)?,
        "user" => user(&format!("{at}.content"), content, out)?,
        other => {
            return Err(refuse(format!(
                "`{at}.role` is `{other}`, not a role Messages has"
            )));
        }
    }
    Ok(())
}

/// Message content: Messages allows a string for a single text block.
enum Body<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

fn body<'a>(content: &'a RawValue, at: &str) -> Result<Body<'a>, Untranslatable> {
    let bad = |e: serde_json::Error| {
        refuse(format!(
            "`{at}` is neither a string nor content blocks: {e}"
        ))
    };
    if content.get().starts_with('"') {
        serde_json::from_str(content.get())
            .map(Body::Text)
            .map_err(bad)
    } else {
        serde_json::from_str(content.get())
            .map(Body::Blocks)
            .map_err(bad)
    }
}

/// System content: a string, or text blocks joined by blank lines.
pub(super) fn system_text<'a>(
    content: &'a RawValue,
    at: &str,
) -> Result<Cow<'a, str>, Untranslatable> {
    let list = match body(content, at)? {
        Body::Text(text) => return Ok(text),
        Body::Blocks(list) => list,
    };
    let mut texts = Vec::with_capacity(list.len());
    for (j, b) in list.into_iter().enumerate() {
        if b.kind != "text" {
            return Err(refuse(format!(
                "`{at}[{j}]` is a `{}` block; system content can only be text",
                b.kind
            )));
        }
        let text = b.text.unwrap_or_default();
        // Claude Code's billing line: for Anthropic's accounting alone, and
        // different on every turn.
        if !text.starts_with("x-anthropic-billing-header:") {
            texts.push(text);
        }
    }
    Ok(join(texts))
}

/// Texts as one: separate blocks stay separate paragraphs.
fn join(mut texts: Vec<Cow<'_, str>>) -> Cow<'_, str> {
    texts.retain(|t| !t.is_empty());
    match texts.len() {
        0 => Cow::Borrowed(""),
        1 => texts.pop().unwrap_or_default(),
        _ => Cow::Owned(texts.join("\n\n")),
    }
}

fn assistant<'a>(
    at: &str,
    content: &'a RawValue,
    out: &mut Vec<ChatMessage<'a>>,
) -> Result<(), Untranslatable> {
    let list = match body(content, at)? {
        Body::Text(text) => {
            out.push(ChatMessage::new("assistant", Content::Text(text)));
            return Ok(());
        }
        Body::Blocks(list) => list,
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in list.into_iter().enumerate() {
        match &*b.kind {
            "text" => texts.push(b.text.unwrap_or_default()),
            "tool_use" => calls.push(ChatCall {
                id: b.id.unwrap_or_default(),
                kind: "function",
                function: CallFunction {
                    name: b.name.unwrap_or_default(),
                    arguments: b.input.map_or("{}", RawValue::get),
                },
            }),
            // Claude's reasoning, signed for Claude: no other model reads it.
            "thinking" | "redacted_thinking" => {}
            other => return Err(unknown_block(&format!("{at}[{j}]"), other)),
        }
    }
    let text = join(texts);
    if text.is_empty() && calls.is_empty() {
        return Ok(()); // only thinking: nothing an OpenAI model can be shown
    }
    out.push(ChatMessage {
        role: "assistant",
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: calls,
        tool_call_id: None,
    });
    Ok(())
}

/// A user turn: its tool results first, as tool messages in order (they
/// must follow the assistant's calls directly), then the rest as one user
/// message, with any images the results carried.
fn user<'a>(
    at: &str,
    content: &'a RawValue,
    out: &mut Vec<ChatMessage<'a>>,
) -> Result<(), Untranslatable> {
    let list = match body(content, at)? {
        Body::Text(text) => {
            out.push(ChatMessage::new("user", Content::Text(text)));
            return Ok(());
        }
        Body::Blocks(list) => list,
    };
    let mut parts = Vec::new();
    let mut result_images = Vec::new();
    for (j, b) in list.into_iter().enumerate() {
        let here = format!("{at}[{j}]");
        match &*b.kind {
            "tool_result" => {
                let (text, images) = tool_result(&here, &b)?;
                if !images.is_empty() {
                    let id = b.tool_use_id.as_deref().unwrap_or_default();
                    result_images.push(Part::Text {
                        text: Cow::Owned(format!("The images of tool result {id}:")),
                    });
                    result_images.extend(images);
                }
                out.push(ChatMessage {
                    role: "tool",
                    content: Some(Content::Text(text)),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(b.tool_use_id.unwrap_or_default()),
                });
            }
            _ => {
                if let Some(part) = part(&here, b)? {
                    parts.push(part);
                }
            }
        }
    }
    result_images.append(&mut parts);
    if !result_images.is_empty() {
        out.push(ChatMessage::new("user", as_content(result_images)));
    }
    Ok(())
}

/// Parts as content: one text alone as a plain string, which every
/// OpenAI-compatible server takes.
fn as_content(mut parts: Vec<Part<'_>>) -> Content<'_> {
    if let [Part::Text { .. }] = parts.as_slice()
        && let Some(Part::Text { text }) = parts.pop()
    {
        return Content::Text(text);
    }
    Content::Parts(parts)
}

/// A user block as a chat content part; `None` for one that says nothing.
fn part<'a>(at: &str, b: Block<'a>) -> Result<Option<Part<'a>>, Untranslatable> {
    Ok(match &*b.kind {
        "text" => b
            .text
            .filter(|t| !t.is_empty())
            .map(|text| Part::Text { text }),
        "image" => Some(image(at, b.source)?),
        "document" => Some(Part::Text {
            text: document(at, b)?,
        }),
        "thinking" | "redacted_thinking" => None,
        other => return Err(unknown_block(at, other)),
    })
}

fn image<'a>(at: &str, source: Option<&'a RawValue>) -> Result<Part<'a>, Untranslatable> {
    let url = match source_of(at, source)? {
        Some(Source {
            kind,
            media_type,
            data: Some(data),
            ..
        }) if kind == "base64" => {
            let media = media_type.as_deref().unwrap_or("image/png");
            Cow::Owned(format!("data:{media};base64,{data}"))
        }
        Some(Source {
            kind,
            url: Some(url),
            ..
        }) if kind == "url" => url,
        Some(s) => {
            return Err(refuse(format!(
                "`{at}` is an image with a `{}` source, which an OpenAI-compatible deployment cannot fetch; send it as base64 or a URL",
                s.kind
            )));
        }
        None => return Err(refuse(format!("`{at}` is an image without a source"))),
    };
    Ok(Part::ImageUrl {
        image_url: ImageUrl { url },
    })
}

fn source_of<'a>(
    at: &str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Source<'a>>, Untranslatable> {
    raw.map(|raw| serde_json::from_str(raw.get()))
        .transpose()
        .map_err(|e| refuse(format!("`{at}.source` is not a source: {e}")))
}

/// A document as text: plain-text and content sources read; PDFs and files
/// refused, as a chat model cannot be given them.
fn document<'a>(at: &str, b: Block<'a>) -> Result<Cow<'a, str>, Untranslatable> {
    let text = match source_of(at, b.source)? {
        Some(Source {
            kind,
            data: Some(data),
            ..
        }) if kind == "text" => data,
        Some(Source {
            kind,
            content: Some(content),
            ..
        }) if kind == "content" => match body(content, at)? {
            Body::Text(text) => text,
            Body::Blocks(list) => join(texts(at, list)?),
        },
        Some(s) => {
            let what = s.media_type.as_deref().unwrap_or(&s.kind).to_string();
            return Err(refuse(format!(
                "`{at}` is a `document` block with a `{}` source ({what}), which an OpenAI-compatible deployment cannot read; send its text instead",
                s.kind
            )));
        }
        None => return Err(refuse(format!("`{at}` is a document without a source"))),
    };
    Ok(match b.title {
        Some(title) if !title.is_empty() => Cow::Owned(format!("{title}\n\n{text}")),
        _ => text,
    })
}

/// The texts of blocks that may only be text.
fn texts<'a>(at: &str, list: Vec<Block<'a>>) -> Result<Vec<Cow<'a, str>>, Untranslatable> {
    list.into_iter()
        .enumerate()
        .map(|(j, b)| match &*b.kind {
            "text" => Ok(b.text.unwrap_or_default()),
            other => Err(unknown_block(&format!("{at}[{j}]"), other)),
        })
        .collect()
}

/// A tool result's text (marked when it is an error) and its images.
fn tool_result<'a>(
    at: &str,
    b: &Block<'a>,
) -> Result<(Cow<'a, str>, Vec<Part<'a>>), Untranslatable> {
    let mut images = Vec::new();
    let text = match b.content {
        None => Cow::Borrowed(""),
        Some(content) => match body(content, at)? {
            Body::Text(text) => text,
            Body::Blocks(list) => {
                let mut texts = Vec::with_capacity(list.len());
                for (j, inner) in list.into_iter().enumerate() {
                    let here = format!("{at}.content[{j}]");
                    match &*inner.kind {
                        "text" => texts.push(inner.text.unwrap_or_default()),
                        "image" => images.push(image(&here, inner.source)?),
                        "document" => texts.push(document(&here, inner)?),
                        other => return Err(unknown_block(&here, other)),
                    }
                }
                join(texts)
            }
        },
    };
    let text = if b.is_error == Some(true) {
        Cow::Owned(format!("Error: {text}"))
    } else if text.is_empty() && !images.is_empty() {
        Cow::Borrowed("(images follow in the next message)")
    } else {
        text
    };
    Ok((text, images))
}

fn unknown_block(at: &str, kind: &str) -> Untranslatable {
    refuse(format!(
        "`{at}` is a `{kind}` block, which an OpenAI-compatible deployment cannot take"
    ))
}
