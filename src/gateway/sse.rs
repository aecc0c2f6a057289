//! Watching a server-sent-event stream on its way to the client.
//!
//! Bytes are forwarded as the upstream sent them, frame by frame, as soon as a
//! frame is complete. On the way the scanner notes the usage chunk, the
//! `finish_reason`, the final `[DONE]` and error frames; when the gateway
//! added `include_usage` on the client's behalf it also takes out what the
//! client did not ask for (the usage chunk, the `usage` an upstream puts in
//! its finish chunk instead, and the `"usage":null` members of the other
//! chunks). A chunk that needs no edit is passed on without copying.
//!
//! A frame whose data is not JSON is taken out (strict SDKs raise on it)
//! and counted: before the stream is committed that fails the attempt, after
//! it the stream goes on without it. Only the first frame is parsed; the
//! others get a shape check that costs a scan for braces, and only a frame
//! that fails it is validated in full.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use serde::Deserialize;

use super::json;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.total_tokens
            .max(self.prompt_tokens + self.completion_tokens)
    }

    /// As the windows count it: the prompt is input, the rest output.
    pub fn spent(&self) -> crate::router::Spent {
        crate::router::Spent {
            input: self.prompt_tokens,
            output: self.total().saturating_sub(self.prompt_tokens),
        }
    }
}

#[derive(Debug, Default)]
pub struct SseScanner {
    pending: BytesMut,
    strip_usage: bool,
    pub usage: Option<Usage>,
    /// `data: [DONE]` was seen: the upstream finished cleanly.
    pub done: bool,
    /// Data frames seen (each content chunk is about one token).
    pub frames: u64,
    /// The upstream sent an error frame.
    pub saw_error: bool,
    /// The first data frame is not JSON (nor `[DONE]`).
    pub saw_invalid: bool,
    /// A chunk with a non-null `finish_reason` went by: the answer is whole,
    /// whether or not `[DONE]` follows.
    pub finished: bool,
    /// Frames taken out because their data is not JSON.
    pub skipped: u64,
    /// What the last of them looked like, escaped and cut short, for the log.
    pub last_skipped: Option<String>,
    /// A fallback model's stream: every chunk's `model` becomes this name
    /// (the one the client asked for).
    rename: Option<std::sync::Arc<str>>,
}

enum Action {
    Keep,
    Drop,
    /// The frame without the bytes from the first index to the second: the
    /// `"usage":null` of every chunk of a stream whose usage the gateway
    /// asked for, taken out while the frame is copied on, not into a frame
    /// of its own first.
    Cut(usize, usize),
    Replace(Vec<u8>),
}

/// An OpenAI `usage` value as `serde_json::from_slice::<Option<Usage>>`
/// reads it (`null` is none; an object's three counts, each a whole number
/// or absent, a count named twice refused; other members ignored), without
/// serde: its visitor machinery was a quarter of reading a whole answer.
/// `tests::usage_reads_as_serde_does` holds it to serde.
pub(crate) fn read_usage(value: &[u8]) -> Result<Option<Usage>, ()> {
    let value = value.trim_ascii();
    if value == b"null" {
        return Ok(None);
    }
    if value.first() != Some(&b'{') {
        return Err(());
    }
    let mut counts = [None; 3];
    json::object_members(value, |key, v| {
        let i = match key {
            b"prompt_tokens" => 0,
            b"completion_tokens" => 1,
            b"total_tokens" => 2,
            _ => return Ok(()),
        };
        if counts[i].is_some() {
            return Err("a count named twice");
        }
        counts[i] = Some(whole_number(v).ok_or("not a count")?);
        Ok(())
    })
    .map_err(|_| ())?;
    let [prompt, completion, total] = counts.map(Option::unwrap_or_default);
    Ok(Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    }))
}

