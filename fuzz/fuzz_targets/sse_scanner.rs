//! `SseScanner` on arbitrary streams, cut into chunks at arbitrary points.
//!
//! Input: one byte whose low 4 bits say how many split-size bytes follow,
//! those bytes (chunk sizes, cycled; 0 feeds an empty chunk), then the
//! stream. Both modes (`strip_usage` false and true) run on every input.
//! Checks:
//! - output and findings (usage, done, frames, error, invalid) do not depend
//!   on how the stream was cut: chunked = in one piece = frame by frame;
//! - `feed` never returns an empty chunk; `finish` leaves nothing behind;
//! - without stripping, the output is the input, byte for byte;
//! - the findings do not depend on the mode;
//! - with stripping, each frame is kept, dropped (only a chunk carrying
//!   usage), loses exactly one `"usage":null` member, or (a chunk with
//!   choices and usage) loses its top-level `usage` member and nothing else
//!   as JSON goes; a frame whose data was a JSON value still carries a JSON
//!   value; input without `usage` passes unchanged.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::gateway::sse::{SseScanner, Usage};

#[derive(Debug, PartialEq, Eq)]
struct Findings {
    usage: Option<Usage>,
    done: bool,
    frames: u64,
    saw_error: bool,
    saw_invalid: bool,
}

fn findings(s: &SseScanner) -> Findings {
    Findings {
        usage: s.usage,
        done: s.done,
        frames: s.frames,
        saw_error: s.saw_error,
        saw_invalid: s.saw_invalid,
    }
}

/// Feeds `chunks` then finishes; the concatenated output.
fn run<'a>(strip: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, Findings) {
    let mut s = SseScanner::new(strip);
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = s.feed(Bytes::copy_from_slice(c)) {
            assert!(!b.is_empty(), "feed returned an empty chunk");
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = s.finish() {
        assert!(!b.is_empty(), "finish returned an empty chunk");
        out.extend_from_slice(&b);
    }
    assert!(s.finish().is_none(), "finish left something behind");
    (out, findings(&s))
}

/// Cuts `stream` by the sizes, cycled.
fn cut<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![stream];
    }
    let mut chunks = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let end = (at + n as usize).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
        if chunks.len() > 4 * stream.len() + 16 {
            // All sizes 0: no progress.
            chunks.push(&stream[at..]);
            break;
        }
    }
    chunks
}

/// Frames as an SSE reader delimits them: each ends after a blank line
/// (`\n\n` or `\n\r\n`); the rest is an unterminated tail.
fn frames(stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < stream.len() {
        if stream[i] == b'\n' {
            let end = if stream[i + 1] == b'\n' {
                Some(i + 2)
            } else if stream[i + 1] == b'\r' && stream.get(i + 2) == Some(&b'\n') {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                out.push(&stream[start..end]);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    (out, &stream[start..])
}

fn data_of(frame: &[u8]) -> Option<&[u8]> {
    frame.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(b"data:")?;
        Some(rest.strip_prefix(b" ").unwrap_or(rest))
    })
}

fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

const NULL_USAGE: [&[u8]; 3] = [b",\"usage\":null", b"\"usage\":null,", b", \"usage\": null"];

/// `output` is `input` with its data's top-level `usage` (an object) taken
/// out: the same bytes around the data, and as JSON the same object less
/// `usage`.
fn usage_member_cut(input: &[u8], output: &[u8]) -> bool {
    let (Some(before), Some(after)) = (data_of(input), data_of(output)) else {
        return false;
    };
    let start = before.as_ptr() as usize - input.as_ptr() as usize;
    let end = start + before.len();
    if !output.starts_with(&input[..start]) || !output.ends_with(&input[end..]) {
        return false;
    }
    let Ok(serde_json::Value::Object(mut expected)) = serde_json::from_slice(before) else {
        return false;
    };
    if !matches!(expected.remove("usage"), Some(serde_json::Value::Object(_))) {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(after).ok()
        == Some(serde_json::Value::Object(expected))
}

fn check_stripped_frame(input: &[u8], output: &[u8]) {
    if output == input {
        return;
    }
    let payload = data_of(input);
    if output.is_empty() {
        let payload = payload.expect("a frame without data was dropped");
        assert!(
            is_json(payload) && payload.windows(7).any(|w| w == b"\"usage\""),
            "a frame without usage was dropped: {:?}",
            String::from_utf8_lossy(input)
        );
        return;
    }
    if usage_member_cut(input, output) {
        return;
    }
    let removed = NULL_USAGE.iter().any(|p| {
        input.len() == output.len() + p.len()
            && (0..=output.len()).any(|at| {
                input[..at] == output[..at]
                    && &input[at..at + p.len()] == *p
                    && input[at + p.len()..] == output[at..]
            })
    });
    assert!(
        removed,
        "frame edited beyond one \"usage\":null: {:?} -> {:?}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(output)
    );
    if let Some(p) = payload
        && is_json(p)
    {
        let edited = data_of(output).expect("edit removed the data line");
        assert!(
            is_json(edited),
            "edit broke the JSON: {:?} -> {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(output)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(head & 0x0f).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let chunks = cut(stream, sizes);
    let (frame_list, tail) = frames(stream);
    let mut by_frame = frame_list.clone();
    by_frame.push(tail);

    let mut seen = Vec::new();
    for strip in [false, true] {
        let (whole, found) = run(strip, [stream]);
        let (chunked, found_chunked) = run(strip, chunks.iter().copied());
        let (framed, found_framed) = run(strip, by_frame.iter().copied());
        assert_eq!(found, found_chunked, "findings depend on the cuts");
        assert_eq!(found, found_framed, "findings depend on the cuts");
        assert!(
            chunked == whole,
            "output depends on the cuts (strip {strip})"
        );
        assert!(
            framed == whole,
            "output depends on the cuts (strip {strip})"
        );
        if !strip || !stream.windows(5).any(|w| w == b"usage") {
            assert!(
                whole == stream,
                "output differs from the input (strip {strip})"
            );
        }
        seen.push(found);
    }
    assert_eq!(seen[0], seen[1], "findings depend on strip_usage");

    // Frame by frame, with stripping: what happened to each.
    let mut s = SseScanner::new(true);
    for frame in &frame_list {
        let out = s.feed(Bytes::copy_from_slice(frame)).unwrap_or_default();
        check_stripped_frame(frame, &out);
    }
});
