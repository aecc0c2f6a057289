//! Watching a server-sent-event stream on its way to the client.
//!
//! Bytes are forwarded as the upstream sent them, frame by frame, as soon as a
//! frame is complete. On the way the scanner notes the usage chunk, the final
//! `[DONE]` and error frames; when the gateway added `include_usage` on the
//! client's behalf it also takes out what the client did not ask for (the
//! usage chunk, the `usage` an upstream puts in its finish chunk instead, and
//! the `"usage":null` members of the other chunks). A chunk that needs no
//! edit is passed on without copying.

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
}

enum Action {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

#[derive(Deserialize)]
struct ChunkProbe {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// The end of the first frame in `data` (after its blank line), if complete.
fn frame_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\n' {
            if data[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if data[i + 1] == b'\r' && data.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The patterns looked for in every frame, each searched for with a
/// prebuilt SIMD finder (a byte-by-byte window compare per pattern was most
/// of the scanner's time on long frames).
struct Patterns {
    error: Finder<'static>,
    usage: Finder<'static>,
    usage_spaced: Finder<'static>,
    null_usage: [Finder<'static>; 3],
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    error: Finder::new(b"\"error\":{"),
    usage: Finder::new(b"\"usage\":{"),
    usage_spaced: Finder::new(b"\"usage\": {"),
    null_usage: [
        Finder::new(b",\"usage\":null"),
        Finder::new(b"\"usage\":null,"),
        Finder::new(b", \"usage\": null"),
    ],
});

/// The payload of a frame's `data:` line (the one line OpenAI-style APIs send).
fn data_of(frame: &[u8]) -> Option<&[u8]> {
    frame.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(b"data:")?;
        Some(rest.strip_prefix(b" ").unwrap_or(rest))
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

impl SseScanner {
    pub fn new(strip_usage: bool) -> Self {
        Self {
            strip_usage,
            ..Self::default()
        }
    }

    /// Takes the next chunk from upstream; returns what to send on, if anything.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let data = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        let mut at = 0;
        let mut out: Option<BytesMut> = None;
        while let Some(len) = frame_end(&data[at..]) {
            let frame = &data[at..at + len];
            match self.inspect(frame) {
                Action::Keep => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(frame);
                    }
                }
                action => {
                    let o = out.get_or_insert_with(|| BytesMut::from(&data[..at]));
                    if let Action::Replace(bytes) = action {
                        o.extend_from_slice(&bytes);
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

    /// What is left when the upstream ends: an unterminated frame, passed on as it is.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = self.pending.split().freeze();
        if let Some(payload) = data_of(&rest)
            && payload.trim_ascii() == b"[DONE]"
        {
            self.done = true;
        }
        Some(rest)
    }

    fn inspect(&mut self, frame: &[u8]) -> Action {
        let Some(payload) = data_of(frame) else {
            return Action::Keep;
        };
        if payload.trim_ascii() == b"[DONE]" {
            self.done = true;
            return Action::Keep;
        }
        self.frames += 1;
        // Only the first event is parsed in full: it decides whether the
        // stream is committed or failed over, and costs one parse per stream.
        if self.frames == 1 && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
            self.saw_invalid = true;
        }
        let patterns = &*PATTERNS;
        if payload.starts_with(b"{\"error\"")
            || (patterns.error.find(payload).is_some() && has_top_level_error(payload))
        {
            self.saw_error = true;
        }
        if (patterns.usage.find(payload).is_some() || patterns.usage_spaced.find(payload).is_some())
            && let Ok(probe) = serde_json::from_slice::<ChunkProbe>(payload)
            && let Some(usage) = probe.usage
        {
            self.usage = Some(usage);
            let usage_only = probe.choices.as_ref().is_none_or(|c| c.is_empty());
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
        if self.strip_usage {
            for pattern in &patterns.null_usage {
                if let Some(pos) = pattern.find(frame) {
                    let mut edited = Vec::with_capacity(frame.len());
                    edited.extend_from_slice(&frame[..pos]);
                    edited.extend_from_slice(&frame[pos + pattern.needle().len()..]);
                    return Action::Replace(edited);
                }
            }
        }
        Action::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn feed_all(scanner: &mut SseScanner, parts: &[&str]) -> String {
        let mut out = Vec::new();
        for p in parts {
            if let Some(b) = scanner.feed(Bytes::copy_from_slice(p.as_bytes())) {
                out.extend_from_slice(&b);
            }
        }
        if let Some(b) = scanner.finish() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn passes_frames_through_unchanged_when_the_client_asked_for_usage() {
        let mut s = SseScanner::new(false);
        let input = [CHUNK, CHUNK, USAGE, DONE].concat();
        let out = feed_all(&mut s, &[&input]);
        assert_eq!(out, input);
        assert_eq!(s.usage.unwrap().total(), 7);
        assert!(s.done);
        assert_eq!(s.frames, 3);
    }

    #[test]
    fn strips_what_the_gateway_added() {
        let mut s = SseScanner::new(true);
        let out = feed_all(&mut s, &[CHUNK, USAGE, DONE]);
        let expected = [CHUNK.replace(",\"usage\":null", ""), DONE.to_string()].concat();
        assert_eq!(out, expected);
        assert_eq!(s.usage.unwrap().prompt_tokens, 5);
    }

    #[test]
    fn an_error_inside_a_chunk_is_not_an_error_frame() {
        let mut s = SseScanner::new(false);
        let azure = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"content_filter_results\":{\"error\":{\"code\":\"content_filter_error\",\"message\":\"The contents are not filtered\"}}}]}\n\n";
        feed_all(&mut s, &[azure]);
        assert!(!s.saw_error);
        let mut s = SseScanner::new(false);
        feed_all(
            &mut s,
            &["data: {\"id\":\"x\",\"error\":{\"message\":\"boom\"}}\n\n"],
        );
        assert!(s.saw_error);
    }

    #[test]
    fn frames_split_across_chunks_are_reassembled() {
        let mut s = SseScanner::new(false);
        let input = [CHUNK, USAGE, DONE].concat();
        let pieces: Vec<String> = input
            .as_bytes()
            .chunks(7)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let refs: Vec<&str> = pieces.iter().map(|s| s.as_str()).collect();
        assert_eq!(feed_all(&mut s, &refs), input);
        assert!(s.done);
        assert_eq!(s.usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn a_stream_without_done_is_not_done() {
        let mut s = SseScanner::new(false);
        feed_all(&mut s, &[CHUNK, "data: {\"partial\""]);
        assert!(!s.done);
    }

    #[test]
    fn crlf_frames_and_error_frames_are_understood() {
        let mut s = SseScanner::new(false);
        let out = feed_all(
            &mut s,
            &[
                "data: {\"error\":{\"message\":\"x\"}}\r\n\r\n",
                "data: [DONE]\r\n\r\n",
            ],
        );
        assert!(s.saw_error && s.done);
        assert!(out.ends_with("[DONE]\r\n\r\n"));
    }

    #[test]
    fn usage_in_the_finish_chunk_is_read_and_taken_out_when_the_gateway_asked() {
        let finish = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
        let mut s = SseScanner::new(true);
        let out = feed_all(&mut s, &[CHUNK, finish, DONE]);
        let expected = [
            CHUNK.replace(",\"usage\":null", ""),
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".into(),
            DONE.to_string(),
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(s.usage.unwrap().total(), 7);
        // Asked for by the client: left alone.
        let mut s = SseScanner::new(false);
        assert_eq!(feed_all(&mut s, &[finish, DONE]), [finish, DONE].concat());
        assert_eq!(s.usage.unwrap().total(), 7);
    }

    #[test]
    fn a_usage_member_is_cut_out_wherever_it_stands() {
        let cut = |payload: &str| {
            let frame = format!("event: x\r\ndata: {payload}\r\n\r\n");
            let p = data_of(frame.as_bytes()).unwrap();
            let out = without_usage(frame.as_bytes(), p).map(|v| String::from_utf8(v).unwrap());
            out.map(|o| {
                o.strip_prefix("event: x\r\ndata: ")
                    .and_then(|o| o.strip_suffix("\r\n\r\n"))
                    .unwrap()
                    .to_string()
            })
        };
        let choices = r#""choices":[{"usage":{"x":1}}]"#;
        let usage = r#""usage" : {"total_tokens": 3}"#;
        assert_eq!(
            cut(&format!("{{{choices}, {usage}}}")).unwrap(),
            format!("{{{choices}}}")
        );
        assert_eq!(
            cut(&format!("{{ {usage} ,\t{choices} }}")).unwrap(),
            format!("{{ \t{choices} }}")
        );
        assert_eq!(
            cut(&format!("{{\"a\":1,{usage},{choices}}}")).unwrap(),
            format!("{{\"a\":1,{choices}}}")
        );
        assert_eq!(cut(&format!("{{{usage}}}")).unwrap(), "{}");
        assert_eq!(
            cut(r#"{"us\u0061ge":{"total_tokens":1},"id":2}"#).unwrap(),
            r#"{"id":2}"#
        );
        assert_eq!(cut(&format!("{{{choices}}}")), None);
        assert_eq!(cut("{\"usage\":{}"), None);
    }

    #[test]
    fn unchanged_aligned_chunks_are_not_copied() {
        let mut s = SseScanner::new(false);
        let chunk = Bytes::from_static(CHUNK.as_bytes());
        let out = s.feed(chunk.clone()).unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }
}