/// A JSON number that is a `u64` to serde: digits that fit; no sign (not
/// even `-0`), no fraction, no exponent.
fn whole_number(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A chunk's `usage` (`Ok(None)` when it has none or it is `null`) and
/// whether it carries no choices; `Err` when it is not one JSON object or
/// its usage is not token counts: as `serde_json` read them into a probe
/// struct, without serde.
fn probe_chunk(payload: &[u8]) -> Result<(Option<Usage>, bool), ()> {
    let mut usage = None;
    let mut seen = [false; 2];
    let mut no_choices = true;
    json::object_members(payload, |key, value| {
        match key {
            b"usage" => {
                if std::mem::replace(&mut seen[0], true) {
                    return Err("a second `usage`");
                }
                usage = read_usage(value).map_err(|_| "a `usage` that is not token counts")?;
            }
            b"choices" => {
                if std::mem::replace(&mut seen[1], true) {
                    return Err("a second `choices`");
                }
                no_choices = match value.first() {
                    Some(b'[') => value[1..].trim_ascii_start().first() == Some(&b']'),
                    _ if value == b"null" => true,
                    _ => return Err("`choices` that is not a list"),
                };
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|_| ())?;
    Ok((usage, no_choices))
}

/// The name on an event's `event:` line, when it starts with one: read
/// without parsing the event's JSON (the hot events pass on a glance).
pub(crate) fn event_name(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(b"event:")?;
    let end = memchr::memchr(b'\n', rest)?;
    let name = &rest[..end];
    let name = name.strip_suffix(b"\r").unwrap_or(name);
    Some(name.strip_prefix(b" ").unwrap_or(name))
}

/// The end of the first frame in `data` (after its blank line), if complete.
/// memchr from newline to newline: a byte-by-byte loop here was ~110 ns of
/// a 200-byte chunk, memchr ~7 ns (which pays for the malformed-frame and
/// finish_reason checks of `inspect` twice over).
pub(crate) fn frame_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &data[from..]) {
        let i = from + i;
        match data.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if data.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => from = i + 1,
        }
    }
    None
}

/// The patterns looked for in every frame, each searched for with a
/// prebuilt SIMD finder (a byte-by-byte window compare per pattern was most
/// of the scanner's time on long frames).
struct Patterns {
    error: Finder<'static>,
    finish_reason: Finder<'static>,
    usage: Finder<'static>,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    error: Finder::new(b"\"error\":{"),
    finish_reason: Finder::new(b"\"finish_reason\""),
    usage: Finder::new(b"\"usage\""),
});

/// The forms of a null `usage` member the scanner takes out, with the
/// comma that goes with it, and where each starts before the key.
const NULL_USAGE: [(&[u8], usize); 3] = [
    (b",\"usage\":null", 1),
    (b"\"usage\":null,", 0),
    (b", \"usage\": null", 2),
];

/// The payload of a frame's `data:` line (the one line OpenAI-style APIs send).
fn data_of(frame: &[u8]) -> Option<&[u8]> {
    // Nearly every frame is that one line: found with one memchr rather
    // than a split that looks at every byte.
    if let Some(rest) = frame.strip_prefix(b"data:") {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Some(line.strip_prefix(b" ").unwrap_or(line));
    }
    frame.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(b"data:")?;
        Some(rest.strip_prefix(b" ").unwrap_or(rest))
    })
}

/// Whether a payload has a key named `usage` (at any depth) holding an
/// object, and the span of the first one holding `null` in a form that can
/// be cut out ([`null_usage_span`]): one search for the quoted name. It
/// cannot match inside a string, where its quotes would be escaped.
fn usage_keys(payload: &[u8]) -> (bool, Option<(usize, usize)>) {
    let (mut object, mut null) = (false, None);
    for at in PATTERNS.usage.find_iter(payload) {
        let rest = payload[at + b"\"usage\"".len()..].trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            match value.trim_ascii_start().first() {
                Some(b'{') => object = true,
                Some(b'n') if null.is_none() => null = null_usage_span(payload, at),
                _ => {}
            }
        }
    }
    (object, null)
}

/// The span of the null `usage` member whose key starts at `at`, with its
/// comma, in one of the forms upstreams send ([`NULL_USAGE`]).
fn null_usage_span(payload: &[u8], at: usize) -> Option<(usize, usize)> {
    NULL_USAGE.iter().find_map(|&(form, before)| {
        let start = at.checked_sub(before)?;
        payload[start..]
            .starts_with(form)
            .then_some((start, start + form.len()))
    })
}

/// `frame` with the top-level `usage` member of its `payload` (a slice of
/// it) taken out, with a comma next to it; `None` when the payload is not
/// one JSON object with a `usage` member. Once per stream at most: kept out
/// of line, so the per-chunk path stays as small as it was.
#[cold]
#[inline(never)]
fn without_usage(frame: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let offset = |part: &[u8]| part.as_ptr() as usize - payload.as_ptr() as usize;
    let mut span = None;
    json::object_entries(payload, |key, quoted, value| {
        if key == b"usage" {
            span = Some((offset(quoted), offset(value) + value.len()));
        }
        Ok(())
    })
    .ok()?;
    let (mut start, mut end) = span?;
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let before = payload[..start].iter().rposition(|b| !ws(b));
    let after = payload[end..].iter().position(|b| !ws(b)).map(|i| end + i);
    match (before, after) {
        // `, "usage": {...}` when it is not the first member...
        (Some(comma), _) if payload[comma] == b',' => start = comma,
        // ...else `"usage": {...},` when it is not the last.
        (_, Some(comma)) if payload[comma] == b',' => end = comma + 1,
        _ => {}
    }
    let at = payload.as_ptr() as usize - frame.as_ptr() as usize;
    let mut edited = Vec::with_capacity(frame.len());
    edited.extend_from_slice(&frame[..at + start]);
    edited.extend_from_slice(&frame[at + end..]);
    Some(edited)
}

/// Whether the `"finish_reason"` key found at `at` has a string value (not
/// `null`): `:` and a quote, with any whitespace around the colon.
fn has_reason(payload: &[u8], at: usize) -> bool {
    let rest = payload[at + b"\"finish_reason\"".len()..].trim_ascii_start();
    match rest.strip_prefix(b":") {
        Some(value) => value.trim_ascii_start().first() == Some(&b'"'),
        None => false,
    }
}

/// A cheap test that a payload may be one JSON object: `{` then a key or
/// `}`, a closing `}`, and as many `{` as `}`. Every chunk an upstream
/// streams passes it without a parse; braces inside strings can unbalance
/// the count, so a payload that fails is validated in full before it is
/// called malformed.
fn plausible_object(payload: &[u8]) -> bool {
    let [b'{', inner @ .., b'}'] = payload.trim_ascii() else {
        return false;
    };
    if inner.trim_ascii_start().first().is_some_and(|&b| b != b'"') {
        return false;
    }
    let mut depth = 0isize;
    for i in memchr::memchr2_iter(b'{', b'}', payload) {
        depth += if payload[i] == b'{' { 1 } else { -1 };
    }
    depth == 0
}

/// The start of a payload as the log shows it: escaped, at most 120 bytes.
#[cold]
pub(crate) fn preview(payload: &[u8]) -> String {
    const MAX: usize = 120;
    let shown = payload[..payload.len().min(MAX)].escape_ascii().to_string();
    if payload.len() > MAX {
        format!("{shown}… ({} bytes)", payload.len())
    } else {
        shown
    }
}

/// Whether a frame's payload is an error (a top-level `error` member), not
/// a chunk that mentions one further in: Azure's content-filter results
/// carry `"error": {...}` when the filter itself could not run.
#[cold]
fn has_top_level_error(payload: &[u8]) -> bool {
    let mut found = false;
    let _ = json::object_members(payload, |key, _| {
        found |= key == b"error";
        Ok(())
    });
    found
}

/// `frame` with its data's top-level `model` naming `name`, when it has one.
#[cold]
fn renamed(frame: &[u8], name: &str) -> Option<Vec<u8>> {
    let payload = data_of(frame)?;
    let start = payload.as_ptr() as usize - frame.as_ptr() as usize;
    let end = start + payload.len();
    let edited = super::chain::rename_model(Bytes::copy_from_slice(payload), name);
    if edited[..] == *payload {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + name.len());
    out.extend_from_slice(&frame[..start]);
    out.extend_from_slice(&edited);
    out.extend_from_slice(&frame[end..]);
    Some(out)
}

impl SseScanner {
    pub fn new(strip_usage: bool) -> Self {
        Self {
            strip_usage,
            ..Self::default()
        }
    }

    /// Every chunk's `model` will name `model` (a fallback model's stream,
    /// told as the model the client asked for).
    pub fn renaming(mut self, model: Option<std::sync::Arc<str>>) -> Self {
        self.rename = model;
        self
    }

    /// Takes the next chunk from upstream; returns what to send on, if anything.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let data = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        self.scan(data, false)
    }

    /// The frames of `data` to send on; an incomplete last one waits in
    /// `pending`. `at_end`: the upstream has ended, and a malformed frame
    /// here is the cut end of a broken stream, not a frame to count.
    fn scan(&mut self, data: Bytes, at_end: bool) -> Option<Bytes> {
        let mut at = 0;
        let mut out: Option<BytesMut> = None;
        while let Some(len) = frame_end(&data[at..]) {
            let frame = &data[at..at + len];
            match self.inspect(frame, at_end) {
                Action::Keep => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(frame);
                    }
                }
                action => {
                    let o = out.get_or_insert_with(|| {
                        let mut o = BytesMut::with_capacity(data.len());
                        o.extend_from_slice(&data[..at]);
                        o
                    });
                    match action {
                        Action::Cut(start, end) => {
                            o.extend_from_slice(&frame[..start]);
                            o.extend_from_slice(&frame[end..]);
                        }
                        Action::Replace(bytes) => o.extend_from_slice(&bytes),
                        Action::Keep | Action::Drop => {}
                    }
                }
            }
            at += len;
        }
        if at < data.len() {
            self.pending.extend_from_slice(&data[at..]);
        }
        let ready = match out {
            Some(o) => o.freeze(),
            None => data.slice(..at),
        };
        (!ready.is_empty()).then_some(ready)
    }

    /// The upstream ended cleanly: what is left to send. A last frame
    /// without its blank line is read like the others and sent terminated.
    /// A stream whose answer finished (a `finish_reason` went by) ends as a
    /// finished stream, with the `[DONE]` the upstream left out: SDKs then
    /// return the whole answer instead of raising on a cut.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.tail();
        if self.done || !self.finished || self.saw_error {
            return rest;
        }
        self.done = true;
        let mut out = BytesMut::new();
        if let Some(rest) = rest {
            out.extend_from_slice(&rest);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Some(out.freeze())
    }

    /// The upstream broke off: the whole frames it still had in `pending`,
    /// never an end of our own.
    pub fn abandon(&mut self) -> Option<Bytes> {
        self.tail()
    }

    fn tail(&mut self) -> Option<Bytes> {
        if self.pending.is_empty() {
            return None;
        }
        let mut tail = self.pending.split();
        if tail.trim_ascii().is_empty() {
            return None;
        }
        let blank: &[u8] = if tail.ends_with(b"\n") {
            b"\n"
        } else {
            b"\n\n"
        };
        if !tail.ends_with(b"\n\n") && !tail.ends_with(b"\r\n\r\n") {
            tail.extend_from_slice(blank);
        }
        self.scan(tail.freeze(), true)
    }

    fn inspect(&mut self, frame: &[u8], at_end: bool) -> Action {
        let action = self.look(frame, at_end);
        match &self.rename {
            None => action,
            Some(name) => {
                let name = name.clone();
                match action {
                    Action::Drop => Action::Drop,
                    Action::Keep => renamed(frame, &name).map_or(Action::Keep, Action::Replace),
                    Action::Cut(start, end) => {
                        let edited = [&frame[..start], &frame[end..]].concat();
                        Action::Replace(renamed(&edited, &name).unwrap_or(edited))
                    }
                    Action::Replace(edited) => {
                        Action::Replace(renamed(&edited, &name).unwrap_or(edited))
                    }
                }
            }
        }
    }

    fn look(&mut self, frame: &[u8], at_end: bool) -> Action {
        let Some(payload) = data_of(frame) else {
            return Action::Keep;
        };
        if payload.trim_ascii() == b"[DONE]" {
            self.done = true;
            return Action::Keep;
        }
        // Only the first event is parsed in full: it decides whether the
        // stream is committed or failed over, and costs one parse per stream.
        let malformed = if self.frames == 0 && self.skipped == 0 {
            let bad = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err();
            self.saw_invalid = bad;
            bad
        } else {
            !plausible_object(payload) && json::object_members(payload, |_, _| Ok(())).is_err()
        };
        if malformed {
            if !at_end {
                self.skipped += 1;
                self.last_skipped = Some(preview(payload));
            }
            return Action::Drop;
        }
        self.frames += 1;
        let patterns = &*PATTERNS;
        if !self.finished {
            // One key per choice: with `n` > 1 the first may still be null.
            self.finished = patterns
                .finish_reason
                .find_iter(payload)
                .any(|at| has_reason(payload, at));
        }
        if payload.starts_with(b"{\"error\"")
            || (patterns.error.find(payload).is_some() && has_top_level_error(payload))
        {
            self.saw_error = true;
        }
        let (usage_object, null_usage) = usage_keys(payload);
        if usage_object && let Ok((Some(usage), usage_only)) = probe_chunk(payload) {
            self.usage = Some(usage);
            if self.strip_usage {
                if usage_only {
                    return Action::Drop;
                }
                // Some upstreams put the usage in the finish chunk: that
                // chunk stays, without it.
                if let Some(edited) = without_usage(frame, payload) {
                    return Action::Replace(edited);
                }
            }
        }
        if self.strip_usage
            && let Some((start, end)) = null_usage
        {
            let offset = payload.as_ptr() as usize - frame.as_ptr() as usize;
            return Action::Cut(offset + start, offset + end);
        }
        Action::Keep
    }
}

#[cfg(test)]
mod tests;
